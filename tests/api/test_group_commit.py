"""Group commit across requests (issue 19): concurrent record creates share one transaction,
each answered only once its own data is committed; one failing request fails alone; the
Idempotency-Key rules hold inside a group.

To make the requests of a test certainly share a group (not merely probably), a *gate* holds
the committer busy in a transaction of its own while the requests queue up behind it; when
the gate opens, everything queued goes in the next group. Nothing here is timed: the tests
wait for queue lengths with a deadline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from baton.runtime.engine import Engine
from baton.store.sql.tx import SqlTx
from baton.web.committer import CommitterClosed, GroupCommitter
from tests.api.conftest import Api, assert_problem

RECORDS = "/api/objects/Case/records"


def eventually(probe: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


@contextmanager
def gate(committer: GroupCommitter, api: Api) -> Iterator[Callable[[int], None]]:
    """Hold the committer in a transaction of its own; ``wait_for(n)`` waits until ``n``
    pieces of work queue behind it. Leaving the block opens the gate.

    The test's token is used once first: its ``last_used_at`` refresh (a write of its own,
    due once a minute and the clock is virtual) is then not among the queued writes."""
    assert api.get("opal", "/api/me").status_code == 200
    # ... and committed before the gate closes: left queued, it could share the gate's
    # transaction (a loaded host wakes the committer late), stay uncommitted behind it, and
    # every request then defers a refresh of its own (a CI-like run counted 3 groups, not 2).
    committer.submit(lambda tx: None)
    opened, entered = threading.Event(), threading.Event()

    def hold(tx: SqlTx) -> None:
        entered.set()
        opened.wait(120)

    holder = threading.Thread(target=committer.submit, args=(hold,))
    holder.start()
    entered.wait(60)
    try:
        yield lambda n: eventually(lambda: committer.waiting() >= n, f"{n} queued writes")
    finally:
        opened.set()
        holder.join(60)


class Sender:
    """Requests sent from their own threads; ``answers`` in the order they were sent."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.threads: list[threading.Thread] = []
        self.answers: list[Any] = []
        self.after: list[Any] = []  # what a check run right after each answer returned

    def post(self, body: dict[str, Any], headers: dict[str, str] | None = None,
             check: Callable[[Any], Any] | None = None) -> None:
        i = len(self.answers)
        self.answers.append(None)
        self.after.append(None)

        def send() -> None:
            r = self.api.post("opal", RECORDS, body, headers=headers or {})
            self.answers[i] = r
            if check is not None:
                self.after[i] = check(r)

        t = threading.Thread(target=send)
        t.start()
        self.threads.append(t)

    def join(self) -> list[Any]:
        for t in self.threads:
            t.join(120)
        assert all(a is not None for a in self.answers)
        return self.answers


def case(i: int, **more: Any) -> dict[str, Any]:
    return {"data": {"subject": f"case {i}", "number": i, **more}}


def test_concurrent_creates_share_a_commit_and_each_is_durable_when_answered(api: Api) -> None:
    committer: GroupCommitter = api.app.state.committer
    other = Engine(api.db_url, migrate=False)  # another connection: sees committed data only
    try:
        def stored(r: Any) -> Any:
            return other.get_record(r.json()["id"]) if r.status_code == 201 else None

        sender = Sender(api)
        with gate(committer, api) as wait_for:
            groups = committer.groups
            for i in range(12):
                sender.post(case(i), check=stored)
            wait_for(12)
        answers = sender.join()
        assert [a.status_code for a in answers] == [201] * 12, [a.text for a in answers]
        assert committer.groups == groups + 1  # the twelve creates: one transaction
        for i, (a, seen) in enumerate(zip(answers, sender.after, strict=True)):
            out = a.json()
            assert out["data"]["number"] == i and out["version"] == 1
            assert a.headers["Location"] == f"/api/records/{out['id']}"
            assert seen is not None and seen["id"] == out["id"]  # committed before the answer
            assert seen["subject"] == f"case {i}"
        ids = {a.json()["id"] for a in answers}
        assert len(ids) == 12
        for rid in ids:  # each started its triage run, and its timeline says created once
            assert [r.orchestration for r in other.list_runs(record_id=rid)] == ["case_triage"]
            assert [e["type"] for e in other.timeline(rid)].count("record_created") == 1
    finally:
        other.close()


def test_one_failing_request_in_a_group_fails_alone(api: Api) -> None:
    committer: GroupCommitter = api.app.state.committer
    sender = Sender(api)
    with gate(committer, api) as wait_for:
        groups = committer.groups
        sender.post(case(0))
        sender.post({"data": {"number": 1}})  # no subject: 422
        sender.post(case(2))
        sender.post(case(3, account="acc_missing"))  # a ref to no record: 422
        sender.post(case(4, level="high"))  # not an int: 422
        sender.post(case(5))
        wait_for(6)
    answers = sender.join()
    assert [a.status_code for a in answers] == [201, 422, 201, 422, 422, 201]
    assert_problem(answers[1], 422, "data.subject")
    assert_problem(answers[3], 422, "data.account")
    assert_problem(answers[4], 422, "data.level")
    # The group was tried whole, failed on the bad ones, then went again a savepoint each:
    # still one commit for the group.
    assert committer.groups == groups + 1
    good = [a.json()["id"] for a in answers if a.status_code == 201]
    assert sorted(r["id"] for r in api.engine.list_records("Case")) == sorted(good)
    assert api.engine.count_runs() == 3
    for rid in good:
        assert api.get("opal", f"/api/records/{rid}").status_code == 200
    assert api.work() > 0  # their runs go on: each has its jobs, and nothing more
    assert {item["record_id"] for item in api.engine.list_work()} == set(good)


def test_a_piece_that_fails_after_writing_leaves_nothing_behind(api: Api) -> None:
    """What a failing piece wrote before it raised (the record, its audit event, its run
    and the run's jobs, buffered until commit) is rolled back with its savepoint."""
    committer: GroupCommitter = api.app.state.committer
    eng = api.engine
    with eng.store.read() as tx:  # (the fixture's people's routing jobs, say)
        before = sum(tx.count_jobs_txn().values())
    results: dict[int, Any] = {}

    def create(i: int, fail: bool) -> Callable[[SqlTx], Any]:
        def work(tx: SqlTx) -> Any:
            view = eng.records.create_txn(tx, "Case", [case(i)["data"]], "opal", None,
                                          eng.clock.now())[0]
            if fail:
                raise RuntimeError(f"piece {i} fails after writing")
            return view
        return work

    def submit(i: int, fail: bool) -> None:
        try:
            results[i] = committer.submit(create(i, fail))
        except RuntimeError as exc:
            results[i] = exc

    threads = []
    with gate(committer, api) as wait_for:
        for i in range(3):
            threads.append(threading.Thread(target=submit, args=(i, i == 1)))
            threads[-1].start()
            wait_for(i + 1)  # in this order
    for t in threads:
        t.join(60)
    assert isinstance(results[1], RuntimeError)
    kept = [results[0]["id"], results[2]["id"]]
    assert sorted(r["id"] for r in eng.list_records("Case")) == sorted(kept)
    with eng.store.read() as tx:
        created = tx.events_txn(types=["record_created"])
        jobs = tx.count_jobs_txn()
    assert sorted(e["record_id"] for e in created) == sorted(kept)
    assert eng.count_runs() == 2
    assert {r.record_id for r in eng.list_runs()} == set(kept)
    assert sum(jobs.values()) - before == 2 * _jobs_per_new_run(api)


def _jobs_per_new_run(api: Api) -> int:
    """How many jobs one record's triage run enqueues when it starts (measured, not assumed)."""
    eng = api.engine
    with eng.store.read() as tx:
        before = sum(tx.count_jobs_txn().values())
    eng.create_record("Case", {"subject": "probe"}, actor="opal")
    with eng.store.read() as tx:
        after = sum(tx.count_jobs_txn().values())
    return after - before


def test_idempotent_retries_inside_one_group(api: Api) -> None:
    committer: GroupCommitter = api.app.state.committer
    sender = Sender(api)
    key = {"Idempotency-Key": "group-key"}
    with gate(committer, api) as wait_for:
        for n in range(3):  # one request and two retries, all in one group, in this order
            sender.post(case(1), key)
            wait_for(n + 1)
        sender.post(case(2), key)  # the same key for another body, after them
        wait_for(4)
        sender.post(case(3))
        sender.post(case(4), {"Idempotency-Key": "other-key"})
        wait_for(6)
    answers = sender.join()
    first, *retries = answers[:3]
    assert [a.status_code for a in answers] == [201, 201, 201, 422, 201, 201], \
        [a.text for a in answers]
    assert "Idempotent-Replayed" not in first.headers
    for r in retries:
        assert r.json() == first.json() and r.headers["Idempotent-Replayed"] == "true"
        assert r.headers["Location"] == first.headers["Location"]
    assert_problem(answers[3], 422, "header.Idempotency-Key")
    assert api.engine.count_records("Case") == 3  # case 1 once, cases 3 and 4
    assert api.engine.count_runs() == 3
    # A later retry replays the kept answer.
    again = api.post("opal", RECORDS, case(1), headers=key)
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"


def test_a_token_sees_the_directory_as_it_is_now(api: Api) -> None:
    """Authentication reads the token, the user and the memberships afresh on every
    request (one read): a role taken away, a user deactivated or a token revoked counts on
    the very next request."""
    assert api.post("opal", RECORDS, case(1)).status_code == 201
    api.engine.directory.update_user("opal", roles=["designer"])
    assert_problem(api.post("opal", RECORDS, case(2)), 403)
    api.engine.directory.update_user("opal", roles=["operator"])
    assert api.post("opal", RECORDS, case(3)).status_code == 201
    api.engine.directory.update_user("ann", queues=["tier2"])
    me = api.get("ann", "/api/me").json()
    assert me["queues"] == ["tier2"] and me["groups"] == ["billing"]
    api.engine.directory.update_user("opal", active=False)
    assert_problem(api.post("opal", RECORDS, case(4)), 401)
    (token,) = api.engine.directory.list_tokens("bob")
    api.engine.directory.revoke_token(token.id)
    assert_problem(api.get("bob", "/api/me"), 401)
    assert api.engine.count_records("Case") == 2


def test_the_committer_answers_what_is_queued_when_closed(api: Api) -> None:
    committer = GroupCommitter(api.engine.store)
    assert committer.submit(lambda tx: tx.count_users_txn()) == 6
    done: list[int] = []
    with gate(committer, api) as wait_for:
        threading.Thread(target=lambda: done.append(committer.submit(lambda tx: 1))).start()
        wait_for(1)
        closing = threading.Thread(target=committer.close)
        closing.start()
        eventually(lambda: committer._closed, "the committer closing")
        with pytest.raises(CommitterClosed, match="shutting down"):
            committer.submit(lambda tx: None)  # refused while it closes
    closing.join(60)
    eventually(lambda: done == [1], "the queued write's answer")  # committed before closing
    assert committer.submit(lambda tx: tx.count_users_txn()) == 6  # and it starts again
    committer.close()



def test_an_app_served_twice_at_once_keeps_committing_until_the_last_lifespan_ends(
        api: Api) -> None:
    # Two test clients on one app (as the claim race test makes): the first to leave ran
    # its lifespan's end, which closed the committer while the other one still answered
    # (a claim refused with CommitterClosed in a CI run on PostgreSQL).
    from fastapi.testclient import TestClient

    committer: GroupCommitter = api.app.state.committer
    rec = api.new_case("Two lifespans")
    item = api.item_of(rec["id"])
    answers: list[Any] = []
    with TestClient(api.app) as second:
        first = TestClient(api.app)
        first.__enter__()
        with gate(committer, api) as wait_for:
            leaving = threading.Thread(target=first.__exit__, args=(None, None, None))
            leaving.start()
            leaving.join(2)  # (the old lifespan blocked here, closing behind the gate)
            claim = threading.Thread(target=lambda: answers.append(second.post(
                f"/api/work/{item['id']}/claim", headers=api.auth("ann"))))
            claim.start()
            claim.join(2)
            if not answers:  # queued behind the gate, as it should be
                wait_for(1)
        claim.join(60)
        leaving.join(60)
    assert answers and answers[0].status_code == 200, answers and answers[0].text
    assert api.engine.get_work_item(item["id"])["claimed_by"] == "ann"
