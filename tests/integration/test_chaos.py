"""Chaos (issue 17): a real ``baton serve`` under a concurrent API load, SIGKILLed at random
moments and started again, loses nothing it acknowledged and does nothing twice.

On each backend a copy of ``examples/case_triage`` is served by a real ``baton serve``
(SQLite: its own worker thread runs the steps; PostgreSQL: ``--workers 0`` and two separate
``baton worker`` processes, which are SIGKILLed too and report separate host names, so their
jobs come back by heartbeat timeout as on other machines). Client threads create
``N_CASES`` cases over loopback HTTP, each POST with its own ``Idempotency-Key`` and resent
with the same key after a connection error until the server answers; two agents with API
tokens (``ann`` works queue tier1, ``cyd`` tier2) claim and complete triage items meanwhile
(every fifth case is escalated to tier 2 once). A seeded controller SIGKILLs the server (and
on PostgreSQL a worker) each time the acknowledged creates pass a randomly drawn count, and
starts it again at once. Afterwards the agents complete every item left, the workers finish,
and the database must show: every acknowledged record exactly once with exactly one run,
every run completed with exactly the steps the process defines, no step iteration completed
twice, one work item per run/step/iteration, no job left, nothing acknowledged lost.

The seed is printed (and is in every failure message); ``BATON_CHAOS_SEED=N`` replays a
schedule, ``BATON_CHAOS_CASES`` changes the load. The figures go to
``test-output/chaos-<backend>.txt``. Every wait has a deadline (``BUDGET_S``), every process
and HTTP call a timeout, so a hang fails the test instead of blocking CI; no assertion is on
timing.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from baton.runtime.engine import Engine
from baton.store import schema as s
from tests.conftest import BACKENDS, EXAMPLES
from tests.integration.test_crash_durability import CLOSED_FIRST_TIME, ESCALATED, BatonForks
from tests.needs import need
from tests.net import free_port
from tests.procs import REPO, BatonProcess, eventually

# A long durability test: CI runs it; ./scripts/test locally leaves it out (README).
pytestmark = pytest.mark.slow

httpx = need("httpx2")

N_CASES = int(os.environ.get("BATON_CHAOS_CASES", "300"))
CLIENTS = 6  # threads creating cases at once
SERVE_KILLS = 3
WORKER_KILLS = 3  # PostgreSQL only
PG_WORKERS = 2
HEARTBEAT_TIMEOUT = 3.0  # PostgreSQL workers: a killed one's jobs come back after this
# Hang guard for the whole test: it takes about a minute on a quiet 2-core host.
BUDGET_S = 300.0 * max(1.0, N_CASES / 300)
HTTP_TIMEOUT = 15.0
OUTPUT = REPO / "test-output"
AGENTS = {"ann": "tier1", "cyd": "tier2"}


def _seed() -> int:
    given = os.environ.get("BATON_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(1, 2**31)


# ---- what the clients saw -------------------------------------------------------------------
@dataclass
class Seen:
    """What the client threads, the agents and the controller observed (one lock for all)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    acked: dict[int, str] = field(default_factory=dict)  # case number -> record id (2xx)
    numbers: dict[str, int] = field(default_factory=dict)  # record id -> case number
    replayed: int = 0  # 2xx answers marked Idempotent-Replayed
    retried: int = 0  # requests resent after a connection error or timeout
    completed: int = 0  # work items this test's agents completed (200)
    errors: list[str] = field(default_factory=list)  # answers no client should ever get

    def ack(self, number: int, record_id: str, replayed: bool) -> None:
        with self.lock:
            if number in self.acked:  # one client sends each case: this cannot happen
                self.errors.append(f"case {number} acknowledged twice")
            self.acked[number] = record_id
            self.numbers[record_id] = number
            self.replayed += replayed

    def count_acked(self) -> int:
        with self.lock:
            return len(self.acked)

    def number_of(self, record_id: str | None) -> int | None:
        with self.lock:
            return self.numbers.get(record_id or "")

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def add(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self, name, getattr(self, name) + n)


def _guarded(seen: Seen, fn: Callable[..., None]) -> Callable[..., None]:
    """A thread's body: whatever it raises is an error the test reports (a thread's
    exception would otherwise only be printed)."""
    def run(*args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - reported with its traceback below
            seen.error(f"{threading.current_thread().name}: {exc!r}\n{traceback.format_exc()}")
    return run


def _client(base_url: str, token: str) -> Any:
    return httpx.Client(base_url=base_url, timeout=HTTP_TIMEOUT,
                        headers={"Authorization": f"Bearer {token}"})


def _create_cases(base_url: str, token: str, numbers: list[int], seen: Seen,
                  deadline: float, rng: random.Random) -> None:
    """One client thread: create each case once, resending with the same key until answered."""
    with _client(base_url, token) as client:
        for n in numbers:
            key = f"chaos-case-{n}-{uuid.uuid4()}"
            body = {"data": {"subject": f"invoice question {n}" if n % 2 else f"inverter fault {n}",
                             "number": n}}
            while True:
                if time.monotonic() > deadline:
                    seen.error(f"case {n}: no answer before the deadline")
                    return
                try:
                    r = client.post("/api/objects/Case/records", json=body,
                                    headers={"Idempotency-Key": key})
                except httpx.TransportError:  # the server died under us, or is starting
                    seen.add("retried")
                    time.sleep(rng.uniform(0.05, 0.25))
                    continue
                break
            if r.status_code == 201 and r.json()["data"]["number"] == n:
                seen.ack(n, r.json()["id"], r.headers.get("Idempotent-Replayed") == "true")
            else:
                seen.error(f"case {n}: create answered {r.status_code} {r.text[:300]}")


class Agent:
    """A person with an API token working their queue through the API: list my items,
    claim the open ones, submit the form. Every fifth case is escalated at tier 1."""

    def __init__(self, name: str, base_url: str, token: str, seen: Seen, *,
                 unacknowledged: bool = False) -> None:
        self.name, self.queue, self.seen = name, AGENTS[name], seen
        self.client = _client(base_url, token)
        # Once every create has been answered, an item of a record no create was answered
        # with (a duplicate) is closed too, so its run ends and the check can name it.
        self.unacknowledged = unacknowledged

    def work_once(self, stop: threading.Event | None = None) -> bool:
        """One pass over my items (``stop``: until it is set); False when the server did
        not answer (try again later)."""
        try:
            listed = self.client.get("/api/work", params={"limit": 500})
            if listed.status_code != 200:
                self.seen.error(f"{self.name}: GET /api/work answered {listed.status_code} "
                                f"{listed.text[:300]}")
                return True
            for item in listed.json()["items"]:
                if stop is not None and stop.is_set():
                    break
                self._work_on(item)
        except httpx.TransportError:
            self.seen.add("retried")
            return False
        return True

    def _work_on(self, item: dict[str, Any]) -> None:
        where = f"{self.name}: item {item['id']} ({item['step']} #{item['iteration']})"
        if item["assignee_kind"] != "queue" or item["assignee"] != self.queue:
            self.seen.error(f"{where}: assigned to {item['assigned_to']}, not queue {self.queue}")
            return
        number = self.seen.number_of(item["record_id"])
        if number is None and not self.unacknowledged:  # its create is not answered yet
            return
        if item["status"] == "open":
            claimed = self.client.post(f"/api/work/{item['id']}/claim")
            if claimed.status_code == 409:  # my earlier claim won, its answer was lost
                return  # the next listing shows it claimed by me
            if claimed.status_code != 200:
                self.seen.error(f"{where}: claim answered {claimed.status_code} "
                                f"{claimed.text[:300]}")
                return
        elif item["claimed_by"] != self.name:
            self.seen.error(f"{where}: claimed by {item['claimed_by']}")
            return
        escalate = self.queue == "tier1" and number is not None and number % 5 == 0
        done = self.client.post(f"/api/work/{item['id']}/complete",
                                json={"data": {"resolution": "escalate" if escalate else "close"}})
        if done.status_code == 200:
            self.seen.add("completed")
        elif done.status_code != 409:  # 409: completed by a request whose answer was lost
            self.seen.error(f"{where}: complete answered {done.status_code} {done.text[:300]}")

    def close(self) -> None:
        self.client.close()


# ---- the processes --------------------------------------------------------------------------
class Cluster:
    """``baton serve`` (and on PostgreSQL ``baton worker`` processes) on one project."""

    def __init__(self, project: Path, db_url: str, backend: str, logs: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.postgres = backend == "postgres"
        self.serve = BatonProcess("serve", project, db_url, [
            "serve", "--port", str(self.port), "--workers", "0" if self.postgres else "1",
            "--no-migrate"], logs)
        self.workers = [BatonProcess(f"worker-{i}", project, db_url, [
            "worker", "--no-migrate", "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT)], logs)
            for i in range(PG_WORKERS if self.postgres else 0)]

    @property
    def processes(self) -> list[BatonProcess]:
        return [self.serve, *self.workers]

    def start_worker(self, w: BatonProcess) -> None:
        # A host name per life: a killed worker is found dead by its heartbeat, not its pid.
        w.start(BATON_WORKER_HOST=f"chaos-{w.name}-life-{w.starts + 1}")

    def start(self) -> None:
        self.serve.start()
        for w in self.workers:
            self.start_worker(w)

    def kills(self) -> int:
        return sum(p.kills for p in self.processes)

    def restarts(self) -> int:
        return sum(p.starts - 1 for p in self.processes)

    def died_by_itself(self) -> str | None:
        for p in self.processes:
            if p.exited() is not None:
                return f"{p.name} exited {p.exited()} by itself:\n{p.tail()}"
        return None

    def stop(self) -> dict[str, int | None]:
        return {p.name: p.stop(sig=signal.SIGINT if p is self.serve else signal.SIGTERM)
                for p in self.processes}


def _schedule(rng: random.Random, postgres: bool) -> list[tuple[int, str, float]]:
    """(acknowledged creates to wait for, what to kill, extra delay): the kill moments."""
    targets = ["serve"] * SERVE_KILLS + (
        [f"worker-{rng.randrange(PG_WORKERS)}" for _ in range(WORKER_KILLS)] if postgres else [])
    rng.shuffle(targets)
    at = sorted(rng.sample(range(N_CASES // 10, N_CASES * 9 // 10), len(targets)))
    return [(a, t, rng.uniform(0.0, 0.3)) for a, t in zip(at, targets, strict=True)]


def _chaos(cluster: Cluster, schedule: list[tuple[int, str, float]], seen: Seen,
           deadline: float, log: list[str]) -> None:
    """The controller thread: at each drawn moment SIGKILL the target and start it again."""
    by_name = {p.name: p for p in cluster.processes}
    for at, target, delay in schedule:
        while seen.count_acked() < at:
            if time.monotonic() > deadline or seen.errors:
                seen.error(f"controller: stopped waiting for {at} acknowledged creates")
                return
            if (died := cluster.died_by_itself()) is not None:
                seen.error(died)
                return
            time.sleep(0.01)
        time.sleep(delay)
        proc = by_name[target]
        proc.kill()
        if proc is cluster.serve:
            proc.start()
        else:
            cluster.start_worker(proc)
        log.append(f"{target}@{seen.count_acked()}")


# ---- the test -------------------------------------------------------------------------------
def _cli(forks: BatonForks, *args: str) -> str:
    done = forks.run(*args)
    assert done.returncode == 0, f"baton {' '.join(args)}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _tokens(project: Path, db_url: str, out_dir: Path) -> dict[str, str]:
    """Deploy and add the people, as an administrator would, with the CLI: seven ``baton``
    commands, each its own process forked from one that imported Baton once (not seven
    fresh interpreters' imports, which were most of their cost)."""
    forks = BatonForks(project, db_url, out_dir)
    try:
        _cli(forks, "deploy")
        _cli(forks, "users", "add", "admin", "--role", "admin")
        for name, queue in AGENTS.items():
            _cli(forks, "users", "add", name, "--role", "agent", "--queue", queue)
        return {name: json.loads(_cli(forks, "tokens", "create", name, "--json"))["token"]
                for name in ("admin", *AGENTS)}
    finally:
        forks.close()


@pytest.fixture(params=BACKENDS)
def chaos_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    if request.param == "postgres":
        yield "postgres", str(request.getfixturevalue("pg_url"))
    else:
        yield "sqlite", f"sqlite:///{tmp_path / 'baton.db'}"


@pytest.mark.slow
def test_killed_server_and_workers_lose_nothing_acknowledged_and_do_nothing_twice(
        tmp_path: Path, chaos_db: tuple[str, str]) -> None:
    backend, db_url = chaos_db
    seed = _seed()
    print(f"\nchaos {backend}: seed {seed} (BATON_CHAOS_SEED={seed} replays this schedule)")
    project = tmp_path / "case_triage"
    shutil.copytree(EXAMPLES / "case_triage", project,
                    ignore=shutil.ignore_patterns("__pycache__", "*.db*"))
    logs = tmp_path / "logs"
    logs.mkdir()
    tokens = _tokens(project, db_url, logs / "cli")

    started = time.monotonic()
    deadline = started + BUDGET_S
    cluster = Cluster(project, db_url, backend, logs)
    seen = Seen()
    kill_log: list[str] = []
    try:
        cluster.start()
        _load_and_kill(cluster, tokens, seen, random.Random(seed), deadline, kill_log)
        _finish(cluster, tokens, seen, db_url, deadline)
    finally:
        exits = cluster.stop()
    wall = time.monotonic() - started
    where = (f"seed {seed} ({backend}), kills {kill_log}; process logs in {logs}"
             f"\nserve log tail:\n{cluster.serve.tail()}")
    assert not seen.errors, f"{where}\n" + "\n".join(seen.errors[:20])
    assert all(code == 0 for code in exits.values()), f"{where}: exit statuses {exits}"
    outcome = Outcome.read(db_url)
    lost, duplicated = outcome.lost(seen), outcome.duplicated()
    line = (f"chaos {backend}: cases={N_CASES} acknowledged={len(seen.acked)} "
            f"kills={cluster.kills()} restarts={cluster.restarts()} "
            f"lost={sum(len(v) for v in lost.values())} duplicated={sum(duplicated.values())} "
            f"wall_s={wall:.1f} host_load_1min={os.getloadavg()[0]:.1f} seed={seed} retried={seen.retried} replayed={seen.replayed} "
            f"items_completed={seen.completed} kill_moments={','.join(kill_log)}")
    print(line)
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / f"chaos-{backend}.txt").write_text(line + "\n")
    assert not any(lost.values()), f"{where}: lost {lost}"
    assert not any(duplicated.values()), f"{where}: duplicated {duplicated}"
    outcome.check(seen, where)
    assert cluster.serve.kills >= 2, where
    if backend == "postgres":
        assert sum(w.kills for w in cluster.workers) >= 2, where


def _load_and_kill(cluster: Cluster, tokens: dict[str, str], seen: Seen, rng: random.Random,
                   deadline: float, kill_log: list[str]) -> None:
    """The creates from CLIENTS threads, the agents and the controller, all at once."""
    def up() -> bool:
        if (died := cluster.died_by_itself()) is not None:
            raise AssertionError(died)
        return _answers(cluster.url, tokens["admin"])
    eventually(up, timeout=90, what="baton serve to answer")
    schedule = _schedule(rng, cluster.postgres)
    numbers = list(range(1, N_CASES + 1))
    clients = [threading.Thread(
        target=_guarded(seen, _create_cases), daemon=True, name=f"client-{i}",
        args=(cluster.url, tokens["admin"], numbers[i::CLIENTS], seen, deadline,
              random.Random(rng.random()))) for i in range(CLIENTS)]
    controller = threading.Thread(target=_guarded(seen, _chaos), daemon=True, name="chaos",
                                  args=(cluster, schedule, seen, deadline, kill_log))
    created = threading.Event()
    agents = [Agent(name, cluster.url, tokens[name], seen) for name in AGENTS]

    def work_meanwhile() -> None:
        while not created.is_set():
            for agent in agents:
                agent.work_once(stop=created)
            created.wait(0.2)

    helper = threading.Thread(target=_guarded(seen, work_meanwhile), daemon=True, name="agents")
    for t in (*clients, controller, helper):
        t.start()
    for t in (*clients, controller):
        t.join(timeout=max(1.0, deadline - time.monotonic()))
    created.set()
    helper.join(timeout=HTTP_TIMEOUT * 4)
    for agent in agents:
        agent.close()
    hung = [t.name for t in (*clients, controller, helper) if t.is_alive()]
    assert not hung, f"threads still running at the deadline: {hung}; {seen.errors[:5]}"
    assert len(kill_log) == len(schedule) or seen.errors, (kill_log, schedule)


def _answers(url: str, token: str) -> bool:
    try:
        with _client(url, token) as c:
            return bool(c.get("/api/me").status_code == 200)
    except httpx.TransportError:
        return False


def _finish(cluster: Cluster, tokens: dict[str, str], seen: Seen, db_url: str,
            deadline: float) -> None:
    """Complete every open item through the API until every run has finished; then wait
    for the workers to leave no job behind."""
    if seen.errors:
        return
    agents = [Agent(name, cluster.url, tokens[name], seen, unacknowledged=True)
              for name in AGENTS]
    try:
        with _client(cluster.url, tokens["admin"]) as admin:
            def all_finished() -> bool:
                if (died := cluster.died_by_itself()) is not None:
                    raise AssertionError(died)
                for agent in agents:
                    agent.work_once()
                if seen.errors:
                    raise AssertionError("\n".join(seen.errors[:20]))
                try:
                    left = admin.get("/api/runs", params={"status": "in_progress", "limit": 1})
                except httpx.TransportError:
                    return False
                return bool(left.status_code == 200 and left.json()["total"] == 0)
            eventually(all_finished, timeout=max(1.0, deadline - time.monotonic()),
                       what="every run to finish")
    finally:
        for agent in agents:
            agent.close()
    engine = Engine(db_url, migrate=False)
    try:
        def no_jobs() -> bool:
            with engine.store.read() as tx:
                return not tx.count_jobs_txn()
        eventually(no_jobs, timeout=max(1.0, deadline - time.monotonic()),
                   what="the workers to leave no job")
    finally:
        engine.close()


@dataclass
class Outcome:
    """What the database holds once everything has stopped."""

    records: dict[str, dict[str, Any]]  # Case id -> data
    runs: list[Any]  # (id, record_id, status)
    completed: Counter[tuple[str, str, int]]  # step_completed events per run/step/iteration
    items: list[Any]  # work items (run_id, step, iteration, status)
    bad: list[dict[str, Any]]  # failure, fallout and cancel events
    jobs: dict[str, int]

    @classmethod
    def read(cls, db_url: str) -> Outcome:
        engine = Engine(db_url, migrate=False)
        try:
            with engine.store.read() as tx:
                return cls(
                    records={r.id: r.data for r in tx.conn.execute(
                        select(s.records.c.id, s.records.c.data)
                        .where(s.records.c.object_type == "Case"))},
                    runs=list(tx.conn.execute(
                        select(s.runs.c.id, s.runs.c.record_id, s.runs.c.status))),
                    completed=Counter(
                        (e["run_id"], e["data"]["step"], e["data"]["iteration"])
                        for e in tx.events_txn(types=["step_completed"], limit=100 * N_CASES)),
                    items=list(tx.conn.execute(select(
                        s.work_items.c.run_id, s.work_items.c.step, s.work_items.c.iteration,
                        s.work_items.c.status))),
                    bad=tx.events_txn(types=["step_failed", "step_fallout", "run_failed",
                                             "step_canceled"]),
                    jobs=tx.count_jobs_txn())
        finally:
            engine.close()

    def lost(self, seen: Seen) -> dict[str, list[Any]]:
        """Acknowledged cases missing (or another case under their id); records without a run."""
        runs_of = Counter(r.record_id for r in self.runs)
        return {
            "records": sorted(n for n, rid in seen.acked.items()
                              if rid not in self.records or self.records[rid]["number"] != n),
            "runs": sorted(rid for rid in self.records if runs_of[rid] == 0),
        }

    def duplicated(self) -> dict[str, int]:
        """Extra copies: records of one case, runs of one record, completions of one step
        iteration, work items of one run/step/iteration."""
        def extra(counts: Counter[Any]) -> int:
            return sum(c - 1 for c in counts.values())
        return {
            "records": extra(Counter(int(d["number"]) for d in self.records.values())),
            "runs": extra(Counter(r.record_id for r in self.runs)),
            "step iterations": extra(self.completed),
            "work items": extra(Counter((i.run_id, i.step, i.iteration) for i in self.items)),
        }

    def check(self, seen: Seen, where: str) -> None:
        """Everything the process promises, beyond nothing lost and nothing doubled."""
        numbers = Counter(int(d["number"]) for d in self.records.values())
        assert set(numbers) == set(range(1, N_CASES + 1)) == set(seen.acked), (
            f"{where}: records for cases {sorted(set(numbers) ^ set(seen.acked))[:20]} "
            "not acknowledged, or acknowledged and missing")
        assert Counter(r.status for r in self.runs) == {"completed": N_CASES}, (
            f"{where}: runs {Counter(r.status for r in self.runs)}")
        assert self.bad == [], f"{where}: {self.bad[:5]}"
        assert self.jobs == {}, f"{where}: jobs left {self.jobs}"
        assert {i.status for i in self.items} == {"completed"}, (
            f"{where}: work items {Counter(i.status for i in self.items)}")
        steps: dict[str, set[tuple[str, int]]] = {r.id: set() for r in self.runs}
        for run_id, step, iteration in self.completed:
            steps[run_id].add((step, iteration))
        triage: dict[str, list[int]] = {r.id: [] for r in self.runs}
        for i in self.items:
            assert i.step == "triage", f"{where}: {i}"
            triage[i.run_id].append(i.iteration)
        for run in self.runs:
            data = self.records[run.record_id]
            escalated = data["number"] % 5 == 0
            what = f"{where}: run {run.id} (case {data['number']})"
            assert steps[run.id] == (ESCALATED if escalated else CLOSED_FIRST_TIME), (
                f"{what} completed {sorted(steps[run.id])}")
            assert sorted(triage[run.id]) == ([1, 2] if escalated else [1]), (
                f"{what}: triage items of iterations {triage[run.id]}")
            assert data["status"] == "Closed" and data["level"] == (2 if escalated else 1), (
                f"{what}: {data}")
