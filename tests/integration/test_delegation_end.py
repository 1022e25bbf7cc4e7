"""The audit's case, on SQLite and PostgreSQL: dora delegates to ann, ann claims dora's
`director` approval, then `baton users update dora --no-delegate`. Before, the item was
stuck: ann's complete was refused (not hers), dora's too (claimed by ann), and her claim
(already claimed). Now dora takes it back (audited with why) or completes it straight
away; ann is told her claim no longer stands. Through the CLI (subprocesses on the same
database) and the Engine: a batch completion, and two people taking it back at once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest

from baton.clock import VirtualClock
from baton.errors import BatonError, PermissionDenied, TransitionConflict
from baton.runtime.engine import Engine
from tests.conftest import REPO, Harness

DEFS = """
kind: object
name: Quote
fields:
  amount: {type: int}
---
kind: orchestration
name: quote_approval
trigger: {type: record, object: Quote, on: [create]}
stages:
  - name: director
    steps:
      - {name: director, type: approval, assign: {user: dora}}
    next:
      - {when: '=steps.director.output.decision == "approve"', goto: end, label: Approved}
      - {goto: end, label: Rejected}
"""


def cli(harness: Harness, *args: str) -> subprocess.CompletedProcess[str]:
    """``baton ARGS`` in a process of its own, on the harness's database."""
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["BATON_DB"] = harness.db_url
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH"))
                                        if p)
    return subprocess.run([sys.executable, "-m", "baton.cli.main", *args], cwd=harness.tmp,
                          env=env, capture_output=True, text=True, timeout=180, check=False)


def ok(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 0, p.stderr
    return p.stdout


def setup(harness: Harness, quotes: int = 1) -> list[str]:
    """dora, ann and cyd (agents); dora names ann her delegate; ``quotes`` approvals for
    dora (their item ids)."""
    harness.deploy_text(DEFS)
    eng = harness.engine
    for name in ("dora", "ann", "cyd"):
        eng.directory.add_user(name, roles=["agent"])
    eng.directory.update_user("dora", delegate="ann")
    for n in range(quotes):
        eng.create_record("Quote", {"amount": 1000 + n})
    harness.work()
    items = [i["id"] for i in eng.list_work(user="dora", limit=quotes)]
    assert len(items) == quotes
    return items


def test_the_audits_case_through_the_cli(harness: Harness) -> None:
    (iid,) = setup(harness)
    ok(cli(harness, "work", "claim", iid, "--user", "ann"))
    ok(cli(harness, "users", "update", "dora", "--no-delegate"))
    refused = cli(harness, "work", "complete", iid, "--user", "ann",
                  "--data", '{"decision": "approve"}')
    assert refused.returncode != 0
    said = " ".join(refused.stderr.split())
    assert "the claim by ann, whose delegation from dora ended, no longer stands" in said, said
    # dora takes it back, and decides it
    shown = json.loads(ok(cli(harness, "work", "claim", iid, "--user", "dora", "--json")))
    assert (shown["status"], shown["claimed_by"]) == ("claimed", "dora")
    ok(cli(harness, "work", "complete", iid, "--user", "dora", "--data",
           '{"decision": "approve", "comments": "back from leave"}'))
    item = harness.engine.get_work_item(iid)
    assert (item["status"], item["completed_by"]) == ("completed", "dora")
    run = harness.engine.get_run(item["run_id"])
    assert run.status.value == "completed" and run.decisions[-1]["label"] == "Approved"
    # the timeline says who took it back from whom, and why
    timeline = json.loads(ok(cli(harness, "records", "timeline", item["record_id"], "--json")))
    claimed = [e for e in timeline if e["type"] == "work_item_claimed"]
    assert [(e["actor"], e["data"].get("reason")) for e in claimed] == [
        ("ann", None), ("dora", "taken back from ann, whose delegation from dora ended")]
    table = " ".join(ok(cli(harness, "records", "timeline", item["record_id"])).split())
    assert "reason=taken back from ann, whose delegation from dora ended" in table, table


def test_a_batch_completes_taken_back_items_and_refuses_the_former_delegates(
        harness: Harness) -> None:
    first, second, third = setup(harness, quotes=3)
    eng = harness.engine
    for iid in (first, second):
        eng.claim(iid, "ann", scope=eng.directory.get_user("ann"))
    eng.directory.update_user("dora", delegate="")
    # one fails: it is refused on its own, the other goes through
    done = eng.complete_many([(first, "dora", {"decision": "approve"}),
                              (second, "ann", {"decision": "approve"})])
    assert isinstance(done[1], PermissionDenied) and "no longer stands" in str(done[1])
    assert not isinstance(done[0], BatonError) and done[0]["completed_by"] == "dora"
    assert eng.get_work_item(second)["claimed_by"] == "ann"  # (nothing of it changed)
    events = [(e["type"], e["actor"]) for e in eng.run_events(done[0]["run_id"])
              if e["type"].startswith("work_item_")]
    assert events[-3:] == [("work_item_claimed", "ann"), ("work_item_claimed", "dora"),
                           ("work_item_completed", "dora")]
    # a batch read ahead (every one goes through): a stale claim and an open item
    both = eng.complete_many([(second, "dora", {"decision": "reject"}),
                              (third, "dora", {"decision": "approve"})])
    assert [r["completed_by"] for r in both if not isinstance(r, BatonError)] == ["dora"] * 2
    reasons = [e["data"].get("reason") for e in eng.run_events(both[0]["run_id"])  # type: ignore[index]
               if e["type"] == "work_item_claimed"]
    assert reasons == [None, "taken back from ann, whose delegation from dora ended"]


def test_dora_and_her_new_delegate_take_it_back_at_once(harness: Harness) -> None:
    """dora and cyd (her delegate now) take back ann's stale claims at the same moment,
    each on an Engine of their own: one of them gets each item, the other hears it is
    claimed (no longer a stale claim: the winner acts for dora); one take-back each."""
    ids = setup(harness, quotes=6)
    eng = harness.engine
    for iid in ids:
        eng.claim(iid, "ann", scope=eng.directory.get_user("ann"))
    eng.directory.update_user("dora", delegate="cyd")
    users = ("dora", "cyd")
    engines = [Engine(harness.db_url, clock=VirtualClock(harness.clock.now())) for _ in users]
    barrier = threading.Barrier(len(users), timeout=60)
    results: dict[str, list[str]] = {u: [] for u in users}
    errors: list[BaseException] = []
    overlapped = []

    def other_waits() -> bool:
        with eng.store.read() as tx:
            return bool(tx.conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND datname = current_database()").scalar_one())

    def between_read_and_write(item_id: str) -> None:
        """On PostgreSQL the winner holds its claim (and the row's lock) until the other
        taker certainly waits for it: every pair overlaps. (SQLite's writers take turns
        from BEGIN: nothing to wait for.)"""
        if harness.backend == "postgres":
            deadline = time.monotonic() + 60
            while not other_waits():
                assert time.monotonic() < deadline, "the other take-back never overlapped"
            overlapped.append(item_id)

    for engine in engines:
        engine.work.claim_hook = between_read_and_write

    def taker(engine: Engine, user: str) -> None:
        try:
            for iid in ids:
                barrier.wait()
                try:
                    engine.claim(iid, user, scope=engine.directory.get_user(user))
                    results[user].append("won")
                except TransitionConflict as exc:
                    assert "already claimed by" in str(exc), exc
                    results[user].append("lost")
        except BaseException as exc:  # noqa: BLE001 - reported below; nobody hangs
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=taker, args=(e, u))
               for e, u in zip(engines, users, strict=True)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=180)
    finally:
        for e in engines:
            e.close()
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    assert len(overlapped) == (len(ids) if harness.backend == "postgres" else 0)
    for n, iid in enumerate(ids):
        won = [u for u in users if results[u][n] == "won"]
        assert len(won) == 1, (iid, results)
        item = eng.get_work_item(iid)
        assert item["claimed_by"] == won[0]
        back = [e for e in eng.run_events(item["run_id"]) if e["type"] == "work_item_claimed"
                and e["data"].get("taken_back_from")]
        assert [(e["actor"], e["data"]["taken_back_from"]) for e in back] == [(won[0], "ann")]
        verb = "taken back" if won[0] == "dora" else "taken over"
        assert back[0]["data"]["reason"] == (
            f"{verb} from ann, who is no longer dora's delegate (cyd is)")


def test_an_item_of_her_own_she_claimed_is_not_taken_from_her(harness: Harness) -> None:
    """Only a claim by someone else can lapse: dora's own claim holds off her delegate,
    whatever the delegation does."""
    (iid,) = setup(harness)
    eng = harness.engine
    eng.claim(iid, "dora")
    with pytest.raises(TransitionConflict, match="already claimed by dora"):
        eng.claim(iid, "ann", scope=eng.directory.get_user("ann"))
    eng.directory.update_user("dora", delegate="")
    eng.directory.update_user("dora", delegate="cyd")
    with pytest.raises(TransitionConflict, match="claimed by dora"):
        eng.complete(iid, "cyd", {"decision": "approve"})
    assert eng.get_work_item(iid)["claimed_by"] == "dora"
