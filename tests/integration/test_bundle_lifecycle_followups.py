"""Bundles over a definition's history (found by the lifecycle audit), on SQLite and
PostgreSQL:

* an ``--all-versions`` bundle of a database whose object type dropped a field an older,
  inactive orchestration version read (which deploy allows: it is history, no run on it)
  imports, into a fresh database and back into its own; the older version is stored, and
  activating it is still refused, as there it does not fit the object type;
* a version's file travels relative to the project folder, never as the exporting
  machine's absolute path.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import orjson
import pytest

from baton.errors import DefinitionError
from baton.runtime.bundle import apply_import, export_bundle, plan_import, read_bundle
from baton.runtime.engine import Engine
from baton.settings import Settings

TICKET_V1 = """kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
  category: {type: string}
"""
TICKET_V2 = """kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
"""
FLOW_V1 = """kind: orchestration
name: ticket_flow
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: answer
    steps:
      - {name: reply, type: interactive, assign: {queue: support}}
    next:
      - {when: '=record.category == "billing"', goto: billing}
      - {goto: end}
  - name: billing
    steps:
      - {name: refund, type: interactive, assign: {queue: billing}}
"""
FLOW_V2 = """kind: orchestration
name: ticket_flow
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: answer
    steps:
      - {name: reply, type: interactive, assign: {queue: support}}
"""


def _history(project: Path, db_url: str) -> Engine:
    """A project whose Ticket dropped ``category`` (v2) after ticket_flow v1 read it."""
    folder = project / "definitions"
    folder.mkdir(parents=True)
    engine = Engine(db_url, settings=Settings(project_dir=str(project)))
    (folder / "ticket.yaml").write_text(TICKET_V1)
    (folder / "ticket_flow.yaml").write_text(FLOW_V1)
    engine.deploy([folder], actor="setup")
    (folder / "ticket.yaml").write_text(TICKET_V2)
    (folder / "ticket_flow.yaml").write_text(FLOW_V2)
    engine.deploy([folder], actor="setup")
    return engine


def _import(engine: Engine, data: bytes) -> list[str]:
    plan = plan_import(engine, read_bundle(data))
    apply_import(engine, plan, actor="test")
    return [f"{c.kind} {c.name}: {c.action}" for c in plan.changes]


def _versions(engine: Engine, name: str) -> dict[int, bool]:
    return {r.version: r.active for r in engine.definitions.list_versions(None, name)}


def test_all_versions_bundle_with_history_that_no_longer_fits(
        db_url: str, tmp_path: Path) -> None:
    src = _history(tmp_path / "dev", f"sqlite:///{tmp_path / 'dev.db'}")
    try:
        data = export_bundle(src, all_versions=True)
        # back into its own database: every text is there already, nothing changes
        assert _import(src, data) == [
            "object Ticket: unchanged (v1)", "object Ticket: unchanged (v2)",
            "orchestration ticket_flow: unchanged (v1)",
            "orchestration ticket_flow: unchanged (v2)"]
    finally:
        src.close()
    dst = Engine(db_url)
    try:
        changes = _import(dst, data)
        assert "orchestration ticket_flow: new version 1" in changes, changes
        assert _versions(dst, "ticket_flow") == {1: False, 2: True}
        assert _versions(dst, "Ticket") == {1: False, 2: True}
        # the older version is history: activating it is judged now, and refused
        with pytest.raises(DefinitionError) as caught:
            dst.definitions.set_active("orchestration", "ticket_flow", 1, "test")
        assert "unknown record field 'category'" in str(caught.value.issues[0])
        assert _versions(dst, "ticket_flow") == {1: False, 2: True}
    finally:
        dst.close()


def test_an_older_version_that_is_not_a_definition_is_still_refused(
        db_url: str, tmp_path: Path) -> None:
    """History is not checked against the object types, but it is still checked: a
    version whose text is broken is refused, located in its bundle entry, nothing written."""
    src = _history(tmp_path / "dev", f"sqlite:///{tmp_path / 'dev.db'}")
    try:
        data = export_bundle(src, all_versions=True)
    finally:
        src.close()
    members = read_bundle(data)
    for d in members["definitions.json"]:
        if d["name"] == "ticket_flow" and d["version"] == 1:
            d["source"] = d["source"].replace("goto: billing", "goto: nowhere")
    dst = Engine(db_url)
    try:
        with pytest.raises(DefinitionError) as caught:
            plan_import(dst, members)
        issue = caught.value.issues[0]
        assert issue.file == "definitions/orchestration/ticket_flow/v1.yaml", issue
        assert "nowhere" in issue.message, issue
        assert dst.definitions.list_versions() == []
    finally:
        dst.close()


def test_a_bundle_carries_files_relative_to_the_project(tmp_path: Path) -> None:
    project = tmp_path / "home" / "alice" / "dev"
    outside = tmp_path / "elsewhere" / "extra.yaml"
    outside.parent.mkdir()
    engine = _history(project, f"sqlite:///{tmp_path / 'dev.db'}")
    try:
        outside.write_text(TICKET_V1.replace("Ticket", "Note"))
        engine.deploy([outside], actor="setup")
        data = export_bundle(engine, all_versions=True)
    finally:
        engine.close()
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        f = tar.extractfile("definitions.json")
        assert f is not None
        raw = f.read()
    files = {(d["name"], d["version"]): d["file"] for d in orjson.loads(raw)}
    assert files == {("Note", 1): "extra.yaml",
                     ("Ticket", 1): "definitions/ticket.yaml",
                     ("Ticket", 2): "definitions/ticket.yaml",
                     ("ticket_flow", 1): "definitions/ticket_flow.yaml",
                     ("ticket_flow", 2): "definitions/ticket_flow.yaml"}
    assert b"alice" not in raw and str(tmp_path).encode() not in raw
