"""Odd input to the CLI, end to end (real ``baton`` subprocesses): a ``--db`` that is not a
database or cannot be reached, a flow module that fails on import, bundle files that are
not there or not bundles, ``--json`` when definitions are refused, an empty ``--user``, a
record given to an orchestration that takes none. Each is one line, ``error: ...``, naming
what and where, exit 1, no traceback, and nothing half-written."""

from __future__ import annotations

import io
import json
import os
import shutil
import sqlite3
import tarfile
from pathlib import Path

import pytest

from tests.e2e.test_cli import baton, ok, ok_json, one_line_error

AUTO = """
kind: orchestration
name: auto1
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: wait, type: pause, signal: go}
"""

BAD = """
kind: orchestration
name: bad1
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: a, type: background, flow: nope.nope}
"""


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What ``baton init`` creates (files only, no database yet), once: copied by those
    who use it."""
    root = tmp_path_factory.mktemp("init")
    ok(baton("init", "p", cwd=root))
    return root / "p"


@pytest.fixture(scope="module")
def proj(tmp_path_factory: pytest.TempPathFactory, quickstart: Path) -> Path:
    """The quickstart (``baton init``: no users) with an object-less autolaunched
    orchestration, deployed."""
    root = tmp_path_factory.mktemp("odd")
    shutil.copytree(quickstart, root / "proj")
    (root / "proj" / "definitions" / "auto1.yaml").write_text(AUTO)
    ok(baton("deploy", cwd=root / "proj"))
    return root / "proj"


def runs(proj: Path) -> list[tuple[str, str | None]]:
    return [(r["id"], r["record_id"]) for r in ok_json(baton("runs", "list", "--json", cwd=proj))]


# ---- a --db that cannot be opened -----------------------------------------------------------
def test_a_database_that_cannot_be_opened_is_one_line(proj: Path) -> None:
    toml = proj / "baton.toml"
    before = toml.read_bytes()
    for cmd in (("runs", "list"), ("deploy",), ("db", "upgrade")):
        one_line_error(baton("--db", f"sqlite:///{toml}", *cmd, cwd=proj),
                       f"sqlite:///{toml}: not a SQLite database")
    assert toml.read_bytes() == before  # (not made a database either)
    one_line_error(baton("--db", f"sqlite:///{proj}", "runs", "list", cwd=proj),
                   f"cannot open sqlite:///{proj}: it is a folder")
    line = one_line_error(baton("--db", "postgresql://u:hunter2@127.0.0.1:1/x", "runs", "list",
                                cwd=proj),
                          "cannot connect to PostgreSQL at 127.0.0.1:1: connection refused")
    assert "hunter2" not in line


def test_only_a_failure_to_open_is_called_so() -> None:
    """A database error raised by a statement (a lock held too long, a connection lost
    mid-command) is not a database that cannot be opened: it goes on as it is."""
    from sqlalchemy.exc import OperationalError

    from baton.errors import ConfigError
    from baton.store.sql.dialects import open_failure

    locked = sqlite3.OperationalError("database is locked")
    assert open_failure(OperationalError("BEGIN IMMEDIATE", {}, locked), "sqlite:////x.db") is None
    notadb = sqlite3.DatabaseError("file is not a database")
    notadb.sqlite_errorcode = 26  # type: ignore[attr-defined]
    notadb.sqlite_errorname = "SQLITE_NOTADB"  # type: ignore[attr-defined]
    assert open_failure(OperationalError("SELECT 1", {}, notadb), "sqlite:////x.db") is None
    found = open_failure(OperationalError(None, None, notadb), "sqlite:////x.db")
    assert isinstance(found, ConfigError) and str(found) == "sqlite:////x.db: not a SQLite database"


# ---- a flow module that fails on import ---------------------------------------------------
@pytest.mark.parametrize(("tail", "expected"), [
    ("def broken(:\n", ": invalid syntax"),
    ("\n\ndef setup():\n    raise RuntimeError('no config\\nsecond line')\n\n\nsetup()\n",
     ": RuntimeError: no config"),
])
def test_a_flow_module_that_fails_on_import_is_one_line(tmp_path: Path, tail: str,
                                                        expected: str, quickstart: Path) -> None:
    shutil.copytree(quickstart, tmp_path / "p")  # `baton init p`
    flows = tmp_path / "p" / "flows.py"
    lines = len(flows.read_text().splitlines())
    flows.write_text(flows.read_text() + tail)
    where = lines + 1 if "broken" in tail else lines + 4  # the raise, not the call
    for cmd in (("validate",), ("deploy",), ("worker", "--until-idle")):
        line = one_line_error(baton(*cmd, cwd=tmp_path / "p"),
                              "baton.toml: cannot import flow module 'flows': ",
                              f"flows.py:{where}{expected}")
        assert "second line" not in line


# ---- bundles: files that are not there, or not bundles; an export that cannot be written -
def test_import_and_export_file_errors_are_one_line(proj: Path, tmp_path: Path) -> None:
    one_line_error(baton("import", tmp_path / "nonexist.tgz", cwd=proj),
                   f"cannot read {tmp_path / 'nonexist.tgz'}: no such file")
    one_line_error(baton("import", tmp_path, cwd=proj), f"cannot read {tmp_path}: it is a folder")
    good = tmp_path / "good.tgz"
    ok(baton("export", "-o", good, cwd=proj))
    (tmp_path / "random.bin").write_bytes(os.urandom(3000))
    (tmp_path / "truncated.tgz").write_bytes(good.read_bytes()[:200])
    for name in ("random.bin", "truncated.tgz"):
        one_line_error(baton("import", tmp_path / name, cwd=proj),
                       f"{tmp_path / name}: not a bundle")
    one_line_error(baton("export", "-o", tmp_path / "no" / "d" / "x.tgz", cwd=proj),
                   f"cannot write {tmp_path / 'no' / 'd' / 'x.tgz'}: folder",
                   "does not exist")
    one_line_error(baton("export", "-o", tmp_path, cwd=proj),
                   f"cannot write {tmp_path}: it is a folder")
    assert not (tmp_path / "no").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.tgz", "random.bin",
                                                         "truncated.tgz"]  # no temp files


def test_a_failed_export_leaves_no_half_file(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from baton.cli import bundle
    from baton.errors import BatonError

    out = tmp_path / "b.tgz"
    out.write_bytes(b"the older bundle")

    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(bundle.os, "fsync", full)
    with pytest.raises(BatonError, match=f"cannot write {out}: no space left on device"):
        bundle._write_whole(out, b"x" * 100_000)
    assert out.read_bytes() == b"the older bundle"
    assert [p.name for p in tmp_path.iterdir()] == ["b.tgz"]
    monkeypatch.undo()
    bundle._write_whole(out, b"new")
    assert out.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["b.tgz"]


# ---- --json when definitions are refused ----------------------------------------------------
def test_refused_definitions_under_json_are_json(proj: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD)
    p = baton("deploy", bad, "--json", cwd=proj)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    (issue,) = json.loads(p.stdout)
    assert issue == {"file": str(bad), "line": 8, "path": "stages[0].steps[0].flow",
                     "message": "unknown flow 'nope.nope'", "level": "error"}
    # stderr under --json: one JSON error (tests/e2e/test_cli_ux.py)
    assert json.loads(p.stderr)["error"] == {"kind": "definition", "exit_code": 1,
                                             "message": "1 problem(s); nothing was deployed"}
    # the same list as validate --json prints
    assert json.loads(baton("validate", bad, "--json", cwd=proj).stdout) == [issue]

    # import --json: a bundle whose orchestration reads an object type nobody defines
    good = tmp_path / "good.tgz"
    ok(baton("export", "-o", good, cwd=proj))
    with tarfile.open(good, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    defs = json.loads(members["definitions.json"])
    for d in defs:
        if d["name"] == "ticket_flow":
            d["source"] = d["source"].replace("object: Ticket", "object: Nope")
    members["definitions.json"] = json.dumps(defs).encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    broken = tmp_path / "broken.tgz"
    broken.write_bytes(buf.getvalue())
    p = baton("import", broken, "--json", cwd=proj)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    issues = json.loads(p.stdout)
    assert issues and all(set(i) == {"file", "line", "path", "message", "level"} for i in issues)
    assert any("Nope" in i["message"] for i in issues), issues
    assert json.loads(p.stderr)["error"]["message"].endswith("nothing was imported")


# ---- an empty --user ---------------------------------------------------------------------
def test_an_empty_user_claims_nothing(proj: Path) -> None:
    ok(baton("records", "create", "Ticket", "--data", '{"subject": "Printer on fire"}',
             cwd=proj))
    ok(baton("worker", "--until-idle", cwd=proj))
    item = ok_json(baton("work", "list", "--json", cwd=proj))[0]
    for user in ("", "   "):
        for cmd in (("claim",), ("complete", "--data", '{"reply": "x", "outcome": "solved"}'),
                    ("accept",), ("decline",), ("recall",)):
            one_line_error(baton("work", cmd[0], item["id"], "--user", user, *cmd[1:], cwd=proj),
                           "--user is empty")
    shown = ok_json(baton("work", "show", item["id"], "--json", cwd=proj))
    assert shown["status"] == "open" and not shown.get("claimed_by"), shown
    assert ok(baton("work", "claim", item["id"], "--user", "ann", cwd=proj)).stdout.strip() \
        == f"{item['id']} claimed by ann"


# ---- a record given to an orchestration that takes none ------------------------------------
def test_a_record_is_refused_by_an_orchestration_without_object(proj: Path) -> None:
    rec = ok_json(baton("records", "create", "Ticket", "--data", '{"subject": "x"}', "--json",
                        cwd=proj))
    before = runs(proj)
    one_line_error(baton("start", "auto1", "--record", rec["id"], cwd=proj),
                   "orchestration 'auto1' takes no record (it declares no object)")
    assert runs(proj) == before
    ok(baton("start", "auto1", cwd=proj))
    assert len(runs(proj)) == len(before) + 1
