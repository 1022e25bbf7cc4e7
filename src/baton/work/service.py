"""The work-items service: list, count, claim, complete (one or many), reassign.

Claim and reassign are a compare-and-set on the item's status and version; completing an
item also completes its step and moves the run on (through the run driver), all in one
transaction.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from baton.auth.directory import APPROVAL, NAME_RE, Directory, User, delegation_of
from baton.auth.roles import GRANTS, ROLES, Permission, permissions
from baton.clock import Clock, iso, parse_iso
from baton.definitions.checks import suggest
from baton.definitions.model import AssigneeKind, FieldDefinition, OrchestrationDefinition
from baton.engine.decide import expression_scope
from baton.engine.events import StepCompleted
from baton.engine.sla import SLA_STATES
from baton.engine.state import Run
from baton.engine.status import WorkItemStatus
from baton.errors import BatonError, NotFound, PermissionDenied, TransitionConflict, ValidationError
from baton.expressions import is_expression
from baton.records.fields import coerce_fields
from baton.records.related import with_related_txn
from baton.rows import WorkItem, audit_event
from baton.runtime.apply import Applier
from baton.steps.interactive import kept_rule, resolve_resource
from baton.store.base import KeyPage, Total
from baton.store.ports import Transaction
from baton.store.sql import SqlStore
from baton.work import items as work_items
from baton.work.assignees import SHOWN, acting_name, parse_target
from baton.work.claims import claim_gone, held_for_another, rows_by_name, taken_back
from baton.work.items import OPEN_STATUSES

if TYPE_CHECKING:
    from baton.runtime.definitions import DefinitionRepo
    from baton.runtime.idempotency import IdempotencyClaim
    from baton.runtime.runs import RunDriver

OPEN, CLAIMED = WorkItemStatus.OPEN.value, WorkItemStatus.CLAIMED.value
COMPLETED = WorkItemStatus.COMPLETED.value  # (``.value`` is a property: a Python call)
ON_BEHALF_OF = "on_behalf_of"  # whose item a delegate acted on (audit events, step output)
ORDERS = ("created", "due", "priority")
STATUSES = tuple(s.value for s in WorkItemStatus)
# "Next item" reads candidates a batch at a time, and gives up (None) after this many
# batches lost to other people claiming at the same moment.
NEXT_BATCH, NEXT_PAGES = 20, 5


@dataclass(frozen=True)
class WorkNarrowing:
    """The Work Guide's filters beyond whose items they are: an orchestration, text in
    the title or summary, the SLA's state now (on_track, in_jeopardy, overdue)."""

    orchestration: str | None = None
    search: str | None = None
    sla: str | None = None


TABS = ("mine", "unclaimed", "all")


@dataclass(frozen=True)
class TabQuery:
    """Which items a Work Guide tab lists: their statuses, and whose (``scope``: a user's
    items, their groups' and queues'; ``user``: assigned to or claimed by that user)."""

    statuses: tuple[str, ...]
    scope: User | None
    user: str | None
    on_behalf: tuple[str, ...] = ()  # with ``user``: whose approvals they act on too


def tab_query(tab: str, user: User, sees_all: bool) -> TabQuery:
    """``mine``: open or claimed, assigned to ``user`` or claimed by them; ``unclaimed``:
    open in their user, groups and queues; ``all``: open or claimed, every item for
    someone who ``sees_all`` (work:all), else their scope."""
    if tab not in TABS:
        raise ValidationError("work list", {"tab": f"expected one of: {', '.join(TABS)}, got {tab!r}"})
    if tab == "mine":  # (with the approvals of whom they act for as delegate)
        return TabQuery((OPEN, CLAIMED), None, user.name, tuple(sorted(user.acting_for)))
    if tab == "unclaimed":
        return TabQuery((OPEN,), user, None)
    return TabQuery((OPEN, CLAIMED), None if sees_all else user, None)


class WorkService:
    """Work items on one store."""

    def __init__(self, store: SqlStore, runs: RunDriver, applier: Applier, clock: Clock,
                 directory: Directory | None = None) -> None:
        self.store = store
        self.runs = runs
        self.applier = applier
        self.clock = clock
        self.directory = directory
        # Tests only: called with the item's id between a claim's read of the item and its
        # compare-and-set, so two claims can be made to overlap for certain. None in use.
        self.claim_hook: Callable[[str], None] | None = None

    def _current_txn(self, tx: Transaction, scope: User | None) -> User | None:
        """The acting user as the directory says now, read in this transaction: a person
        removed from a queue (or deactivated) since their request was authenticated, or
        since they claimed the item, may no longer act on its items."""
        if scope is None or self.directory is None:
            return scope
        user = self.directory.user_txn(tx, scope.name)
        if not user.active:
            raise PermissionDenied(f"user {user.name} is inactive")
        if not user.can(Permission.WORK):  # (the API asks for it first; the CLI's --user)
            raise PermissionDenied(f"user {user.name} ({', '.join(sorted(user.roles))}) may "
                                   f"not work items: {_WORK_NEEDED}")
        return user

    def _may_act_txn(self, tx: Transaction, item: WorkItem, user: str,
                     scope: User | None) -> str | None:
        """May ``user`` act on ``item`` (claim, complete)? None: as themselves; a name: on
        behalf of that user, whose approval it is and who names ``user`` as their delegate
        today, ``user`` being active and allowed to work items (read in this transaction;
        the rule :func:`~baton.work.claims.not_acting_for` says in words). PermissionDenied
        otherwise."""
        current = self._current_txn(tx, scope)
        if item["assignee_kind"] == "user" and item["assignee"] != user \
                and item.get("step_type") == APPROVAL:
            row = tx.user_row_txn(item["assignee"])
            delegation = delegation_of(row) if row is not None else None
            if delegation is not None and delegation.to == user \
                    and delegation.in_force(self.clock.now().date().isoformat()) \
                    and (current is not None or self._works_txn(tx, user)):
                return item["assignee"]  # (``current``: active, may work; read just now)
        check_may_act(item, user, current)
        return None

    @staticmethod
    def _works_txn(tx: Transaction, name: str) -> bool:
        """Is ``name`` an active user whose roles give ``work`` (a delegate acting without a
        scope: the Engine's callers, a batch), as stored now?"""
        row = tx.user_row_txn(name)
        return row is not None and bool(row["active"]) and _works(row)

    # ---- a claim by a delegate who no longer acts for the assignee ----------------------
    def _claim_gone_txn(self, tx: Transaction, item: WorkItem) -> str | None:
        """Why the claim on ``item`` by someone other than its user no longer stands (read
        in this transaction: :func:`~baton.work.claims.claim_gone`), or None."""
        if not held_for_another(item):
            return None
        return claim_gone(item, tx.user_row_txn(str(item["claimed_by"])),
                          tx.user_row_txn(item["assignee"]), self.clock.now().date().isoformat())

    def _taking_back_txn(self, tx: Transaction, item: WorkItem, user: str
                         ) -> dict[str, str] | None:
        """When ``item`` is claimed by someone else whose claim no longer stands, what a
        claim (or completion) by ``user`` records of taking it back: None otherwise. (Whether
        ``user`` may act on it at all is :meth:`_may_act_txn`'s to say.)"""
        if item["claimed_by"] == user:
            return None
        why = self._claim_gone_txn(tx, item)
        return taken_back(item, user, why) if why is not None else None

    def _stale_claimer_txn(self, tx: Transaction, item: WorkItem, user: str,
                           refused: PermissionDenied) -> PermissionDenied:
        """The error for ``user`` acting on an item they claimed for its assignee once they
        no longer act for them: why, and what the others may do (``refused`` otherwise)."""
        why = self._claim_gone_txn(tx, item) if item["claimed_by"] == user else None
        if why is None:
            return refused
        return PermissionDenied(
            f"work item {item['id']} is assigned to user {item['assignee']}; the claim by "
            f"{user}, {why}, no longer stands: {item['assignee']} (or their delegate now) may "
            f"take it back, and {user} may release it (`baton work release {item['id']} "
            f"--user {user}`)")

    def stale_claims(self, items: Sequence[Mapping[str, Any]]) -> dict[str, str]:
        """For the items listed (a Work Guide page, an item's page): the id of each one
        claimed by someone whose claim no longer stands, with why (a relative clause about
        the claimer: "whose delegation from dora ended"). No read at all unless one of them
        is a user's item claimed by someone else; then one read of those people."""
        held = [i for i in items if held_for_another(i)]
        if not held:
            return {}
        names = sorted({n for i in held for n in (str(i["claimed_by"]), str(i["assignee"]))})
        with self.store.read() as tx:
            rows = rows_by_name(tx.user_rows_txn(names))
        today = self.clock.now().date().isoformat()
        found = {str(i["id"]): claim_gone(i, rows.get(str(i["claimed_by"])),
                                          rows.get(str(i["assignee"])), today) for i in held}
        return {k: why for k, why in found.items() if why is not None}

    # ---- reads --------------------------------------------------------------------------
    def list_items(self, *, user: str | None, queue: str | None, group: str | None,
             statuses: Sequence[str], run_id: str | None, limit: int, offset: int,
             scope: User | None, order: str, record_id: str | None) -> list[WorkItem]:
        """Work items (one keyset page from the first): see :meth:`page`."""
        return self.page(user=user, queue=queue, group=group, statuses=statuses,
                         run_id=run_id, record_id=record_id, scope=scope, order=order,
                         after=None, offset=offset, limit=limit).rows  # type: ignore[return-value]

    def page(self, *, user: str | None = None, queue: str | None = None,
             group: str | None = None, statuses: Sequence[str], run_id: str | None = None,
             record_id: str | None = None, scope: User | None = None, order: str = "created",
             after: str | None = None, offset: int = 0, limit: int = 50,
             narrow: WorkNarrowing | None = None, on_behalf: Sequence[str] = ()) -> KeyPage:
        """Work items, a keyset page after the cursor ``after``. ``scope`` (a directory
        user) keeps the items assigned to them, their groups or their queues, or claimed by
        them; ``user`` those assigned to or claimed by that user; ``queue``/``group`` and
        ``narrow`` (orchestration, text, SLA state) narrow further."""
        if order not in ORDERS:
            raise ValidationError("work list", {"order": f"expected created, due or priority, got {order!r}"})
        _check_window(limit, offset)
        filters = self._filters(statuses, scope, queue, group, record_id)
        filters.update(run_id=run_id, user=user if scope is None else None)
        if scope is None and user is not None and on_behalf:
            filters["on_behalf"] = list(on_behalf)
        self._narrowed(filters, narrow)
        with self.store.read() as tx:
            found = tx.page_work_items_txn(filters, order, after, offset, limit)
            return KeyPage(_with_sla_txn(tx, found.rows), found.next)  # type: ignore[arg-type]

    def count_bounded(self, *, statuses: Sequence[str], scope: User | None, queue: str | None,
                      group: str | None, record_id: str | None, user: str | None = None,
                      narrow: WorkNarrowing | None = None, on_behalf: Sequence[str] = ()
                      ) -> Total:
        """How many items :meth:`page` lists: exact up to a thousand, else estimated."""
        filters = self._filters(statuses, scope, queue, group, record_id)
        filters.update(user=user if scope is None else None)
        if scope is None and user is not None and on_behalf:
            filters["on_behalf"] = list(on_behalf)
        self._narrowed(filters, narrow)
        with self.store.read() as tx:
            return tx.count_work_items_bounded_txn(filters)

    def _narrowed(self, filters: dict[str, Any], narrow: WorkNarrowing | None) -> None:
        if narrow is None:
            return
        if narrow.sla is not None and narrow.sla not in SLA_STATES:
            raise ValidationError("work list", {"sla": f"expected one of: {', '.join(SLA_STATES)}, got {narrow.sla!r}"})
        filters.update(orchestration=narrow.orchestration, search=narrow.search or None,
                       sla=(narrow.sla, iso(self.clock.now())) if narrow.sla else None)

    @staticmethod
    def _filters(statuses: Sequence[str], scope: User | None, queue: str | None,
                 group: str | None, record_id: str | None) -> dict[str, Any]:
        filters: dict[str, Any] = {"statuses": _statuses(statuses), "record_id": record_id}
        if scope is not None:
            filters["scope"] = (scope.name, scope.groups, scope.queues)
            if scope.acting_for:  # the approvals of whom they act for, as delegate
                filters["on_behalf"] = sorted(scope.acting_for)
        _narrow(filters, queue, group)
        return filters

    def count_items(self, *, statuses: Sequence[str], scope: User | None, queue: str | None,
              group: str | None, record_id: str | None) -> int:
        with self.store.read() as tx:
            return tx.count_work_items_txn(self._filters(statuses, scope, queue, group,
                                                         record_id))

    def get(self, item_id: str) -> WorkItem:
        with self.store.read() as tx:
            return self.shown_txn(tx, item_id, lock=False)

    def get_txn(self, tx: Transaction, item_id: str, *, lock: bool = True) -> WorkItem:
        """The stored item (locked until commit unless ``lock`` is False), or NotFound."""
        item = tx.get_work_item_txn(item_id, for_update=lock)
        if item is None:
            raise NotFound("work item", item_id)
        return item  # type: ignore[return-value]

    def shown_txn(self, tx: Transaction, item_id: str, *, lock: bool = True) -> WorkItem:
        """The item as a read shows it (:meth:`get`): the stored row with its step's SLA
        (``sla_status``, ``due_at``), read in the caller's transaction. Every change below
        answers with it, so an action's answer carries what a GET of the item says (one
        statement more than the row: the SLA read out of the run's state)."""
        return _with_sla_txn(tx, [self.get_txn(tx, item_id, lock=lock)])[0]  # type: ignore[list-item]

    # ---- changes ------------------------------------------------------------------------
    def claim(self, item_id: str, user: str, scope: User | None, *,
              idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Claim an open item. Exactly one claimer wins; the others get a TransitionConflict.
        ``idempotency``: the request's key, claimed first in the transaction and bound to
        the item (so are the other changes' below)."""
        acting_name(user, "user", "claim")
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            _claim_key_txn(tx, idempotency, now_dt, item_id)
            item = self.get_txn(tx, item_id)
            taken: dict[str, str] | None = None
            if item["status"] != OPEN:  # (a claim that no longer stands is taken back)
                taken = self._taking_back_txn(tx, item, user) \
                    if item["status"] == CLAIMED else None
                if taken is None:
                    raise TransitionConflict(_not_open(item))
            _not_offered(item, "claimed")
            on_behalf = self._may_act_txn(tx, item, user, scope)
            if self.claim_hook is not None:
                self.claim_hook(item_id)
            if not tx.update_work_item_txn(item_id, [item["status"]], item["version"],
                                           {"status": CLAIMED, "claimed_by": user, "updated_at": now}):
                raise TransitionConflict(_not_open(self.get_txn(tx, item_id)))
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "work_item_claimed", user, now, item["record_id"], item["run_id"],
                {"work_item": item_id, "step": item["step"], **_for(on_behalf),
                 **(taken or {})})])
            return self.shown_txn(tx, item_id)

    # ---- offer mode (a routing rule with ``offer``) --------------------------------------
    def accept(self, item_id: str, user: str, scope: User | None, *,
               idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """The offeree takes the item offered to them: it is theirs (routed to them)."""
        with self.store.write() as tx:
            if idempotency is not None:
                _claim_key_txn(tx, idempotency, self.clock.now(), item_id)
            item = self._offered_txn(tx, item_id, user, scope, "accept")
            assert self.applier.router is not None
            now_dt = self.clock.now()
            expired = _offer_expiry(item)
            if expired is not None and expired <= now_dt:  # (its timer not yet run)
                raise TransitionConflict(
                    f"the offer of work item {item_id} to {user} expired at {iso(expired)}: "
                    "it goes to the next candidate (or waits for routing)")
            if not self.applier.router.accept_offer_txn(tx, item, user, now_dt):
                raise TransitionConflict(f"work item {item_id} changed while accepting; try again")
            return self.shown_txn(tx, item_id)

    def decline(self, item_id: str, user: str, scope: User | None, *,
                idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """The offeree turns the offer down: it goes to the next candidate (never again to
        them), or waits for routing when nobody is left."""
        with self.store.write() as tx:
            if idempotency is not None:
                _claim_key_txn(tx, idempotency, self.clock.now(), item_id)
            item = self._offered_txn(tx, item_id, user, scope, "decline")
            assert self.applier.router is not None
            if not self.applier.router.pass_on_txn(tx, item, user, "declined",
                                                   self.clock.now(), actor=user):
                raise TransitionConflict(f"work item {item_id} changed while declining; try again")
            return self.shown_txn(tx, item_id)

    def _offered_txn(self, tx: Transaction, item_id: str, user: str, scope: User | None,
                     verb: str) -> WorkItem:
        """The item, locked, if it is offered to ``user`` now: only the offeree answers an
        offer (an operator reassigns it instead)."""
        acting_name(user, "user", verb)
        item = self.get_txn(tx, item_id)
        if item["status"] != OPEN or item.get("routing_status") != "offered" \
                or self.applier.router is None:
            raise TransitionConflict(f"work item {item_id} is not offered to anyone "
                                     f"({_state(item)}): there is no offer to {verb}")
        if item.get("routed_to") != user:
            raise PermissionDenied(f"work item {item_id} is offered to {item.get('routed_to')}, "
                                   f"not {user}: only they may {verb} it")
        self._current_txn(tx, scope)  # (an offeree deactivated since may not answer)
        return item

    def release(self, item_id: str, user: str, scope: User | None, *,
                idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Give a claimed item back to its assignee, open for anyone of them to claim.

        The claimer may release it; someone acting on every item (``scope`` None: an
        operator) may release anyone's claim. A compare-and-set on status and version.
        """
        acting_name(user, "user", "release")
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            _claim_key_txn(tx, idempotency, now_dt, item_id)
            item = self.get_txn(tx, item_id)
            if item["status"] != CLAIMED:
                raise TransitionConflict(f"work item {item_id} is {item['status']}: only a "
                                         "claimed item can be released")
            if scope is not None and item["claimed_by"] != user:
                raise PermissionDenied(f"work item {item_id} is claimed by "
                                       f"{item['claimed_by']}: only they or an operator "
                                       "can release it")
            changes: dict[str, Any] = {"status": OPEN, "claimed_by": None, "updated_at": now}
            routed = item.get("routing_status") == "routed" and self.applier.router is not None
            if routed:  # back to its queue, to be routed again
                kind, _, pool = str((item.get("routing") or {}).get("from", "")).partition(":")
                changes.update(assignee_kind=kind, assignee=pool, routing_status="waiting")
            if not tx.update_work_item_txn(item_id, [CLAIMED], item["version"], changes):
                raise TransitionConflict(f"work item {item_id} changed while releasing; try again")
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "work_item_released", user, now, item["record_id"], item["run_id"],
                {"work_item": item_id, "step": item["step"], "claimed_by": item["claimed_by"]})])
            if routed:
                assert self.applier.router is not None
                router = self.applier.router
                freed = tx.release_load_txn(item_id, now)
                router.route_pool_txn(tx, kind, pool, self.clock.now())
                if freed is not None:
                    router.route_user_txn(tx, freed[0], self.clock.now())
            return self.shown_txn(tx, item_id)

    def claim_next(self, user: User, narrow: WorkNarrowing | None = None,
                   queue: str | None = None, claim: IdempotencyClaim | None = None,
                   ) -> WorkItem | None:
        """Claim the most urgent open item ``user`` may take (assigned to them, one of
        their groups or queues; highest priority, then earliest due, then oldest), in one
        transaction; None when there is none. ``narrow`` and ``queue`` keep to the Work
        Guide's filters (its text search aside). An item of theirs claimed by someone whose
        claim no longer stands (a delegate's, once the delegation ended:
        :mod:`baton.work.claims`) counts as open: they take it back, audited with why.

        Each candidate is claimed by a compare-and-set on its status and version: when
        two people ask at once, the one who loses an item to the other goes on to the
        next (PostgreSQL re-reads the row after the other's commit; SQLite's writers take
        turns), so they get different items.

        ``claim``: the request's idempotency key, claimed and bound to the item in the
        transaction that claims it (once one is won: when there is none, nothing is
        written and the key stays free). Of two requests with the same key at once, the
        second to claim the key fails (:class:`~baton.errors.IdempotencyKeyTaken`) and its
        claim of an item rolls back.
        """
        if not isinstance(user, User):  # (else a bare AssertionError below, or worse)
            raise ValidationError("next item", {"user": (
                "expected the directory user who claims (Directory.get_user(NAME)), "
                f"got {type(user).__name__}")})
        now_dt = self.clock.now()
        with self.store.write() as tx:
            me = self._current_txn(tx, user)
            assert me is not None
            filters = self._filters([OPEN], me, queue, None, None)
            self._narrowed(filters, narrow)
            # a claim that no longer stands counts as none: the item is the user's to take
            # back (or take over, as her delegate now), in its turn among the open ones
            lapsed = self._lapsed_txn(tx, me, narrow) if queue is None else []
            after: str | None = None
            for _ in range(NEXT_PAGES):
                found = tx.page_work_items_txn(filters, "priority", after, 0, NEXT_BATCH)
                for row in found.rows:
                    if row.get("routing_status") == "offered":  # accepted first
                        continue
                    if row["assignee_kind"] == "user" and row["assignee"] != me.name \
                            and not me.delegated(row):
                        continue
                    while lapsed and _urgency(lapsed[0][0]) <= _urgency(row):
                        stale, taken = lapsed.pop(0)
                        took = self._take_next_txn(tx, me, stale, now_dt, claim, taken)
                        if took is not None:
                            return took
                    took = self._take_next_txn(tx, me, row, now_dt, claim)
                    if took is not None:
                        return took
                if found.next is None:
                    break
                after = found.next
            for stale, taken in lapsed:  # (less urgent than every open item, or no open one)
                took = self._take_next_txn(tx, me, stale, now_dt, claim, taken)
                if took is not None:
                    return took
            return None

    def _lapsed_txn(self, tx: Transaction, me: User, narrow: WorkNarrowing | None
                    ) -> list[tuple[dict[str, Any], dict[str, str]]]:
        """The items ``me`` may take as if open though claimed: their own (and the
        approvals of whom they act for now) claimed by someone whose claim no longer
        stands (:func:`~baton.work.claims.claim_gone`), most urgent first, each with what
        taking it records. One read per user they are for (an index's few rows: items of
        theirs claimed); the claimers' rows are read only for items someone else holds."""
        found: list[tuple[dict[str, Any], dict[str, str]]] = []
        for name in (me.name, *sorted(me.acting_for)):
            filters: dict[str, Any] = {"statuses": [CLAIMED], "assignee_kind": "user",
                                       "assignee": name}
            self._narrowed(filters, narrow)
            after: str | None = None
            for _ in range(NEXT_PAGES):
                page = tx.page_work_items_txn(filters, "priority", after, 0, NEXT_BATCH)
                for row in page.rows:
                    if row["claimed_by"] == me.name or not held_for_another(row) \
                            or not (name == me.name or me.delegated(row)):
                        continue
                    why = self._claim_gone_txn(tx, row)  # type: ignore[arg-type]
                    if why is not None:
                        found.append((row, taken_back(row, me.name, why)))
                if page.next is None:
                    break
                after = page.next
        return sorted(found, key=lambda pair: _urgency(pair[0]))

    def _take_next_txn(self, tx: Transaction, me: User, row: Mapping[str, Any], now_dt: Any,
                       claim: IdempotencyClaim | None, taken: dict[str, str] | None = None
                       ) -> WorkItem | None:
        """Claim ``row`` for ``me`` ("next item"), by a compare-and-set on its status and
        version: the item as shown, or None when someone else changed it first. ``taken``:
        it was claimed by someone whose claim no longer stands (what the event records)."""
        if self.claim_hook is not None:
            self.claim_hook(row["id"])
        now = iso(now_dt)
        if not tx.update_work_item_txn(row["id"], [row["status"]], row["version"], {
                "status": CLAIMED, "claimed_by": me.name, "updated_at": now}):
            return None
        if claim is not None:
            claim.claim_txn(tx, now_dt, row["id"])
        on_behalf = row["assignee"] if me.delegated(row) else None
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "work_item_claimed", me.name, now, row["record_id"], row["run_id"],
            {"work_item": row["id"], "step": row["step"], "via": "next", **_for(on_behalf),
             **(taken or {})})])
        return self.shown_txn(tx, row["id"], lock=False)

    def complete(self, item_id: str, user: str, data: dict[str, Any], scope: User | None,
                 *, idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Submit the form: completes the item and its step, and moves the run on."""
        now_dt = self.clock.now()
        with self.store.write() as tx:
            _claim_key_txn(tx, idempotency, now_dt, item_id)
            return self.complete_txn(tx, item_id, user, data, now_dt, scope)

    def complete_many(self, submissions: Sequence[tuple[str, str, dict[str, Any]]]
                      ) -> list[dict[str, Any] | BatonError]:
        """Complete many items in one transaction; a failing one is returned as its error
        and changes nothing (its own savepoint), the others commit together."""
        _check_submissions(submissions)
        now_dt = self.clock.now()
        # The common case, every submission goes through, needs no savepoints (two
        # statements each, a fifth of the cost of a completion): try that first. If one
        # fails, nothing of this attempt is committed and each goes in its own savepoint.
        try:
            with self.store.write() as tx:
                if len(submissions) > 1:
                    _read_ahead_txn(tx, [item_id for item_id, _u, _d in submissions])
                    # The rows are locked and each run's state is carried by its decision:
                    # the runs' compare-and-set updates are written together at commit
                    # (an executemany), as a worker's batch writes them. A conflict there
                    # fails this attempt as a whole, and each item is tried on its own.
                    tx.deferred = True
                ahead = len(submissions) > 1
                done: list[dict[str, Any] | BatonError] = [
                    self.complete_txn(tx, item_id, user, data, now_dt, ahead=ahead)
                    for item_id, user, data in submissions]
            return done
        except BatonError:
            pass
        results: list[dict[str, Any] | BatonError] = []
        with self.store.write() as tx:
            for item_id, user, data in submissions:
                try:
                    with tx.savepoint():
                        results.append(self.complete_txn(tx, item_id, user, data, now_dt))
                except BatonError as exc:
                    results.append(exc)
        return results

    def complete_txn(self, tx: Transaction, item_id: str, user: str, data: dict[str, Any],
                     now_dt: Any, scope: User | None = None, *, ahead: bool = False
                     ) -> dict[str, Any]:
        """Complete one item in the caller's transaction: the item as it now is, with the
        run after its step completed under ``"run"``. ``ahead``: the caller has read (and
        locked, run first) the item, its run and record with :func:`_read_ahead_txn`."""
        acting_name(user, "user", "complete")
        now = iso(now_dt)
        if not ahead:
            # Lock the run before the item: the order a cancel, an SLA action, a fallout
            # action and the worker take them in. The other way round, a completion and a
            # cancel of its run deadlock on PostgreSQL (a second apart, then a 500).
            loaded = self.runs.load_txn(tx, self.get_txn(tx, item_id, lock=False)["run_id"])
        item = self.get_txn(tx, item_id)
        status = item["status"]
        taken: dict[str, str] | None = None
        if status == CLAIMED and item["claimed_by"] != user:
            taken = self._taking_back_txn(tx, item, user)  # (a claim that no longer stands)
            if taken is None:
                raise TransitionConflict(f"work item {item_id} is claimed by {item['claimed_by']}")
        if status not in OPEN_STATUSES:
            raise TransitionConflict(f"work item {item_id} is {status}; it cannot be completed")
        _not_offered(item, "completed")
        try:
            on_behalf = self._may_act_txn(tx, item, user, scope)
        except PermissionDenied as refused:
            raise self._stale_claimer_txn(tx, item, user, refused) from None
        values = coerce_fields(form_fields(item["form"]), data, f"form of work item {item_id}")
        if not tx.update_work_item_txn(item_id, [status], item["version"], {
            "status": COMPLETED, "claimed_by": user, "data": values,
            "updated_at": now, "completed_at": now, "completed_by": user,
        }):
            raise TransitionConflict(f"work item {item_id} changed while completing; try again")
        completed = audit_event("work_item_completed", user, now, item["record_id"],
                                item["run_id"], {"work_item": item_id, "step": item["step"],
                                                 "data": values, **_for(on_behalf)})
        if taken is not None:  # (the take-back first, then the completion)
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "work_item_claimed", user, now, item["record_id"], item["run_id"],
                {"work_item": item_id, "step": item["step"], **_for(on_behalf), **taken})])
        tx.append_events_txn([completed])  # type: ignore[list-item]
        if item.get("routing") and self.applier.router is not None:
            # They have room again: what waits for them is routed now.
            self.applier.router.freed_txn(tx, item_id, now_dt, route_now=True)
        run, defn, record = self.runs.load_txn(tx, item["run_id"]) if ahead else loaded
        # (the step sees who the delegate acted for: an approval records it with the decision)
        output = {**values, ON_BEHALF_OF: on_behalf} if on_behalf else values
        decision = self.runs.decide_and_apply_txn(
            tx, defn, run, StepCompleted(item["step"], item["iteration"], output, actor=user),
            now_dt, record)
        if decision.stale:
            raise TransitionConflict(
                f"step {item['step']!r} of run {run.id} is no longer waiting for this item")
        return {**item, "status": COMPLETED, "claimed_by": user,
                "data": values, "updated_at": now, "completed_at": now, "completed_by": user,
                "version": item["version"] + 1, **_sla_in(item, decision.run),
                "run": decision.run}

    def recall(self, item_id: str, user: str, who: User | None, *,
               idempotency: IdempotencyClaim | None = None) -> dict[str, Any]:
        """Take back a pending approval: the person who submitted it (who started the run,
        or who wrote the record that started it) or an operator (``who`` may write runs;
        None: no directory, the submitter rule alone). The item is canceled and the step
        completes with ``decision: recalled``. Who may not recall it and cannot see it is
        answered as if it did not exist; its kind and state are told only to who may."""
        acting_name(user, "user", "recall")
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            _claim_key_txn(tx, idempotency, now_dt, item_id)
            # (its run locked before it, as everywhere: see complete_txn)
            run, defn, record = self.runs.load_txn(
                tx, self.get_txn(tx, item_id, lock=False)["run_id"])
            item = self.get_txn(tx, item_id)
            submitter = _submitter_txn(tx, run.id)
            operator = who is not None and who.can(Permission.RUNS_WRITE)
            if user not in submitter and not operator:
                if who is not None and not who.may_see_item(item):
                    raise NotFound("work item", item_id)  # as for a missing item
                raise PermissionDenied(
                    f"only who submitted approval '{item['step']}' "
                    f"({', '.join(sorted(submitter)) or 'unknown'}) or an operator may recall it")
            found = defn.find_step(item["step"])
            if found is None or found[1].type != "approval":
                raise ValidationError("recall", {"work_item": f"{item_id} is not an approval; "
                                                 "only an approval can be recalled"})
            if item["status"] not in OPEN_STATUSES:
                raise TransitionConflict(_not_open(item, "recalled"))
            event = work_items.cancel_txn(tx, item, f"recalled by {user}", now)
            if event is None:
                raise TransitionConflict(f"work item {item_id} changed while recalling; try again")
            tx.append_events_txn([event])  # type: ignore[list-item]
            decision = self.runs.decide_and_apply_txn(
                tx, defn, run, StepCompleted(item["step"], item["iteration"],
                                             {"decision": "recalled", "recalled_by": user},
                                             actor=user), now_dt, record)
            if decision.stale:
                raise TransitionConflict(
                    f"step {item['step']!r} of run {run.id} is no longer waiting for this item")
            gone = self.get_txn(tx, item_id)
            return {**gone, **_sla_in(gone, decision.run), "run": decision.run}

    def reassign(self, item_id: str, to: str, actor: str, *,
                 idempotency: IdempotencyClaim | None = None) -> WorkItem:
        """Give the item to ``user:NAME``, ``group:NAME`` or ``queue:NAME``; a claim is released.

        Raises:
            ValidationError: naming ``to`` when it is not one of those, names a user the
                directory does not have (or who is inactive), or a group or queue nobody
                is in and no deployed definition names (:func:`pools_named`); naming
                ``actor`` when that is blank. Nothing changes.
        """
        kind, name = parse_target(to)
        acting_name(actor, "actor", "reassign")
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            _claim_key_txn(tx, idempotency, now_dt, item_id)
            item = self.get_txn(tx, item_id)
            if item["status"] not in OPEN_STATUSES:
                raise TransitionConflict(f"work item {item_id} is {item['status']}; it cannot be reassigned")
            self._check_target_txn(tx, item, kind, name)
            rule = self._queue_rule_txn(tx, item, to, now)
            if rule is not None:  # the queue routes its own work (``for_queue``)
                assert self.applier.router is not None
                events = self.applier.router.reroute_txn(
                    tx, item, rule, now_dt, reason="reassigned", actor=actor)
                if not events:
                    raise TransitionConflict(f"work item {item_id} changed while reassigning; try again")
                tx.append_events_txn(events)  # type: ignore[arg-type]
                return self.shown_txn(tx, item_id)
            done = work_items.reassign_txn(tx, item, to, now, actor=actor,
                                           expected_version=item["version"])
            if done is None:
                raise TransitionConflict(f"work item {item_id} changed while reassigning; try again")
            _, event = done
            tx.append_events_txn([event])  # type: ignore[list-item]
            new = self.get_txn(tx, item_id)
            # The new assignee hears of it (an outbox job, sent after commit by a worker).
            tx.append_events_txn(self.applier.notify_assignment_txn(  # type: ignore[arg-type]
                tx, new, now, event["data"]["from"]))
            return _with_sla_txn(tx, [new])[0]  # type: ignore[list-item]

    def _check_target_txn(self, tx: Transaction, item: WorkItem, kind: str, name: str) -> None:
        """A user the directory has (once it has people), active, whose roles give the
        ``work`` permission; a group or a queue someone who may work items is in (active
        or not) or a deployed definition names (:func:`pools_named`;
        :mod:`baton.work.assignees`)."""
        if kind == "user":
            row = tx.user_row_txn(name)
            if row is None and tx.count_users_txn() > 0:
                raise ValidationError("reassign", {"to": (
                    f"there is no user {name!r} (see `baton users list`)")})
            if row is not None and not row["active"]:
                raise ValidationError("reassign", {"to": (
                    f"user {name!r} is inactive and cannot sign in to work on it: "
                    "reactivate them, or choose someone else")})
            if row is not None and not _works(row):
                raise ValidationError("reassign", {"to": (
                    f"user {name!r} ({_roles(row)}) may not work items: they could neither "
                    f"open nor complete it, so it would be in no one's Work Guide; "
                    f"{_WORK_NEEDED}, or choose someone else")})
        elif kind in ("group", "queue"):
            members = tx.member_names_txn(kind, name)
            rows = tx.user_rows_txn(members) if members else []
            if any(_works(r) for r in rows):
                return
            named = deployed_pools_txn(tx, self.runs.definitions, item["run_id"], kind)
            if name in named.names:  # (waits for someone who may work it to join)
                return
            if rows:
                shown = ", ".join(f"{r['name']} ({_roles(r)})"
                                  for r in sorted(rows, key=lambda r: r["name"])[:SHOWN])
                more = f" and {len(rows) - SHOWN} more" if len(rows) > SHOWN else ""
                raise ValidationError("reassign", {"to": (
                    f"nobody in {kind} {name!r} may work items ({shown}{more}) and no "
                    f"deployed definition names it, so the item would be in no one's Work "
                    f"Guide; {_WORK_NEEDED} in it, or choose another {kind}")})
            raise unknown_pool(kind, name, named,
                               named.names | set(tx.membership_names_txn(kind)))

    def _queue_rule_txn(self, tx: Transaction, item: WorkItem, to: str, now: str
                        ) -> dict[str, Any] | None:
        """The routing rule of the queue ``to`` names, as the item would keep it (its skills
        evaluated now over the item's record and run), when that queue has one of its own
        (``for_queue``): work an operator sends there is routed by it, as work assigned there
        at a step's start is. None for a user, a group, or a queue without a rule."""
        if not to.startswith("queue:") or self.applier.router is None or not item["run_id"]:
            return None
        run, defn, record = self.runs.load_txn(tx, item["run_id"])
        bound = defn.routings.get(to)
        if bound is None:
            return None
        seen = with_related_txn(tx, defn, record, defn.trigger.object,
                                lambda name: self.runs.definitions.object_type(name, tx))
        kept, error = kept_rule(_RunScope(expression_scope(dict(seen or {}), run, now, defn)),
                                bound, bound.name, f"routing rule {bound.name}")
        if kept is None:
            raise ValidationError("reassign", {"to": (
                f"{to} routes its work by rule '{bound.name}', which cannot route this item: "
                f"{(error or {}).get('message', 'its skills could not be evaluated')}")})
        return kept


@dataclass(frozen=True)
class _RunScope:
    """A run's expression scope outside ``decide()``, for :func:`kept_rule`."""

    of: Mapping[str, Any]

    def scope(self) -> Mapping[str, Any]:
        return self.of


# ---- the groups and queues a reassignment may name -------------------------------------
# (As :mod:`baton.work.assignees` knows groups, for queues as well, and reading the names an
# assignment's expression spells out. A group or a queue is known when someone is in it, or
# a deployed definition names it: an active routing rule draws from it (or routes it:
# ``for_queue``), an active orchestration's step assigns to it (literally, through an inline
# routing rule, or by an expression that spells the name out) or an SLA action reassigns to
# it, or the item's own run's definition does.)


@dataclass(frozen=True)
class PoolsNamed:
    """The groups (or queues) deployed definitions name, and the steps that compute
    theirs by an expression (``orchestration.step``): what they give cannot all be known
    before they run."""

    names: frozenset[str]
    computed: tuple[str, ...] = ()


# A CEL string literal: '...', "..." (or tripled), raw or not; bytes (b'...') are no name.
_LITERAL = re.compile(r"(?<!\w)[rR]?('{3}.*?'{3})|"
                      r'(?<!\w)[rR]?("{3}.*?"{3})|'
                      r"(?<!\w)[rR]?('(?:[^'\\\n]|\\.)*')|"
                      r'(?<!\w)[rR]?("(?:[^"\\\n]|\\.)*")', re.DOTALL)
# What stands next to a literal that is not a name the expression gives: a comparison
# (``record.region == 'EU'``), a part of a name (``'team_' + x``), a method's receiver or
# first argument (``name.startsWith('vip')``), a list's element or a map's key
# (``{'EU': 'eu_team'}``: its value is given).
_NOT_GIVEN_BEFORE = re.compile(r"(==|!=|<=?|>=?|\+|\bin|\[|,|\{|\w\()\s*$")
_NOT_GIVEN_AFTER = re.compile(r"^\s*(==|!=|<|>|\+|\.|in\b)")


def expression_literals(source: str) -> set[str]:
    """The strings an ``=expression`` spells out whole as what it may give: its string
    literals that are not compared, joined to another string or a method's receiver
    (``= record.region == 'EU' ? 'eu_team' : 'us_team'`` gives ``eu_team`` and ``us_team``;
    ``= 'team_' + record.region`` nothing). A reading of the text, not of the parse: a
    literal whose value the expression goes on to change (``(c ? 'a' : 'b').upperAscii()``)
    counts too, so a name no run gives may be taken; never one the text does not hold."""
    out = set()
    for m in _LITERAL.finditer(source):
        if _NOT_GIVEN_BEFORE.search(source[:m.start()]) or \
                _NOT_GIVEN_AFTER.match(source[m.end():]):
            continue
        body = next(g for g in m.groups() if g is not None)
        quote = 3 if body[:3] in ("'''", '"""') else 1
        out.add(body[quote:-quote])
    return out


def pools_named(defn: OrchestrationDefinition, kind: str) -> PoolsNamed:
    """The groups (``kind`` group) or queues (queue) an orchestration names: its steps
    assign to them (a literal, a resource, an inline routing rule, an expression's literal
    names: :func:`expression_literals`), the routing rules it uses draw from them, its
    SLA actions reassign to them; and its steps that compute one by an expression."""
    out = {rule.pool for rule in defn.routings.values() if rule.pool_kind == kind}
    computed = []
    for stage in defn.stages:
        for step in stage.steps:
            given = step.assign
            if given is not None and given.rule is not None:
                if given.rule.pool_kind == kind:
                    out.add(given.rule.pool)
            elif given is not None and given.kind.value == kind:
                if is_expression(given.value):
                    out |= {n for n in expression_literals(given.value) if NAME_RE.fullmatch(n)}
                    computed.append(f"{defn.name}.{step.name}")
                else:
                    out.add(given.value)
            elif given is not None and given.kind is AssigneeKind.RESOURCE:
                texts = expression_literals(given.value) if is_expression(given.value) \
                    else {given.value}
                for text in texts:
                    resolved = resolve_resource(text)
                    if resolved is not None and resolved[0] == kind:
                        out.add(resolved[1])
                if is_expression(given.value):
                    computed.append(f"{defn.name}.{step.name}")
            sla = step.options.get("sla")
            for key in ("on_jeopardy", "on_overdue"):
                action = sla.get(key) if isinstance(sla, Mapping) else None
                to = action.get("reassign") if isinstance(action, Mapping) else None
                pool, _, name = to.partition(":") if isinstance(to, str) else ("", "", "")
                if pool == kind and name:
                    out.add(name)
    return PoolsNamed(frozenset(out), tuple(computed))


def deployed_pools_txn(tx: Transaction, definitions: DefinitionRepo, run_id: str | None,
                       kind: str) -> PoolsNamed:
    """The groups or queues the deployed definitions name (read in the caller's
    transaction): the active orchestrations' and routing rules', and those of run
    ``run_id``'s definition (the version it is pinned to, a plan's generated one)."""
    definitions.refresh(tx)
    names: set[str] = set()
    computed: list[str] = []

    def add(found: PoolsNamed) -> None:
        names.update(found.names)
        computed.extend(c for c in found.computed if c not in computed)

    for defn in definitions.active_orchestrations():
        add(pools_named(defn, kind))
    for row in tx.list_definitions_txn("routing"):
        rule = definitions.routing_rule(row.name) if row.active else None
        if rule is not None and rule.pool_kind == kind:
            names.add(rule.pool)
    run = tx.get_run_txn(run_id) if run_id else None
    if run is not None:
        try:
            pinned, _ = definitions.orchestration(run["orchestration"], run["version"], tx)
        except NotFound:  # (its plan is gone: nothing more to learn from it)
            pinned = None
        if pinned is not None:
            add(pools_named(pinned, kind))
    return PoolsNamed(frozenset(names), tuple(computed))


def unknown_pool(kind: str, name: str, named: PoolsNamed, known: Iterable[str]
                 ) -> ValidationError:
    """The error for a group or queue that neither the directory nor a definition names;
    when a definition computes one by an expression (a name it does not spell out), how
    to make such a one known."""
    names = sorted(known)
    if not names:
        listed = (f"no {kind} is known yet: put people in one (`baton users add|update "
                  f"--{kind}`) or name it in a definition")
    else:
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        listed = f"known {kind}s: {', '.join(names[:SHOWN])}{more}"
    hint = ""
    if named.computed:
        steps = ", ".join(named.computed[:3]) + (" ..." if len(named.computed) > 3 else "")
        does = f"step {steps} does" if len(named.computed) == 1 else \
            f"steps {steps} do"
        hint = (f"; if the {kind} comes from an expression in a definition (as {does}) and "
                f"the expression does not spell its name out, it is known once someone is in "
                f"it: `baton users update USER --{kind} {name}` (with the user's other "
                f"{kind}s)")
    return ValidationError("reassign", {"to": (
        f"there is no {kind} {name!r}{suggest(name, names)}: nobody is in it and no deployed "
        f"definition names it, so the item would be in no one's Work Guide{hint}; {listed}")})


def _claim_key_txn(tx: Transaction, idempotency: IdempotencyClaim | None, now_dt: Any,
                   item_id: str) -> None:
    """Claim a request's idempotency key first thing in the transaction that changes the
    item, naming it: the key commits with the change or not at all, and a concurrent
    request with the same key waits for it, then fails (IdempotencyKeyTaken)."""
    if idempotency is not None:
        idempotency.claim_txn(tx, now_dt, item_id)


def _urgency(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """"Next item"'s order (the store's ``priority`` order): most urgent, soonest due (no
    due date last), oldest first."""
    due = row.get("due_at")
    return (-(row.get("priority") or 0), due is None, due or "", row["created_at"], row["id"])


def _for(on_behalf: str | None) -> dict[str, str]:
    """An audit event's ``on_behalf_of``: whose item a delegate acted on (none: their own)."""
    return {ON_BEHALF_OF: on_behalf} if on_behalf else {}


def _read_ahead_txn(tx: Transaction, item_ids: Sequence[str]) -> None:
    """Read (and lock) the items of a batch of completions, their runs and the runs'
    records with three statements: each completion's reads of them are answered from
    these rows (``read_ahead_txn``), not with a round trip each."""
    # Runs are locked before their items (the order a cancel and the worker lock them in,
    # or a completion and a cancel deadlock): the items are read once unlocked for their
    # runs' ids, then locked last.
    runs = tx.read_ahead_txn("runs", sorted(set(tx.work_item_runs_txn(item_ids).values())))
    tx.read_ahead_txn("records", sorted({r["record_id"] for r in runs.values()
                                         if r["record_id"]}))
    tx.read_ahead_txn("work_items", item_ids)


_FORMS: dict[bytes, tuple[FieldDefinition, ...]] = {}


def form_fields(form: Sequence[Mapping[str, Any]]) -> tuple[FieldDefinition, ...]:
    """A work item's stored form as field definitions (what its submission is checked
    against). Every item of a step has the same form: the fields are made once per form,
    found by its JSON (one C call), not once per completion."""
    try:
        key = orjson.dumps(form)
    except TypeError:  # (not JSON data: a form made in code, not read from the store)
        key = b""
    hit = _FORMS.get(key)
    if hit is not None:
        return hit
    fields = tuple(FieldDefinition(name=f["name"], type=f["type"], required=f["required"],
                                   choices=tuple(f.get("choices") or ()),
                                   default=f.get("default"), precision=f.get("precision"),
                                   scale=f.get("scale"), rounding=f.get("rounding"))
                   for f in form)
    # A default that is a list or an object is given to each submission as its own
    # value: such a form's fields are made afresh every time (never shared).
    if key and not any(isinstance(f.default, dict | list) for f in fields):
        if len(_FORMS) >= 1024:
            _FORMS.clear()
        _FORMS[key] = fields
    return fields


def _submitter_txn(tx: Transaction, run_id: str) -> set[str]:
    """Who submitted a run's approval: who started the run (the API's or CLI's user, or
    whoever wrote the record whose trigger started it), as its ``run_started`` event says."""
    names = {str(e["actor"]) for e in tx.events_txn(run_id=run_id, types=["run_started"],
                                                       limit=1)}
    return {n.split(":", 1)[1] if n.startswith("user:") else n for n in names} - {"system"}


def check_may_act(item: WorkItem, user: str, scope: User | None = None) -> None:
    """A user-assigned item is only its user's. With ``scope`` (the acting directory
    user), a group or queue item needs membership too, now: having claimed it is not
    enough once the person has left the group or queue (an operator reassigns it)."""
    if item["assignee_kind"] == "user" and item["assignee"] != user:
        raise PermissionDenied(
            f"work item {item['id']} is assigned to user {item['assignee']}, not {user}"
        )
    if scope is not None and not scope.is_member(item):
        raise PermissionDenied(
            f"work item {item['id']} is assigned to {item['assignee_kind']} {item['assignee']!r}, "
            f"and {user} is not a member of it")


def _narrow(filters: dict[str, Any], queue: str | None, group: str | None) -> None:
    if queue is not None:
        filters.update(assignee_kind="queue", assignee=queue)
    elif group is not None:
        filters.update(assignee_kind="group", assignee=group)


def _with_sla_txn(tx: Transaction, found: list[dict[str, Any]]) -> list[WorkItem]:
    """Add ``sla_status`` and ``due_at`` to work items: their step's SLA, kept in the run
    (read out of the run's state, not the whole state)."""
    slas = tx.step_slas_txn([(i["run_id"], i["step"]) for i in found]) if found else {}
    for item in found:
        iteration, sla = slas.get((item["run_id"], item["step"]), (None, None))
        sla = sla if iteration == item["iteration"] else None
        item["sla_status"], item["due_at"] = (sla or {}).get("status"), (sla or {}).get("due_at")
    return found  # type: ignore[return-value]


_WORK_NEEDED = ("working items needs the 'work' permission (roles: "
                + ", ".join(r for r in ROLES if Permission.WORK in GRANTS[r])
                + "): give them such a role (`baton users update NAME --role ROLE`, with their other "
                "roles)")


def _works(row: Mapping[str, Any]) -> bool:
    """Do a user row's roles give the ``work`` permission (whether or not they are active
    now: a deactivated agent is still someone the item waits for)?"""
    return Permission.WORK in permissions(row["roles"] or ())


def _roles(row: Mapping[str, Any]) -> str:
    return ", ".join(sorted(row["roles"] or ())) or "no role"


def _sla_in(item: Mapping[str, Any], run: Run) -> dict[str, Any]:
    """``sla_status`` and ``due_at`` of an item from its run in hand (as it is written in
    this transaction): what :func:`_with_sla_txn` reads out of the stored state, without
    reading it (a completion's and a recall's answer)."""
    sr = run.steps.get(item["step"])
    sla = (sr.sla if sr is not None and sr.iteration == item["iteration"] else None) or {}
    return {"sla_status": sla.get("status"), "due_at": sla.get("due_at")}


def _not_offered(item: WorkItem, what: str) -> None:
    """An item on offer is its offeree's to accept or decline first."""
    if item.get("routing_status") == "offered":
        raise TransitionConflict(
            f"work item {item['id']} is offered to {item.get('routed_to')}: it is accepted "
            f"(or declined) before it can be {what}")


def _state(item: WorkItem) -> str:
    return item["status"] if item["status"] != OPEN else \
        f"routing {item.get('routing_status') or 'none'}"


def _not_open(item: WorkItem, verb: str = "claimed") -> str:
    if item["status"] == CLAIMED and verb == "claimed":
        return f"work item {item['id']} is already claimed by {item['claimed_by']}"
    return f"work item {item['id']} is {item['status']}; it cannot be {verb}"


def _statuses(statuses: Sequence[str]) -> list[str]:
    """The statuses a list asks for, each a work item's (a lone string is not a list:
    ``"open"`` would be read as its letters)."""
    wanted = list(statuses) if isinstance(statuses, Iterable) \
        and not isinstance(statuses, str | bytes) else None
    if wanted is None or not all(s in STATUSES for s in wanted):
        raise ValidationError("work list", {"statuses": (
            f"expected a list of: {', '.join(STATUSES)}; got {statuses!r}"[:300])})
    return wanted


def _check_window(limit: int, offset: int) -> None:
    """A page's size (at least 1) and the items it skips (none or more)."""
    problems: dict[str, str] = {}
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        problems["limit"] = f"expected a page size of at least 1, got {limit!r}"
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        problems["offset"] = f"expected a number of items to skip (0 or more), got {offset!r}"
    if problems:
        raise ValidationError("work list", problems)


def _check_submissions(submissions: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Each submission is ``(item_id, user, data)``: one that is not is refused with its
    place before anything is done (its name and data are checked as it is completed)."""
    if isinstance(submissions, str | bytes) or not isinstance(submissions, Sequence):
        raise ValidationError("submissions", {"(submissions)": (
            "expected a list of (item_id, user, data)")})
    bad = {f"[{i}]": f"expected (item_id, user, data), got {sub!r}"[:200]
           for i, sub in enumerate(submissions)
           if not isinstance(sub, tuple | list) or len(sub) != 3}
    if bad:
        raise ValidationError("submissions", bad)


def _offer_expiry(item: WorkItem) -> datetime | None:
    """When the offer of ``item`` expires (its rule's ``offer.timeout`` after it was
    offered), or None without a timeout."""
    offer = (item.get("routing") or {}).get("offer")
    at = item.get("routed_at")
    if not isinstance(offer, dict) or "timeout_ms" not in offer or not at:
        return None
    return parse_iso(str(at)) + timedelta(milliseconds=int(offer["timeout_ms"]))
