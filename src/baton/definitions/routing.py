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

With ``offer``, the winner is *offered* the item rather than given it: they accept (it is
theirs) or decline (the next candidate is offered it, the decliner never again for this
item); an offer not accepted within ``timeout`` goes to the next candidate too.

The same keys (without ``kind`` and ``name``) may stand inline in an interactive step's
``assign: {routing: {...}}``. A skill is a literal (``brand:ford``) or an ``=expression``
over the record and the step (evaluated when the work item is made).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    unknown,
)
from baton.definitions.model import FILTERS, RoutingDefinition, SkillSpec
from baton.expressions import is_expression

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
                   f"expected a level from 1 to 5, got {describe(spec['min_level'])}")
        _check_skill_name(ck, join(path, "skill"), spec["skill"], scope)
    else:
        _check_skill_name(ck, path, spec, scope)


def _check_skill_name(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    text = expect_str(ck, path, value)
    if text is not None and is_expression(text):
        check_expression(ck, path, text, scope)


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
