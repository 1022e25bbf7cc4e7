"""A pass of routing (``routing.Pass``) makes the very decisions one loop over everyone with
``exclusion()`` makes: the same winner, the same logged candidates and exclusions in the
same order, the same reason counts — for every filter, strategy, stickiness, passed
people, undeployed and closed calendars, and while loads change within the pass (the
part a pass does not keep). Randomised, seeded; no database, no clock."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from baton.calendars import BusinessCalendar
from baton.work.routing import (
    LOGGED_CANDIDATES,
    Agent,
    Considered,
    Pass,
    Verdict,
    _scored,
    _turn,
    decide,
    exclusion,
    open_now_of,
)

MON_9 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CALS = {
    "open": BusinessCalendar.from_spec("open", {"timezone": "UTC",
                                                "hours": {d: ["00:00-23:59"] for d in DAYS}}),
    "closed": BusinessCalendar.from_spec("closed", {"timezone": "UTC", "hours": {}}),
}
SKILLS = ("brand:ford", "brand:vw", "brand:kia", "lang:pt", "lang:en")
FILTERS = ("available", "within_hours", "under_capacity")
STRATEGIES = ("least_loaded", "round_robin", "most_skilled", "longest_idle")


def reference(rule: Mapping[str, Any], agents: Sequence[Agent], now: datetime, *,
              sticky: Sequence[str] = (), cursor: str | None = None) -> Verdict:
    """The decision as one loop over everyone (how decide() worked before passes)."""
    hours = CALS.get
    open_now = open_now_of(hours, now)
    excluded: list[Considered] = []
    counts: dict[str, int] = {}
    ranked: list[tuple[Any, ...]] = []
    preferred_skills = list(rule.get("preferred") or ())
    wanted = [n for n, _ in (rule.get("required") or ())] + [n for n, _ in preferred_skills]
    strategy = rule.get("strategy", "least_loaded")
    sticky_user = next(iter(sticky), None) if rule.get("sticky") else None
    order = sorted(a.name for a in agents) if strategy == "round_robin" else []
    for index, a in enumerate(agents):
        why = exclusion(rule, a, now, hours, open_now)
        if why is not None:
            counts[why] = counts.get(why, 0) + 1
            if len(excluded) < LOGGED_CANDIDATES:
                excluded.append(Considered(a.name, why))
            continue
        skills = a.skills
        preferred = sum(1 for n, lvl in preferred_skills
                        if n in skills and (lvl is None or (skills[n] or 0) >= lvl))
        level = sum(skills.get(n) or 1 for n in wanted if n in skills)
        key: tuple[Any, ...]
        if strategy == "round_robin":
            key = (_turn(order, a.name, cursor),)
        elif strategy == "most_skilled":
            key = (-level, a.load, a.idle_since or "")
        elif strategy == "longest_idle":
            key = (a.idle_since or "",)
        else:
            key = (a.load, a.load / a.capacity if a.capacity else 0.0, a.idle_since or "")
        ranked.append((a.name != sticky_user, -preferred, *key, a.name, index, level))
    ranked.sort()
    eligible = [_scored(agents[r[-2]], -r[1], strategy, r[-1], sticky_user)
                for r in ranked[:LOGGED_CANDIDATES]]
    return Verdict(eligible[0].user if eligible else None, tuple(eligible + excluded),
                   tuple(counts.items()), len(agents))


def people(rnd: random.Random, n: int) -> list[Agent]:
    out = []
    for i in range(n):
        capacity = rnd.choice((None, 0, 1, 2, 3))
        out.append(Agent(
            f"p{i:02d}", availability=rnd.choice(("available", "available", "away", "offline")),
            capacity=capacity, load=rnd.randint(0, 3),
            skills={s: rnd.choice((None, 1, 3, 5)) for s in rnd.sample(SKILLS, rnd.randint(0, 4))},
            calendar=rnd.choice((None, None, "open", "closed", "gone")),
            idle_since=rnd.choice((None, f"2026-01-0{rnd.randint(1, 4)}T00:00:00Z")),
            queue_capacity=rnd.choice((None, 1, 2)), queue_load=rnd.randint(0, 2),
            active=rnd.random() > 0.1))
    return out


def a_rule(rnd: random.Random, names: list[str]) -> dict[str, Any]:
    return {
        "rule": "r", "strategy": rnd.choice(STRATEGIES), "sticky": rnd.random() < 0.3,
        "filters": [f for f in FILTERS if rnd.random() < 0.7],
        "required": [[s, rnd.choice((None, 2, 4))] for s in rnd.sample(SKILLS[:3], rnd.randint(0, 1))],
        "preferred": [[s, rnd.choice((None, 3))] for s in rnd.sample(SKILLS[3:], rnd.randint(0, 2))],
        "passed": {n: "declined" for n in rnd.sample(names, rnd.randint(0, min(2, len(names))))},
    }


def test_a_pass_decides_as_a_loop_over_everyone_while_loads_change() -> None:
    rnd = random.Random(15)
    for _ in range(60):
        agents = people(rnd, rnd.randint(1, 40))
        names = [a.name for a in agents]
        rules = [a_rule(rnd, names) for _ in range(4)]
        shared: dict[Any, Any] = {}
        prepared = Pass(agents, MON_9, CALS.get, shared=shared)
        for _ in range(25):
            rule = dict(rnd.choice(rules))  # (a copy: the same kind, another object)
            sticky = [rnd.choice(names)] if rnd.random() < 0.5 else []
            cursor = rnd.choice((None, *names))
            got = decide(rule, agents, MON_9, CALS.get, sticky=sticky, cursor=cursor,
                         prepared=prepared)
            assert got == reference(rule, agents, MON_9, sticky=sticky, cursor=cursor)
            assert got.to_json() == reference(rule, agents, MON_9, sticky=sticky,
                                              cursor=cursor).to_json()
            for i, a in enumerate(agents):
                assert (prepared.reason(rule, i) is None) == (exclusion(
                    {**rule, "filters": [f for f in rule["filters"] if f != "under_capacity"]},
                    a, MON_9, CALS.get) is None)
            if got.winner is not None:  # the pass routes it: loads move, nothing else
                won = next(a for a in agents if a.name == got.winner)
                won.load += 1
                won.queue_load += 1
        # A new pass over the same people, given what the first one kept: the same again.
        again = Pass(agents, MON_9, CALS.get, shared=shared)
        for rule in rules:
            assert decide(rule, agents, MON_9, CALS.get, prepared=again) == \
                reference(rule, agents, MON_9)


def test_a_pass_forgets_what_it_kept_when_a_person_is_read_again() -> None:
    agents = [Agent("ann", skills={"brand:ford": 5}), Agent("bob", skills={"brand:ford": 1})]
    rule = {"rule": "r", "strategy": "most_skilled", "filters": ["available"],
            "required": [["brand:ford", None]]}
    prepared = Pass(agents, MON_9, CALS.get)
    assert decide(rule, agents, MON_9, CALS.get, prepared=prepared).winner == "ann"
    agents[0].availability, agents[0].skills = "away", {}  # read again: away, no skill
    prepared.forget()
    verdict = decide(rule, agents, MON_9, CALS.get, prepared=prepared)
    assert verdict.winner == "bob"
    assert verdict.reasons() == {"skill missing: brand:ford": 1}
