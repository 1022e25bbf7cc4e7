"""Routing, pure: ``kind: routing`` validated with located errors, and the decision —
each filter and each strategy on its own, stickiness, preferred skills, working hours
across time zones and holidays (no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from baton.calendars import BusinessCalendar
from baton.definitions.loader import check_texts, load_text
from baton.definitions.model import RoutingDefinition, SkillSpec
from baton.work.routing import Agent, decide, is_open, next_opening

MON_9 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday, 09:00 UTC
BASE = {"rule": "r", "required": [["brand:ford", None]], "preferred": [],
        "filters": ["available", "within_hours", "under_capacity"], "strategy": "least_loaded"}
CALS = {
    "lisbon": BusinessCalendar.from_spec("lisbon", {
        "timezone": "Europe/Lisbon", "hours": {d: ["09:00-17:00"] for d in
                                               ("mon", "tue", "wed", "thu", "fri")},
        "holidays": {"country": "PT"}}),
    "tokyo": BusinessCalendar.from_spec("tokyo", {
        "timezone": "Asia/Tokyo", "hours": {d: ["09:00-17:00"] for d in
                                            ("mon", "tue", "wed", "thu", "fri")}}),
}


def agent(name: str, **kw: object) -> Agent:
    kw.setdefault("skills", {"brand:ford": 2})
    return Agent(name, **kw)  # type: ignore[arg-type]


def winner(rule: dict[str, object], agents: list[Agent], **kw: object) -> str | None:
    return decide({**BASE, **rule}, agents, MON_9, CALS.get, **kw).winner  # type: ignore[arg-type]


def test_a_routing_document_loads() -> None:
    (doc,) = load_text("kind: routing\nname: dealer\nfrom: {queue: dealers}\n"
                       "required_skills: ['=\"brand:\" + record.brand', "
                       "{skill: 'lang:pt', min_level: 3}]\nstrategy: most_skilled\nsticky: true\n")
    assert doc.definition == RoutingDefinition(
        "dealer", "queue", "dealers", (SkillSpec('="brand:" + record.brand'),
                                       SkillSpec("lang:pt", 3)),
        (), ("available", "within_hours", "under_capacity"), "most_skilled", True)


def test_a_bad_routing_document_has_every_error_located() -> None:
    _docs, issues = check_texts({"r.yaml": (
        "kind: routing\nname: dealer\nfrom: {queue: a, group: b}\n"
        "required_skills: ['=record.brand +', {skill: x, min_level: 9}]\n"
        "filters: [avaliable]\nstrategy: fastest\nsticky: maybe\n")})
    shown = sorted(f"{i.line} {i.path}: {i.message}" for i in issues)
    assert any(s.startswith("3 from: from needs exactly one of") for s in shown), shown
    assert any(s.startswith("4 required_skills[0]:") for s in shown), shown
    assert any("required_skills[1].min_level: expected a level from 1 to 5" in s
               for s in shown), shown
    assert any("filters[0]: unknown filter 'avaliable' (did you mean 'available'?)" in s
               for s in shown), shown
    assert any("strategy: unknown strategy 'fastest'" in s for s in shown), shown
    assert any(s.startswith("7 sticky:") for s in shown), shown


def test_an_inline_rule_in_assign_is_checked() -> None:
    _docs, issues = check_texts({"o.yaml": (
        "kind: orchestration\nname: o\ntrigger: {type: autolaunched}\nstages:\n"
        "  - name: s\n    steps:\n      - {name: a, type: interactive, "
        "assign: {routing: {from: {queue: q}, strategy: nope}}}\n")})
    assert [i.path for i in issues] == ["stages[0].steps[0].assign.routing.strategy"]


@pytest.mark.parametrize(("who", "reason"), [
    (agent("x", skills={}), "skill missing: brand:ford"),
    (agent("x", skills={"brand:ford": 1}), None),
    (agent("x", availability="away"), "away"),
    (agent("x", availability="offline"), "offline"),
    (agent("x", calendar="tokyo"), "outside hours"),  # 18:00 in Tokyo
    (agent("x", calendar="lisbon"), None),  # 09:00 in Lisbon
    (agent("x", calendar="gone"), "calendar gone not deployed"),
    (agent("x", capacity=2, load=2), "at capacity"),
    (agent("x", queue_capacity=1, queue_load=1), "at capacity"),
    (agent("x", active=False), "inactive"),
])
def test_each_filter(who: Agent, reason: str | None) -> None:
    verdict = decide(BASE, [who], MON_9, CALS.get)
    assert verdict.considered[0].excluded == reason
    assert verdict.winner == (None if reason else "x")


def test_a_level_below_the_minimum_excludes() -> None:
    verdict = decide({**BASE, "required": [["brand:ford", 3]]}, [agent("x")], MON_9, CALS.get)
    assert verdict.considered[0].excluded == "skill brand:ford below level 3"


def test_filters_left_out_are_not_applied() -> None:
    away_full = agent("x", availability="away", capacity=1, load=1)
    assert winner({"filters": []}, [away_full]) == "x"


def test_strategies_each_on_their_own() -> None:
    people = [agent("ann", load=3, skills={"brand:ford": 1}, idle_since="2026-01-05T08:00:00Z"),
              agent("bob", load=1, skills={"brand:ford": 5}, idle_since="2026-01-05T08:30:00Z"),
              agent("cy", load=2, skills={"brand:ford": 2}, idle_since="2026-01-05T07:00:00Z")]
    assert winner({"strategy": "least_loaded"}, people) == "bob"
    assert winner({"strategy": "most_skilled"}, people) == "bob"
    assert winner({"strategy": "longest_idle"}, people) == "cy"
    assert winner({"strategy": "round_robin"}, people) == "ann"
    assert winner({"strategy": "round_robin"}, people, cursor="ann") == "bob"
    assert winner({"strategy": "round_robin"}, people, cursor="cy") == "ann"  # round again


def test_stickiness_and_preferred_skills_rank_before_the_strategy() -> None:
    people = [agent("ann", load=0), agent("bob", load=4, skills={"brand:ford": 1, "lang:pt": None})]
    assert winner({}, people) == "ann"
    assert winner({"preferred": [["lang:pt", None]]}, people) == "bob"
    assert winner({"sticky": True}, people, sticky=["bob"]) == "bob"
    assert winner({}, people, sticky=["bob"]) == "ann"  # not a sticky rule


def test_working_hours_across_a_time_zone_and_a_holiday() -> None:
    tokyo, lisbon = CALS["tokyo"], CALS["lisbon"]
    assert not is_open(tokyo, MON_9)  # 18:00 in Tokyo
    assert next_opening(tokyo, MON_9) == datetime(2026, 1, 6, 0, 0, tzinfo=UTC)  # 09:00 JST
    christmas = datetime(2026, 12, 25, 10, 0, tzinfo=UTC)  # a Friday, a holiday in Portugal
    assert not is_open(lisbon, christmas)
    assert next_opening(lisbon, christmas) == datetime(2026, 12, 28, 9, 0, tzinfo=UTC)


def test_the_logged_decision_names_reasons_and_scores() -> None:
    verdict = decide(BASE, [agent("ann", load=1, capacity=5), agent("bo", skills={})], MON_9,
                     CALS.get)
    logged = verdict.to_json()
    assert logged["winner"] == "ann" and logged["considered"] == 2
    assert logged["candidates"] == [{"user": "ann", "load": 1, "capacity": 5, "preferred": 0}]
    assert logged["excluded"] == [{"user": "bo", "reason": "skill missing: brand:ford"}]
    assert logged["reasons"] == {"skill missing: brand:ford": 1}


def test_offer_mode_loads_and_its_errors_are_located() -> None:
    (doc,) = load_text("kind: routing\nname: dealer\nfrom: {queue: dealers}\n"
                       "offer: {timeout: 2m}\n")
    assert doc.definition.offer_timeout_ms == 120_000
    for bad, where, says in (
            ("offer: {timeout: soon}", "offer.timeout", "expected a duration like 30s"),
            ("offer: {timeout: 0s}", "offer.timeout", "expected a duration above zero"),
            ("offer: {}", "offer", "timeout"),
            ("offer: {timeout: 2m, after: 1m}", "offer", "after"),
            ("offer: yes", "offer", "expected a mapping")):
        _docs, issues = check_texts({"r.yaml": (
            "kind: routing\nname: dealer\nfrom: {queue: dealers}\n" + bad + "\n")})
        assert any(i.line == 4 and i.path.startswith(where) and says in i.message
                   for i in issues), (bad, [(i.line, i.path, i.message) for i in issues])


def test_who_passed_on_an_item_is_excluded_with_their_reason() -> None:
    rule = {"passed": {"ann": "declined", "bob": "offer expired"}}
    verdict = decide({**BASE, **rule}, [agent("ann"), agent("bob"), agent("cy")], MON_9,
                     CALS.get)
    assert verdict.winner == "cy"
    assert verdict.reasons() == {"declined": 1, "offer expired": 1}
    assert winner(rule, [agent("ann"), agent("bob")]) is None


def test_an_sla_action_naming_a_routing_rule_is_checked() -> None:
    _docs, issues = check_texts({"o.yaml": (
        "kind: orchestration\nname: o\ntrigger: {type: autolaunched}\nstages:\n"
        "  - name: s\n    steps:\n      - name: a\n        type: interactive\n"
        "        assign: {queue: q}\n        sla:\n          duration: 4h\n"
        "          jeopardy: 1h\n"
        "          on_jeopardy: {routing: dealer, reassign: 'queue:x', exclude_assignee: maybe}\n"
        "          on_overdue: {exclude_assignee: true}\n")})
    shown = sorted(f"{i.path}: {i.message}" for i in issues)
    assert any("on_jeopardy.routing: give either reassign or routing" in s for s in shown), shown
    assert any("on_jeopardy.exclude_assignee: expected" in s for s in shown), shown
    assert any("on_overdue.exclude_assignee: exclude_assignee needs routing" in s
               for s in shown), shown
    _docs, issues = check_texts({"o.yaml": (
        "kind: orchestration\nname: o\ntrigger: {type: autolaunched}\nstages:\n"
        "  - name: s\n    steps:\n      - name: a\n        type: interactive\n"
        "        assign: {queue: q}\n        sla:\n          duration: 4h\n"
        "          jeopardy: 1h\n"
        "          on_jeopardy: {routing: dealer, exclude_assignee: true}\n")})
    assert issues == []
