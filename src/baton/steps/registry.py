"""The step-type registry: a step type by its name, and by the kind of job it enqueues.

``decide()``, the validator, the definition loader and the worker look step types up here
and name none of them. The built-in types register when ``baton.steps`` is imported; a new
type is one module plus one :func:`register` call. Lookups are plain dict reads (``TYPES``
is shared, never rebound), so ``decide()`` pays no more for them than for an ``if``.

The built-in types are imported on the first lookup or registration (:func:`load_builtins`),
not when the engine is: a CLI read command loads none of their dependencies (the AI
provider, the MCP SDK, the HTTP client).
"""

from __future__ import annotations

from baton.errors import BatonError
from baton.steps.base import StepType

TYPES: dict[str, StepType] = {}
"""Step type name -> step type, in registration order (the order messages list them in)."""

JOB_KINDS: dict[str, StepType] = {}
"""Job kind -> the step type whose worker handler runs it."""

PLANNED: tuple[str, ...] = ()
"""Names of step types a later version of Baton brings: reported as not available yet."""

_reserved_job_kinds: set[str] = set()
_loaded = False

GENERATION = 0
"""Bumped whenever ``TYPES`` changes: what is worked out from the registry (the engine's
set of types that recheck) is kept until this moves, instead of compared type by type."""


def load_builtins() -> None:
    """Register the built-in step types (once, before any other)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    from baton.steps.ai import AI
    from baton.steps.approval import APPROVAL
    from baton.steps.background import BACKGROUND
    from baton.steps.callout import CALLOUT
    from baton.steps.interactive import INTERACTIVE
    from baton.steps.mcp import MCP
    from baton.steps.milestone import MILESTONE
    from baton.steps.orchestration import ORCHESTRATION
    from baton.steps.pause import PAUSE

    for builtin in (BACKGROUND, INTERACTIVE, MILESTONE, PAUSE, AI, APPROVAL, ORCHESTRATION,
                    CALLOUT, MCP):
        _add(builtin)


def register(step_type: StepType) -> StepType:
    """Make ``step_type`` known to the validator, ``decide()`` and the workers."""
    load_builtins()
    return _add(step_type)


def _add(step_type: StepType) -> StepType:
    name, kind = step_type.name, step_type.job_kind
    if not name or name in TYPES:
        raise BatonError(f"step type {name!r} is already registered" if name
                         else "a step type needs a name")
    if kind is not None and (kind in JOB_KINDS or kind in _reserved_job_kinds):
        raise BatonError(f"job kind {kind!r} of step type {name!r} is already taken")
    global GENERATION
    TYPES[name] = step_type
    if kind is not None:
        JOB_KINDS[kind] = step_type
    GENERATION += 1
    return step_type


def unregister(name: str) -> None:
    """Forget a step type (tests that register one of their own clean up with this)."""
    global GENERATION
    load_builtins()
    step_type = TYPES.pop(name)
    if step_type.job_kind is not None:
        JOB_KINDS.pop(step_type.job_kind, None)
    GENERATION += 1


def reserve_job_kinds(kinds: set[str] | frozenset[str] | tuple[str, ...]) -> None:
    """Job kinds the runtime handles itself (timers, e-mail…): no step type may take them."""
    load_builtins()
    taken = [k for k in kinds if k in JOB_KINDS]
    if taken:
        raise BatonError(f"job kinds {taken} are taken by step types")
    _reserved_job_kinds.update(kinds)


def get(name: str) -> StepType | None:
    if not _loaded:
        load_builtins()
    return TYPES.get(name)


def names() -> tuple[str, ...]:
    load_builtins()
    return tuple(TYPES)


def for_job(kind: str) -> StepType | None:
    if not _loaded:
        load_builtins()
    return JOB_KINDS.get(kind)


def job_kinds() -> dict[str, StepType]:
    """Job kind -> step type (the live mapping: read it, never change it)."""
    load_builtins()
    return JOB_KINDS


def option_owners() -> dict[str, tuple[str, ...]]:
    """Step key -> the step types that take it, for the keys that are not for every type."""
    load_builtins()
    owners: dict[str, tuple[str, ...]] = {}
    for st in TYPES.values():
        for key in st.keys:
            owners[key] = (*owners.get(key, ()), st.name)
    return owners
