"""Callbacks: an external system answering a callout step that waits (``wait: callback``).

The token in ``POST /api/callbacks/{token}`` names the run, step and iteration and is
signed with the server's key (migration 14), so it cannot be guessed or changed, and no
row is written to hand one out. A connection with ``callback:`` also requires an HMAC
signature of ``"<timestamp>.<body>"`` with a timestamp in its replay window.

Each step iteration takes one callback (single-use): the first one received is kept in
``baton_callbacks``. If the step waits for it, it is delivered at once (the step completes
in the same transaction); if the step's request has not been committed yet, it is kept
``early`` and delivered by the transaction that commits the request's result
(:func:`deliver_early_txn`). Anything later, or again, changes nothing: 410 when the step
no longer waits; for a step iteration that already took one, a repeat of it is answered
what it was (below), and another callback 409.

A repeat: external systems retry a delivery whose answer they lost (a timeout, their own
at-least-once queue). One with the same JSON body as the callback taken (the same
``callback.body``: compared as JSON values, so key order, spacing and ``1`` / ``1.0`` do
not matter, and ``true`` is not ``1``) is answered what that one was (``delivered`` or
``early``, with its step and iteration; :attr:`Received.replayed`), and changes nothing:
no event, no second delivery. Its signature, when the connection requires one, is checked
first, in its replay window, like any callback's. The same JSON rather than the same
bytes: a sender's retry may encode its body again (another key order or spacing), and what
the step took is the JSON; the body is kept as JSON already (``baton_callbacks.body``), and
what it was answered since migration 30 (``answer``).

A callback follows a carried rollback: when an order is canceled while a ``wait: callback``
rollback of its plan is under way, its compensation run makes that call again under the
plan's idempotency key (:func:`baton.plans.compensation.carry_key`), and an idempotent
system, which acted on the plan's call, answers with its first answer and calls back the URL
it got then: the plan run's. A callback for a step of a canceled plan run whose key a
compensation run's step carries goes to that step (delivered if it waits, else kept early
for it until its call is committed), audited there as ``callback_followed``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.clock import Clock, iso
from baton.connections.secrets import SecretError, Secrets
from baton.engine.events import SignalReceived
from baton.engine.state import Run
from baton.engine.status import RunStatus, StepStatus
from baton.errors import BatonError
from baton.runtime.definitions import DefinitionRepo
from baton.runtime.runs import RunDriver
from baton.steps.callout import CARRIED_KEY, WAITING, callback_signal, idempotency_key, waiting
from baton.store.ports import Transaction
from baton.store.sql import SqlStore

KEY_NAME = "callbacks"
MAX_BODY = 256 * 1024
ACTOR = "callback"


class CallbackRefused(BatonError):
    """A callback that is not taken: ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CallbackTarget:
    run_id: str
    step: str
    iteration: int


@dataclass(frozen=True)
class Received:
    """A callback taken: ``delivered`` (the step completed) or kept ``early``; or, when
    ``replayed``, a repeat of the callback taken before, answered what that one was."""

    status: str
    target: CallbackTarget
    replayed: bool = False


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Callbacks:
    """Make tokens (workers) and receive callbacks (the API), on one store."""

    def __init__(self, store: SqlStore, definitions: DefinitionRepo, runs: RunDriver,
                 clock: Clock, secrets: Secrets, public_url: str) -> None:
        self.store = store
        self.definitions = definitions
        self.runs = runs
        self.clock = clock
        self.secrets = secrets
        self.public_url = public_url.rstrip("/")
        self._key: bytes | None = None
        self._lock = threading.Lock()

    # ---- tokens ----------------------------------------------------------------------------
    def key(self) -> bytes:
        with self._lock:
            if self._key is None:
                with self.store.read() as tx:
                    value = tx.server_key_txn(KEY_NAME)
                if value is None:
                    raise BatonError("the database has no callback key (migration 14 missing)")
                self._key = bytes.fromhex(value)
            return self._key

    def token(self, run_id: str, step: str, iteration: int) -> str:
        payload = json.dumps([run_id, step, iteration], separators=(",", ":")).encode()
        mac = hmac.new(self.key(), payload, hashlib.sha256).digest()[:20]
        return f"{_b64(payload)}.{_b64(mac)}"

    def url(self, token: str) -> str:
        return f"{self.public_url}/api/callbacks/{token}"

    def make(self, run_id: str, step: str, iteration: int) -> tuple[str, str]:
        """(token, URL) for the step iteration (``StepServices.callback``)."""
        token = self.token(run_id, step, iteration)
        return token, self.url(token)

    def target(self, token: str) -> CallbackTarget:
        """Who ``token`` was made for; 404 for anything not made by this server."""
        unknown = CallbackRefused(404, "unknown callback token")
        try:
            payload_text, mac_text = token.split(".", 1)
            payload, mac = _unb64(payload_text), _unb64(mac_text)
        except ValueError:
            raise unknown from None
        good = hmac.new(self.key(), payload, hashlib.sha256).digest()[:20]
        if not hmac.compare_digest(good, mac):
            raise unknown
        run_id, step, iteration = json.loads(payload)
        return CallbackTarget(str(run_id), str(step), int(iteration))

    # ---- receiving -----------------------------------------------------------------------------
    def receive(self, token: str, body: bytes, headers: Mapping[str, str]) -> Received:
        """Take a callback (see the module); raises :class:`CallbackRefused`."""
        target = self.target(token)
        if len(body) > MAX_BODY:
            raise CallbackRefused(413, f"a callback body is at most {MAX_BODY:,} bytes")
        run = self.runs.get(target.run_id)
        defn, _ = self.definitions.orchestration(run.orchestration, run.version)
        found = defn.find_step(target.step)
        if found is None:
            raise CallbackRefused(404, "unknown callback token")
        self._check_signature(found[1].options.get("connection"), body, headers)
        try:
            data = json.loads(body) if body.strip() else {}
        except (ValueError, RecursionError):  # (RecursionError: nested too deep)
            raise CallbackRefused(400, "a callback body must be JSON") from None
        if not isinstance(data, dict):
            data = {"value": data}
        # (a canceled run is canceled for good: its step's carrier, if any, is found once)
        carrier = self._carrier(run, target) if run.status is RunStatus.CANCELED else None
        now_dt = self.clock.now()
        now = iso(now_dt)
        with self.store.write() as tx:
            if carrier is not None:
                return self._follow_txn(tx, target, carrier, data, now_dt)
            run, odefn, record = self.runs.load_txn(tx, target.run_id)  # locks the run
            first = tx.get_callback_txn(target.run_id, target.step, target.iteration)
            if first is not None:
                return _repeat(first, data)
            sr = run.steps.get(target.step)
            if sr is None or sr.iteration != target.iteration or sr.status is not \
                    StepStatus.RUNNING or run.status is not RunStatus.IN_PROGRESS:
                raise CallbackRefused(410, "the step no longer waits for this callback "
                                           "(completed, timed out, canceled or run again)")
            row = {"run_id": target.run_id, "step": target.step,
                   "iteration": target.iteration, "body": data, "received_at": now,
                   "status": "early", "delivered_at": None, "answer": "early"}
            if waiting(sr):
                row.update(status="delivered", delivered_at=now, answer="delivered")
                tx.insert_callback_txn(row)
                self.runs.decide_and_apply_txn(
                    tx, odefn, run, SignalReceived(callback_signal(sr.name, sr.iteration),
                                                   data, ACTOR), now_dt, record)
                return Received("delivered", target)
            tx.insert_callback_txn(row)  # before the request's commit: matched there
            tx.append_events_txn([{
                "at": now, "type": "callback_received_early", "actor": ACTOR,
                "record_id": run.record_id, "run_id": run.id,
                "data": {"step": target.step, "iteration": target.iteration}}])
            return Received("early", target)

    def _carrier(self, run: Run, target: CallbackTarget) -> CallbackTarget | None:
        """The compensation run's step that carries ``target`` (a step of ``run``, a
        canceled plan's run: the key of its iteration), else None. Its iteration: the one
        the step is at now (0 when it has not begun)."""
        from baton.plans.service import order_of  # (plans build on the runtime: lazily)

        order = order_of(run.orchestration)
        if order is None:
            return None
        key = idempotency_key(target.run_id, target.step, target.iteration)
        with self.store.read() as tx:
            revisions = tx.plan_revisions_txn(order)
        for rev in reversed(revisions):
            if rev.get("kind") != "compensation" or not rev.get("run_id"):
                continue
            comp = self.runs.get(str(rev["run_id"]))
            defn, _ = self.definitions.orchestration(comp.orchestration, comp.version)
            found = defn.find_step(target.step)
            if found is not None and found[1].options.get(CARRIED_KEY) == key:
                sr = comp.steps.get(target.step)
                return CallbackTarget(comp.id, target.step, 0 if sr is None else sr.iteration)
        return None

    def _follow_txn(self, tx: Transaction, origin: CallbackTarget, carrier: CallbackTarget,
                    data: dict[str, Any], now_dt: Any) -> Received:
        """Take a callback for ``origin`` (a canceled plan run's step) on behalf of the
        compensation run's step that carried it (``carrier``): delivered if that step waits
        for it, else kept early under ``origin`` (:func:`deliver_early_txn` looks there)."""
        now = iso(now_dt)
        run, odefn, record = self.runs.load_txn(tx, carrier.run_id)  # locks the run
        sr = run.steps.get(carrier.step)
        first = tx.get_callback_txn(origin.run_id, origin.step, origin.iteration)
        if first is None and sr is not None:
            first = tx.get_callback_txn(run.id, sr.name, sr.iteration)
        if first is not None:
            return _repeat(first, data)
        if sr is None or run.status is not RunStatus.IN_PROGRESS or sr.status not in (
                StepStatus.NOT_STARTED, StepStatus.WAITING, StepStatus.RUNNING):
            raise CallbackRefused(410, "the step no longer waits for this callback "
                                       "(completed, timed out, canceled or run again)")
        delivered = waiting(sr)
        at = CallbackTarget(run.id, sr.name, sr.iteration) if delivered else origin
        status = "delivered" if delivered else "early"
        tx.insert_callback_txn({
            "run_id": at.run_id, "step": at.step, "iteration": at.iteration, "body": data,
            "received_at": now, "status": status, "answer": status,
            "delivered_at": now if delivered else None})
        tx.append_events_txn([{
            "at": now, "type": "callback_followed", "actor": ACTOR,
            "record_id": run.record_id, "run_id": run.id,
            "data": {"step": sr.name, "iteration": sr.iteration,
                     "status": "delivered" if delivered else "early",
                     "for_run": origin.run_id, "for_iteration": origin.iteration}}])
        if delivered:
            self.runs.decide_and_apply_txn(
                tx, odefn, run, SignalReceived(callback_signal(sr.name, sr.iteration), data,
                                               ACTOR), now_dt, record)
            return Received("delivered", at)
        return Received("early", at)

    def _check_signature(self, connection: Any, body: bytes, headers: Mapping[str, str]) -> None:
        if not isinstance(connection, str):
            return
        try:
            conn = self.definitions.connection(connection)
        except BatonError:
            return
        cb = conn.callback
        if cb is None:
            return
        lower = {k.lower(): v for k, v in headers.items()}
        stamp, given = lower.get(cb.timestamp_header.lower()), lower.get(cb.header.lower())
        if not stamp or not given:
            raise CallbackRefused(401, f"a callback for connection {conn.name!r} must be "
                                       f"signed ({cb.header} and {cb.timestamp_header})")
        try:
            sent = float(stamp)
        except ValueError:
            raise CallbackRefused(401, f"{cb.timestamp_header} must be unix seconds") from None
        age = abs(self.clock.now().timestamp() - sent)
        if age * 1000 > cb.replay_window_ms:
            raise CallbackRefused(401, f"{cb.timestamp_header} is outside the replay window "
                                       f"({cb.replay_window_ms // 1000} s)")
        try:
            secret = self.secrets.resolve(cb.hmac_secret)
        except SecretError as exc:
            raise CallbackRefused(503, f"the callback signature cannot be checked: {exc}") \
                from None
        expected = hmac.new(secret.encode(), stamp.encode() + b"." + body,
                            hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, given.strip().lower().removeprefix("sha256=")):
            raise CallbackRefused(401, "the callback signature does not match")


def _repeat(first: Mapping[str, Any], data: Any) -> Received:
    """A callback for a step iteration that took ``first`` already: the same JSON body is
    a repeat, answered what ``first`` was (its row's key is the target it was answered
    with); another body is refused (409). Changes nothing either way."""
    if not same_json(data, first["body"] if first["body"] is not None else {}):
        raise CallbackRefused(409, f"another callback was received first for this step "
                                   f"(at {first['received_at']}) with a different body; a "
                                   f"callback token is used once: this body is not taken "
                                   f"(a repeat with the same JSON body is answered as the "
                                   f"first was)")
    target = CallbackTarget(str(first["run_id"]), str(first["step"]), int(first["iteration"]))
    # (no answer: received before migration 30, answered what its status is)
    return Received(str(first.get("answer") or first["status"]), target, replayed=True)


def same_json(a: Any, b: Any) -> bool:
    """Whether two parsed JSON values are the same JSON: objects with the same keys and
    values (in any order), arrays of the same values in order, numbers of the same value
    (``1`` is ``1.0``: a JSONB column may give one for the other), but a boolean only
    itself (Python's ``True == 1`` is not JSON's). Iterative: a body nested as deep as
    the parser allows is compared without recursing."""
    pending: list[tuple[Any, Any]] = [(a, b)]
    while pending:
        x, y = pending.pop()
        if isinstance(x, dict):
            if not isinstance(y, dict) or x.keys() != y.keys():
                return False
            pending.extend((v, y[k]) for k, v in x.items())
        elif isinstance(x, list):
            if not isinstance(y, list) or len(x) != len(y):
                return False
            pending.extend(zip(x, y))
        elif isinstance(x, bool) or isinstance(y, bool) or x is None or y is None \
                or isinstance(x, str) or isinstance(y, str):
            if type(x) is not type(y) or x != y:
                return False
        elif isinstance(x, int | float) and isinstance(y, int | float):
            if not _same_number(x, y):
                return False
        else:
            return False
    return True


def _same_number(x: float, y: float) -> bool:
    if isinstance(x, int) and isinstance(y, int):
        return x == y
    try:  # (NaN, which is no JSON, is nothing's value: it is stored as null anyway)
        return float(x) == float(y)
    except OverflowError:  # an integer beyond any float is no float's value
        return False


def _carried_from(defn: Any, step: str) -> tuple[str, str, int] | None:
    """The plan run, step and iteration whose idempotency key ``step`` carries (a
    compensation run's rollback taken over from a canceled plan's run), else None."""
    found = defn.find_step(step)
    key = None if found is None else found[1].options.get(CARRIED_KEY)
    if not isinstance(key, str):
        return None
    run_id, _, rest = key.partition(":")  # RUN_ID:STEP:ITERATION (a run id has no ':')
    name, _, iteration = rest.rpartition(":")
    if not run_id or not name or not iteration.isdigit():
        return None
    return run_id, name, int(iteration)


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature a sender puts in the signature header (for senders and tests)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def deliver_early_txn(tx: Transaction, runs: RunDriver, defn: Any, run: Run, step: str,
                      now_dt: Any, record: Any) -> Run | None:
    """If ``step`` of ``run`` now waits for its callback and one came early, deliver it in
    this transaction (the one committing the request's result). Returns the run after.
    A step that carries a canceled plan's rollback also takes a callback that came early
    for the plan's step (see the module)."""
    sr = run.steps.get(step)
    if sr is None or not waiting(sr):
        return None
    at: tuple[str, str, int] | None = (run.id, step, sr.iteration)
    row = tx.get_callback_txn(run.id, step, sr.iteration)
    if row is None:
        at = _carried_from(defn, step)
        row = None if at is None else tx.get_callback_txn(*at)
    if row is None or at is None or row["status"] != "early":
        return None
    tx.deliver_callback_txn(*at, iso(now_dt))
    decision = runs.decide_and_apply_txn(
        tx, defn, run, SignalReceived(callback_signal(step, sr.iteration), row["body"] or {},
                                      ACTOR), now_dt, record)
    return decision.run


__all__ = ["WAITING", "CallbackRefused", "Callbacks", "Received", "deliver_early_txn",
           "same_json", "sign"]
