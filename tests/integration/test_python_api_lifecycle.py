"""An Engine's life as an embedding program sees it: ``close()`` ends it for good (every
call after it refuses, and none opens the database again), closing twice is harmless, workers
running when it closes finish the job in hand first; and how soon a deploy is seen, by the
Engine that made it and by another one on the same database.
"""

from __future__ import annotations

import inspect
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from baton import ConfigError, Engine, FlowContext, ValidationError, flow
from tests.procs import eventually

CLOSED = "this Engine is closed; make a new one"

DEFS = """
kind: object
name: LifeTicket
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: life_hold
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: hold, type: background, flow: lifecycle.hold}
"""

# A second version: the object type gains a field, a new orchestration starts on its records.
DEFS_V2 = """
kind: object
name: LifeTicket
fields:
  subject: {type: string, required: true}
  priority: {type: int}
---
kind: orchestration
name: life_triage
trigger: {type: record, object: LifeTicket, on: [create]}
stages:
  - name: s
    steps:
      - {name: wait, type: pause, signal: go}
"""

HOLD = {"entered": threading.Event(), "release": threading.Event()}


@flow("lifecycle.hold")
def hold(ctx: FlowContext) -> dict[str, Any]:
    HOLD["entered"].set()
    released = HOLD["release"].wait(120)  # (a safety bound: the test releases it)
    return {"released": released}


def _public_methods() -> list[str]:
    """Every public method of Engine, as a program sees them (not ``close``)."""
    return sorted(name for name, value in inspect.getmembers(Engine, inspect.isfunction)
                  if not name.startswith("_") and name != "close")


def _open_files(path: Path) -> int:
    """This process's descriptors open on ``path`` (or its -wal/-shm files)."""
    out = 0
    for fd in Path("/proc/self/fd").iterdir():
        try:
            out += os.readlink(fd).startswith(str(path))
        except OSError:  # (the listing's own descriptor, gone by now)
            pass
    return out


# ---- close() --------------------------------------------------------------------------------
def test_a_closed_engine_refuses_every_call_and_opens_nothing(tmp_path: Path) -> None:
    db = tmp_path / "closed.db"
    eng = Engine(f"sqlite:///{db}")
    eng.deploy(texts={"life.yaml": DEFS})
    made = eng.create_record("LifeTicket", {"subject": "before"})
    assert _open_files(db) > 0  # (the pools hold connections while it is open)
    eng.close()
    assert _open_files(db) == 0
    methods = _public_methods()
    assert {"create_record", "start", "get_record", "list_work", "deploy", "claim",
            "start_workers", "warm"} <= set(methods)
    for name in methods:
        with pytest.raises(ConfigError) as refused:
            getattr(eng, name)()  # (refused before its arguments are even looked at)
        assert CLOSED in str(refused.value) and f"Engine.{name}" in str(refused.value), name
    for name in ("intake", "connections", "callbacks", "plans"):
        with pytest.raises(ConfigError, match=CLOSED):
            getattr(eng, name)
    with pytest.raises(ConfigError, match=CLOSED), eng:
        pass
    assert _open_files(db) == 0  # none of them opened the database again
    eng.close()  # twice: harmless
    eng.close()
    with Engine(f"sqlite:///{db}") as again:  # a new one on the same database works
        assert again.get_record(made["id"])["subject"] == "before"
        assert again.count_records() == 1  # (nothing was written by the refused calls)


def test_closing_inside_its_with_block_is_harmless(db_url: str) -> None:
    with Engine(db_url) as eng:
        assert eng.count_records() == 0
        eng.close()
        with pytest.raises(ConfigError, match=CLOSED):
            eng.count_records()
    # (leaving the block closed it once more: nothing happened)


def test_bad_arguments_say_what_and_where(tmp_path: Path) -> None:
    """The checks moved to ``runtime/arguments.py`` say the same: what and where."""
    with Engine(f"sqlite:///{tmp_path / 'a.db'}") as eng:
        with pytest.raises(ValidationError) as caught:
            eng.list_runs(limit=0, offset=-1, status="bogus", colour="red")
        assert caught.value.fields == {
            "limit": "expected a page size of at least 1, got 0",
            "offset": "expected a number of rows to skip (0 or more), got -1"}
        with pytest.raises(ValidationError) as caught:
            eng.count_runs(status="bogus", colour="red", version=True, attention="yes")
        assert set(caught.value.fields) == {"status", "colour", "version", "attention"}
        assert "unknown filter" in caught.value.fields["colour"]
        with pytest.raises(ValidationError, match="concurrency"):
            eng.start_workers(True)
        with pytest.raises(ValidationError, match="name"):
            eng.signal("run_1", "  ")


def test_closing_with_workers_running_lets_the_job_in_hand_finish(tmp_path: Path) -> None:
    HOLD["entered"].clear()
    HOLD["release"].clear()
    url = f"sqlite:///{tmp_path / 'w.db'}"
    threads = frozenset(threading.enumerate())
    eng = Engine(url)
    eng.deploy(texts={"life.yaml": DEFS})
    workers = eng.start_workers(2)
    run = eng.start("life_hold")
    assert HOLD["entered"].wait(120), "the worker never took the job"
    closing = threading.Thread(target=eng.close, name="test-closing")
    closing.start()

    def close_has_begun() -> bool:  # (start_workers refuses from then on)
        try:
            eng.start_workers(1)  # (if close() has not begun yet, it stops these too)
        except ConfigError as exc:
            assert CLOSED in str(exc)
            return True
        return False

    eventually(close_has_begun, timeout=120, what="close() to begin")
    assert closing.is_alive()  # it waits for the job in hand: the flow is still held
    assert eng.get_run(run.id).status.value == "in_progress"  # calls still work meanwhile
    HOLD["release"].set()
    closing.join(120)
    assert not closing.is_alive() and not workers.running and workers.error is None
    assert sorted(t.name for t in threading.enumerate()
                  if t.name.startswith("baton") and t not in threads) == []
    with Engine(url) as after:  # the job in hand was committed before the database closed
        done = after.get_run(run.id)
        assert done.status.value == "completed", done.steps
        assert done.steps["hold"].output == {"released": True}


# ---- how soon a deploy is seen --------------------------------------------------------------
def test_a_deploy_is_seen_by_its_engine_at_once_and_by_another_soon(db_url: str) -> None:
    with Engine(db_url) as one, Engine(db_url) as two:
        one.deploy(texts={"life.yaml": DEFS})
        # both have looked at the definitions just now (a record each)
        one.create_record("LifeTicket", {"subject": "a"})
        two.create_record("LifeTicket", {"subject": "b"})
        one.deploy(texts={"life.yaml": DEFS_V2})
        # the Engine that deployed uses the new versions at its very next call
        made = one.create_record("LifeTicket", {"subject": "c", "priority": 2})
        assert made["priority"] == 2
        (started,) = one.list_runs(record_id=made["id"])
        assert started.orchestration == "life_triage"

        # another Engine on the database: within its refresh window (a second), at most
        def two_sees_it() -> bool:
            try:
                rec = two.create_record("LifeTicket", {"subject": "d", "priority": 1})
            except ValidationError:  # (still the version it had read: no such field)
                return False
            return [r.orchestration for r in two.list_runs(record_id=rec["id"])] \
                == ["life_triage"]

        eventually(two_sees_it, timeout=60, what="the other Engine to see the deploy")


NEW_TYPE = """
kind: object
name: LifeNote
fields:
  text: {type: string, required: true}
---
kind: orchestration
name: life_note_started
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: wait, type: pause, signal: go}
"""


def test_a_name_another_engine_just_deployed_is_found_at_once(db_url: str) -> None:
    """A name this Engine has not seen (an object type or orchestration another Engine has
    just deployed) is looked up again at once, not after the refresh window; and a deploy
    is checked against what another Engine deployed just now."""
    with Engine(db_url) as one, Engine(db_url) as two:
        one.deploy(texts={"life.yaml": DEFS})
        two.create_record("LifeTicket", {"subject": "seen"})  # (two has looked just now)
        one.deploy(texts={"note.yaml": NEW_TYPE})
        note = two.create_record("LifeNote", {"text": "at once"})
        assert note["text"] == "at once"
        run = two.start("life_note_started")
        assert run.orchestration == "life_note_started"
        # two deploys an orchestration on the type one deployed a moment ago
        two.deploy(texts={"more.yaml": NEW_TYPE.split("---")[1].replace(
            "life_note_started", "life_note_more").replace(
            "trigger: {type: autolaunched}", "trigger: {type: record, object: LifeNote}")})
