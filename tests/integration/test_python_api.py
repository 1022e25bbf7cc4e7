"""The Python API as a program that embeds Baton uses it: ``from baton import Engine``, on a
real SQLite file and on PostgreSQL, from several threads, two Engines on one database,
background workers and ``close()``, asyncio, and the errors every public method raises for
arguments of the wrong kind (a ``BatonError`` naming what and where, nothing written).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import pickle
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import baton
from baton import (
    BatonError,
    ConfigError,
    Engine,
    FlowContext,
    NotFound,
    Settings,
    StepFailure,
    TransitionConflict,
    ValidationError,
    flow,
)
from baton.clock import VirtualClock
from baton.errors import DefinitionError, ExpressionError, IdempotencyKeyTaken, Issue
from baton.runtime.worker import run_workers
from tests.net import free_port
from tests.procs import REPO, baton_env, eventually

DEFS = """
kind: object
name: PyTicket
fields:
  subject: {type: string, required: true}
  category: {type: string}
  when: {type: datetime}
  blob: {type: json}
---
kind: orchestration
name: py_ticket
trigger: {type: record, object: PyTicket, on: [create]}
stages:
  - name: answer
    steps:
      - {name: classify, type: background, flow: pyapi.classify}
      - name: reply
        type: interactive
        after: [classify]
        assign: {queue: pyapi}
        form: [{name: reply, type: text, required: true}]
---
kind: orchestration
name: py_manual
trigger: {type: autolaunched, input: {n: {type: int, required: true}}}
stages:
  - name: s
    steps:
      - {name: go, type: pause, signal: go}
      - {name: fails, type: background, flow: pyapi.fails}
"""


@flow("pyapi.classify")
def classify(ctx: FlowContext) -> dict[str, Any]:
    category = "billing" if "invoice" in ctx.record["subject"] else "tech"
    ctx.update_record({"category": category})
    return {"category": category}


@flow("pyapi.fails")
def fails(ctx: FlowContext) -> dict[str, Any]:
    raise StepFailure("the backend said no", retryable=False)


@flow("pyapi.where")
def where(ctx: FlowContext) -> dict[str, Any]:
    return {"pid": os.getpid()}


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    with Engine(db_url) as eng:
        eng.deploy(texts={"py.yaml": DEFS})
        yield eng


def _until_idle(eng: Engine) -> None:
    run_workers(eng, 2, until_idle=True)


def _baton_threads(before: frozenset[threading.Thread] = frozenset()) -> list[str]:
    """Baton's threads alive now (but those of ``before``: another test's, if any)."""
    return sorted(t.name for t in threading.enumerate()
                  if t.name.startswith("baton") and t not in before)


def _pipes() -> int:
    """This process's open pipes (a waiting worker thread's wake-up pipe is one)."""
    fds = Path("/proc/self/fd")
    out = 0
    for fd in fds.iterdir():
        try:
            out += os.readlink(fd).startswith("pipe:")
        except OSError:  # (the listing's own descriptor, gone by now)
            pass
    return out


# ---- the README's example, as written -----------------------------------------------------
def test_the_readme_example_runs_as_written(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The Python API", 1)[1].split("\n## ", 1)[0]
    code = re.findall(r"```python\n(.*?)```", section, re.DOTALL)[0]
    env = baton_env()
    init = subprocess.run([sys.executable, "-m", "baton.cli.main", "init", "myproject"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    assert init.returncode == 0, init.stderr
    project = tmp_path / "myproject"
    (project / "embed.py").write_text(code)
    done = subprocess.run([sys.executable, "embed.py"], cwd=project, env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Closed"


# ---- arguments of the wrong kind ----------------------------------------------------------
class _Opaque:
    pass


def _bad_calls(eng: Engine, rec_id: str, run_id: str, item_id: str
               ) -> list[tuple[str, Callable[[], object], type[BatonError], str]]:
    """(what, the call, the error it raises, a word its message must hold)."""
    naive = dt.datetime(2026, 1, 5, 9, 0)  # (the point: no time zone)
    return [
        ("object type a number", lambda: eng.create_record(5, {"subject": "a"}),  # type: ignore[arg-type]
         ValidationError, "object_type"),
        ("record data None", lambda: eng.create_record("PyTicket", None),  # type: ignore[arg-type]
         ValidationError, "(data)"),
        ("record data a list", lambda: eng.create_records("PyTicket", [["subject"]]),  # type: ignore[list-item]
         ValidationError, "mapping"),
        ("records a dict", lambda: eng.create_records("PyTicket", {"subject": "a"}),  # type: ignore[arg-type]
         ValidationError, "(records)"),
        ("a set in a json field",
         lambda: eng.create_record("PyTicket", {"subject": "a", "blob": {1, 2}}),
         ValidationError, "blob"),
        ("an object in a json field",
         lambda: eng.create_record("PyTicket", {"subject": "a", "blob": {"x": _Opaque()}}),
         ValidationError, "blob"),
        ("a naive datetime", lambda: eng.create_record("PyTicket", {"subject": "a", "when": naive}),
         ValidationError, "time zone"),
        ("actor None", lambda: eng.create_record("PyTicket", {"subject": "a"}, actor=None),  # type: ignore[arg-type]
         ValidationError, "actor"),
        ("record id a list", lambda: eng.get_record([rec_id]),  # type: ignore[arg-type]
         ValidationError, "record's id"),
        ("record id a number", lambda: eng.update_record(5, {"subject": "b"}),  # type: ignore[arg-type]
         ValidationError, "record's id"),
        ("expected_version as text",
         lambda: eng.update_record(rec_id, {"subject": "b"}, expected_version="1"),  # type: ignore[arg-type]
         ValidationError, "expected_version"),
        ("a naive datetime in an update",
         lambda: eng.update_record(rec_id, {"when": naive}), ValidationError, "time zone"),
        ("limit as text", lambda: eng.list_records("PyTicket", limit="5"),  # type: ignore[arg-type]
         ValidationError, "limit"),
        ("a negative offset", lambda: eng.list_runs(offset=-1), ValidationError, "offset"),
        ("a cursor that is a number", lambda: eng.page_records(after=5),  # type: ignore[arg-type]
         ValidationError, "after"),
        ("an unknown run filter", lambda: eng.list_runs(stauts="completed"),
         ValidationError, "stauts"),
        ("a status no run has", lambda: eng.count_runs(status="done"), ValidationError, "status"),
        ("orchestration a number", lambda: eng.start(5),  # type: ignore[arg-type]
         ValidationError, "orchestration"),
        ("run input a list", lambda: eng.start("py_manual", [1]),  # type: ignore[arg-type]
         ValidationError, "(data)"),
        ("run id None", lambda: eng.get_run(None),  # type: ignore[arg-type]
         ValidationError, "run's id"),
        ("cancel without a reason", lambda: eng.cancel_run(run_id, ""), ValidationError, "reason"),
        ("cancel with reason None", lambda: eng.cancel_run(run_id, None),  # type: ignore[arg-type]
         ValidationError, "reason"),
        ("signal data a list", lambda: eng.signal(run_id, "go", [1]),  # type: ignore[arg-type]
         ValidationError, "data"),
        ("signal data not JSON", lambda: eng.signal(run_id, "go", {"x": _Opaque()}),
         ValidationError, "data"),
        ("fallout id a number", lambda: eng.resolve_fallout(5, "retry", reason="r"),  # type: ignore[arg-type]
         ValidationError, "RUN_ID:STEP"),
        ("incident statuses a string", lambda: eng.list_incidents(statuses="open"),
         ValidationError, "statuses"),
        ("work item id a number", lambda: eng.claim(5, "ann"),  # type: ignore[arg-type]
         ValidationError, "work item's id"),
        ("work list user a number", lambda: eng.list_work(user=5),  # type: ignore[arg-type]
         ValidationError, "user"),
        ("form data not JSON", lambda: eng.complete(item_id, "ann", {"reply": _Opaque()}),
         ValidationError, "reply"),
        ("deploy texts a list", lambda: eng.deploy(texts=["kind: object"]),  # type: ignore[arg-type]
         ValidationError, "texts"),
        ("deploy a text that is not text", lambda: eng.deploy(texts={"a.yaml": 5}),  # type: ignore[dict-item]
         ValidationError, "a.yaml"),
        ("deploy a path that is a number", lambda: eng.deploy([5]),  # type: ignore[list-item]
         ValidationError, "paths"),
        ("start_workers none", lambda: eng.start_workers(0), ValidationError, "concurrency"),
    ]


def test_arguments_of_the_wrong_kind_are_refused_naming_them(engine: Engine) -> None:
    rec = engine.create_record("PyTicket", {"subject": "invoice 1"})
    _until_idle(engine)
    (item,) = engine.list_work(queue="pyapi")
    run = engine.start("py_manual", {"n": 1})
    records, runs = engine.count_records(), engine.count_runs()
    timeline = len(engine.timeline(rec["id"]))
    for what, call, error, word in _bad_calls(engine, rec["id"], run.id, item["id"]):
        with pytest.raises(BatonError) as caught:
            call()
        assert type(caught.value) is error, (what, caught.value)
        assert word in str(caught.value), (what, str(caught.value))
    # nothing was written by any of them
    assert (engine.count_records(), engine.count_runs()) == (records, runs)
    assert len(engine.timeline(rec["id"])) == timeline
    assert engine.get_run(run.id).status.value == "in_progress"
    assert engine.get_work_item(item["id"])["status"] == "open"


def test_ids_that_name_nothing_are_not_found(engine: Engine) -> None:
    for call in (lambda: engine.get_record("rec_nope"), lambda: engine.get_run("run_nope"),
                 lambda: engine.cancel_run("run_nope", "why"),
                 lambda: engine.claim("wi_nope", "ann"), lambda: engine.start("nope"),
                 lambda: engine.get_incident("inc_nope")):
        with pytest.raises(NotFound):
            call()


def test_values_come_back_as_they_are_stored(engine: Engine) -> None:
    when = dt.datetime(2026, 3, 1, 10, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    made = engine.create_record("PyTicket", {"subject": "tech 2", "when": when,
                                             "blob": {"n": (1, 2), 3: "three"}})
    stored = engine.get_record(made["id"])
    assert made["blob"] == stored["blob"] == {"n": [1, 2], "3": "three"}
    assert made["when"] == stored["when"] == "2026-03-01T08:00:00Z"
    assert engine.list_runs(attention=False, record_id=made["id"])[0].record_id == made["id"]
    assert engine.list_runs(attention=True, record_id=made["id"]) == []


def test_signal_data_and_operator_output_are_json(engine: Engine) -> None:
    run = engine.start("py_manual", {"n": 1})
    _until_idle(engine)
    (entry,) = engine.list_fallout()
    done = engine.resolve_fallout(entry["id"], "complete", reason="did it by hand",
                                  output={"ref": ("A", 1)})
    assert done.steps["fails"].output == {"ref": ["A", 1]}
    after = engine.signal(run.id, "go", {"by": "ops", 7: True})  # type: ignore[dict-item]
    assert after.steps["go"].output == {"by": "ops", "7": True}
    assert engine.get_run(run.id).steps["go"].output == {"by": "ops", "7": True}
    assert engine.run_detail(run.id)["status"] == "completed"


def test_flow_registration_mistakes_are_told_at_once() -> None:
    with pytest.raises(BatonError, match="needs the flow's name"):
        flow(lambda ctx: {})  # type: ignore[arg-type]  # @flow without its name
    with pytest.raises(BatonError, match="non-blank"):
        flow(" ")
    def no_context() -> dict[str, Any]:
        return {}

    with pytest.raises(BatonError, match="one argument"):
        flow("pyapi.no_context")(no_context)  # type: ignore[type-var]
    ctx = FlowContext(run_id="run_1", step="s", iteration=1, record={"a": 1}, vars={},
                      input={}, steps={}, logger=None)
    with pytest.raises(ValidationError, match="mapping"):
        ctx.update_record(["a", 2])  # type: ignore[arg-type]


def test_engine_arguments_are_checked_when_it_is_made(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    with pytest.raises(ConfigError, match="database URL"):
        Engine(5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="Settings"):
        Engine(db, settings={"database": db})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="time zone"):
        Engine(db, clock=VirtualClock(dt.datetime(2026, 1, 5)))  # (no time zone)
    with pytest.raises(ConfigError, match="cannot connect to PostgreSQL"):
        Engine(f"postgresql://postgres@127.0.0.1:{free_port()}/nothing_listens")
    # no URL: the settings' database
    with Engine(settings=Settings(database=db)) as eng:
        assert eng.store.url == db
    with Engine(tmp_path / "p.db") as eng:  # a path
        assert eng.count_records() == 0


# ---- errors cross processes whole ---------------------------------------------------------
def _errors() -> list[BatonError]:
    from baton.connections.calls import OutputTooLarge
    from baton.runtime.callbacks import CallbackRefused
    from baton.steps.flowrun import FlowRaised

    return [
        NotFound("run", "run_1", "a hint"),
        ValidationError("PyTicket record", {"subject": "is required", "n": "not a number"}),
        DefinitionError([Issue("a.yaml", 3, "stages[0].steps[1].after", "unknown step")]),
        ExpressionError("=record.x +", "syntax error", 11),
        TransitionConflict("work item wi_1 is already claimed by bob"),
        StepFailure("no", retryable=False, retry_after=5.0),
        IdempotencyKeyTaken("ann", "key-1"),
        ConfigError("cannot open it"),
        CallbackRefused(409, "taken already"),
        OutputTooLarge("too big", 20, 10),
        FlowRaised("KeyError", "'x'", retryable=True, retry_after=None, traceback_text="tb"),
    ]


@pytest.mark.parametrize("error", _errors(), ids=lambda e: type(e).__name__)
def test_every_error_pickles_whole(error: BatonError) -> None:
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is type(error)
    assert str(back) == str(error) and back.args == error.args
    assert vars(back) == vars(error)


# ---- threads, two engines, background workers, close --------------------------------------
def test_threads_and_two_engines_on_one_database(db_url: str) -> None:
    with Engine(db_url) as one, Engine(db_url) as two:
        one.deploy(texts={"py.yaml": DEFS})
        failures: list[BaseException] = []

        def create(eng: Engine, tag: str) -> None:
            try:
                for i in range(10):
                    eng.create_record("PyTicket", {"subject": f"invoice {tag}{i}"})
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=create, args=(one if i % 2 else two, f"t{i}"))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        _until_idle(two)
        items = one.list_work(queue="pyapi", limit=100)
        assert len(items) == 40
        wins: Counter[str] = Counter()
        lost: Counter[str] = Counter()

        def claim_all(eng: Engine, user: str) -> None:
            for it in items:
                try:
                    eng.claim(it["id"], user)
                except TransitionConflict:
                    lost[user] += 1
                    continue
                except BaseException as exc:  # noqa: BLE001 - reported below
                    failures.append(exc)
                    continue
                eng.complete(it["id"], user, {"reply": "done"})
                wins[user] += 1

        threads = [threading.Thread(target=claim_all, args=(one if i % 2 else two, f"u{i}"))
                   for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == []
        assert sum(wins.values()) == 40 and sum(lost.values()) == 3 * 40
        _until_idle(one)
        assert one.count_runs(status="completed") == 40
        completed = [e for it in items for e in two.run_events(it["run_id"])
                     if e["type"] == "work_item_completed"]
        assert len(completed) == 40  # each exactly once


def test_background_workers_stop_when_the_engine_closes(db_url: str) -> None:
    pipes, threads = _pipes(), frozenset(threading.enumerate())
    with Engine(db_url) as eng:
        eng.deploy(texts={"py.yaml": DEFS})
        workers = eng.start_workers(2)
        eng.create_records("PyTicket", [{"subject": f"invoice {i}"} for i in range(5)])
        eventually(lambda: eng.count_work(queue="pyapi") == 5, timeout=120,
                   what="the work items of 5 runs")
        assert workers.running and len(workers.workers) == 2
        assert "baton-workers" in _baton_threads()
    assert not workers.running and workers.error is None
    assert _baton_threads(threads) == []
    assert _pipes() <= pipes  # (each waiting thread's wake-up pipe closed with the store)
    eng.close()  # twice: nothing more


def _children() -> list[int]:
    """The processes this one started that are still alive (flow processes, MCP servers)."""
    me, out = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # (ended meanwhile)
            continue
        if int(fields[1]) == me and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


def test_closing_ends_flow_processes_and_mcp_servers(tmp_path: Path) -> None:
    """A step with a timeout runs in a flow process, an mcp step talks to a stdio server the
    worker started: neither outlives the Engine."""
    server = REPO / "examples" / "mcp_erp" / "server.py"
    before, threads = set(_children()), frozenset(threading.enumerate())
    with Engine(f"sqlite:///{tmp_path / 'c.db'}") as eng:
        eng.deploy(texts={"c.yaml": f"""
kind: connection
name: py_erp
type: mcp
transport: stdio
command: {sys.executable}
args: [{server}]
---
kind: orchestration
name: py_children
trigger: {{type: autolaunched}}
stages:
  - name: s
    steps:
      - {{name: lookup, type: mcp, connection: py_erp, tool: find_account,
          arguments: {{domain: acme.example}}}}
      - {{name: apart, type: background, flow: pyapi.where, timeout: 60s}}
"""})
        workers = eng.start_workers(2)
        run = eng.start("py_children")
        eventually(lambda: eng.get_run(run.id).status.value != "in_progress", timeout=180,
                   what="the run to end")
        done = eng.get_run(run.id)
        assert done.status.value == "completed", done.steps
        assert (done.steps["lookup"].output or {})["account_id"] == "ACC-1001"
        assert (done.steps["apart"].output or {})["pid"] != os.getpid()  # (a flow process)
        assert set(_children()) - before  # (the MCP server, at least)
    assert not workers.running
    assert set(_children()) - before == set()
    assert _baton_threads(threads) == []


def test_workers_stopped_before_they_start_do_stop(tmp_path: Path) -> None:
    threads = frozenset(threading.enumerate())
    with Engine(f"sqlite:///{tmp_path / 'w.db'}") as eng:
        workers = eng.start_workers(3)
        assert workers.stop(timeout=120)
        assert not workers.running
    assert _baton_threads(threads) == []
    with pytest.raises(ConfigError, match="closed"):
        eng.start_workers(1)
    assert _baton_threads(threads) == []


def test_an_asyncio_program_calls_it_in_threads(db_url: str) -> None:
    async def main() -> list[dict[str, Any]]:
        with Engine(db_url) as eng:
            await asyncio.to_thread(eng.deploy, texts={"py.yaml": DEFS})
            made = await asyncio.gather(*(
                asyncio.to_thread(eng.create_record, "PyTicket", {"subject": f"tech {i}"})
                for i in range(12)))
            await asyncio.to_thread(run_workers, eng, 2, until_idle=True)
            return [eng.get_record(r["id"]) for r in made]

    records = asyncio.run(main())
    assert [r["category"] for r in records] == ["tech"] * 12


# ---- what an IDE sees ---------------------------------------------------------------------
def test_the_public_names_are_typed(tmp_path: Path) -> None:
    """``py.typed`` ships, every name of ``baton.__all__`` imports, and a type checker sees
    ``Engine``'s methods (a call with a wrong argument is reported, not taken as Any)."""
    assert (Path(baton.__file__).parent / "py.typed").is_file()
    for name in baton.__all__:
        assert getattr(baton, name) is not None
    good = tmp_path / "good.py"
    good.write_text(
        "from typing import Any\n"
        "from baton import Engine, FlowContext, Settings, flow\n"
        "@flow('pyapi.typed')\n"
        "def f(ctx: FlowContext) -> dict[str, Any]:\n"
        "    return {'n': ctx.vars.get('n')}\n"
        "def use(engine: Engine) -> str:\n"
        "    engine = Engine('sqlite:///x.db', settings=Settings.from_environment())\n"
        "    return engine.start('o', {'n': 1}).id + engine.list_work()[0]['id']\n")
    bad = tmp_path / "bad.py"
    bad.write_text("from baton import Engine\n"
                   "def use(engine: Engine) -> None:\n"
                   "    engine.create_record(5, {})\n")
    env = {**os.environ, "MYPYPATH": str(REPO / "src")}
    # One mypy run checks both files (its cost is reading baton, the same for both): good.py
    # must have no error, bad.py exactly the one. --no-incremental: no cache is read, so what
    # it reports is what this run found; /dev/null: none is written either.
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
            "--cache-dir", os.devnull, "--follow-imports=silent"]
    done = subprocess.run([*mypy, good.name, bad.name], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=600, check=False)
    errors = [line for line in done.stdout.splitlines() if ": error: " in line]
    assert done.returncode == 1 and len(errors) == 1, done.stdout + done.stderr
    assert errors[0].startswith("bad.py:3: ") and 'incompatible type "int"' in errors[0], \
        done.stdout
    assert "Found 1 error in 1 file (checked 2 source files)" in done.stdout, done.stdout
