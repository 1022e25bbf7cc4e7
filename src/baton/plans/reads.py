"""Which step of a plan a flow means by a template's name (``ctx.steps["reserve"]``).

A flow of a line-, bundle- or group-scoped plan step names a template's step as the
step's expressions do (:mod:`baton.plans.generate` rewrites ``steps.reserve`` in
``ship[L2]`` to ``steps["reserve[L2]"]`` when the plan is made): a flow is Python, not
rewritten, so its ``ctx.steps`` resolves the name when the flow reads it, by the same
rule — in a line-item step, a line-item template is the same line's step, a bundle
template the line's bundle's, a group template the line's group's; in a bundle (group)
step, a bundle template is the same bundle's, a group template of the same ``group_by``
the same group value's; a plan template is its single step (its name is a step's name:
found without this module); a template's own name is the reading step itself. Any other
reading names several steps (a plan step reading ``ship``, a bundle step reading a
line-item template, a group step reading a group template of another ``group_by``: its
key is a value of another grouping, ``install[PARIS]``'s is no region) and is refused with
:class:`~baton.flows.AmbiguousStep`, naming them: the full name (``ship[L2]``) reads one.

What is read from the plan's definition (each plan step's ``input.plan``: its scope,
instance and lines; a group step's ``grouped_as``) is indexed once per definition, when a flow first reads a name that
is no step of its run (a definition is built once per plan revision and worker), held
weakly: a run that is no plan, or a flow that names its steps in full, pays nothing.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping
from typing import Any

from baton.definitions.model import OrchestrationDefinition
from baton.flows import AmbiguousStep

PLAN_SCOPE = "plan"
LINE_SCOPE = "line_item"
GROUP_SCOPE = "group"


class _Step:
    """A plan step as its definition says: its template, scope, instance key and lines."""

    __slots__ = ("grouped_as", "key", "kind", "lines", "template")

    def __init__(self, template: str, kind: str, key: str, lines: tuple[str, ...],
                 grouped_as: str | None = None) -> None:
        self.template = template
        self.kind = kind
        self.key = key
        self.lines = lines
        self.grouped_as = grouped_as  # a group step's: see baton.plans.generate.grouped_as


def _plan_step(name: str, options: Mapping[str, Any]) -> _Step | None:
    """The plan facts of the step ``name`` from its options (None: no plan step)."""
    own = options.get("input")
    plan = own.get("plan") if isinstance(own, Mapping) else None
    if not isinstance(plan, Mapping):
        return None
    kind, key = plan.get("scope"), plan.get("instance")
    if not isinstance(kind, str) or not isinstance(key, str):
        return None
    if kind == PLAN_SCOPE:
        template = name
    else:
        suffix = f"[{key}]"
        if not name.endswith(suffix) or len(name) == len(suffix):
            return None
        template = name[:-len(suffix)]
    lines = tuple(str(ln.get("key")) if isinstance(ln, Mapping) else str(ln)
                  for ln in plan.get("lines") or ())
    grouped = plan.get("grouped_as")
    return _Step(template, kind, key, lines, grouped if isinstance(grouped, str) else None)


class PlanSteps:
    """One plan definition's steps by template: its instances by key, and per line the
    instance of each template that holds the line."""

    __slots__ = ("__weakref__", "by_line", "groupings", "instances", "kinds")

    def __init__(self, definition: OrchestrationDefinition) -> None:
        self.kinds: dict[str, str] = {}
        self.groupings: dict[str, str | None] = {}
        self.instances: dict[str, dict[str, str]] = {}
        self.by_line: dict[tuple[str, str], str] = {}
        for stage in definition.stages:
            for sd in stage.steps:
                step = _plan_step(sd.name, sd.options)
                if step is None:
                    continue
                self.kinds.setdefault(step.template, step.kind)
                if step.kind == GROUP_SCOPE:
                    self.groupings.setdefault(step.template, step.grouped_as)
                self.instances.setdefault(step.template, {})[step.key] = sd.name
                if step.kind != PLAN_SCOPE:
                    for ln in step.lines:
                        self.by_line.setdefault((step.template, ln), sd.name)

    def resolve(self, reader: str, reader_step: _Step, template: str) -> str | None:
        """The name of the step ``template`` means in ``reader``'s flow (None: it means
        none, or ``template`` is no template of the plan). Raises AmbiguousStep."""
        kind = self.kinds.get(template)
        if kind is None:
            return None
        if template == reader_step.template:
            return reader
        rkind = reader_step.kind
        if kind == PLAN_SCOPE:
            found = self.instances[template]
            return next(iter(found.values()), None)
        if rkind == LINE_SCOPE:
            line = reader_step.lines[0] if reader_step.lines else None
            return None if line is None else self.by_line.get((template, line))
        other_groups = rkind == kind == GROUP_SCOPE and not self._grouped_alike(
            reader_step, template)
        if rkind == kind and not other_groups:  # a bundle's own bundle, a group's group
            return self.instances[template].get(reader_step.key)
        # several steps: every instance (from the plan step), or those of its lines
        if rkind == PLAN_SCOPE:
            candidates = list(self.instances[template].values())
        else:
            candidates = list(dict.fromkeys(
                n for ln in reader_step.lines
                if (n := self.by_line.get((template, ln))) is not None))
        if not candidates:
            return None
        shown = ", ".join(candidates[:10]) + (f" and {len(candidates) - 10} more"
                                             if len(candidates) > 10 else "")
        per = ("its group_by's value: it groups its lines by another group_by than "
               f"{reader_step.template!r}" if other_groups
               else "line" if kind == LINE_SCOPE else kind)
        raise AmbiguousStep(
            f"ctx.steps[{template!r}] in step {reader!r} (scope {rkind}) names several "
            f"steps: {template!r} has scope {kind}, one step per {per} ({shown}); read "
            "one by its full name, e.g. ctx.steps[" + repr(candidates[0]) + "]")

    def _grouped_alike(self, reader_step: _Step, template: str) -> bool:
        """Are the group template ``template``'s steps keyed as ``reader_step``'s (the
        same ``group_by``: its step of the reader's key is the same group's)? A plan made
        before its definition said so: taken to be (as it was read then)."""
        theirs = self.groupings.get(template)
        if reader_step.grouped_as is None or theirs is None:
            return True
        return reader_step.grouped_as == theirs


_INDEX: dict[int, tuple[weakref.ref[OrchestrationDefinition], PlanSteps]] = {}
_LOCK = threading.Lock()
INDEX_MAX = 64  # plan definitions indexed at once (emptied when full)


def plan_steps(definition: OrchestrationDefinition) -> PlanSteps:
    """``definition``'s :class:`PlanSteps`, made once (held while the definition lives)."""
    key = id(definition)
    hit = _INDEX.get(key)
    if hit is not None and hit[0]() is definition:
        return hit[1]
    index = PlanSteps(definition)
    with _LOCK:
        if len(_INDEX) >= INDEX_MAX:
            _INDEX.clear()
        _INDEX[key] = (weakref.ref(definition, lambda _r: _INDEX.pop(key, None)), index)
    return index


def step_meant(definition: OrchestrationDefinition | None, reader: str,
               name: str) -> str | None:
    """The step of ``definition`` that ``name`` means in the flow of its step ``reader``
    when ``name`` is no step's name: a template's, resolved by the plan's scopes (see the
    module). None: ``reader`` is no plan step, or ``name`` means no step. Raises
    :class:`~baton.flows.AmbiguousStep` when it would mean several."""
    if definition is None:
        return None
    found = definition.find_step(reader)
    if found is None:
        return None
    reader_step = _plan_step(reader, found[1].options)
    if reader_step is None:
        return None
    return plan_steps(definition).resolve(reader, reader_step, name)
