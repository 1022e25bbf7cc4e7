"""Routing work items to people (DESIGN §2.2), inside the caller's transaction.

An interactive step with ``assign: {routing: ...}`` makes its item *waiting for routing* in
the rule's queue or group (``routing_status = 'waiting'``); :meth:`Router.route_new_txn`
tries it at once. Items left waiting are routed again on events, not by polling: a
person's profile changes (availability, capacity, skills, calendar), a routed item of
theirs is completed, released, reassigned or canceled, or — a durable ``route`` job armed
for it — the next opening of a calendar that kept someone out.

Capacity is never exceeded: the person's load is raised by a compare-and-set that checks
the capacity in the same statement (:meth:`~baton.store.sql.routing.RoutingSql.take_load_txn`),
and the item is assigned by a compare-and-set on its status and version; a person who lost
the race for their last unit is read again and the decision made again.

Every decision is on the record's timeline: ``routed`` (rule, candidates with their scores,
the excluded with their reasons, the winner) or ``waiting_for_routing`` (the reasons).

Offer mode (a rule with ``offer``): the winner is *offered* the item (``routing_status =
'offered'``, assigned to them, counted in their load as a routed item is) and a ``route``
job is armed at the offer's timeout. They accept it (:meth:`Router.accept_offer_txn`:
``routed``), or decline it or let it expire (:meth:`Router.pass_on_txn`): the item goes
back to its pool with them under ``passed`` in its rule (excluded from it for good), their
load gives it back, and it is decided again at once — offered to the next candidate, or
waiting. An SLA action naming a rule routes an item again the same way
(:meth:`Router.reroute_txn`).

What a process keeps: each pool's static part (members, who is active, skills,
capacities, calendars), good while the *routing generation* it was read at is still the
one stored. Every change to those (a profile, a membership, a user) raises the generation
in its own transaction, and each pass reads it (one statement) before using what it keeps,
so another process's committed change is seen by the next decision. Availability and
loads are read at every pass; capacity stays a compare-and-set in the database. A pass
(:class:`~baton.work.routing.Pass`) works out once per kind of rule what its decisions
share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from baton.auth.roles import Permission, permissions
from baton.calendars import BusinessCalendar
from baton.clock import iso
from baton.rows import AuditEvent, WorkItem, audit_event
from baton.store.ports import Transaction
from baton.work.routing import (
    NEXT_OPENING_DAYS,
    Agent,
    Kind,
    OpenNow,
    Pass,
    Verdict,
    decide,
    exclusion,
    next_opening,
    parse_now,
)

ROUTE_JOB = "route"
BATCH = 200
FIRST_PAGE = 50
RETRIES = 3  # decisions made again for one item after losing a person's last unit
RECHECK_EVERY_S = 5.0
MAX_RULES_ARMED = 20  # kinds of rule a pass looks at for the next opening to arm


class Calendars(Protocol):
    def calendar(self, name: str) -> BusinessCalendar | None: ...


Notify = Callable[[Transaction, WorkItem, str, str | None], list[AuditEvent]]


class Router:
    """Routes work items; one per engine."""

    def __init__(self, calendars: Calendars, notify: Notify | None = None) -> None:
        self.calendars = calendars
        self.notify = notify
        self._armed: dict[tuple[str, str, str], float] = {}  # (kind, pool, at) -> when armed
        self.decisions = 0  # routing decisions made by this process (bench/routing.py)
        # (kind, pool) -> (the routing generation it was read at, its people's static part)
        # and what passes worked out of it per kind of rule (routing.Pass)
        self._pools: dict[tuple[str, str],
                          tuple[int, tuple[Member, ...], dict[Any, Kind]]] = {}
        self._lock = threading.Lock()

    # ---- entry points -----------------------------------------------------------------
    def route_new_txn(self, tx: Transaction, item: WorkItem, now_dt: datetime) -> list[AuditEvent]:
        """A new item waiting for routing (just inserted): route it, or log why it waits.
        Either way a ``route`` job re-checks its queue after commit when it waits, so an
        agent who became available in a transaction that could not see this item yet is
        not missed."""
        kind, pool = item["assignee_kind"], item["assignee"]
        events: list[AuditEvent] = []
        self._route_txn(tx, kind, pool, [item], now_dt, events, first=True)
        if events and events[-1]["type"] == "waiting_for_routing" \
                and (kind, pool) not in tx.route_rechecks:
            # (One re-check per pool and transaction: many items made in one transaction
            # wait in it at once.)
            tx.route_rechecks.add((kind, pool))
            now = iso(now_dt)
            tx.enqueue_job_txn(ROUTE_JOB, None, {"kind": kind, "pool": pool}, now, now)
        return events

    def route_pool_txn(self, tx: Transaction, kind: str, pool: str, now_dt: datetime,
                       limit: int | None = None, for_user: str | None = None) -> int:
        """Route the items waiting in one queue or group, in their order; how many were
        routed. Stops when nobody in it could take one more item. ``for_user``: only
        ``for_user`` changed (nobody else is eligible who was not before), so only the
        items they may take are decided again."""
        events: list[AuditEvent] = []
        routed, after, seen = 0, None, 0
        agents: list[Agent] | None = None
        prepared: Pass | None = None
        # One person's pass usually takes a few items near the front: a small first page
        # (each row read is decoded), growing to BATCH.
        size = FIRST_PAGE if for_user is not None else BATCH
        # The rules (by their stored text) ``for_user`` cannot take for a reason a pass
        # does not change (a skill, passed on it, away, outside hours): their items are
        # left out of the next pages by the database.
        texts: dict[int, str] = {}
        skip: set[str] = set()
        rules: dict[int, dict[str, Any]] = {}  # the rules of the items read (by identity)
        left = False  # some item read is still waiting after the pass
        while limit is None or seen < limit:
            page = tx.waiting_items_txn(kind, pool, size, after, skip=sorted(skip),
                                        texts=texts)
            if not page:
                break
            seen += len(page)
            if agents is None:  # read once a pass: the pass keeps their loads current
                agents, shared = self._agents_txn(tx, kind, pool, iso(now_dt))
                prepared = Pass(agents, parse_now(now_dt), self.calendars.calendar,
                                shared=shared)
            for row in page:
                if len(rules) < MAX_RULES_ARMED and row.get("routing"):
                    rules.setdefault(id(row["routing"]), row["routing"])
            n, more = self._route_txn(tx, kind, pool, page, now_dt, events, first=False,  # type: ignore[arg-type]
                                      for_user=for_user, agents=agents, prepared=prepared,
                                      cannot=(texts, skip))
            routed += n
            left = left or n < len(page)
            if not more or len(page) < size:
                break
            size = min(BATCH, size * 2)
            last = page[-1]
            after = (last["priority"], last["due_at"] or "9999-12-31T23:59:59.999Z",
                     last["created_at"], last["id"])
        tx.append_events_txn(events)  # type: ignore[arg-type]
        if left and agents is not None and prepared is not None:
            # What still waits is routed at the next opening of a calendar that keeps
            # someone out now: the job that armed the opening this pass may be running
            # for is spent, and a person back (available again, a calendar given) outside
            # their hours had no job armed for them at all.
            for rule in rules.values():
                self._arm_opening_txn(tx, kind, pool, agents, rule, now_dt,
                                      open_now=prepared.open_now)
        return routed

    def route_user_txn(self, tx: Transaction, user: str, now_dt: datetime) -> int:
        """Route what waits in each queue and group ``user`` belongs to (their profile
        changed, or they have room again)."""
        return sum(self.route_pool_txn(tx, k, n, now_dt, for_user=user)
                   for k, n in sorted(tx.memberships_txn(user)))

    def freed_txn(self, tx: Transaction, item_id: str, now_dt: datetime, *,
                  route_now: bool) -> str | None:
        """The item no longer counts in its person's load (completed, canceled,
        reassigned, released): who had it. With ``route_now`` what waits for them is routed
        in this transaction, else by a ``route`` job after commit."""
        now = iso(now_dt)
        freed = tx.release_load_txn(item_id, now)
        if freed is None:
            return None
        user, _queue = freed
        if route_now:
            self.route_user_txn(tx, user, now_dt)
        else:
            tx.enqueue_job_txn(ROUTE_JOB, None, {"user": user}, now, now)
        return user

    # ---- offer mode -------------------------------------------------------------------
    def accept_offer_txn(self, tx: Transaction, item: WorkItem, user: str,
                         now_dt: datetime) -> bool:
        """``user``, offered ``item``, takes it: routed to them (their load already counts
        it). False when the item changed meanwhile (its version)."""
        now = iso(now_dt)
        if not tx.update_work_item_txn(item["id"], ["open"], item["version"],
                                       {"routing_status": "routed", "updated_at": now}):
            return False
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "offer_accepted", user, now, item["record_id"], item["run_id"],
            {"work_item": item["id"], "step": item["step"], "user": user,
             "offered_at": item.get("routed_at")})])
        return True

    def pass_on_txn(self, tx: Transaction, item: WorkItem, user: str, why: str,
                    now_dt: datetime, *, actor: str) -> bool:
        """``user`` declined ``item`` (``why``: ``declined``) or let the offer expire
        (``offer expired``): it goes back to its queue or group with them kept out of it
        for good, their load gives it back, and it is offered to the next candidate — or
        waits for routing as any item does when nobody is left. False when the item
        changed meanwhile (its version)."""
        now = iso(now_dt)
        rule: dict[str, Any] = dict(item.get("routing") or {})
        rule["passed"] = {**(rule.get("passed") or {}), user: why}
        kind, _, pool = str(rule.get("from", "")).partition(":")
        if not tx.update_work_item_txn(item["id"], ["open"], item["version"], {
                "assignee_kind": kind, "assignee": pool, "routing_status": "waiting",
                "routing": rule, "updated_at": now}):
            return False
        freed = tx.release_load_txn(item["id"], now)  # (routed_to: still the offeree)
        kind_of_event = "offer_declined" if why == "declined" else "offer_expired"
        events: list[AuditEvent] = [audit_event(
            kind_of_event, actor, now, item["record_id"], item["run_id"],
            {"work_item": item["id"], "step": item["step"], "user": user,
             "offered_at": item.get("routed_at"), "reason": why})]
        fresh: WorkItem = {**item, "assignee_kind": kind, "assignee": pool,
                           "routing_status": "waiting", "routing": rule,
                           "version": item["version"] + 1}
        self._route_txn(tx, kind, pool, [fresh], now_dt, events, first=True)
        tx.append_events_txn(events)  # type: ignore[arg-type]
        if events[-1]["type"] == "waiting_for_routing":  # (a re-check after commit)
            tx.enqueue_job_txn(ROUTE_JOB, None, {"kind": kind, "pool": pool}, now, now)
        if freed is not None:  # they have room again for what else waits
            self.route_user_txn(tx, freed[0], now_dt)
        return True

    def _offer_expired_txn(self, tx: Transaction, payload: dict[str, Any],
                           now_dt: datetime) -> int:
        """The durable timer of an offer: if that very offer is still open (the same
        person, offered at the same instant), it goes to the next candidate."""
        item = tx.get_work_item_txn(str(payload["offer"]), for_update=True)
        if item is None or item["status"] != "open" or item.get("routing_status") != "offered" \
                or item.get("routed_to") != payload.get("to") \
                or item.get("routed_at") != payload.get("at"):
            return 0
        return int(self.pass_on_txn(tx, item, str(payload["to"]), "offer expired",  # type: ignore[arg-type]
                                    now_dt, actor="system"))

    # ---- an SLA's routing rule ---------------------------------------------------------
    def reroute_txn(self, tx: Transaction, item: WorkItem, rule: dict[str, Any], now_dt: datetime,
                    *, reason: str, exclude: str | None = None,
                    actor: str = "system") -> list[AuditEvent]:
        """Route an open item again with ``rule`` (an SLA's ``on_jeopardy: {routing: ...}``):
        it leaves its person or pool (a claim is released, a routed item's load freed),
        waits in the rule's queue or group, and is routed there at once when someone is
        eligible (``routed`` with ``reason``), ``exclude`` (its assignee) kept out. The
        events to append; none when the item was no longer open."""
        now = iso(now_dt)
        kind, _, pool = str(rule.get("from", "")).partition(":")
        rule = dict(rule)
        if exclude is not None:
            rule["passed"] = {**(rule.get("passed") or {}), exclude: "assignee at jeopardy"}
        # The load is freed before the item leaves: it counts in its old queue, which the
        # row's old rule names (freeing is a compare-and-set of its own, done once).
        freed = tx.release_load_txn(item["id"], now) if item.get("routing") else None
        changes: dict[str, Any] = {"status": "open", "claimed_by": None, "assignee_kind": kind,
                                   "assignee": pool, "routing": rule,
                                   "routing_status": "waiting", "updated_at": now}
        if not tx.update_work_item_txn(item["id"], ["open", "claimed"], None, changes):
            return []
        events: list[AuditEvent] = [audit_event(
            "work_item_reassigned", actor, now, item["record_id"], item["run_id"],
            {"work_item": item["id"], "step": item["step"], "reason": reason,
             "from": f"{item['assignee_kind']}:{item['assignee']}", "to": f"{kind}:{pool}",
             "rule": rule.get("rule")})]
        fresh = tx.get_work_item_txn(item["id"], for_update=True)
        assert fresh is not None
        self._route_txn(tx, kind, pool, [fresh], now_dt, events,  # type: ignore[list-item]
                        first=True, reason=reason)
        if events[-1]["type"] == "waiting_for_routing":
            tx.enqueue_job_txn(ROUTE_JOB, None, {"kind": kind, "pool": pool}, now, now)
        if freed is not None:
            tx.enqueue_job_txn(ROUTE_JOB, None, {"user": freed[0]}, now, now)
        return events

    # ---- one pass ---------------------------------------------------------------------
    def _route_txn(self, tx: Transaction, kind: str, pool: str, items: Sequence[WorkItem],
                   now_dt: datetime, events: list[AuditEvent], *, first: bool,
                   for_user: str | None = None, agents: list[Agent] | None = None,
                   reason: str | None = None, prepared: Pass | None = None,
                   cannot: tuple[dict[int, str], set[str]] | None = None) -> tuple[int, bool]:
        """Route ``items`` (waiting in one pool, in order): (how many were routed, whether
        anyone could still take more)."""
        now_dt = parse_now(now_dt)
        now = iso(now_dt)
        shared: dict[Any, Kind] | None = None
        if agents is None:
            agents, shared = self._agents_txn(tx, kind, pool, now)
        if prepared is None or prepared.agents is not agents:
            prepared = Pass(agents, now_dt, self.calendars.calendar, shared=shared)
        open_now = prepared.open_now
        only_at = next((i for i, a in enumerate(agents) if a.name == for_user), None)
        only = None if only_at is None else agents[only_at]
        if for_user is not None and only is None \
                or not any(_could_take(a) for a in agents):  # nobody has room: nothing to decide
            if first:
                self._wait_txn(tx, kind, pool, items, agents, now_dt, open_now, events,
                               prepared=prepared)
            return 0, False
        routed = 0
        cursors: dict[str, str | None] = {}
        for item in items:
            rule: dict[str, Any] = item.get("routing") or {}
            if only is not None and only_at is not None:
                why = prepared.reason(rule, only_at)
                if why is not None and cannot is not None and id(rule) in cannot[0]:
                    cannot[1].add(cannot[0][id(rule)])  # (not in this pass, whatever comes)
                if why is not None or "under_capacity" in (rule.get("filters") or ()) \
                        and not only.room():
                    if not _could_take(only):
                        return routed, False
                    continue
            sticky = (tx.record_handlers_txn(item["record_id"])
                      if rule.get("sticky") and item["record_id"] else [])
            name = str(rule.get("rule", ""))
            if rule.get("strategy") == "round_robin" and name not in cursors:
                cursors[name] = tx.routing_cursor_txn(name)
            verdict = self._assign_txn(tx, item, rule, pool, agents, now_dt, sticky,
                                       cursors.get(name), events, prepared, reason)
            if verdict.winner is not None:
                routed += 1
                if rule.get("strategy") == "round_robin":
                    cursors[name] = verdict.winner
                    tx.set_routing_cursor_txn(name, verdict.winner)
            elif first:
                self._wait_txn(tx, kind, pool, [item], agents, now_dt, open_now, events, verdict,
                               prepared)
        return routed, (_could_take(only) if only is not None
                        else any(_could_take(a) for a in agents))

    def _wait_txn(self, tx: Transaction, kind: str, pool: str, items: Sequence[WorkItem],
                  agents: list[Agent], now_dt: datetime, open_now: OpenNow,
                  events: list[AuditEvent], verdict: Verdict | None = None,
                  prepared: Pass | None = None) -> None:
        """New items nobody may take: why (on their timelines), and the durable job at the
        next opening of a calendar that kept someone out."""
        now = iso(now_dt)
        for item in items:
            rule: dict[str, Any] = item.get("routing") or {}
            found = verdict or decide(rule, agents, now_dt, self.calendars.calendar,
                                      open_now=open_now, prepared=prepared)
            events.append(audit_event(
                "waiting_for_routing", "system", now, item["record_id"], item["run_id"],
                {"work_item": item["id"], "step": item["step"], "rule": rule.get("rule"),
                 "queue": f"{kind}:{pool}", **found.to_json()}))
            self._arm_opening_txn(tx, kind, pool, agents, rule, now_dt, open_now=open_now)

    def _assign_txn(self, tx: Transaction, item: WorkItem, rule: dict[str, Any], pool: str,
                    agents: list[Agent], now_dt: datetime, sticky: Sequence[str],
                    cursor: str | None, events: list[AuditEvent],
                    prepared: Pass, reason: str | None = None) -> Verdict:
        now = iso(now_dt)
        filters = rule.get("filters") or ()
        for _ in range(RETRIES + 1):
            verdict = decide(rule, agents, now_dt, self.calendars.calendar, sticky=sticky,
                             cursor=cursor, prepared=prepared)
            self.decisions += 1
            if verdict.winner is None:
                return verdict
            agent = next(a for a in agents if a.name == verdict.winner)
            if not tx.take_load_txn(agent.name, pool, now, available="available" in filters,
                                    under_capacity="under_capacity" in filters):
                self._reread_txn(tx, agent, pool)  # another worker took their last unit
                prepared.forget()  # (read again: their availability may have changed too)
                continue
            offer = rule.get("offer")
            if not tx.update_work_item_txn(item["id"], ["open"], item["version"], {
                    "assignee_kind": "user", "assignee": agent.name,
                    "routing_status": "offered" if offer else "routed",
                    "routed_to": agent.name, "routed_at": now, "updated_at": now}):
                tx.give_back_load_txn(agent.name, pool)
                return Verdict(None, verdict.considered, verdict.counts, verdict.total)
            agent.load += 1
            agent.queue_load += 1
            agent.idle_since = now
            data: dict[str, Any] = {
                "work_item": item["id"], "step": item["step"], "rule": rule.get("rule"),
                "queue": f"{item['assignee_kind']}:{pool}", "strategy": rule.get("strategy"),
                "to": f"user:{agent.name}"}
            if reason is not None:
                data["reason"] = reason
            if offer:  # the durable timer: the offer expires unless accepted by then
                expires = iso(now_dt + timedelta(milliseconds=int(offer["timeout_ms"])))
                data["expires_at"] = expires
                tx.enqueue_job_txn(ROUTE_JOB, None, {"offer": item["id"], "to": agent.name,
                                                     "at": now}, expires, now)
            events.append(audit_event("offered" if offer else "routed", "system", now,
                                      item["record_id"], item["run_id"],
                                      {**data, **verdict.to_json()}))
            if self.notify is not None:
                new: WorkItem = {**item, "assignee_kind": "user",
                                 "assignee": agent.name, "version": item["version"] + 1}
                events.extend(self.notify(tx, new, now, f"{item['assignee_kind']}:{pool}"))
            return verdict
        return Verdict(None, verdict.considered, verdict.counts, verdict.total)

    # ---- the people of a pool ---------------------------------------------------------
    def _agents_txn(self, tx: Transaction, kind: str, pool: str, now: str
                    ) -> tuple[list[Agent], dict[Any, Kind]]:
        """The people of a pool as they are now: what this process keeps of them (members,
        whether active, skills, capacities, calendars: read again whenever the routing
        generation moved, i.e. anyone's change to them committed since), with their
        availability and loads read in this transaction (one statement); and what a
        :class:`Pass` may keep of them for other passes (see there)."""
        members, shared = self._members_txn(tx, kind, pool)
        live = tx.pool_live_txn(kind, pool)
        if len(live) != len(members) or any(
                r["user_name"] != m.name for r, m in zip(live, members, strict=True)):
            # The membership changed between the two reads (another transaction committed
            # in between, on PostgreSQL): read both again, keeping nothing.
            members = _static_txn(tx, kind, pool)
            live = tx.pool_live_txn(kind, pool)
            by_name = {m.name: m for m in members}
            live = [r for r in live if r["user_name"] in by_name]
            members = tuple(by_name[r["user_name"]] for r in live)
            shared = {}
        missing = [r["user_name"] for r in live if r["has_agent"] is None]
        if missing:
            tx.ensure_agents_txn(missing, now)
        no_queue_row = [(r["user_name"], pool) for r in live if r["has_queue"] is None]
        if no_queue_row:
            tx.ensure_agent_queues_txn(no_queue_row)
        return [Agent(m.name, r["availability"] or "available", m.capacity, int(r["load"] or 0),
                      m.skills, m.calendar, r["idle_since"] or None, m.queue_capacity,
                      int(r["queue_load"] or 0), m.active, m.works)
                for m, r in zip(members, live, strict=True)], shared

    def _members_txn(self, tx: Transaction, kind: str, pool: str
                     ) -> tuple[tuple[Member, ...], dict[Any, Kind]]:
        """What this process keeps of a pool's people, good while the routing generation
        it was read at is the one stored: read once per pass (one cheap statement), so a
        change committed by any process is seen by the next decision. The generation is
        read before the rows, so rows newer than their generation can be kept (they are
        read again next time), never rows older than theirs. A transaction that changed a
        pool's people itself reads them without keeping them (it may be rolled back)."""
        generation = tx.routing_generation_txn()
        key = (kind, pool)
        kept = self._pools.get(key)
        if kept is not None and generation is not None and kept[0] == generation \
                and not tx.routing_changed:
            return kept[1], kept[2]
        members = _static_txn(tx, kind, pool)
        shared: dict[Any, Kind] = {}
        if generation is not None and not tx.routing_changed:
            self._pools[key] = (generation, members, shared)
        return members, shared

    def _reread_txn(self, tx: Transaction, agent: Agent, pool: str) -> None:
        rows = tx.agent_rows_txn([agent.name])
        queues = tx.agent_queue_rows_txn([agent.name], pool)
        fresh = _agent(agent.name, rows[0] if rows else None, queues[0] if queues else None)
        fresh.active, fresh.works = agent.active, agent.works
        agent.__dict__.update(fresh.__dict__)

    # ---- durable re-checks ------------------------------------------------------------
    def _arm_opening_txn(self, tx: Transaction, kind: str, pool: str, agents: list[Agent],
                         rule: dict[str, Any], now_dt: datetime,
                         open_now: OpenNow | None = None) -> None:
        """Someone was kept out only by their working hours: a ``route`` job at the
        earliest next opening of their calendars (the durable timer). A calendar that
        opens in no day of the next two weeks (a long closure) is looked at again then."""
        soonest: datetime | None = None
        for a in agents:
            if a.calendar is None or open_now is not None and open_now(a.calendar) is not False:
                continue  # (no calendar, or one open now or not deployed: not outside hours)
            if exclusion(rule, a, now_dt, self.calendars.calendar, open_now) != "outside hours":
                continue
            cal = self.calendars.calendar(a.calendar)
            at = next_opening(cal, now_dt) if cal is not None else None
            if at is None and cal is not None:  # (at a midnight: one job a day, not a pass)
                later = now_dt.astimezone(UTC) + timedelta(days=NEXT_OPENING_DAYS)
                at = later.replace(hour=0, minute=0, second=0, microsecond=0)
            if at is not None and (soonest is None or at < soonest):
                soonest = at
        if soonest is not None:
            self._arm_txn(tx, kind, pool, iso(soonest), now_dt)

    def _arm_txn(self, tx: Transaction, kind: str, pool: str, at: str, now_dt: datetime) -> None:
        key = (kind, pool, at)
        with self._lock:  # once per pool and opening in this process (a second is harmless)
            armed = self._armed.get(key)
            if armed is not None and time.monotonic() - armed < RECHECK_EVERY_S:
                return
            self._armed[key] = time.monotonic()
        tx.enqueue_job_txn(ROUTE_JOB, None, {"kind": kind, "pool": pool}, at, iso(now_dt))

    def run_job_txn(self, tx: Transaction, payload: dict[str, Any], now_dt: datetime) -> int:
        """A ``route`` job: route a pool (a calendar opened, a re-check), or a person's
        pools (they have room again), or an offer's timeout came."""
        if "offer" in payload:
            return self._offer_expired_txn(tx, payload, now_dt)
        if "user" in payload:
            return self.route_user_txn(tx, str(payload["user"]), now_dt)
        now = iso(now_dt)
        with self._lock:  # (the openings due by now are spent: later ones stay armed)
            for key in [k for k in self._armed
                        if k[:2] == (payload["kind"], payload["pool"]) and k[2] <= now]:
                del self._armed[key]
        return self.route_pool_txn(tx, str(payload["kind"]), str(payload["pool"]), now_dt)


def _could_take(a: Agent) -> bool:
    """Could this person take one more item at all, whatever its skills?"""
    return a.active and a.works and a.availability == "available" and a.room()


@dataclass(frozen=True, slots=True)
class Member:
    """What a process keeps of one person of a pool between transactions."""

    name: str
    active: bool
    capacity: int | None
    skills: dict[str, int | None]
    calendar: str | None
    queue_capacity: int | None
    works: bool = True  # a role of theirs has the ``work`` permission


def _static_txn(tx: Transaction, kind: str, pool: str) -> tuple[Member, ...]:
    """A pool's people as a process keeps them (:meth:`Router._members_txn`), with
    whether each may work items at all: someone whose roles do not give them the ``work``
    permission (a designer put in a queue) is never routed or offered an item, which they
    could neither open nor complete. (Their roles: one statement more, made only when
    the pool is read again, not at every pass.)"""
    rows = tx.pool_static_txn(kind, pool)
    names = [r["user_name"] for r in rows]
    roles = {u["name"]: u["roles"] for u in tx.user_rows_txn(names)} if names else {}
    return tuple(Member(r["user_name"], bool(r["active"]), r["capacity"],
                        dict(r["skills"] or {}), r["calendar"], r["queue_capacity"],
                        Permission.WORK in permissions(roles.get(r["user_name"]) or ()))
                 for r in rows)


def _agent(name: str, row: dict[str, Any] | None, queue: dict[str, Any] | None) -> Agent:
    row = row or {}
    return Agent(name, row.get("availability") or "available", row.get("capacity"),
                 int(row.get("load") or 0), dict(row.get("skills") or {}), row.get("calendar"),
                 row.get("idle_since") or None, (queue or {}).get("capacity"),
                 int((queue or {}).get("load") or 0))
