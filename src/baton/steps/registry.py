"""The step-type registry: a step type by its name, and by the kind of job it enqueues.

``decide()``, the validator, the definition loader and the worker look step types up here
and name none of them. The built-in types register when ``baton.steps`` is imported; a new
type is one module plus one :func:`register` call. Lookups are plain dict reads (``TYPES``
is shared, never rebound), so ``decide()`` pays no more for them than for an ``if``.
"""

from __future__ import annotations

from baton.errors import BatonError
from baton.steps.base import StepType

TYPES: dict[str, StepType] = {}
"""Step type name -> step type, in registration order (the order messages list them in)."""

JOB_KINDS: dict[str, StepType] = {}
"""Job kind -> the step type whose worker handler runs it."""

PLANNED = ("ai", "orchestration")
"""Names of step types a later version of Baton brings: reported as not available yet."""

_reserved_job_kinds: set[str] = set()


def register(step_type: StepType) -> StepType:
    """Make ``step_type`` known to the validator, ``decide()`` and the workers."""
    name, kind = step_type.name, step_type.job_kind
    if not name or name in TYPES:
        raise BatonError(f"step type {name!r} is already registered" if name
                         else "a step type needs a name")
    if kind is not None and (kind in JOB_KINDS or kind in _reserved_job_kinds):
        raise BatonError(f"job kind {kind!r} of step type {name!r} is already taken")
    TYPES[name] = step_type
    if kind is not None:
        JOB_KINDS[kind] = step_type
    return step_type


def unregister(name: str) -> None:
    """Forget a step type (tests that register one of their own clean up with this)."""
    step_type = TYPES.pop(name)
    if step_type.job_kind is not None:
        JOB_KINDS.pop(step_type.job_kind, None)


def reserve_job_kinds(kinds: set[str] | frozenset[str] | tuple[str, ...]) -> None:
    """Job kinds the runtime handles itself (timers, e-mail…): no step type may take them."""
    taken = [k for k in kinds if k in JOB_KINDS]
    if taken:
        raise BatonError(f"job kinds {taken} are taken by step types")
    _reserved_job_kinds.update(kinds)


def get(name: str) -> StepType | None:
    return TYPES.get(name)


def names() -> tuple[str, ...]:
    return tuple(TYPES)


def for_job(kind: str) -> StepType | None:
    return JOB_KINDS.get(kind)


def option_owners() -> dict[str, tuple[str, ...]]:
    """Step key -> the step types that take it, for the keys that are not for every type."""
    owners: dict[str, tuple[str, ...]] = {}
    for st in TYPES.values():
        for key in st.keys:
            owners[key] = (*owners.get(key, ()), st.name)
    return owners
