"""A batch of slow flows does not hold its results until the whole batch ends (BATCH_HOLD).

A worker claims up to ``--batch`` jobs and commits their results together. With slow flows
(~0.3 s each here, 32 a batch) that once meant every result stayed invisible until the last
flow of the batch had run, and a worker killed near the end ran every flow of the batch
again. Now a batch that has run its jobs for longer than BATCH_HOLD (1 s) starts no more: it
commits what is done and runs the jobs it did not begin, still claimed, as its next batch.

Asserted on order and visibility, never on durations: each flow, as it runs, reads from a
connection of its own what is committed (and how its own job is held), and a SIGKILLed
worker (``BATON_FAULT=after_flow@6``) is checked to have left only the flows it ran since
its last commit to run again. (Upper bounds only: a flow takes at least 0.3 s however slow
the machine, so a batch runs at most 4 of them before its 1 s hold is past.)
"""

from __future__ import annotations

import json
import signal
import subprocess
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from baton import flow
from baton.flows import FlowContext
from baton.runtime.engine import Engine
from baton.runtime.worker import BATCH_HOLD, Worker
from baton.store import schema as s
from baton.store.sql import SqlStore
from tests.bank import bank_server
from tests.procs import baton_command, baton_env

FLOW_SECONDS = 0.3
# The most flows of FLOW_SECONDS a batch runs: the hold is checked after each, and is past
# once this many have run (each takes at least FLOW_SECONDS, however slow the machine).
MOST_PER_BATCH = int(BATCH_HOLD / FLOW_SECONDS) + 1

DEFS = """
kind: object
name: Slow
fields:
  n: {type: int, required: true}
---
kind: orchestration
name: t_hold
trigger: {type: record, object: Slow, on: [create]}
stages:
  - name: s
    steps:
      - {name: work, type: background, flow: t_hold.slow}
"""

# What the flow below sees, set by the test: a store of its own (another connection) and
# the file it writes a line to as it runs.
_PROBE: dict[str, Any] = {}


@flow("t_hold.slow")
def _slow(ctx: FlowContext) -> dict[str, Any]:
    store: SqlStore = _PROBE["store"]
    with store.read() as tx:
        done = tx.events_txn(types=["step_completed"])
        committed = sorted(e["data"]["output"]["n"] for e in done if e["data"]["step"] == "work")
        sent = sum(e["data"]["step"] == "send" for e in done)
        claimed = tx.conn.execute(select(func.count()).select_from(s.jobs)
                                  .where(s.jobs.c.status == "claimed")).scalar_one()
        mine = tx.conn.execute(select(s.jobs.c.status, s.jobs.c.attempts)
                               .where(s.jobs.c.run_id == ctx.run_id,
                                      s.jobs.c.payload["step"].as_string() == "work")).one()
    with open(_PROBE["log"], "a") as f:
        f.write(json.dumps({"n": ctx.record["n"], "committed": committed, "claimed": claimed,
                            "job": [mine[0], mine[1]], "sent": sent}) + "\n")
    time.sleep(FLOW_SECONDS)
    return {"n": ctx.record["n"]}


def test_a_batch_of_slow_flows_commits_its_first_results_before_its_last_flows_run(
        harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    n_jobs = 2 * MOST_PER_BATCH + 1  # one claim of them all: at least three commits
    for n in range(n_jobs):
        eng.create_record("Slow", {"n": n})
    log = tmp_path / "ran.jsonl"
    _PROBE.update(store=SqlStore(harness.db_url), log=str(log))
    worker = Worker(eng, batch=32)
    try:
        worker.run(until_idle=True)  # (the run loop: as ``baton worker`` runs it)
    finally:
        _PROBE["store"].close()
        _PROBE.clear()
    ran = [json.loads(line) for line in log.read_text().splitlines()]

    # Every flow ran once, in the order the jobs were claimed, each from its one claim.
    assert [r["n"] for r in ran] == list(range(n_jobs))
    assert all(r["job"] == ["claimed", 1] for r in ran), ran
    # All of them were claimed at once, before the first ran: one batch of the worker's.
    assert ran[0]["claimed"] == n_jobs and ran[0]["committed"] == []
    # While that batch's later flows had not run yet, its first results were committed:
    # visible to another connection (and their steps done) as those flows ran.
    seen_committed = [r for r in ran if r["committed"]]
    assert seen_committed, "no result was committed before the batch's last flow ran"
    first = seen_committed[0]
    assert first["committed"] == list(range(first["n"]))  # every flow before it, committed
    assert first["n"] <= MOST_PER_BATCH
    # Each flow saw the results of all but at most the last MOST_PER_BATCH - 1 flows run
    # before it: a batch runs flows for BATCH_HOLD at most before it commits.
    for i, r in enumerate(ran):
        assert r["committed"] == list(range(len(r["committed"])))
        assert i - len(r["committed"]) < MOST_PER_BATCH, (i, r)
    assert worker.stats.jobs == n_jobs and worker.stats.steps_completed == n_jobs
    assert worker.stats.stale == 0
    with eng.store.read() as tx:
        assert len(tx.events_txn(types=["step_completed"])) == n_jobs
        assert tx.conn.execute(select(func.count()).select_from(s.jobs)).scalar_one() == 0


def test_the_calls_in_flight_of_a_held_batch_are_collected_with_it(
        harness: Any, tmp_path: Path) -> None:
    """A batch of slow flows and callouts: every callout's call is begun with the batch
    (in flight together); held, the batch commits their answers with the flows it ran, and
    only the flows it did not start are left for its next batch: no call is made twice."""
    with bank_server() as bank:
        harness.deploy_text(DEFS.replace(
            "      - {name: work, type: background, flow: t_hold.slow}\n",
            "      - {name: work, type: background, flow: t_hold.slow}\n"
            "      - {name: send, type: callout, connection: bank, method: POST, path: /n,\n"
            "         body: {n: =record.n}, output: {ack: =response.body.ackId}}\n")
            + textwrap.dedent(f"""\
            ---
            kind: connection
            name: bank
            type: http
            base_url: {bank.url}
            """))
        eng = harness.engine
        n_records = MOST_PER_BATCH + 2  # each a flow's job and a callout's: one batch
        for n in range(n_records):
            eng.create_record("Slow", {"n": n})
        log = tmp_path / "ran.jsonl"
        _PROBE.update(store=SqlStore(harness.db_url), log=str(log))
        worker = Worker(eng, batch=32)
        try:
            worker.run(until_idle=True)
        finally:
            _PROBE["store"].close()
            _PROBE.clear()
        ran = [json.loads(line) for line in log.read_text().splitlines()]
        assert [r["n"] for r in ran] == list(range(n_records))
        assert ran[0]["claimed"] == 2 * n_records and ran[0]["sent"] == 0
        held = [r for r in ran if r["committed"]]
        assert held, "the batch was not held"
        # When the first flow left for the next batch ran, every callout of the first batch
        # had been answered and committed with the flows it ran (none left for later).
        assert held[0]["sent"] == n_records
        assert sorted(r.json()["n"] for r in bank.requests) == list(range(n_records))
        with eng.store.read() as tx:
            done = Counter(e["data"]["step"] for e in tx.events_txn(types=["step_completed"]))
            assert done == {"work": n_records, "send": n_records}
            assert tx.conn.execute(select(func.count()).select_from(s.jobs)).scalar_one() == 0


def test_quick_flows_keep_their_whole_batch(harness: Any) -> None:
    """Flows far quicker than the hold: one batch runs them all and commits them at once."""
    harness.deploy_text(DEFS.replace("flow: t_hold.slow", "flow: t_hold.quick"))
    eng = harness.engine
    for n in range(20):
        eng.create_record("Slow", {"n": n})
    worker = Worker(eng, batch=32)
    worker.run(until_idle=True)
    assert worker.stats.steps_completed == worker.stats.jobs == 20
    # one claim, one commit (planned: the only way taken here)
    assert (worker.stats.planned_commits, worker.stats.unplanned_commits) == (1, 0)


@flow("t_hold.quick")
def _quick(ctx: FlowContext) -> dict[str, Any]:
    return {"n": ctx.record["n"]}


FLOWS = f"""
import os
import time

from baton import flow


@flow("t_hold.slow")
def slow(ctx):
    time.sleep({FLOW_SECONDS})
    with open(os.environ["HOLD_RAN"], "a") as f:
        f.write(f"{{ctx.record['n']}}\\n")
    return {{"n": ctx.record["n"]}}
"""


def _completed(engine: Engine) -> Counter[int]:
    """How many times each record's step completion was committed."""
    with engine.store.read() as tx:
        return Counter(e["data"]["output"]["n"]
                       for e in tx.events_txn(types=["step_completed"]))


def test_a_worker_killed_mid_batch_repeats_only_the_flows_since_its_last_commit(
        tmp_path: Path, db_url: str) -> None:
    project = tmp_path / "project"
    (project / "definitions").mkdir(parents=True)
    (project / "baton.toml").write_text('flows = ["flows"]\n')
    (project / "flows.py").write_text(textwrap.dedent(FLOWS))
    (project / "definitions" / "hold.yaml").write_text(textwrap.dedent(DEFS))
    ran_file = tmp_path / "ran.txt"
    ran_file.touch()
    env = {"HOLD_RAN": str(ran_file)}

    def baton(*args: str, fault: str | None = None) -> Any:
        extra = {**env, **({"BATON_FAULT": fault} if fault else {})}
        proc = subprocess.run(baton_command(project, db_url, *args), env=baton_env(**extra),
                              capture_output=True, text=True, timeout=300, cwd=project,
                              check=False)
        assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
        return proc

    assert baton("deploy").returncode == 0
    engine = Engine(db_url)
    try:
        n_jobs, killed_at = 12, 6
        for n in range(n_jobs):
            engine.create_record("Slow", {"n": n})
        # One worker claims all 12 in one batch and is SIGKILLed as its 6th flow returns.
        died = baton("worker", "--until-idle", "--batch", "32", fault=f"after_flow@{killed_at}")
        assert died.returncode == -signal.SIGKILL, (died.returncode, died.stderr[-3000:])
        first_life = [int(n) for n in ran_file.read_text().split()]
        assert first_life == list(range(killed_at))
        committed = _completed(engine)
        # What it committed is the flows it ran first, once each; what it ran since its
        # last commit (and no more than one hold's worth of flows) is all that is lost.
        assert committed, "nothing committed before the worker was killed: all ran again"
        assert set(committed) == set(range(len(committed))) and set(committed.values()) == {1}
        lost = killed_at - len(committed)
        assert 1 <= lost <= MOST_PER_BATCH, committed
        with engine.store.read() as tx:
            held = tx.conn.execute(select(func.count()).select_from(s.jobs)
                                   .where(s.jobs.c.status == "claimed")).scalar_one()
        assert held == n_jobs - len(committed)  # the rest still claimed by the dead worker

        again = baton("worker", "--until-idle", "--batch", "32")
        assert again.returncode == 0, again.stderr[-3000:]
        ran = Counter(int(n) for n in ran_file.read_text().split())
        # Only the flows run after the dead worker's last commit ran twice.
        assert {n for n, times in ran.items() if times == 2} == set(range(len(committed),
                                                                          killed_at))
        assert set(ran) == set(range(n_jobs)) and max(ran.values()) <= 2
        assert _completed(engine) == Counter(range(n_jobs))  # each step committed once
        with engine.store.read() as tx:
            assert tx.conn.execute(select(func.count()).select_from(s.jobs)).scalar_one() == 0
    finally:
        engine.close()
