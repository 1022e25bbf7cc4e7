"""``kind: routing`` (DESIGN §2.2): a routing rule, validated with located issues, and its
frozen model.

```yaml
kind: routing
name: dealer_support
from: {queue: dealer_support}          # the candidates: a queue's or a group's members
required_skills: ['="brand:" + record.brand', {skill: "product:billing", min_level: 3}]
preferred_skills: ['="lang:" + record.language']
filters: [available, within_hours, under_capacity]   # the default: all three
strategy: least_loaded                 # least_loaded | round_robin | most_skilled | longest_idle
sticky: true                           # prefer who handled this record before
offer: {timeout: 2m}                   # offer the item to the winner, who accepts or declines
```

**The queue's routing rule** (``for_queue: true``, Omni-Channel's "a queue has a routing
configuration"): work assigned to the rule's queue (``assign: {queue: tier1}``, or an
expression or resource giving ``queue:tier1``) is routed by the rule exactly as
``assign: {routing: NAME}`` routes it. ``from`` must then be that queue, and one active rule
at most is bound to a queue (checked across the files deployed together, and against the
rules already deployed). Deploying, changing or deactivating such a rule takes effect for
orchestrations already deployed, at their next step start.

**Checked against the steps that use it** (``DefinitionRepo.routing_issues_txn``, at
validate, deploy, activation, deactivation and import): a step's ``assign: {routing: NAME}``
must name a rule active after the change, and a rule a step routes by (named, or bound to the
queue its ``assign: {queue: NAME}`` names) must not read a record field the orchestration's
object type lacks (:func:`record_fields_read`: what can be judged before a run).

With ``offer``, the winner is *offered* the item rather than given it: they accept (it is
theirs) or decline (the next candidate is offered it, the decliner never again for this
item); an offer not accepted within ``timeout`` goes to the next candidate too.

The same keys (without ``kind`` and ``name``) may stand inline in an interactive step's
``assign: {routing: {...}}``. A skill is a literal (``brand:ford``) or an ``=expression``
over the record and the step (evaluated when the work item is made).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping
from typing import Any

from baton.definitions.checks import (
    Checker,
    Scope,
    check_duration,
    check_expression,
    check_keys,
    check_texts,
    describe,
    duration_ms,
    expect_bool,
    expect_identifier,
    expect_list,
    expect_mapping,
    expect_str,
    item,
    join,
    suggest,
    unknown,
)
from baton.definitions.model import FILTERS, RoutingDefinition, SkillSpec
from baton.expressions import is_expression
from baton.expressions.cel import _STRING, _reads, _strip

STRATEGIES = ("least_loaded", "round_robin", "most_skilled", "longest_idle")
POOL_KINDS = ("queue", "group")
RULE_KEYS = ("from", "required_skills", "preferred_skills", "filters", "strategy", "sticky",
             "offer")
OFFER_KEYS = ("timeout",)
DOC_KEYS = ("kind", "name", "label", "description", "for_queue", *RULE_KEYS)
SKILL_KEYS = ("skill", "min_level")
LEVELS = range(1, 6)


# ---- validation ---------------------------------------------------------------------------
def check_routing_document(ck: Checker, data: Mapping[str, Any]) -> None:
    """A ``kind: routing`` document; its expressions may read the record and the step."""
    check_keys(ck, "", data, DOC_KEYS, ("name", "from"))
    if "name" in data:
        expect_identifier(ck, "name", data["name"], "routing rule name")
    check_texts(ck, "", data, ("label", "description"))
    check_rule_keys(ck, "", data, Scope())
    if "for_queue" in data:
        _check_for_queue(ck, data)


def _check_for_queue(ck: Checker, data: Mapping[str, Any]) -> None:
    """``for_queue: true`` binds the rule to the queue its candidates come from."""
    if not expect_bool(ck, "for_queue", data["for_queue"]) or not data["for_queue"]:
        return
    pool = data.get("from")
    if isinstance(pool, dict) and len(pool) == 1 and "group" in pool:
        ck.add("for_queue", "for_queue binds the rule to the queue its candidates come from, "
                            f"but from names group '{pool['group']}' (write from: {{queue: "
                            "NAME}, the queue whose work the rule routes)")


def bound_queue(data: Any) -> str | None:
    """The queue a ``kind: routing`` document (plain data) is bound to, or None."""
    if not isinstance(data, dict) or data.get("kind") != "routing" \
            or data.get("for_queue") is not True:
        return None
    pool = data.get("from")
    if isinstance(pool, dict) and len(pool) == 1 and isinstance(pool.get("queue"), str):
        return str(pool["queue"])
    return None


def check_queue_binding(ck: Checker, bound: dict[str, tuple[str, str, int]]) -> None:
    """One rule per queue among the documents checked together: ``bound`` (queue -> the
    first rule's name, file and line) is filled as the documents go by."""
    queue = bound_queue(ck.doc.data)
    if queue is None:
        return
    name = str(ck.doc.data.get("name"))
    first = bound.setdefault(queue, (name, ck.doc.file, ck.line("for_queue")))
    if first[0] != name:
        ck.add("for_queue", f"queue '{queue}' already has a routing rule: '{first[0]}' at "
                            f"{first[1]}:{first[2]} (one rule per queue)")


def check_inline_rule(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    """``assign: {routing: NAME}`` or ``assign: {routing: {from: ..., ...}}``."""
    if isinstance(value, str):
        expect_identifier(ck, path, value, "routing rule name")
        return
    rule = expect_mapping(ck, path, value)
    if rule is None:
        return
    if check_keys(ck, path, rule, RULE_KEYS, ("from",)):
        check_rule_keys(ck, path, rule, scope)


SKILL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@/+-]{0,99}$"
"""A skill's name (people's profiles and rules; the API declares it; ``fullmatch``)."""
SKILL_RE = re.compile(SKILL_PATTERN)


def check_rule_keys(ck: Checker, path: str, data: Mapping[str, Any], scope: Scope) -> None:
    if "from" in data:
        _check_pool(ck, join(path, "from"), data["from"])
    for key in ("required_skills", "preferred_skills"):
        if key in data:
            for i, spec in enumerate(expect_list(ck, join(path, key), data[key]) or []):
                _check_skill(ck, item(join(path, key), i), spec, scope)
    if "filters" in data:
        for i, f in enumerate(expect_list(ck, join(path, "filters"), data["filters"]) or []):
            if f not in FILTERS:
                ck.add(item(join(path, "filters"), i), unknown("filter", f, FILTERS))
    if "strategy" in data and data["strategy"] not in STRATEGIES:
        ck.add(join(path, "strategy"), unknown("strategy", data["strategy"], STRATEGIES))
    if "sticky" in data:
        expect_bool(ck, join(path, "sticky"), data["sticky"])
    if "offer" in data:
        _check_offer(ck, join(path, "offer"), data["offer"])


def _check_offer(ck: Checker, path: str, value: Any) -> None:
    """``offer: {timeout: 2m}``: how long the offeree has to accept."""
    offer = expect_mapping(ck, path, value)
    if offer is None or not check_keys(ck, path, offer, OFFER_KEYS, ("timeout",)) \
            or "timeout" not in offer:
        return
    ms = check_duration(ck, join(path, "timeout"), offer["timeout"])
    if ms is not None and ms <= 0:
        ck.add(join(path, "timeout"), f"expected a duration above zero, got '{offer['timeout']}'")


def _check_pool(ck: Checker, path: str, value: Any) -> None:
    pool = expect_mapping(ck, path, value)
    if pool is None:
        return
    if not check_keys(ck, path, pool, POOL_KINDS, ()):
        return
    if len(pool) != 1:
        ck.add(path, f"from needs exactly one of: queue, group (got {len(pool)})")
        return
    ((kind, name),) = pool.items()
    expect_str(ck, join(path, kind), name)


def _check_skill(ck: Checker, path: str, spec: Any, scope: Scope) -> None:
    if isinstance(spec, dict):
        if not check_keys(ck, path, spec, SKILL_KEYS, ("skill",)):
            return
        if "min_level" in spec and (isinstance(spec["min_level"], bool)
                                    or spec["min_level"] not in LEVELS):
            ck.add(join(path, "min_level"),
                   "expected a level from 1 to 5, got "
                   + (str(spec["min_level"]) if isinstance(spec["min_level"], int)
                      and not isinstance(spec["min_level"], bool)
                      else describe(spec["min_level"])))
        _check_skill_name(ck, join(path, "skill"), spec["skill"], scope)
    else:
        _check_skill_name(ck, path, spec, scope)


def _check_skill_name(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    text = expect_str(ck, path, value)
    if text is not None and is_expression(text):
        check_expression(ck, path, text, scope)
    elif text is not None and not SKILL_RE.fullmatch(text):
        # (a profile's skills are such names: one that is not could never match anyone)
        ck.add(path, f"'{text}' is not a skill name: a skill is a name like brand:ford or "
                     "lang:pt (letters, digits and _.:@/+-), as people's profiles have them")


# ---- building (documents that passed validation) ------------------------------------------
def build_rule(name: str, data: Mapping[str, Any]) -> RoutingDefinition:
    ((kind, pool),) = dict(data["from"]).items()
    return RoutingDefinition(
        name=name, pool_kind=kind, pool=str(pool),
        required=tuple(_skill(s) for s in data.get("required_skills") or ()),
        preferred=tuple(_skill(s) for s in data.get("preferred_skills") or ()),
        filters=tuple(data.get("filters", FILTERS)),
        strategy=data.get("strategy", "least_loaded"),
        sticky=bool(data.get("sticky", False)),
        offer_timeout_ms=duration_ms(data["offer"]["timeout"]) if data.get("offer") else None,
        label=data.get("label"),
        for_queue=data.get("for_queue") is True,
    )


def _skill(spec: Any) -> SkillSpec:
    if isinstance(spec, dict):
        return SkillSpec(str(spec["skill"]), spec.get("min_level"))
    return SkillSpec(str(spec))


# ---- what a rule reads of the record, and the steps it routes -----------------------------
# ``has(record.x)``: a guard (the expression reads x only when the record has it). ``has(``
# of the record itself, or read another way than by ``.name``: every read is guarded.
_HAS = re.compile(r"\bhas\s*\(\s*record\b(?:\s*\.\s*([A-Za-z_]\w*))?")


def record_fields_read(source: str) -> frozenset[str]:
    """The record's fields an ``=expression`` reads by name (``record.brand``,
    ``record["brand"]``: their first member), those whose absence can be judged before it
    runs: none when it uses the record whole (``size(record)``, ``"x" in record``,
    ``record[vars.k]``), nor a field a ``has()`` guards (``has(record.brand) ?
    record.brand : "any"``). What it reads of a field further (a map's key, a related
    record's field) is not judged. String literals are text, not reads."""
    body = _strip(source)
    paths = dict(_reads(body)).get("record", ())
    if paths is None:
        return frozenset()  # (the record used whole: not judged)
    guarded: set[str | None] = {m.group(1) for m in _HAS.finditer(_STRING.sub('""', body))}
    if None in guarded:
        return frozenset()
    return frozenset(name for name, _ in paths if name not in guarded)


def rule_record_reads(rule: RoutingDefinition) -> list[tuple[str, str]]:
    """``(path, field)`` for each field of the record a rule's skill expressions read
    (:func:`record_fields_read`): ``("required_skills[0]", "category")``."""
    out = []
    for key, specs in (("required_skills", rule.required), ("preferred_skills", rule.preferred)):
        for i, spec in enumerate(specs):
            if is_expression(spec.skill):
                out += [(item(key, i), name) for name in sorted(record_fields_read(spec.skill))]
    return out


def misreads(rule: RoutingDefinition, fields: Collection[str] | None
             ) -> list[tuple[str, str]]:
    """The reads of :func:`rule_record_reads` of a field not among ``fields`` (a record's
    object type's fields, with the reserved ones; None: the runs have no record, so every
    read fails)."""
    return [(path, name) for path, name in rule_record_reads(rule)
            if fields is None or name not in fields]


# A definition's text that assigns to a queue or names a routing rule (quoted or not, block
# or flow style): one without it need not be read for its steps' assignments (once
# :func:`may_hold` also finds neither word in it, nor an escape that could spell one).
ASSIGNS = re.compile(r"""\b(?:queue|routing)['"]?\s*:""")
ASSIGN_WORDS = ("queue", "routing")
SLA_ACTIONS = ("on_jeopardy", "on_overdue")
_WHEN = {"on_jeopardy": "when in jeopardy", "on_overdue": "when overdue"}


def may_hold(pattern: re.Pattern[str], words: Collection[str], source: str) -> bool:
    """Whether a definition's text may hold what ``pattern`` finds as written plainly
    (``connection: bank``): it does, or it may spell it otherwise (an alias ``*bank``, an
    anchor, a tag, a complex key, a block scalar...). A YAML text holds each key and value
    it gives by their characters, but for a double-quoted escape (``"\\x62ank"``): one that
    holds none of ``words`` (the names looked for) and no backslash gives none of them, and
    needs no reading; the others are read (:func:`names_in`)."""
    return pattern.search(source) is not None or "\\" in source \
        or any(word in source for word in words)


def names_in(data: Any, keys: Collection[str], names: Collection[str]) -> bool:
    """Whether ``data`` (a definition as loaded: aliases resolved, each node shared) holds,
    at any depth, a mapping whose ``keys`` entry is one of ``names``: what the text
    patterns look for, judged on the data."""
    seen: set[int] = set()
    stack = [data]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, dict):
            if any(isinstance(node.get(k), str) and node[k] in names for k in keys):
                return True
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False


def assignments(data: Any) -> Iterator[tuple[str, str, str]]:
    """``(path, kind, name)`` for each step of an orchestration document (plain data, as
    written) that names whom its work goes to (:func:`step_assignments`); ``path``:
    ``stages[0].steps[1].assign.queue``. Shapes that are not these are skipped (their own
    checks report them)."""
    stages = data.get("stages") if isinstance(data, dict) else None
    for i, stage in enumerate(stages if isinstance(stages, list) else ()):
        steps = stage.get("steps") if isinstance(stage, dict) else None
        for j, step in enumerate(steps if isinstance(steps, list) else ()):
            yield from step_assignments(item(join(item("stages", i), "steps"), j), step)


def step_assignments(at: str, step: Any) -> Iterator[tuple[str, str, str]]:
    """``(path, kind, name)`` for one step (plain data, as written, at ``at``): its
    ``assign`` naming a routing rule (``{routing: NAME}``: kind ``routing``), a queue or a
    user by name (``{queue: NAME}``, ``{user: NAME}``, not an ``=expression``: kind
    ``queue``, ``user``); and its SLA actions routing the item by a rule (``on_jeopardy:
    {routing: NAME}``: kind ``routing``, path ``...sla.on_jeopardy.routing``) or
    reassigning it to a queue or a user (``{reassign: queue:NAME}``: kind ``queue``, path
    ``...sla.on_jeopardy.reassign``)."""
    if not isinstance(step, dict):
        return
    assign = step.get("assign")
    if isinstance(assign, dict) and len(assign) == 1:
        ((kind, name),) = assign.items()
        if kind in ("routing", "queue", "user") and isinstance(name, str) \
                and not is_expression(name):
            yield join(at, f"assign.{kind}"), str(kind), name
    sla = step.get("sla")
    for key in SLA_ACTIONS:
        action = sla.get(key) if isinstance(sla, dict) else None
        if not isinstance(action, dict):
            continue
        if isinstance(action.get("routing"), str):
            yield join(at, f"sla.{key}.routing"), "routing", action["routing"]
        to = action.get("reassign")
        kind, _, name = to.partition(":") if isinstance(to, str) else ("", "", "")
        if kind in ("queue", "user") and name:
            yield join(at, f"sla.{key}.reassign"), kind, name


def sla_action(path: str) -> str | None:
    """The SLA action a path of :func:`step_assignments` is in (``on_jeopardy``), or None
    (the step's ``assign``)."""
    for key in SLA_ACTIONS:
        if f".sla.{key}." in path:
            return key
    return None


def routes(path: str, kind: str, used: str, rule: str | None = None) -> str:
    """How the step at ``path`` routes its work by what it names, for a message:
    ``routes its work by routing rule 'triage'``, ``assigns to queue 'tier1', which
    routing rule 'tier1_agents' routes (for_queue)``, ``routes its work when in jeopardy
    (sla.on_jeopardy) by routing rule 'backup'``."""
    action = sla_action(path)
    when = "" if action is None else f" {_WHEN[action]} (sla.{action})"
    if kind == "routing":
        return f"routes its work{when} by routing rule '{used}'"
    verb = "assigns" if action is None else "reassigns its work"
    return f"{verb} to queue '{used}'{when}" + (
        f", which routing rule '{rule}' routes (for_queue)" if rule else "")


def outcome(path: str, every: str = "every item of the step") -> str:
    """What becomes of the work of a step at ``path`` routed by a rule that cannot route
    it: it falls out at start (``assign``), or the SLA action leaves it where it is."""
    action = sla_action(path)
    if action is None:
        return f"{every} would fall out at start"
    return (f"its {action} action would leave {every.replace('every item', 'each item')} "
            "where it is (sla_routing_failed)")


def unknown_rule(path: str, used: str, known: Collection[str]) -> str:
    """A step's ``assign`` or SLA action (at ``path``) naming a routing rule not among
    ``known`` (the rules active after the change, with those deployed with it)."""
    names = sorted(known)
    hint = suggest(used, names) or f" (active routing rules: {', '.join(names) or 'none'})"
    fails = "its step fails at start" if sla_action(path) is None else (
        f"its {sla_action(path)} action leaves the item where it is (sla_routing_failed)")
    return (f"unknown routing rule '{used}'{hint}: a rule deployed and active, or deployed "
            f"with it, is needed, or {fails}")


def check_rule_names(ck: Checker, found: Iterator[tuple[str, str, str]],
                     known: Collection[str]) -> None:
    """Each routing rule a document's steps name (``found``: :func:`assignments`, a
    fulfillment's :func:`~baton.plans.routing.template_assignments`) must be one of
    ``known``: said with the document's other problems (one deploy shows them all). A path
    already said wrong (not a rule's name) is not said again."""
    said = {i.path for i in ck.issues}
    for path, kind, used in found:
        if kind == "routing" and used not in known and path not in said:
            ck.add(path, unknown_rule(path, used, known))
