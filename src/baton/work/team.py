"""People as routing needs them (their *routing profile*), and the supervisor's figures.

A profile: availability (``available``, ``away``, ``offline``), capacity (most open routed
items, overall and per queue or group), skills (a name with an optional level 1-5), an
optional working-hours calendar (a deployed ``kind: calendar``, in its time zone), and the
load routing keeps. A person without a stored profile is available, unlimited and without
skills. Every change is one transaction with its ``agent_updated`` audit event, and what
waits in the person's queues is routed in it (they may be eligible now).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from baton.auth.roles import Permission, permissions
from baton.clock import Clock, iso, parse_iso
from baton.definitions.routing import SKILL_RE
from baton.errors import NotFound, ValidationError
from baton.rows import audit_event
from baton.store.ports import Transaction
from baton.store.sql import SqlStore
from baton.work.router import Calendars, Router
from baton.work.routing import AVAILABILITIES

LEVELS = range(1, 6)
UNSET: Any = object()


@dataclass(frozen=True)
class Profile:
    name: str
    display_name: str
    availability: str
    capacity: int | None
    skills: dict[str, int | None]
    calendar: str | None
    load: int
    queues: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    queue_capacity: dict[str, int | None] = field(default_factory=dict)
    queue_load: dict[str, int] = field(default_factory=dict)
    idle_since: str | None = None
    active: bool = True  # a deactivated user: routing gives them nothing, they cannot log in
    roles: tuple[str, ...] = ()

    @property
    def may_work(self) -> bool:
        """Do their roles let them claim and complete work items (the ``work`` permission)?
        A designer's do not: they are no agent, whatever their profile says."""
        return Permission.WORK in permissions(self.roles)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "display_name": self.display_name,
                "availability": self.availability, "capacity": self.capacity,
                "queue_capacity": dict(self.queue_capacity), "skills": dict(self.skills),
                "calendar": self.calendar, "load": self.load,
                "queue_load": dict(self.queue_load), "queues": list(self.queues),
                "groups": list(self.groups), "idle_since": self.idle_since,
                "active": self.active, "may_work": self.may_work}


@dataclass(frozen=True)
class ProfileChange:
    """What to change; UNSET leaves a part as it is."""

    availability: str | None = None
    capacity: Any = UNSET  # int >= 0, or None: no limit
    queue_capacity: Mapping[str, int | None] | None = None  # queue or group -> capacity
    add_skills: Mapping[str, int | None] | None = None  # name -> level (None: no level)
    remove_skills: tuple[str, ...] = ()
    skills: Mapping[str, int | None] | None = None  # all of them (replaces)
    calendar: Any = UNSET  # a deployed calendar's name, or None: none


class Team:
    """Routing profiles on one store."""

    def __init__(self, store: SqlStore, router: Router, calendars: Calendars,
                 clock: Clock) -> None:
        self.store = store
        self.router = router
        self.calendars = calendars
        self.clock = clock

    def get(self, name: str) -> Profile:
        with self.store.read() as tx:
            return self._profile_txn(tx, name)

    def everyone(self) -> list[Profile]:
        with self.store.read() as tx:
            return [self._profile_txn(tx, row["name"], row) for row in tx.user_rows_txn()]

    def update(self, name: str, change: ProfileChange, actor: str) -> Profile:
        """Apply ``change`` to ``name``'s profile; what waits for them is routed with it."""
        errors = self._check(change)
        if errors:
            raise ValidationError("routing profile", errors)
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            before = self._profile_txn(tx, name)
            tx.ensure_agents_txn([name], now)
            values: dict[str, Any] = {"updated_at": now}
            if change.availability is not None:
                values["availability"] = change.availability
                if change.availability == "available" and before.availability != "available":
                    values["idle_since"] = now
            if change.capacity is not UNSET:
                values["capacity"] = change.capacity
            if change.calendar is not UNSET:
                values["calendar"] = change.calendar
            skills = dict(change.skills) if change.skills is not None else dict(before.skills)
            skills.update(change.add_skills or {})
            for skill in change.remove_skills:
                skills.pop(skill, None)
            if skills != before.skills:  # (a change of skills makes every process read
                values["skills"] = skills  # the pools again: availability alone does not)
            tx.update_agent_txn(name, values)
            for queue, cap in (change.queue_capacity or {}).items():
                tx.set_queue_capacity_txn(name, queue, cap)
            after = self._profile_txn(tx, name)
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "agent_updated", actor, now, None, None,
                {"user": name, **_diff(before.to_json(), after.to_json())})])
            self.router.route_user_txn(tx, name, now_dt)
            return self._profile_txn(tx, name)

    def _check(self, change: ProfileChange) -> dict[str, str]:
        errors: dict[str, str] = {}
        if change.availability is not None and change.availability not in AVAILABILITIES:
            errors["availability"] = (f"expected one of: {', '.join(AVAILABILITIES)}, got "
                                      f"{change.availability!r}")
        if change.capacity is not UNSET and change.capacity is not None and (
                isinstance(change.capacity, bool) or not isinstance(change.capacity, int)
                or not 0 <= change.capacity <= MAX_CAPACITY):
            errors["capacity"] = (f"expected a number of items (0 to {MAX_CAPACITY:,}), "
                                  f"got {change.capacity!r}")
        for queue, cap in (change.queue_capacity or {}).items():
            if cap is not None and (isinstance(cap, bool) or not isinstance(cap, int)
                                    or not 0 <= cap <= MAX_CAPACITY):
                errors[f"queue_capacity.{queue}"] = f"expected 0 to {MAX_CAPACITY:,}, got {cap!r}"
        for key, skills in (("skills", change.skills), ("add_skills", change.add_skills)):
            for skill, level in (skills or {}).items():
                if not SKILL_RE.fullmatch(skill):
                    errors[f"{key}.{skill}"] = ("a skill is a name like brand:ford or lang:pt "
                                                "(letters, digits and _.:@/+-)")
                elif level is not None and (isinstance(level, bool) or level not in LEVELS):
                    errors[f"{key}.{skill}"] = f"a level is 1 to 5, got {level!r}"
        if change.calendar is not UNSET and change.calendar is not None \
                and self.calendars.calendar(change.calendar) is None:
            errors["calendar"] = f"no calendar {change.calendar!r} is deployed (kind: calendar)"
        return errors

    @staticmethod
    def _profile_txn(tx: Transaction, name: str, user: Mapping[str, Any] | None = None
                     ) -> Profile:
        user = user or tx.user_row_txn(name)
        if user is None:
            raise NotFound("user", name, "see `baton users list`")
        rows = tx.agent_rows_txn([name])
        row = rows[0] if rows else {}
        queues = tx.agent_queue_rows_txn([name])
        members = tx.memberships_txn(name)
        return Profile(
            name, user["display_name"], row.get("availability") or "available",
            row.get("capacity"), dict(row.get("skills") or {}), row.get("calendar"),
            int(row.get("load") or 0),
            tuple(sorted(n for k, n in members if k == "queue")),
            tuple(sorted(n for k, n in members if k == "group")),
            {q["queue"]: q["capacity"] for q in queues if q["capacity"] is not None},
            {q["queue"]: q["load"] for q in queues if q["load"]},
            row.get("idle_since"), bool(user["active"]), tuple(sorted(user["roles"] or ())))

    # ---- supervisor figures -------------------------------------------------------------
    def figures(self) -> list[dict[str, Any]]:
        """Per queue or group that routes: items waiting, the oldest wait (seconds), items
        routed in the last hour and the median seconds from creation to routing."""
        now_dt = self.clock.now()
        since = iso(now_dt - timedelta(hours=1))
        with self.store.read() as tx:
            rows = tx.routing_figures_txn(since)
        pools: dict[str, dict[str, Any]] = {}
        waits: dict[str, list[float]] = {}
        for r in rows:
            p = pools.setdefault(r["pool"], {"queue": r["pool"], "waiting": 0,
                                             "oldest_wait_s": None, "routed_last_hour": 0,
                                             "median_to_assignment_s": None})
            if "waiting_since" in r:
                p["waiting"] += 1
                age = (now_dt - parse_iso(r["waiting_since"])).total_seconds()
                p["oldest_wait_s"] = max(p["oldest_wait_s"] or 0.0, round(age, 3))
            else:
                p["routed_last_hour"] += 1
                waits.setdefault(r["pool"], []).append(
                    (parse_iso(r["routed_at"]) - parse_iso(r["created_at"])).total_seconds())
        import statistics  # here: every command that opens the Engine imports this module

        for pool, values in waits.items():
            pools[pool]["median_to_assignment_s"] = round(statistics.median(values), 3)
        return [pools[k] for k in sorted(pools)]


def _diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    keys = ("availability", "capacity", "queue_capacity", "skills", "calendar")
    return {k: {"from": before[k], "to": after[k]} for k in keys if before[k] != after[k]}


MAX_CAPACITY = 100_000  # items at once: the API's bound, the CLI's and the Team page's


def _number(text: str) -> bool:
    """``text`` is a whole number written in ASCII digits (``isdigit`` alone takes "²")."""
    text = text.strip()
    return text.isascii() and text.isdigit()


def profile_change(*, skills: list[str], remove: list[str], capacity: list[str],
                   availability: str | None, calendar: str | None) -> ProfileChange:
    """A change from the CLI's words: ``--skill brand:ford=3``, ``--capacity 5`` (or
    ``none``, or ``support=2`` for one queue), ``--calendar none``."""
    errors: dict[str, str] = {}
    added: dict[str, int | None] = {}
    for text in skills:
        name, sep, level = text.partition("=")
        if sep and not (_number(level) and 1 <= int(level) <= 5):
            errors[f"skill {text}"] = "expected NAME or NAME=LEVEL (a level is 1 to 5)"
            continue
        added[name.strip()] = int(level) if sep else None
    overall: Any = UNSET
    queues: dict[str, int | None] = {}
    for text in capacity:
        queue, sep, value = text.rpartition("=") if "=" in text else ("", "", text)
        value = value.strip().lower()
        if value not in ("none", "") and not (_number(value) and int(value) <= MAX_CAPACITY):
            errors[f"capacity {text}"] = (f"expected a number from 0 to {MAX_CAPACITY:,}, none, "
                                          "or QUEUE=NUMBER")
            continue
        number = None if value in ("none", "") else int(value)
        if sep:
            queues[queue.strip()] = number
        else:
            overall = number
    if errors:
        raise ValidationError("routing profile", errors)
    cal: Any = UNSET if calendar is None else (None if calendar.lower() == "none" else calendar)
    return ProfileChange(availability=availability, capacity=overall, queue_capacity=queues or None,
                         add_skills=added or None, remove_skills=tuple(remove), calendar=cal)
