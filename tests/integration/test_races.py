"""Races a busy operations team hits: two actors change the same run, work item or record
at the same moment. Each actor has its own Engine (its own connections) on one database,
as two API processes or a worker and an API process would; a barrier releases them
together, many times over. Every race ends in one of its legal outcomes: exactly one
winner where only one may win, the loser refused with a TransitionConflict (a 409), never
a database error; one audit event per transition; no open work item on a finished run;
no job left claimed.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from baton import flow
from baton.clock import VirtualClock
from baton.errors import BatonError, PermissionDenied, TransitionConflict
from baton.flows import FlowContext
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker

# Rounds each race is run: 20 in the suite (30 until the suite reached its time bound);
# BATON_RACE_ROUNDS=200 for a long hunt.
ROUNDS = int(os.environ.get("BATON_RACE_ROUNDS", "20"))
Outcome = Any  # the actor's return value, or the BatonError it raised

CASE = """
kind: object
name: Case
fields:
  subject: {type: string, required: true}
  note: {type: string}
"""


@flow("t_races.fatal")
def _fatal(ctx: FlowContext) -> dict[str, Any]:
    from baton.errors import StepFailure

    raise StepFailure("card declined", retryable=False)


@flow("t_races.ok")
def _ok(ctx: FlowContext) -> dict[str, Any]:
    return {"done": True}


def race(harness: Any, actors: Sequence[Callable[[Engine, int], Any]], rounds: int = ROUNDS,
         clocks: Sequence[VirtualClock] | None = None) -> list[list[Outcome]]:
    """Run ``actors`` against each other ``rounds`` times, each on its own Engine; a
    barrier starts every round together. Returns each round's outcomes, in actor order:
    what the actor returned, or the BatonError it raised. Anything else fails the test."""
    engines = [Engine(harness.db_url,
                      clock=clocks[n] if clocks else VirtualClock(harness.clock.now()))
               for n in range(len(actors))]
    barrier = threading.Barrier(len(actors), timeout=30)
    got: list[list[Outcome]] = [[None] * len(actors) for _ in range(rounds)]
    errors: list[BaseException] = []

    def actor(n: int) -> None:
        try:
            for i in range(rounds):
                barrier.wait()
                try:
                    got[i][n] = actors[n](engines[n], i)
                except BatonError as exc:
                    got[i][n] = exc
        except BaseException as exc:  # noqa: BLE001 - reported below; nobody hangs
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=actor, args=(n,)) for n in range(len(actors))]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
    finally:
        for e in engines:
            e.close()
    assert not any(t.is_alive() for t in threads)
    assert not errors, errors
    return got


def refused(outcome: Outcome) -> bool:
    """A clean refusal: what the API answers with 409."""
    return isinstance(outcome, TransitionConflict)


def won(outcome: Outcome) -> bool:
    return not isinstance(outcome, BaseException)


def event_types(harness: Any, run_id: str) -> Counter[str]:
    return Counter(e["type"] for e in harness.engine.run_events(run_id))


def claimed_jobs(harness: Any) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        rows = tx.conn.exec_driver_sql(
            "SELECT id, kind, run_id FROM baton_jobs WHERE status = 'claimed'").mappings()
        return [dict(r) for r in rows]


def open_items(harness: Any, run_id: str) -> list[Any]:
    return harness.engine.list_work(run_id=run_id)


def start_cases(harness: Any, n: int) -> list[str]:
    """Create ``n`` Case records; returns their runs' ids (one each), once settled."""
    for i in range(n):
        harness.engine.create_record("Case", {"subject": f"case {i}"})
    harness.work()
    runs = [r.id for r in harness.engine.list_runs(limit=n + 1)]
    assert len(runs) == n
    return sorted(runs)


def item_of(harness: Any, run_id: str) -> str:
    (item,) = open_items(harness, run_id)
    return str(item["id"])


# --- a person completes the last step while the run is canceled -------------------------

REVIEW = CASE + """---
kind: orchestration
name: t_review
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps: [{name: review, type: interactive, assign: {queue: support}}]
"""


def test_complete_races_cancel(harness: Any) -> None:
    harness.deploy_text(REVIEW)
    runs = start_cases(harness, ROUNDS)
    items = [item_of(harness, r) for r in runs]
    got = race(harness, [
        lambda e, i: e.complete(items[i], "ann", {}),
        lambda e, i: e.cancel_run(runs[i], "customer withdrew", actor="ops"),
    ])
    for i, (done, cancel) in enumerate(got):
        assert won(done) != won(cancel), (i, got[i])  # exactly one winner
        assert refused(done) or refused(cancel), (i, got[i])
        run = harness.engine.get_run(runs[i])
        item = harness.engine.get_work_item(items[i])
        types = event_types(harness, runs[i])
        if won(done):
            assert (run.status.value, item["status"]) == ("completed", "completed")
            assert types["run_completed"] == 1 and types["run_canceled"] == 0
        else:
            assert (run.status.value, item["status"]) == ("canceled", "canceled")
            assert types["run_canceled"] == 1 and types["run_completed"] == 0
            assert types["work_item_completed"] == 0
        assert not open_items(harness, runs[i])
    harness.work()  # whatever the winners queued
    assert not claimed_jobs(harness)


def test_complete_races_reassign(harness: Any) -> None:
    """The assignee submits while an operator (or an SLA action) reassigns the item: the
    reassignment that comes first still lets the submission through (an open item, an
    operator-scoped complete); one that comes after the completion is refused."""
    harness.deploy_text(REVIEW)
    runs = start_cases(harness, ROUNDS)
    items = [item_of(harness, r) for r in runs]
    got = race(harness, [
        lambda e, i: e.complete(items[i], "ann", {}),
        lambda e, i: e.reassign(items[i], "user:bob", actor="ops"),
    ])
    for i, (done, moved) in enumerate(got):
        assert won(done) or won(moved), (i, got[i])
        item = harness.engine.get_work_item(items[i])
        types = event_types(harness, runs[i])
        assert types["work_item_reassigned"] == (1 if won(moved) else 0)
        if won(done):  # first, or after a reassignment ann may still act on
            assert refused(moved) or won(moved), (i, got[i])
            assert item["status"] == "completed" and item["completed_by"] == "ann"
            assert types["work_item_completed"] == 1 and types["run_completed"] == 1
        else:  # reassigned to bob first: ann may not any more
            assert isinstance(done, PermissionDenied), (i, got[i])
            assert (item["status"], item["assignee"]) == ("open", "bob")
            assert types["work_item_completed"] == 0 and types["run_completed"] == 0


def test_claim_races_reassign_and_release_races_complete(harness: Any) -> None:
    harness.deploy_text(REVIEW)
    runs = start_cases(harness, ROUNDS)
    items = [item_of(harness, r) for r in runs]
    got = race(harness, [
        lambda e, i: e.claim(items[i], "ann"),
        lambda e, i: e.reassign(items[i], "user:bob", actor="ops"),
    ])
    for i, (claim, moved) in enumerate(got):
        assert won(moved), got[i]  # before the claim or after it (releasing it)
        assert won(claim) or isinstance(claim, PermissionDenied), got[i]
        item = harness.engine.get_work_item(items[i])
        types = event_types(harness, runs[i])
        assert types["work_item_claimed"] == (1 if won(claim) else 0)
        assert types["work_item_reassigned"] == 1
        # reassigned last either way: bob's, open, nobody's claim
        assert (item["status"], item["assignee"], item["claimed_by"]) == ("open", "bob", None)
    # now every item is claimed by bob, and bob submits while an operator releases his claim
    for item_id in items:
        harness.engine.claim(item_id, "bob")
    got = race(harness, [
        lambda e, i: e.complete(items[i], "bob", {}),
        lambda e, i: e.release(items[i], "ops"),
    ])
    for i, (done, freed) in enumerate(got):
        assert won(done), got[i]  # released first: the item is open, bob still may
        assert won(freed) or refused(freed), got[i]
        assert harness.engine.get_work_item(items[i])["status"] == "completed"
        assert harness.engine.get_run(runs[i]).status.value == "completed"
        types = event_types(harness, runs[i])
        assert types["work_item_completed"] == 1 and types["run_completed"] == 1
        assert types["work_item_released"] == (1 if won(freed) else 0)


# --- operators on the fallout list ---------------------------------------------------------

FALLS = CASE + """---
kind: orchestration
name: t_falls
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: charge, type: background, flow: t_races.fatal}
"""


@pytest.mark.parametrize("other", ["retry", "skip", "complete"])
def test_two_operators_act_on_one_fallout_step(harness: Any, other: str) -> None:
    harness.deploy_text(FALLS)
    runs = start_cases(harness, ROUNDS)
    assert {f["run_id"] for f in harness.engine.list_fallout(limit=1000)} == set(runs)
    got = race(harness, [
        lambda e, i: e.resolve_fallout(f"{runs[i]}:charge", "retry", reason="fixed",
                                       actor="ann"),
        lambda e, i: e.resolve_fallout(f"{runs[i]}:charge", other, reason="by hand",
                                       actor="bob", output={} if other == "complete" else None),
    ])
    for i, (first, second) in enumerate(got):
        assert won(first) != won(second), (i, got[i])
        assert refused(first) or refused(second), (i, got[i])
        types = event_types(harness, runs[i])
        if won(first) or other == "retry":
            assert types["fallout_retried"] == 1, types
        if other == "skip":
            assert types["step_skipped"] == (1 if won(second) else 0)
    harness.work()  # the retried steps fall out again; the others finished their run
    assert not claimed_jobs(harness)
    for i, (first, second) in enumerate(got):
        run = harness.engine.get_run(runs[i])
        if won(first) or other == "retry":
            assert run.steps["charge"].status.value == "fallout"
            assert run.status.value == "in_progress"
        else:
            assert run.status.value == "completed"


# --- signals, pause timers, cancel -------------------------------------------------------

PAUSE = CASE + """---
kind: orchestration
name: t_pause
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - {name: hold, type: pause, for: 1h, signal: go}
      - {name: after, type: background, flow: t_races.ok, after: [hold]}
"""


def staggered(harness: Any, n: int, make: Callable[[int], str]) -> list[str]:
    """Start ``n`` runs a minute apart (``make(i)`` starts one, returns its id), so that
    their timers come due a minute apart too: round ``i`` of a race fires run ``i``'s."""
    runs = []
    for i in range(n):
        runs.append(make(i))
        harness.work()
        harness.clock.advance(timedelta(minutes=1))
    return runs


def timer_of(harness: Any, i: int, after: timedelta) -> Callable[[Engine, int], int]:
    """A worker, its clock just past the timer of run ``i`` (see :func:`staggered`)."""
    t0 = harness.clock.now() - timedelta(minutes=ROUNDS)

    def fire(e: Engine, i: int) -> int:
        assert isinstance(e.clock, VirtualClock)
        e.clock.set(t0 + after + timedelta(minutes=i, seconds=30))
        return Worker(e).run(until_idle=True) or 0

    return fire


def test_signal_races_pause_timer(harness: Any) -> None:
    """A signal comes as the pause's timer fires in a worker: the step completes once, by
    one or the other; the signal that comes second is refused."""
    harness.deploy_text(PAUSE)
    runs = staggered(harness, ROUNDS, lambda i: harness.engine.list_runs(
        record_id=harness.engine.create_record("Case", {"subject": f"c{i}"})["id"])[0].id)
    got = race(harness, [
        lambda e, i: e.signal(runs[i], "go", {"by": "signal"}, actor="ops"),
        timer_of(harness, 0, timedelta(hours=1)),
    ])
    harness.clock.advance(timedelta(hours=2))
    harness.work()
    assert not claimed_jobs(harness)
    for i, (signal, _) in enumerate(got):
        assert won(signal) or refused(signal), got[i]
        run = harness.engine.get_run(runs[i])
        assert run.status.value == "completed", (i, run.steps)
        types = event_types(harness, runs[i])
        assert types["step_completed"] == 2 and types["run_completed"] == 1, types
        assert (run.steps["hold"].output == {"by": "signal"}) == won(signal)


# --- records: two writers, and the runs their updates start -----------------------------

ON_UPDATE = CASE + """---
kind: orchestration
name: t_on_update
trigger: {type: record, object: Case, on: [update]}
stages:
  - name: s
    steps: [{name: log, type: background, flow: t_races.ok}]
"""


def test_two_writers_with_expected_version_and_the_runs_they_start(harness: Any) -> None:
    harness.deploy_text(ON_UPDATE)
    ids = [harness.engine.create_record("Case", {"subject": f"c{i}"})["id"]
           for i in range(ROUNDS)]
    got = race(harness, [
        lambda e, i: e.update_record(ids[i], {"note": "ann"}, expected_version=1, actor="ann"),
        lambda e, i: e.update_record(ids[i], {"note": "bob"}, expected_version=1, actor="bob"),
    ])
    harness.work()
    for i, (ann, bob) in enumerate(got):
        assert won(ann) != won(bob), (i, got[i])
        loser = bob if won(ann) else ann
        assert refused(loser), loser
        record = harness.engine.get_record(ids[i])
        assert (record["note"], record["version"]) == ("ann" if won(ann) else "bob", 2)
        runs = harness.engine.list_runs(record_id=ids[i])
        assert len(runs) == 1 and runs[0].status.value == "completed"  # one firing, one run
    # without expected_version, both writes go in, one after the other: two firings
    got = race(harness, [
        lambda e, i: e.update_record(ids[i], {"note": "ann again"}, actor="ann"),
        lambda e, i: e.update_record(ids[i], {"note": "bob again"}, actor="bob"),
    ])
    harness.work()
    for i, outcomes in enumerate(got):
        assert all(won(o) for o in outcomes), outcomes
        assert harness.engine.get_record(ids[i])["version"] == 4
        assert len(harness.engine.list_runs(record_id=ids[i])) == 3
    assert not claimed_jobs(harness)


# --- callbacks: one racing the callout's timeout, and one racing itself ----------------------


def callout_project(url: str) -> str:
    return CASE + f"""---
kind: connection
name: bank
type: http
base_url: {url}
timeout: {{connect: 2s, read: 5s}}
---
kind: orchestration
name: t_callback
trigger: {{type: record, object: Case, on: [create]}}
stages:
  - name: s
    steps:
      - name: fetch
        type: callout
        connection: bank
        method: POST
        path: /addresses
        body: {{reply_to: =callback.url}}
        wait: callback
        timeout: 1h
        output: {{note: =callback.body.note}}
"""


def test_callbacks_race_the_timeout_and_each_other(harness: Any) -> None:
    """Two deliveries of one callback (a retrying sender: the same body) come as the
    callout's timeout fires: at most one callback is taken, and only if the timeout has not
    ended the wait; the other answers what the taken one got, as a replay (the same answer,
    ``Idempotent-Replayed: true``), or 410 (no longer waited for) with a problem document,
    never 500."""
    from fastapi.testclient import TestClient

    from baton.web.app import create_app
    from tests.bank import bank_server

    harness.setenv(BATON_PUBLIC_URL="http://testserver")
    with bank_server() as bank:
        harness.deploy_text(callout_project(bank.url))
        runs = staggered(harness, ROUNDS, lambda i: harness.engine.list_runs(
            record_id=harness.engine.create_record("Case", {"subject": f"c{i}"})["id"])[0].id)
        replies = {r.headers["idempotency-key"].split(":")[0]: r.json()["reply_to"]
                   for r in bank.calls("/addresses")}
    assert set(replies) == set(runs)
    clients: dict[int, Any] = {}

    def post(e: Engine, i: int) -> tuple[int, Any]:
        client = clients.setdefault(id(e), TestClient(create_app(e)))
        answer = client.post(replies[runs[i]].removeprefix("http://testserver"),
                             json={"note": f"n{i}"})
        replayed = answer.headers.get("idempotent-replayed") == "true"
        return answer.status_code, answer.json() if answer.content else None, replayed

    got = race(harness, [post, post, timer_of(harness, 0, timedelta(hours=1))])
    harness.clock.advance(timedelta(hours=2))
    harness.work()
    assert not claimed_jobs(harness)
    for i, (first, second, _) in enumerate(got):
        codes = sorted([first[0], second[0]])
        run = harness.engine.get_run(runs[i])
        sr = run.steps["fetch"]
        types = event_types(harness, runs[i])
        for code, body, _ in (first, second):
            assert code in (200, 202, 410), (i, got[i])
            if code >= 400:
                assert body["status"] == code and body["detail"], body
        if codes[0] < 400:  # one taken, before the timeout: the step completed with it
            taken, other = (first, second) if not first[2] else (second, first)
            assert not taken[2], (i, got[i])  # (the taken one is no replay)
            # the other came too late (410), or after it: answered as it was, a replay
            assert other[0] == 410 or (other[2] and other[:2] == taken[:2]), (i, got[i])
            assert sr.status.value == "completed" and sr.output == {"note": f"n{i}"}, sr
            assert run.status.value == "completed" and types["run_completed"] == 1
        else:  # the timeout came first: both too late
            assert codes == [410, 410], (i, got[i])
            assert sr.status.value != "completed" and types["step_completed"] == 0, sr
        with harness.engine.store.read() as tx:
            kept = tx.conn.exec_driver_sql(
                "SELECT count(*) FROM baton_callbacks WHERE run_id = %s" % (
                    "'" + runs[i] + "'")).scalar_one()
        assert kept == (1 if codes[0] < 400 else 0)


# --- the worker's side: an SLA action, the last step ----------------------------------------

SLA = CASE + """---
kind: orchestration
name: t_sla
trigger: {type: record, object: Case, on: [create]}
stages:
  - name: s
    steps:
      - name: triage
        type: interactive
        assign: {queue: tier1}
        sla: {duration: 4h, on_overdue: {reassign: "queue:tier2"}}
"""


def new_run(harness: Any, i: int) -> str:
    rec = harness.engine.create_record("Case", {"subject": f"c{i}"})
    return str(harness.engine.list_runs(record_id=rec["id"])[0].id)


def test_complete_races_sla_reassign(harness: Any) -> None:
    """A person submits as the step's SLA falls overdue and its action reassigns the item
    (in a worker): the item is completed either way, reassigned at most once, and the
    overdue action on a completed item is dropped, not half-applied."""
    harness.deploy_text(SLA)
    runs = staggered(harness, ROUNDS, lambda i: new_run(harness, i))
    items = [item_of(harness, r) for r in runs]
    got = race(harness, [
        lambda e, i: e.complete(items[i], "ann", {}),
        timer_of(harness, 0, timedelta(hours=4)),
    ])
    harness.clock.advance(timedelta(hours=5))
    harness.work()
    assert not claimed_jobs(harness)
    for i, (done, _) in enumerate(got):
        assert won(done), (i, got[i])  # scope-less: reassigned first, ann still may
        item = harness.engine.get_work_item(items[i])
        assert item["status"] == "completed" and item["completed_by"] == "ann"
        types = event_types(harness, runs[i])
        assert types["work_item_completed"] == 1 and types["run_completed"] == 1
        assert types["work_item_reassigned"] <= 1
        assert harness.engine.get_run(runs[i]).status.value == "completed"


def test_cancel_races_the_last_step_in_a_worker(harness: Any) -> None:
    """An operator cancels a run as a worker fires its pause timer and runs its last step:
    the run ends canceled or completed, never both; a result that comes too late is
    dropped (audited as stale), and no job is left behind."""
    harness.deploy_text(PAUSE)
    runs = staggered(harness, ROUNDS, lambda i: new_run(harness, i))
    got = race(harness, [
        lambda e, i: e.cancel_run(runs[i], "duplicate", actor="ops"),
        timer_of(harness, 0, timedelta(hours=1)),
    ])
    harness.clock.advance(timedelta(hours=2))
    harness.work()
    assert not claimed_jobs(harness)
    with harness.engine.store.read() as tx:
        left = tx.conn.exec_driver_sql("SELECT count(*) FROM baton_jobs").scalar_one()
    assert left == 0
    for i, (cancel, _) in enumerate(got):
        assert won(cancel) or refused(cancel), (i, got[i])
        run = harness.engine.get_run(runs[i])
        types = event_types(harness, runs[i])
        assert types["run_completed"] + types["run_canceled"] == 1, types
        if won(cancel):
            assert run.status.value == "canceled" and types["run_canceled"] == 1
            assert run.steps["after"].status.value != "completed" if "after" in run.steps \
                else True
        else:
            assert run.status.value == "completed" and types["step_completed"] == 2, types


# --- over HTTP: the loser gets a 409 problem document ---------------------------------------


def test_over_http_two_agents_complete_while_the_run_is_canceled(harness: Any) -> None:
    """Two browser tabs submit the same item as an operator cancels its run, over the
    API of three servers on one database: one of the three wins; the others get 409 with
    a problem document, never 500."""
    from fastapi.testclient import TestClient

    from baton.web.app import create_app

    harness.deploy_text(REVIEW)
    runs = start_cases(harness, ROUNDS)
    items = [item_of(harness, r) for r in runs]
    people = harness.engine.directory
    tokens = {}
    for name, role in (("ann", "agent"), ("bob", "agent"), ("ops", "operator")):
        people.add_user(name, roles=[role], queues=["support"])
        tokens[name] = people.create_token(name)[1]
    clients: dict[int, Any] = {}

    def call(user: str, path: Callable[[int], str], body: dict[str, Any]
             ) -> Callable[[Engine, int], Any]:
        def act(e: Engine, i: int) -> tuple[int, Any]:
            client = clients.setdefault(id(e), TestClient(create_app(e)))
            answer = client.post(f"/api{path(i)}", json=body,
                                 headers={"Authorization": f"Bearer {tokens[user]}"})
            return answer.status_code, answer.json()
        return act

    got = race(harness, [call(who, lambda i: f"/work/{items[i]}/complete", {"data": {}})
                         for who in ("ann", "bob")]
               + [call("ops", lambda i: f"/runs/{runs[i]}/cancel", {"reason": "withdrawn"})])
    for i, outcomes in enumerate(got):
        codes = [code for code, _ in outcomes]
        assert sorted(codes) == [200, 409, 409], (i, outcomes)
        for code, body in outcomes:
            if code == 409:
                assert body["status"] == 409 and body["detail"], body
        run = harness.engine.get_run(runs[i])
        expected = "canceled" if codes[2] == 200 else "completed"
        assert run.status.value == expected
        assert harness.engine.get_work_item(items[i])["status"] == expected
        types = event_types(harness, runs[i])
        assert types["work_item_completed"] == (expected == "completed")
        assert types[f"run_{expected}"] == 1
