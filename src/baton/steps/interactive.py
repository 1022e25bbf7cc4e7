"""``type: interactive``: a person does the step through a work item.

Starting it creates the work item for the assignee (a user, group or queue; a name or an
``=expression``) with its form, instructions and priority; the step waits for a person
until the item is completed, or until ``complete_when`` holds (the item is then canceled).
A queue with a routing rule bound to it (``kind: routing`` with ``for_queue: true``) has its
items routed by that rule, as ``assign: {routing: NAME}`` would route them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from baton.definitions.checks import (
    Checker,
    FieldRules,
    Scope,
    check_expression,
    check_field,
    check_input,
    check_keys,
    check_value,
    expect_list,
    expect_mapping,
    item,
    join,
    unknown,
)
from baton.definitions.model import (
    DEFAULT_PRIORITY,
    FIELD_TYPES,
    PRIORITIES,
    AssigneeKind,
    RoutingDefinition,
    SkillSpec,
    StepDefinition,
)
from baton.definitions.routing import check_inline_rule
from baton.engine.events import CancelWorkItem, CreateWorkItem
from baton.engine.inputs import evaluate_input
from baton.engine.state import StepRun
from baton.engine.status import STEP_WAITING_FOR_PERSON
from baton.errors import ExpressionError
from baton.expressions import evaluate, is_expression
from baton.steps.base import DecideContext, StepTypeBase, expression_error

# A CreateWorkItem made without its generated ``__new__``'s Python frame and keywords
# (as decide()'s Audit and ScheduleStep): start() gives every field, in order.
_new_tuple = tuple.__new__
assert CreateWorkItem._fields == (
    "step", "stage", "iteration", "assignee_kind", "assignee", "title", "instructions", "form",
    "priority", "due_at", "summary", "jeopardy_at", "input", "step_type", "routing",
), "Interactive.start() builds a CreateWorkItem field by field"
_FORM_RULES = FieldRules(tuple(t for t in FIELD_TYPES if t != "ref"), ())


class Interactive(StepTypeBase):
    name = "interactive"
    keys: tuple[str, ...] = ("assign", "form", "instructions", "priority", "input", "title",
                             "summary", "complete_when")

    # ---- validation -------------------------------------------------------------------
    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if "assign" not in step:
            ck.add(
                join(path, "assign"),
                "required key 'assign' is missing (who gets the work item: user, group or queue)",
            )
        else:
            _check_assign(ck, join(path, "assign"), step["assign"], scope)
        if "instructions" in step:
            check_value(ck, join(path, "instructions"), step["instructions"], scope)
        if "form" in step:
            _check_form(ck, join(path, "form"), step["form"])
        if "priority" in step:
            _check_priority(ck, join(path, "priority"), step["priority"], scope)
        for key in ("title", "summary"):
            if key in step:
                check_value(ck, join(path, key), step[key], scope)
        if "input" in step:
            check_input(ck, join(path, "input"), step["input"], scope)

    # ---- decide -----------------------------------------------------------------------
    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        assert step.assign is not None
        routing: dict[str, Any] | None = None
        if step.assign.kind is AssigneeKind.ROUTING:
            routing = _routing(d, sr, step)
            if routing is None:
                return
            assignee = routing["from"]
        else:
            try:
                assignee = evaluate(step.assign.value, d.scope()) if is_expression(
                    step.assign.value) else step.assign.value
            except ExpressionError as exc:
                d.fail_step(sr, step, expression_error("assign", exc))
                return
        try:  # what the person is shown with the form (evaluated now)
            values = evaluate_input(step.options.get("input"), d.scope()) \
                if step.options.get("input") else None
        except ExpressionError as exc:
            d.fail_step(sr, step, expression_error("input", exc))
            return
        if not isinstance(assignee, str) or not assignee:
            d.fail_step(sr, step, {"type": "AssignmentError",
                                   "message": f"assign gave {assignee!r}, not a name"})
            return
        kind = step.assign.kind._value_  # (the member's string: no property call)
        if routing is not None:
            kind, assignee = assignee.split(":", 1)
        elif step.assign.kind is AssigneeKind.RESOURCE:
            resolved = resolve_resource(assignee)
            if resolved is None:
                d.fail_step(sr, step, {"type": "AssignmentError", "message":
                                       f"assign.resource gave {assignee!r}: expected user:NAME, "
                                       "group:NAME, queue:NAME or a user name"})
                return
            kind, assignee = resolved
        if kind == "queue" and routing is None:  # the queue's routing rule (for_queue)
            bound = d.defn.routings.get(f"queue:{assignee}")
            if bound is not None:
                routing, error = kept_rule(d, bound, bound.name, f"routing rule {bound.name}")
                if error is not None:
                    d.fail_step(sr, step, error)
                    return
        d.set_step(sr, STEP_WAITING_FOR_PERSON)
        form = tuple(
            {"name": f.name, "type": f.type, "required": f.required, "choices": list(f.choices),
             "default": f.default, "label": f.label,
             # a decimal's limits travel with the item: its submission is checked by them
             **({"precision": f.precision, "scale": f.scale, "rounding": f.rounding}
                if f.type == "decimal" else {}),
             **({"help": f.description} if f.description else {})}
            for f in step.form
        )
        title, summary = headline(d, sr, step)
        sla = sr.sla
        d.commands.append(_new_tuple(CreateWorkItem, (  # (every field, in order)
            sr.name, sr.stage, sr.iteration, kind, assignee, title, step.instructions, form,
            _priority(d, sr, step),  # priority
            sla["due_at"] if sla else None,  # due_at
            summary,
            sla.get("jeopardy_at") if sla else None,  # jeopardy_at
            values,  # input
            self.name,  # step_type
            routing,
        )))
        d.audit("step_started", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                type=self.name, assignee=f"{kind}:{assignee}")

    def recheck(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> bool:
        """``complete_when`` holds: the step is done without the person (item canceled)."""
        if step.complete_when is None or sr.status is not STEP_WAITING_FOR_PERSON:
            return False
        try:
            done = d.holds(step.complete_when)
        except ExpressionError as exc:
            d.commands.append(CancelWorkItem(sr.name, sr.iteration, "complete_when failed"))
            d.fail_step(sr, step, expression_error("complete_when", exc))
            return True
        if done:
            d.commands.append(CancelWorkItem(sr.name, sr.iteration, "complete_when holds"))
            d.complete_step(sr, {}, "system", via="complete_when")
        return done


def _routing(d: DecideContext, sr: StepRun, step: StepDefinition) -> dict[str, Any] | None:
    """The step's routing rule as the work item keeps it (``baton.work.router``): its skill
    expressions evaluated now; None when the step failed (a rule not deployed, a skill
    expression that cannot be evaluated)."""
    assert step.assign is not None
    rule: RoutingDefinition | None = step.assign.rule or d.defn.routings.get(step.assign.value)
    if rule is None:
        d.fail_step(sr, step, {"type": "AssignmentError", "message":
                               f"routing rule '{step.assign.value}' is not deployed"})
        return None
    kept, error = kept_rule(d, rule, f"{d.defn.name}.{step.name}", "assign.routing")
    if error is not None:
        d.fail_step(sr, step, error)
    return kept


class Scoped(Protocol):
    """What evaluates a rule's skills: the expression scope of one run (a decision's
    context, or an operator's reassignment outside ``decide()``)."""

    def scope(self) -> Mapping[str, Any]: ...


def kept_rule(d: Scoped, rule: RoutingDefinition, default_name: str, where: str
              ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """A routing rule as a work item keeps it, its skill expressions evaluated now over
    the record and the run: (the rule, None), or (None, the error) when a skill expression
    cannot be evaluated or gives no skill name (``where``: the rule's place, for it)."""
    skills: dict[str, list[list[Any]]] = {}
    for key, specs in (("required", rule.required), ("preferred", rule.preferred)):
        skills[key] = []
        for k, spec in enumerate(specs):
            name, error = _skill_name(d, spec, f"{where}.{key}_skills[{k}]")
            if error is not None:
                return None, error
            skills[key].append([name, spec.min_level])
    out: dict[str, Any] = {"rule": rule.name or default_name, "from":
                           f"{rule.pool_kind}:{rule.pool}", "strategy": rule.strategy,
                           "filters": list(rule.filters), "sticky": rule.sticky, **skills}
    if rule.offer_timeout_ms is not None:
        out["offer"] = {"timeout_ms": rule.offer_timeout_ms}
    return out, None


def _skill_name(d: Scoped, spec: SkillSpec, where: str
                ) -> tuple[str | None, dict[str, Any] | None]:
    try:
        value = evaluate(spec.skill, d.scope()) if is_expression(spec.skill) else spec.skill
    except ExpressionError as exc:
        return None, expression_error(where, exc)
    if not isinstance(value, str) or not value.strip():
        return None, {"type": "AssignmentError",
                      "message": f"{where} gave {value!r}, not a skill name"}
    return value.strip(), None


def resolve_resource(value: str) -> tuple[str, str] | None:
    """A resource assignee's value as (kind, name): ``queue:billing``, ``group:managers``,
    ``user:ann``, or a bare user name; None when it is none of them."""
    kind, sep, name = value.strip().partition(":")
    if not sep:
        kind, name = "user", value.strip()
    if kind not in ("user", "group", "queue") or not name or ":" in name:
        return None
    return kind, name


def headline(d: DecideContext, sr: StepRun, step: StepDefinition) -> tuple[str, str | None]:
    """The work item's title and summary, computed once when it is created (lists show
    them as stored): the step's ``title``/``summary`` (literal or ``=expression``), else
    the record's ``title_field``/``summary_field`` (its object type), else the step's
    label with the record's naming field ("Triage: Invoice 7 is wrong").

    An expression that cannot be evaluated falls back to the next choice and is audited:
    a missing title is no reason to hold back the work item itself.
    """
    record = d.scope()["record"] if d.run.record_id else None
    rtype = d.defn.record_type
    label = step.label or step.name
    title = _text_option(d, sr, step, "title")
    if title is None and record is not None and rtype is not None:
        named = _field_text(record, rtype.headline_field())
        if named is not None:
            title = named if rtype.title_field is not None else f"{label}: {named}"
    summary = _text_option(d, sr, step, "summary")
    if summary is None and record is not None and rtype is not None:
        summary = _field_text(record, rtype.summary_field)
    return _clip(title or label, TITLE_MAX), _clip(summary, SUMMARY_MAX) if summary else None


TITLE_MAX, SUMMARY_MAX = 300, 500  # the columns' lengths (baton_work_items)


def _text_option(d: DecideContext, sr: StepRun, step: StepDefinition, key: str) -> str | None:
    spec = step.options.get(key)
    if not isinstance(spec, str):
        return None
    if not is_expression(spec):
        return spec.strip() or None
    try:
        value = evaluate(spec, d.scope())
    except ExpressionError as exc:
        d.audit(f"work_item_{key}_invalid", step=sr.name, iteration=sr.iteration,
                expression=spec, error=exc.reason)
        return None
    return _as_text(value)


def _field_text(record: Mapping[str, Any], name: str | None) -> str | None:
    return _as_text(record.get(name)) if name is not None else None


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    text = " ".join(str(value).split())  # one line
    return text or None


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _priority(d: DecideContext, sr: StepRun, step: StepDefinition) -> int:
    """The work item's priority: the step's word, or its expression's value now.

    A value that is not one of the four words (or an expression that cannot be
    evaluated yet) gives ``normal`` and an audit event: a doubtful priority is no
    reason to hold back the work item itself.
    """
    spec = step.options.get("priority")
    if spec is None:
        return DEFAULT_PRIORITY
    value: Any = spec
    if is_expression(spec):
        try:
            value = evaluate(spec, d.scope())
        except ExpressionError as exc:
            d.audit("work_item_priority_invalid", step=sr.name, iteration=sr.iteration,
                    expression=spec, error=exc.reason, used="normal")
            return DEFAULT_PRIORITY
    word = value.strip().lower() if isinstance(value, str) else value
    if word in PRIORITIES:
        return PRIORITIES.index(word)
    d.audit("work_item_priority_invalid", step=sr.name, iteration=sr.iteration,
            expression=spec, value=value if isinstance(value, str | int | float | bool)
            else repr(value), error=f"expected one of: {', '.join(PRIORITIES)}",
            used="normal")
    return DEFAULT_PRIORITY


def _check_priority(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    """``low|normal|high|urgent``, or an ``=expression`` giving one of them when the item
    is created (a value outside the four falls back to normal there, audited)."""
    if isinstance(value, str) and is_expression(value):
        check_expression(ck, path, value, scope)
    elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(PRIORITIES):
        ck.add(path, f"priority is a word, not a number: write '{PRIORITIES[value]}' "
                     f"(one of: {', '.join(PRIORITIES)})")
    elif value not in PRIORITIES:
        ck.add(path, unknown("priority", value, PRIORITIES))


def _check_assign(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    assign = expect_mapping(ck, path, value)
    if assign is None:
        return
    kinds = [k.value for k in AssigneeKind]
    clean = check_keys(ck, path, assign, kinds)
    present = [k for k in kinds if k in assign]
    if clean and len(present) != 1:
        ck.add(path, f"assign needs exactly one of: {', '.join(kinds)} (got {len(present)})")
    for kind in present:
        if kind == AssigneeKind.ROUTING.value:
            check_inline_rule(ck, join(path, kind), assign[kind], scope)
            continue
        check_value(ck, join(path, kind), assign[kind], scope)
        if kind == AssigneeKind.RESOURCE.value and not (
                isinstance(assign[kind], str) and is_expression(assign[kind])):
            ck.add(join(path, kind), "a resource is an =expression giving user:NAME, group:NAME "
                                     "or queue:NAME (for a fixed assignee, use user, group or "
                                     "queue)")


def _check_form(ck: Checker, path: str, value: Any) -> None:
    fields = expect_list(ck, path, value)
    first: dict[str, int] = {}
    for k, spec in enumerate(fields or []):
        fpath = item(path, k)
        check_field(ck, fpath, spec, _FORM_RULES, named=True)
        name = spec.get("name") if isinstance(spec, dict) else None
        if isinstance(name, str) and name in first:
            ck.add(
                join(fpath, "name"), f"duplicate form field '{name}' (first at line {first[name]})"
            )
        elif isinstance(name, str):
            first[name] = ck.line(fpath)


INTERACTIVE = Interactive()
