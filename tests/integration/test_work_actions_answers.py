"""What the work item changes answer through the Python API (what the CLI and the Work
Guide call), on both databases: the item as :meth:`Engine.get_work_item` shows it, its
step's SLA (``sla_status``, ``due_at``) included, for claim, release, the next item,
reassign, complete and recall. And ``baton work claim --json`` prints it so; ``--user``
naming someone whose roles do not let them work items is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from baton.errors import PermissionDenied, ValidationError
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker

DEFS = """
kind: object
name: Job
fields:
  title: {type: string}
---
kind: orchestration
name: t_answers
trigger: {type: record, object: Job, on: [create]}
stages:
  - name: s
    steps:
      - {name: handle, type: interactive, assign: {queue: desk},
         form: [{name: ok, type: bool}], sla: {duration: 4h, jeopardy: 1h}}
---
kind: object
name: Quote
fields:
  amount: {type: int}
---
kind: orchestration
name: t_answers_approval
trigger: {type: record, object: Quote, on: [create]}
stages:
  - name: s
    steps:
      - {name: sign, type: approval, assign: {queue: managers}, sla: {duration: 1d}}
"""


def people(engine: Engine) -> None:
    d = engine.directory
    d.add_user("ann", roles=["agent"], queues=["desk"])
    d.add_user("mo", roles=["agent"], queues=["managers"])
    d.add_user("dee", roles=["designer"], queues=["desk"])


def job(harness: Any) -> dict[str, Any]:
    rec = harness.engine.create_record("Job", {"title": "fix it"})
    harness.work()
    (item,) = harness.engine.list_work(record_id=rec["id"])
    return dict(item)


def same(answer: dict[str, Any], engine: Engine) -> dict[str, Any]:
    """The answer (without a completion's run) is the item as a read shows it."""
    answer = {k: v for k, v in answer.items() if k != "run"}
    assert answer == dict(engine.get_work_item(answer["id"]))
    return answer


def test_the_python_api_answers_each_change_with_the_sla(harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    people(eng)
    ann = eng.directory.get_user("ann")
    iid = job(harness)["id"]
    assert eng.get_work_item(iid)["sla_status"] == "on_track"
    assert same(eng.claim(iid, "ann", scope=ann), eng)["sla_status"] == "on_track"
    assert same(eng.release(iid, "ann", scope=ann), eng)["sla_status"] == "on_track"
    nxt = eng.claim_next(ann)
    assert nxt is not None and nxt["id"] == iid
    assert same(nxt, eng)["sla_status"] == "on_track"
    got = same(eng.reassign(iid, "user:ann", actor="opal"), eng)
    assert (got["assignee"], got["sla_status"]) == ("ann", "on_track")
    assert got["due_at"] is not None
    done = eng.complete(iid, "ann", {"ok": True}, scope=ann)
    assert done["run"].status.value == "completed"
    assert same(done, eng)["sla_status"] == "on_track"

    rec = eng.create_record("Quote", {"amount": 9}, actor="user:ann")
    harness.work()
    (approval,) = eng.list_work(record_id=rec["id"])
    recalled = eng.work.recall(approval["id"], "ann", None)
    assert recalled["status"] == "canceled"
    assert same(recalled, eng)["sla_status"] == "on_track"


def test_who_cannot_work_items_is_refused_as_the_actor_and_the_target(harness: Any) -> None:
    harness.deploy_text(DEFS)
    eng = harness.engine
    people(eng)
    iid = job(harness)["id"]
    with pytest.raises(PermissionDenied, match=r"user dee \(designer\) may not work items"):
        eng.claim(iid, "dee", scope=eng.directory.get_user("dee"))
    with pytest.raises(ValidationError, match="user 'dee' \\(designer\\) may not work items"):
        eng.reassign(iid, "user:dee", actor="opal")
    assert eng.get_work_item(iid)["status"] == "open"
    # A designer who is also an agent may.
    eng.directory.update_user("dee", roles=["designer", "agent"])
    assert eng.reassign(iid, "user:dee", actor="opal")["assignee"] == "dee"
    assert eng.claim(iid, "dee", scope=eng.directory.get_user("dee"))["claimed_by"] == "dee"


def test_the_cli_prints_the_claimed_item_with_its_sla(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from baton.cli.main import app, state

    db = f"sqlite:///{tmp_path / 'baton.db'}"
    (tmp_path / "proj" / "definitions").mkdir(parents=True)
    (tmp_path / "proj" / "definitions" / "answers.yaml").write_text(DEFS)
    runner = CliRunner()

    def run(*args: str) -> Any:
        return runner.invoke(app, ["--project", str(tmp_path / "proj"), "--db", db, *args])

    try:
        assert run("deploy").exit_code == 0
        engine = state.engine()
        people(engine)
        engine.create_record("Job", {"title": "fix it"})
        Worker(engine).run(until_idle=True)
        (item,) = engine.list_work(queue="desk")
        refused = run("work", "claim", item["id"], "--user", "dee")
        assert refused.exit_code != 0  # (`baton` prints the error; the runner keeps it)
        assert isinstance(refused.exception, PermissionDenied), refused.output
        assert "user dee (designer) may not work items" in str(refused.exception)
        claimed = run("work", "claim", item["id"], "--user", "ann", "--json")
        assert claimed.exit_code == 0, claimed.output
        shown = orjson.loads(claimed.output)
        assert (shown["claimed_by"], shown["sla_status"]) == ("ann", "on_track")
        assert shown["due_at"] == engine.get_work_item(item["id"])["due_at"]
    finally:  # the CLI's state (its Engine, settings) is this process's: leave none behind
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None
