"""The routing decision, pure: given a work item's rule (as the item keeps it) and the
people of its queue or group as they are now, who is eligible, why each other one is not,
how the eligible ones score, and who wins. No I/O and no clock: the time comes in as an
argument and calendars through a lookup, so the same decision runs on virtual time.

Exclusions, checked in this order (the first that applies is the reason given):
``inactive``, ``may not work items`` (active, but no role of theirs has the ``work``
permission: a designer in a queue could neither open nor complete what it gave them), who
already passed on this item (the item's rule keeps them under ``passed``
with the reason: ``declined`` or ``offer expired`` in offer mode, ``assignee at jeopardy``
when an SLA routed it away from them), ``skill missing: NAME`` (or ``skill NAME below level N``), ``away`` /
``offline`` (filter ``available``), ``outside hours`` (filter ``within_hours``: the
person's calendar is closed now; a calendar that is not deployed excludes too, saying so),
``at capacity`` (filter ``under_capacity``: overall, or in this queue).

Ranking of the eligible: the sticky person first (``sticky``: who last completed an item
of this record), then more preferred skills, then the strategy — ``least_loaded`` (fewest
open routed items, then the lowest share of capacity), ``round_robin`` (the next after the
last one this rule picked, by name), ``most_skilled`` (the highest sum of the levels of the
skills asked for, then the fewest open routed items), ``longest_idle`` (the longest since
their last assignment or release) — then, for a tie left by ``least_loaded`` or
``most_skilled``, the longest idle (so that equals take turns: with items finished as fast
as they come, the first name would otherwise get every one), and the name last, so a
decision is always the same for the same state.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from baton.calendars import BusinessCalendar

AVAILABILITIES = ("available", "away", "offline")
LOGGED_CANDIDATES = 10  # a decision logs the best this many and every exclusion's count
NEXT_OPENING_DAYS = 14


@dataclass
class Agent:
    """One person as routing sees them (mutable: a pass of routing keeps it current)."""

    name: str
    availability: str = "available"
    capacity: int | None = None
    load: int = 0
    skills: dict[str, int | None] = field(default_factory=dict)
    calendar: str | None = None
    idle_since: str | None = None
    queue_capacity: int | None = None  # in the pool being routed
    queue_load: int = 0
    active: bool = True
    works: bool = True  # has the ``work`` permission (a role that works items)

    def room(self) -> bool:
        return ((self.capacity is None or self.load < self.capacity)
                and (self.queue_capacity is None or self.queue_load < self.queue_capacity))


@dataclass(frozen=True)
class Considered:
    user: str
    excluded: str | None = None  # why not, or None: eligible
    score: dict[str, Any] | None = None


@dataclass(frozen=True)
class Verdict:
    """A decision: the winner, and what is logged of it — the best few eligible (with their
    scores) and the first few excluded (with their reason), every reason's count, and how
    many people were considered."""

    winner: str | None
    considered: tuple[Considered, ...]
    counts: tuple[tuple[str, int], ...] = ()
    total: int = 0

    def reasons(self) -> dict[str, int]:
        """How many people were excluded for each reason."""
        return dict(self.counts)

    def to_json(self) -> dict[str, Any]:
        """What the timeline shows: the eligible (best first, the first few), every
        exclusion's count, and a few of the excluded by name with their reason."""
        return {"winner": self.winner, "considered": self.total,
                "candidates": [{"user": c.user, **(c.score or {})}
                               for c in self.considered if c.excluded is None],
                "excluded": [{"user": c.user, "reason": c.excluded}
                             for c in self.considered if c.excluded is not None],
                "reasons": self.reasons()}


Hours = Callable[[str], BusinessCalendar | None]
OpenNow = Callable[[str], bool | None]  # calendar name -> open now? (None: not deployed)


def open_now_of(hours: Hours, now: datetime) -> OpenNow:
    """Whether each calendar is open at ``now``, worked out once per calendar (a pass of
    routing asks it for every person of every item)."""
    memo: dict[str, bool | None] = {}

    def open_now(name: str) -> bool | None:
        if name not in memo:
            cal = hours(name)
            memo[name] = None if cal is None else is_open(cal, now)
        return memo[name]
    return open_now


def is_open(cal: BusinessCalendar, now: datetime) -> bool:
    """Is ``now`` within the calendar's working hours (its time zone, holidays closed)?"""
    day = now.astimezone(ZoneInfo(cal.timezone)).date()
    return any(begin <= now < end for begin, end in cal.intervals(day))


def next_opening(cal: BusinessCalendar, now: datetime) -> datetime | None:
    """The next instant after ``now`` at which working hours begin (None: none within two
    weeks, e.g. a calendar without hours)."""
    day = now.astimezone(ZoneInfo(cal.timezone)).date()
    for k in range(NEXT_OPENING_DAYS):
        for begin, _end in cal.intervals(day + timedelta(days=k)):
            if begin > now:
                return begin
    return None


def exclusion(rule: Mapping[str, Any], agent: Agent, now: datetime, hours: Hours,
              open_now: OpenNow | None = None) -> str | None:
    """Why ``agent`` may not get an item of ``rule`` now, or None."""
    if not agent.active:
        return "inactive"
    if not agent.works:
        return "may not work items"
    passed = rule.get("passed")
    if passed and agent.name in passed:
        return str(passed[agent.name])
    for name, level in rule.get("required") or ():
        if name not in agent.skills:
            return f"skill missing: {name}"
        if level is not None and (agent.skills[name] or 0) < level:
            return f"skill {name} below level {level}"
    filters = rule.get("filters") or ()
    if "available" in filters and agent.availability != "available":
        return agent.availability
    if "within_hours" in filters and agent.calendar is not None:
        is_open_now = (open_now or open_now_of(hours, now))(agent.calendar)
        if is_open_now is None:
            return f"calendar {agent.calendar} not deployed"
        if not is_open_now:
            return "outside hours"
    if "under_capacity" in filters and not agent.room():
        return "at capacity"
    return None


Kind = tuple[list[str | None], list[int], list[int]]
SHARED_KINDS = 1000  # kinds of rule kept per pool between passes (then forgotten)


class PassKind:
    """One kind of rule in one pass: per person (in the pass's order) the reason other
    than capacity, the preferred skills, the levels; and from them the people a decision
    need look at (no such reason), the first excluded (to log) and every reason's count
    with its first person (the order a decision over everyone would give them in)."""

    __slots__ = ("candidates", "counts", "head", "levels", "logged", "preferred", "reasons")

    def __init__(self, reasons: list[str | None], preferred: list[int], levels: list[int]
                 ) -> None:
        self.reasons, self.preferred, self.levels = reasons, preferred, levels
        self.candidates = [i for i, why in enumerate(reasons) if why is None]
        self.head: list[tuple[int, str]] = []
        counts: dict[str, list[int]] = {}
        for i, why in enumerate(reasons):
            if why is not None:
                if len(self.head) < LOGGED_CANDIDATES:
                    self.head.append((i, why))
                seen = counts.get(why)
                if seen is None:
                    counts[why] = [i, 1]
                else:
                    seen[1] += 1
        self.counts = [(first, why, n) for why, (first, n) in counts.items()]
        self.logged: list[Considered] | None = None  # head as logged (made once, shared)


class Pass:
    """What a pass of routing (many decisions over the same people at the same instant)
    works out once per kind of rule instead of once per decision: for each person, the
    reason they are excluded other than capacity (inactive, passed on it, a skill, away,
    outside hours: none of which a pass changes), how many preferred skills they have and
    their level in the skills asked for. Capacity — what a pass does change, one routed
    item at a time — is still checked at every decision, last, as :func:`exclusion` does.
    A person read again during the pass (:meth:`forget`) is worked out again.

    ``shared``: the part that depends only on what a process keeps of the pool between
    transactions (who is active, skills; kept with it, and dropped with it when the
    routing generation moves), so that it is worked out once per kind of rule, not once
    per pass; the ``agents`` are in the order it was worked out for.

    Rules are told apart by their content; the same rule object (items of one page that
    carry the same rule share it, read-only) is recognised by identity."""

    def __init__(self, agents: Sequence[Agent], now: datetime, hours: Hours,
                 open_now: OpenNow | None = None, shared: dict[Any, Kind] | None = None
                 ) -> None:
        self.agents = agents
        self.now = now
        self.hours = hours
        self.open_now = open_now or open_now_of(hours, now)
        self.shared: dict[Any, Kind] = shared if shared is not None else {}
        self._kinds: dict[Any, PassKind] = {}
        # id(rule) -> (the rule, kept alive so that its id is not reused; its static key,
        # its static part, its filters)
        self._rules: dict[int, tuple[Mapping[str, Any], Any, Kind, tuple[str, ...]]] = {}

    def forget(self) -> None:
        self._kinds.clear()
        self._rules.clear()
        self.shared = {}  # (a person read again: what is kept of them may be older)

    def _rule(self, rule: Mapping[str, Any]) -> tuple[Any, Kind, tuple[str, ...]]:
        seen = self._rules.get(id(rule))
        if seen is not None and seen[0] is rule:
            return seen[1], seen[2], seen[3]
        filters = tuple(rule.get("filters") or ())
        required = tuple(tuple(r) for r in rule.get("required") or ())
        preferred_skills = tuple(tuple(p) for p in rule.get("preferred") or ())
        passed = rule.get("passed") or {}
        static_key = (required, preferred_skills, tuple(sorted(passed.items())))
        static = self.shared.get(static_key)
        if static is None:
            if len(self.shared) >= SHARED_KINDS:
                self.shared.clear()
            static = self.shared[static_key] = self._static(required, preferred_skills, passed)
        if len(self._rules) >= SHARED_KINDS:
            self._rules.clear()
        self._rules[id(rule)] = (rule, static_key, static, filters)
        return static_key, static, filters

    def reason(self, rule: Mapping[str, Any], index: int) -> str | None:
        """The reason other than capacity for ``agents[index]`` alone (or None)."""
        static_key, static, filters = self._rule(rule)
        kind = self._kinds.get((static_key, filters))
        if kind is not None:
            return kind.reasons[index]
        return self._live(self.agents[index], static[0][index], filters)

    def of(self, rule: Mapping[str, Any]) -> PassKind:
        """The kind of ``rule`` in this pass (see :class:`PassKind`)."""
        static_key, static, filters = self._rule(rule)
        key = (static_key, filters)
        kind = self._kinds.get(key)
        if kind is not None:
            return kind
        fixed, preferred, levels = static
        reasons = [self._live(agent, why, filters)
                   for agent, why in zip(self.agents, fixed, strict=True)]
        kind = self._kinds[key] = PassKind(reasons, preferred, levels)
        return kind

    def _live(self, agent: Agent, why: str | None, filters: tuple[str, ...]) -> str | None:
        """After the static reason: availability, then working hours (as exclusion())."""
        if why is not None:
            return why
        if "available" in filters and agent.availability != "available":
            return agent.availability
        if "within_hours" in filters and agent.calendar is not None:
            is_open_now = self.open_now(agent.calendar)
            if is_open_now is None:
                return f"calendar {agent.calendar} not deployed"
            if not is_open_now:
                return "outside hours"
        return None

    def _static(self, required: tuple[Any, ...], preferred_skills: tuple[Any, ...],
                passed: Mapping[str, Any]) -> Kind:
        rest = {"required": required, "passed": passed}  # (no filters: those are per pass)
        wanted = [n for n, _ in required] + [n for n, _ in preferred_skills]
        reasons, preferred, levels = [], [], []
        for agent in self.agents:
            reasons.append(exclusion(rest, agent, self.now, self.hours, self.open_now))
            skills = agent.skills
            preferred.append(sum(1 for n, lvl in preferred_skills
                                 if n in skills and (lvl is None or (skills[n] or 0) >= lvl)))
            levels.append(sum(skills.get(n) or 1 for n in wanted if n in skills))
        return reasons, preferred, levels


def decide(rule: Mapping[str, Any], agents: Sequence[Agent], now: datetime, hours: Hours, *,
           sticky: Sequence[str] = (), cursor: str | None = None,
           open_now: OpenNow | None = None, prepared: Pass | None = None) -> Verdict:
    """Who of ``agents`` gets an item of ``rule`` now (see the module's docstring).

    Ranks by a key per eligible person and builds the logged scores only for the first
    few: a decision considers a whole queue (hundreds of people) many times a second.
    ``prepared``: a :class:`Pass` over these very ``agents`` at ``now``, which keeps what
    the decisions of a pass share (the same verdict, made with less work)."""
    if prepared is None or prepared.agents is not agents:
        prepared = Pass(agents, now, hours, open_now)
    kind = prepared.of(rule)
    preferred_counts, levels = kind.preferred, kind.levels
    under = "under_capacity" in (rule.get("filters") or ())
    ranked: list[tuple[Any, ...]] = []
    at_capacity: list[int] = []  # (the first few, to log) of how many
    full = 0
    strategy = rule.get("strategy", "least_loaded")
    sticky_user = next(iter(sticky), None) if rule.get("sticky") else None
    order = sorted(a.name for a in agents) if strategy == "round_robin" else []
    for index in kind.candidates:
        agent = agents[index]
        if under and not agent.room():
            full += 1
            if len(at_capacity) < LOGGED_CANDIDATES:
                at_capacity.append(index)
            continue
        load = agent.load
        key: tuple[Any, ...]
        if strategy == "round_robin":
            key = (_turn(order, agent.name, cursor),)
        elif strategy == "most_skilled":
            key = (-levels[index], load, agent.idle_since or "")
        elif strategy == "longest_idle":
            key = (agent.idle_since or "",)
        else:
            key = (load, load / agent.capacity if agent.capacity else 0.0,
                   agent.idle_since or "")
        ranked.append((agent.name != sticky_user, -preferred_counts[index], *key, agent.name,
                       index))
    # Exclusions in the people's order, as one loop over everyone would log them.
    counts = kind.counts
    if full:
        head = sorted(kind.head + [(i, "at capacity") for i in at_capacity])[:LOGGED_CANDIDATES]
        counts = sorted(counts + [(at_capacity[0], "at capacity", full)])
        excluded = [Considered(agents[i].name, why) for i, why in head]
    else:
        if kind.logged is None:
            kind.logged = [Considered(agents[i].name, why) for i, why in kind.head]
        excluded = kind.logged
    best = heapq.nsmallest(LOGGED_CANDIDATES, ranked) if len(ranked) > LOGGED_CANDIDATES \
        else sorted(ranked)
    eligible = [_scored(agents[r[-1]], -r[1], strategy, levels[r[-1]], sticky_user)
                for r in best]
    return Verdict(eligible[0].user if eligible else None, tuple(eligible + excluded),
                   tuple((why, n) for _, why, n in counts), len(agents))


def _scored(agent: Agent, preferred: int, strategy: str, level: int,
            sticky_user: str | None) -> Considered:
    score: dict[str, Any] = {"load": agent.load, "capacity": agent.capacity,
                             "preferred": preferred}
    if strategy == "most_skilled":
        score["level"] = level
    elif strategy == "longest_idle":
        score["idle_since"] = agent.idle_since
    if agent.name == sticky_user:
        score["sticky"] = True
    return Considered(agent.name, None, score)


def _turn(order: list[str], name: str, cursor: str | None) -> int:
    """How many places after ``cursor`` ``name`` comes, going round ``order``."""
    if cursor is None:
        return order.index(name)
    start = next((i for i, n in enumerate(order) if n > cursor), 0)
    return (order.index(name) - start) % len(order)


OFFER_EVENTS = ("offer_accepted", "offer_declined", "offer_expired")


def describe_offer(kind: str, d: Mapping[str, Any]) -> str:
    """One line for ``offer_accepted``, ``offer_declined`` or ``offer_expired``."""
    what = {"offer_accepted": "accepted", "offer_declined": "declined",
            "offer_expired": "did not accept in time"}[kind]
    return f"{d.get('step')}: {d.get('user')} {what}" + (
        f" (offered at {d['offered_at']})" if kind == "offer_expired" and d.get("offered_at")
        else "")


def describe_decision(d: Mapping[str, Any], kind: str = "routed") -> str:
    """One line for a ``routed``, ``offered`` or ``waiting_for_routing`` event (CLI and
    record page)."""
    cands = d.get("candidates") or []
    arrow = "offered to" if kind == "offered" else "→"
    head = (f"{d.get('step')} {arrow} {d.get('winner')}" if d.get("winner")
            else f"{d.get('step')} waits in {d.get('queue')}")
    if d.get("reason"):
        head += f" ({d['reason']})"
    if kind == "offered" and d.get("expires_at"):
        head += f" until {d['expires_at']}"
    total = int(d.get("considered") or 0)
    eligible = total - sum((d.get("reasons") or {}).values())
    bits = [f"rule {d.get('rule')}", f"{eligible} eligible of {total}"]
    if d.get("strategy"):
        bits.insert(1, str(d["strategy"]))
    scored = [f"{c['user']} (load {c.get('load')}"
              + (f", level {c['level']}" if "level" in c else "")
              + (", sticky" if c.get("sticky") else "") + ")" for c in cands[:5]]
    if scored:
        bits.append("candidates: " + ", ".join(scored))
    excluded = [f"{e['user']}: {e['reason']}" for e in (d.get("excluded") or [])[:5]]
    if excluded:
        bits.append("excluded: " + "; ".join(excluded))
    elif d.get("reasons"):
        bits.append("reasons: " + ", ".join(f"{k} ×{v}" for k, v in d["reasons"].items()))
    return f"{head} ({'; '.join(bits)})"


def parse_now(now: datetime | str) -> datetime:
    if isinstance(now, str):
        return datetime.fromisoformat(now)
    return now if now.tzinfo is not None else now.replace(tzinfo=UTC)
