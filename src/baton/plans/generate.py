"""Plan generation: fulfillment lines + a fulfillment -> one step graph (data).

Pure and deterministic: scenario matching, scope expansion and dependency resolution from
the lines, the order and ``now`` (for ``not_before`` waits). The graph is a single-stage
orchestration document (what the engine runs) plus each step's plan facts (lane, scope
instance, lines, PONR, rollback) for the views and for compensation.

Cross-scope ``after`` (DESIGN §2.4): line -> line: the same line; -> plan: the single
instance; plan -> line-scoped (or bundle, group): every instance; line -> bundle: the
line's bundle; line -> group: the line's group; bundle or group -> line: the lines of that
bundle or group; group -> group (by name): the same group value, else every instance.
A step whose dependency has no instance in this plan does not wait for it.

``steps.<template>`` in a step's expressions is resolved the same way, when the plan is
made: the expression is rewritten to read the one instance it means (``ship[L2]``'s
``steps.reserve`` becomes ``steps["reserve[L2]"]``), so the engine runs it as it is; a
reading that would mean several instances is refused by validation
(:func:`baton.definitions.plans.reads_one_instance`).
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

import orjson

from baton.definitions.plans import PLAN_STEP_KEYS, FulfillmentDefinition, step_reads
from baton.definitions.refs import navigated
from baton.errors import ExpressionError
from baton.expressions import Missing, evaluate, evaluate_condition, is_expression
from baton.expressions.cel import unquote
from baton.plans.decompose import CANCEL, FulfillmentLine, LineMemo, PlanningError, line_only
from baton.steps.pause import Pause

# 2: a line-item step's ``input.plan.lines`` holds its line's key, not its view (1): the
# views are stored once, in the graph's ``lines`` (with_line_views puts them back).
GRAPH_FORMAT = 2
PAUSE = Pause.name  # the step a not_before date becomes: a pause for the time left
STAGE = "plan"


@dataclass
class Timings:
    """Seconds spent in each phase of planning (the benchmark's split)."""

    decomposition: float = 0.0
    matching: float = 0.0
    expansion: float = 0.0
    dependencies: float = 0.0
    persistence: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.__dict__.items()}


@dataclass
class Instance:
    template: str
    kind: str  # plan | line_item | bundle | group
    key: str  # "" for the plan, a line key, a bundle key or a group value
    lines: list[FulfillmentLine] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.template if self.kind == "plan" else f"{self.template}[{self.key}]"


def scope_kind(template: Mapping[str, Any]) -> str:
    sc = template.get("scope", "line_item")
    return "group" if isinstance(sc, Mapping) else str(sc)


def _when(source: str, line: Mapping[str, Any], order: Mapping[str, Any], what: str,
          memo: LineMemo) -> bool:
    try:
        return bool(memo.evaluate(source, {"line": line, "record": order}, evaluate_condition))
    except Missing:
        return False
    except ExpressionError as exc:
        raise PlanningError(f"{what}: {source}: {exc}") from None


def match(fulfillment: FulfillmentDefinition, lines: Sequence[FulfillmentLine],
          order: Mapping[str, Any], memo: LineMemo | None = None
          ) -> dict[str, list[FulfillmentLine]]:
    """Template name -> the lines whose scenarios add it (in line order, no repeats).

    A canceled line (action ``cancel``: a disconnect) is planned only by the scenarios that
    select canceled lines: their condition holds for it, and would not hold were the same
    line added (``line.action == "cancel"``). One that holds whatever the action (``true``,
    a product test, ``line.action != "no_change"``) is for lines being delivered."""
    out: dict[str, dict[str, FulfillmentLine]] = {}
    memo = memo if memo is not None else LineMemo()
    # Lines alike in every member the conditions read are matched once, as one kind: ten
    # thousand lines of a few products are a few kinds (the first line of a kind names it
    # in an error).
    kinds: dict[bytes, list[FulfillmentLine]] = {}
    read: set[str] = set()
    for sc in fulfillment.scenarios:
        members = memo.reads(sc.when)
        if members is None:  # a condition reads `line` whole: every line is its own kind
            kinds = {str(i).encode(): [ln] for i, ln in enumerate(lines)}
            break
        read.update(members)
    else:
        names = sorted(read | {"action"})  # a canceled line is never alike an added one
        for ln in lines:
            view = ln.view()
            kinds.setdefault(orjson.dumps([view.get(m) for m in names],
                                          option=orjson.OPT_SORT_KEYS, default=str),
                             []).append(ln)
    for sc in fulfillment.scenarios:
        for alike in kinds.values():
            first = alike[0]
            what = f"scenario {sc.name}, line {first.key}"
            view = first.view()
            if _when(sc.when, view, order, what, memo) and (
                    view["action"] != CANCEL
                    or not _when(sc.when, {**view, "action": "add"}, order, what, memo)):
                for name in sc.steps:
                    found = out.setdefault(name, {})
                    for ln in alike:
                        found[ln.key] = ln
    order_keys = {ln.key: i for i, ln in enumerate(lines)}
    return {name: sorted(found.values(), key=lambda ln: order_keys[ln.key])
            for name, found in out.items()}


def expand(fulfillment: FulfillmentDefinition, matched: Mapping[str, list[FulfillmentLine]],
           order: Mapping[str, Any], memo: LineMemo | None = None
           ) -> dict[str, dict[str, Instance]]:
    """Template name -> its instances by key."""
    out: dict[str, dict[str, Instance]] = {}
    memo = memo if memo is not None else LineMemo()
    for name in fulfillment.templates:  # definition order: deterministic
        lines = matched.get(name)
        if not lines:
            continue
        t = fulfillment.templates[name]
        kind = scope_kind(t)
        found: dict[str, Instance] = {}
        for ln in lines:
            key = _instance_key(t, kind, ln, order, memo)
            if key is None:
                continue
            found.setdefault(key, Instance(name, kind, key)).lines.append(ln)
        out[name] = found
    return out


def _instance_key(t: Mapping[str, Any], kind: str, ln: FulfillmentLine,
                  order: Mapping[str, Any], memo: LineMemo) -> str | None:
    if kind == "plan":
        return ""
    if kind == "line_item":
        return ln.key
    if kind == "bundle":
        return ln.bundle  # a line outside any bundle adds no bundle step
    source = t["scope"]["group_by"]
    try:
        value = memo.evaluate(source, {"line": ln.view(), "record": order}) \
            if is_expression(source) else source
    except Missing:
        return None  # a line without the value is in no group (as one outside a bundle)
    except ExpressionError as exc:
        raise PlanningError(f"step {t['name']}, line {ln.key}: group_by {source}: {exc}") from None
    return None if value is None else str(value)


def _group_by(fulfillment: FulfillmentDefinition, template: str) -> Any:
    return fulfillment.templates[template]["scope"]["group_by"]


def grouped_as(fulfillment: FulfillmentDefinition, template: str) -> str:
    """The first group template of the fulfillment (in its order) with the same
    ``group_by`` as the group template ``template``: two group templates whose steps are
    keyed alike (``install[PARIS]`` and ``survey[PARIS]``, the same site) have the same."""
    mine = _group_by(fulfillment, template)
    return next(name for name, t in fulfillment.templates.items()
                if scope_kind(t) == "group" and t["scope"]["group_by"] == mine)


def _group_of(fulfillment: FulfillmentDefinition, template: str, ln: FulfillmentLine,
              order: Mapping[str, Any], memo: LineMemo) -> str | None:
    t = fulfillment.templates[template]
    return _instance_key(t, "group", ln, order, memo)


def resolve(fulfillment: FulfillmentDefinition, instances: Mapping[str, Mapping[str, Instance]],
            order: Mapping[str, Any], memo: LineMemo | None = None) -> dict[str, list[str]]:
    """Instance name -> the instance names it waits for."""
    deps: dict[str, list[str]] = {}
    memo = memo if memo is not None else LineMemo()
    for name, by_key in instances.items():
        after = fulfillment.templates[name].get("after") or ()
        for inst in by_key.values():
            found: list[str] = []
            for ref in after:
                target = instances.get(ref)
                if target:
                    found.extend(i.name for i in _targets(fulfillment, inst, ref, target, order,
                                                          memo))
            deps[inst.name] = list(dict.fromkeys(found))
    return deps


def _targets(fulfillment: FulfillmentDefinition, inst: Instance, ref: str,
             target: Mapping[str, Instance], order: Mapping[str, Any], memo: LineMemo
             ) -> list[Instance]:
    tkind = next(iter(target.values())).kind
    if tkind == "plan":
        return list(target.values())
    if inst.kind == "plan":
        return list(target.values())
    keys: list[str | None]
    if tkind == "line_item":
        keys = [ln.key for ln in inst.lines]
    elif tkind == "bundle":
        keys = [ln.bundle for ln in inst.lines]
    elif inst.kind == "group" and tkind == "group" and inst.key in target \
            and _group_by(fulfillment, inst.template) == _group_by(fulfillment, ref):
        keys = [inst.key]  # (grouped alike: the same value; else the groups of its lines)
    else:
        keys = [_group_of(fulfillment, ref, ln, order, memo) for ln in inst.lines]
    return [target[k] for k in dict.fromkeys(keys) if k is not None and k in target]


def _has_line_values(value: Any) -> bool:
    if isinstance(value, str):
        return is_expression(value) and line_only(value)
    if isinstance(value, Mapping):
        return any(_has_line_values(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_line_values(v) for v in value)
    return False


def _resolve_line_values(value: Any, line: Mapping[str, Any]) -> Any:
    """Expressions that read only ``line`` are evaluated now: the engine has no line."""
    if isinstance(value, str) and is_expression(value):
        try:
            if line_only(value):
                return evaluate(value, {"line": line})
        except (Missing, ExpressionError):
            return value
        return value
    if isinstance(value, Mapping):
        return {k: _resolve_line_values(v, line) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_line_values(v, line) for v in value]
    return value


def _wait_ms(source: str, line: Mapping[str, Any], order: Mapping[str, Any],
             now: datetime, what: str) -> int:
    try:
        value = evaluate(source, {"line": line, "record": order})
    except Missing:
        return 0  # no date on the line: nothing to wait for
    except ExpressionError as exc:
        raise PlanningError(f"{what}: not_before {source}: {exc}") from None
    if value is None or value == "":
        return 0
    try:
        text = str(value)
        at = (datetime.fromisoformat(text) if "T" in text
              else datetime.combine(date.fromisoformat(text), datetime.min.time()))
    except ValueError:
        raise PlanningError(f"{what}: not_before {source} gave {value!r}, not a date") from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=now.tzinfo)
    return max(0, int((at - now).total_seconds() * 1000))


def build_steps(fulfillment: FulfillmentDefinition, instances: Mapping[str, Mapping[str, Instance]],
                deps: Mapping[str, list[str]], order: Mapping[str, Any], now: datetime,
                memo: LineMemo | None = None
                ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The stage's steps and each step's plan facts, in a deterministic order."""
    steps: list[dict[str, Any]] = []
    facts: list[dict[str, Any]] = []
    memo = memo if memo is not None else LineMemo()
    _paths, line_valued, all_reads = _facts(fulfillment)
    for name, by_key in instances.items():
        t = fulfillment.templates[name]
        defaults: Mapping[str, Any] = fulfillment.defaults.get(t["type"]) or {}
        resolve_step, resolve_rollback = line_valued[name]
        reads = all_reads.get(name)
        grouping = grouped_as(fulfillment, name) if scope_kind(t) == "group" else None
        for inst in by_key.values():
            views = [ln.view() for ln in inst.lines]
            step = {k: v for k, v in t.items() if k not in PLAN_STEP_KEYS and k != "after"}
            for k, v in defaults.items():
                step.setdefault(k, v)
            if inst.kind == "line_item" and resolve_step:
                step = _resolve_line_values(step, views[0])
            names = _read_names(fulfillment, instances, inst, reads, order, memo) \
                if reads else None
            if names:
                step = _renamed(step, names)
            step["name"] = inst.name
            # A line-item step sees its line; the others the keys of theirs (a plan step
            # none: a line added by an amendment must not change what it was given). The
            # graph holds a line-item step's line by key too, its view once in ``lines``:
            # the definition the engine runs gets the view back (service.build_definition).
            lines: list[Any] = [] if inst.kind == "plan" else [ln.key for ln in inst.lines]
            step["input"] = {**(step.get("input") or {}),
                             "plan": {"scope": inst.kind, "instance": inst.key,
                                      "lines": lines}}
            after = list(deps.get(inst.name, ()))
            if "not_before" in t:
                ms = _wait_ms(t["not_before"], views[0], order, now, inst.name)
                if ms > 0:
                    wait = f"wait_{inst.name}"
                    steps.append({"name": wait, "type": PAUSE, "for": f"{ms}ms",
                                  "lane": t.get("lane"), "after": list(after)})
                    facts.append({"name": wait, "template": name, "scope": inst.kind,
                                  "instance": inst.key, "lane": t.get("lane"),
                                  "lines": [ln.key for ln in inst.lines], "wait": True})
                    after = [wait]
            if after:
                step["after"] = after
            steps.append(step)
            fact: dict[str, Any] = {"name": inst.name, "template": name, "scope": inst.kind,
                                    "instance": inst.key, "lane": t.get("lane"),
                                    "lines": [ln.key for ln in inst.lines]}
            if grouping is not None:  # (the engine's definition has it: service.py)
                fact["grouped_as"] = grouping
            if t.get("ponr"):
                fact["ponr"] = True
            if "rollback" in t:
                rb = dict(t["rollback"])
                if inst.kind == "line_item" and resolve_rollback:
                    rb = _resolve_line_values(rb, views[0])
                if names:
                    rb = _renamed(rb, names)
                # (its input's `plan` is the step's, added when the compensation is made:
                # stored once, not twice, in a graph of thousands of line-item steps)
                fact["rollback"] = rb
            facts.append(fact)
    return steps, facts


def generate(fulfillment: FulfillmentDefinition, lines: Sequence[FulfillmentLine],
             order: Mapping[str, Any], order_type: str, plan_name: str, now: datetime,
             timings: Timings | None = None) -> dict[str, Any]:
    """The plan's graph: ``definition`` (a one-stage orchestration document) and ``steps``
    (each step's plan facts), with the lines it was planned from."""
    tm = timings if timings is not None else Timings()
    t0 = time.perf_counter()
    memo = LineMemo()  # one for the whole plan: group_by is read when expanding and resolving
    matched = match(fulfillment, lines, order, memo)
    t1 = time.perf_counter()
    instances = expand(fulfillment, matched, order, memo)
    t2 = time.perf_counter()
    deps = resolve(fulfillment, instances, order, memo)
    steps, facts = build_steps(fulfillment, instances, deps, order, now, memo)
    t3 = time.perf_counter()
    tm.matching += t1 - t0
    tm.expansion += t2 - t1
    tm.dependencies += t3 - t2
    return {
        "format": GRAPH_FORMAT,
        "definition": {"name": plan_name, "label": f"Plan of {fulfillment.name}",
                       "trigger": {"type": "record", "object": order_type, "on": []},
                       "stages": [{"name": STAGE, "steps": steps}]},
        "steps": facts,
        "lanes": list(fulfillment.lanes),
        "lines": [ln.view() for ln in lines],
        # what its steps' expressions navigate (record.account.name): their templates'
        "navigated": [list(p) for p in _navigated(fulfillment)],
    }


_Facts = tuple[tuple[tuple[str, ...], ...], dict[str, tuple[bool, bool]],
               dict[str, tuple[str, ...]]]
_FACTS: dict[int, tuple[weakref.ref[FulfillmentDefinition], _Facts]] = {}


def _facts(fulfillment: FulfillmentDefinition) -> _Facts:
    """What planning reads from a fulfillment's step templates alone, found once per
    parsed fulfillment (walking every template for every order cost a millisecond a
    plan), held weakly: the record paths they navigate, per template whether the step,
    and its rollback, hold expressions of ``line`` alone (evaluated when planned), and the
    templates whose ``steps.<name>`` its expressions read that name an instance
    (:func:`_step_reads`: only templates that have any)."""
    key = id(fulfillment)
    hit = _FACTS.get(key)
    if hit is not None and hit[0]() is fulfillment:
        return hit[1]
    paths = navigated(dict(fulfillment.templates))
    line_valued = {name: (_has_line_values({k: v for k, v in t.items() if k != "rollback"}),
                          _has_line_values(t.get("rollback")))
                   for name, t in fulfillment.templates.items()}
    reads = {name: found for name in fulfillment.templates
             if (found := _step_reads(fulfillment, name))}
    facts = (paths, line_valued, reads)
    if len(_FACTS) >= 256:
        _FACTS.clear()
    _FACTS[key] = (weakref.ref(fulfillment, lambda _r: _FACTS.pop(key, None)), facts)
    return facts


def _step_reads(fulfillment: FulfillmentDefinition, name: str) -> tuple[str, ...]:
    """The templates, other than plan-scoped ones, whose ``steps.<template>`` the step
    template ``name`` (and its rollback) reads, when it is not plan-scoped itself: each
    names a step instance, worked out per instance of ``name`` (:func:`_read_names`). A
    plan step reading a template of another scope is refused by validation."""
    t = fulfillment.templates[name]
    if scope_kind(t) == "plan":
        return ()
    body = {k: v for k, v in t.items() if k not in ("name", "after", "scope", "not_before")}
    found: dict[str, None] = {}
    for source in _sources(body):
        for ref in step_reads(source):
            target = fulfillment.templates.get(ref)
            if target is not None and scope_kind(target) != "plan":
                found[ref] = None
    return tuple(found)


def _sources(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        if is_expression(value):
            yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _sources(v)
    elif isinstance(value, list):
        for v in value:
            yield from _sources(v)


def _read_names(fulfillment: FulfillmentDefinition,
                instances: Mapping[str, Mapping[str, Instance]], inst: Instance,
                reads: Sequence[str], order: Mapping[str, Any], memo: LineMemo
                ) -> dict[str, tuple[str | None, bool]]:
    """Template -> the name of its step that ``steps.<template>`` means in ``inst``'s
    expressions, and whether the plan has that step: its own for its template; from a
    line the same line's, the line's bundle's, the line's group's; from a bundle or a
    group the same bundle's or group's. A step the plan does not have (the line has no
    such step) is named all the same: reading it is a missing value, as a step that has
    not run. None: no step can be meant (a line in no bundle, or with no value to group
    by): the name is left as it is, which no step has either."""
    out: dict[str, tuple[str | None, bool]] = {}
    for ref in reads:
        if ref == inst.template:
            out[ref] = (inst.name, True)
            continue
        kind = scope_kind(fulfillment.templates[ref])
        key: str | None
        if inst.kind == "line_item":
            ln = inst.lines[0]
            key = (ln.key if kind == "line_item" else ln.bundle if kind == "bundle"
                   else _group_of(fulfillment, ref, ln, order, memo))
        elif inst.kind == kind:
            key = inst.key  # a bundle's own bundle, a group's own group value
        else:
            continue  # several: refused by validation
        out[ref] = (None, False) if key is None else \
            (f"{ref}[{key}]", key in instances.get(ref, {}))
    return out


# In a plan step's expressions, ``steps.<template>`` (and ``steps["<template>"]``) becomes
# ``steps["<instance>"]``; ``has(steps.<template>)`` (CEL's has() takes a field, not an
# index) becomes ``true`` or ``false``: whether the plan has the step (a run has all its
# steps from the start, as it has in an orchestration). String literals are left alone.
_STEP_READ = re.compile(
    r"(?P<text>\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')"
    r"|(?<![\w.])has\s*\(\s*steps\s*\.\s*(?P<has>[A-Za-z_]\w*)\s*\)"
    r"|(?<![\w.])steps\s*(?:\.\s*(?P<dot>[A-Za-z_]\w*)\b"
    r"|\[\s*(?P<key>\"(?:\\.|[^\"\\])*\"|'(?:\\.|[^'\\])*')\s*\])")


def rename_step_reads(source: str, names: Mapping[str, tuple[str | None, bool]]) -> str:
    """``source`` with each read of a step in ``names`` renamed (template -> the step's
    name, None: no step, and whether the plan has it: :func:`_read_names`)."""
    def sub(m: re.Match[str]) -> str:
        if m.group("text") is not None:
            return m.group(0)
        if m.group("has") is not None:
            found = names.get(m.group("has"))
            return m.group(0) if found is None else "true" if found[1] else "false"
        ref = m.group("dot") if m.group("dot") is not None else unquote(m.group("key"))
        to = names.get(ref, (None, False))[0]
        return m.group(0) if to is None else f"steps[{_literal(to)}]"
    return _STEP_READ.sub(sub, source)


def _literal(text: str) -> str:
    """A CEL string literal of ``text`` (JSON's escapes are CEL's)."""
    return orjson.dumps(text).decode()


def _renamed(value: Any, names: Mapping[str, tuple[str | None, bool]]) -> Any:
    if isinstance(value, str):
        return rename_step_reads(value, names) if is_expression(value) else value
    if isinstance(value, Mapping):
        return {k: _renamed(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_renamed(v, names) for v in value]
    return value


def _navigated(fulfillment: FulfillmentDefinition) -> tuple[tuple[str, ...], ...]:
    return _facts(fulfillment)[0]


def with_line_views(graph: Mapping[str, Any]) -> dict[str, Any]:
    """The graph's ``definition`` as the engine runs it: each line-item step's (and its
    rollback's) ``input.plan.lines`` is its line's view, which the graph stores once, in
    ``lines``, and names by key in the steps (format 2; a format 1 graph holds the views
    there already: returned as it is)."""
    definition = graph["definition"]
    views: dict[str, Any] | None = None
    stages = []
    for stage in definition["stages"]:
        steps = []
        for step in stage["steps"]:
            plan = (step.get("input") or {}).get("plan")
            if (plan is not None and plan.get("scope") == "line_item"
                    and any(isinstance(k, str) for k in plan.get("lines") or ())):
                if views is None:
                    views = {v["key"]: v for v in graph["lines"]}
                try:
                    lines = [views[k] if isinstance(k, str) else k for k in plan["lines"]]
                except KeyError as exc:
                    raise PlanningError(f"plan step {step.get('name')}: line {exc.args[0]} "
                                        "is not among the plan's lines") from None
                step = {**step, "input": {**step["input"], "plan": {**plan, "lines": lines}}}
            steps.append(step)
        stages.append({**stage, "steps": steps})
    return {**definition, "stages": stages}

