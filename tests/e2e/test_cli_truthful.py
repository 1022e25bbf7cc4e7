"""Issue 16 item 6, a truthful CLI, end to end (real ``baton`` subprocesses, both databases):
outside a project it says so instead of creating ``./baton.db``; the project is found from
any folder inside it; ``--version``; a bad filter value is refused with the valid ones; ids
are printed whole in narrow tables; ``worker --until-idle`` exits while a timer is still
far off; progress bars appear on a terminal, never in ``--json`` or piped output."""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, _pg_admin, _pg_url_for
from tests.e2e.test_cli import _env, baton, ok, ok_json, one_line_error

DEFS = """
kind: object
name: Parcel
fields:
  ref: {type: string, required: true}
---
kind: orchestration
name: deliver
trigger: {type: record, object: Parcel, on: [create]}
stages:
  - name: hold
    steps:
      - {name: label, type: background, flow: parcels.label}
      - {name: cool_off, type: pause, for: 2h, after: [label]}
"""

FLOWS = """
from baton import flow


@flow("parcels.label")
def label(ctx):
    return {"label": "L-" + ctx.record["ref"]}
"""


def make_project(root: Path, db_url: str) -> Path:
    """A project whose baton.toml names the test's database."""
    root.mkdir(parents=True)
    (root / "baton.toml").write_text(f'database = "{db_url}"\nflows = ["flows"]\n')
    (root / "definitions").mkdir()
    (root / "definitions" / "deliver.yaml").write_text(textwrap.dedent(DEFS))
    (root / "flows.py").write_text(textwrap.dedent(FLOWS))
    return root


_databases = itertools.count(1)


def _pg_create(template: str) -> str:
    """A PostgreSQL database cloned from ``template`` (a database name); its name. A clone
    needs the template to itself: a CLI process that just exited may still have a server
    backend on it for a moment, so "being accessed by other users" is waited out."""
    import psycopg

    name = f"baton_truthful_{os.getpid()}_{next(_databases)}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with _pg_admin() as admin:  # type: ignore[attr-defined]
                admin.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
            return name
        except psycopg.errors.ObjectInUse:  # "being accessed by other users"
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _pg_drop(name: str) -> None:
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module", params=BACKENDS)
def deployed(request: pytest.FixtureRequest,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The project on a fresh database of each backend, deployed (one ``baton deploy``) and
    nothing more: the tests that only read use it as it is (they run no command that
    writes), those that write work on a copy of its database (:func:`deployed_copy`)."""
    root = tmp_path_factory.mktemp(f"deployed-{request.param}")
    name = None
    if request.param == "postgres":
        name = _pg_create(request.getfixturevalue("pg_template"))
        url = _pg_url_for(name)
    else:
        url = f"sqlite:///{root / 'baton.db'}"
    proj = make_project(root / "proj", url)
    ok(baton("deploy", cwd=proj))
    yield proj
    if name is not None:
        _pg_drop(name)


@pytest.fixture
def deployed_copy(deployed: Path, tmp_path: Path) -> Iterator[Path]:
    """The project again, on a database of its own: a copy of ``deployed``'s, which holds
    the deploy and nothing else (as ``baton deploy`` on a fresh database leaves it)."""
    url = (deployed / "baton.toml").read_text().split('"')[1]
    name = None
    if url.startswith("postgres"):
        name = _pg_create(url.rsplit("/", 1)[1])
        copy = _pg_url_for(name)
    else:
        db = Path(url.removeprefix("sqlite:///"))
        copy = f"sqlite:///{tmp_path / db.name}"
        for suffix in ("", "-wal"):  # (no process has it open: -shm is rebuilt on opening)
            if Path(f"{db}{suffix}").exists():
                shutil.copyfile(f"{db}{suffix}", tmp_path / f"{db.name}{suffix}")
    yield make_project(tmp_path / "proj", copy)
    if name is not None:
        _pg_drop(name)


def test_outside_a_project_a_command_says_so_and_creates_nothing(tmp_path: Path) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    for args in (["runs", "list"], ["deploy"], ["worker", "--until-idle"], ["db", "upgrade"],
                 ["users", "list"]):
        line = one_line_error(baton(*args, cwd=empty), "not in a Baton project",
                              "baton.toml", "baton init")
        assert str(empty) in line, line
    one_line_error(baton("--project", empty, "runs", "list", cwd=tmp_path),
                   f"{empty} has no baton.toml")
    assert list(empty.iterdir()) == []  # no baton.db, no -wal, nothing
    # What works anywhere: --help, --version, init, validate FILE (the file alone).
    assert "Usage" in ok(baton("--help", cwd=empty)).stdout
    assert re.fullmatch(r"baton \d+\.\d+\.\d+\S*\n", ok(baton("--version", cwd=empty)).stdout)
    good = tmp_path / "deliver.yaml"
    good.write_text(textwrap.dedent(DEFS))
    p = ok(baton("validate", good, cwd=empty))
    assert "valid" in p.stdout and "flow names and deployed object types are not checked" in p.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(textwrap.dedent(DEFS).replace("after: [label]", "after: [lable]"))
    p = baton("validate", bad, "--json", cwd=empty)
    assert p.returncode == 1 and "lable" in json.loads(p.stdout)[0]["message"], p.stdout
    ok(baton("init", empty / "proj", cwd=empty))
    assert sorted(x.name for x in empty.iterdir()) == ["proj"]


def test_a_named_database_works_outside_a_project(tmp_path: Path, db_url: str) -> None:
    empty = tmp_path / "nowhere"
    empty.mkdir()
    assert ok_json(baton("--db", db_url, "runs", "list", "--json", cwd=empty)) == []
    env_db = subprocess.run([sys.executable, "-m", "baton.cli.main", "work", "list", "--json"],
                            cwd=empty, env=_env(None) | {"BATON_DB": db_url},
                            capture_output=True, text=True, timeout=180, check=False)
    assert json.loads(ok(env_db).stdout) == []
    assert not (empty / "baton.db").exists()


def test_the_project_is_found_from_a_folder_inside_it(tmp_path: Path, db_url: str) -> None:
    proj = make_project(tmp_path / "proj", db_url)
    deep = proj / "definitions" / "drafts"
    deep.mkdir()
    ok(baton("deploy", cwd=deep))  # deploys proj/definitions, not ./
    ok(baton("records", "create", "Parcel", "--data", '{"ref": "A1"}', cwd=deep))
    (run,) = ok_json(baton("runs", "list", "--json", cwd=deep))
    assert run["orchestration"] == "deliver"
    assert list(deep.iterdir()) == [] and not (proj / "baton.db").exists() or \
        db_url.endswith(f"{proj}/baton.db")


def test_invalid_filter_values_are_refused_with_the_valid_ones(deployed: Path) -> None:
    proj = deployed  # (only reads: the refused commands stop at their options)
    cases = {
        ("runs", "list", "--status", "bogus"): ("--status", "in_progress, completed, failed, canceled"),
        ("work", "list", "--status", "bogus"): ("--status", "open, claimed, completed, canceled"),
        ("incidents", "list", "--status", "open", "--status", "bogus"): ("--status", "open, resolved, dismissed"),
        ("definitions", "list", "--kind", "bogus"): ("--kind", "object, orchestration, calendar"),
        ("worker", "--until-idle", "--log-format", "xml"): ("--log-format", "text, json"),
    }
    for args, (option, valid) in cases.items():
        p = baton(*args, cwd=proj)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        text = " ".join(p.stderr.replace("│", " ").split())
        assert f"Invalid value for '{option}'" in text and valid in text, (args, text)
    assert ok_json(baton("runs", "list", "--status", "in_progress", "--json", cwd=proj)) == []


def test_ids_are_printed_whole_in_a_narrow_table(deployed_copy: Path) -> None:
    proj = deployed_copy  # deployed
    ok(baton("records", "create", "Parcel", "--data", '{"ref": "B2"}', cwd=proj))
    runs = ok_json(baton("runs", "list", "--json", cwd=proj))
    records = ok_json(baton("records", "list", "--json", cwd=proj))
    for columns in ("60", "80"):  # 60: borderless; ids still on one line
        text = ok(baton("runs", "list", cwd=proj, columns=columns)).stdout
        assert all(r["id"] in text for r in runs), text
        assert max(len(line) for line in text.splitlines()) <= int(columns), text
        text = ok(baton("records", "list", cwd=proj, columns=columns)).stdout
        assert all(r["id"] in text for r in records), text
    wide = ok(baton("runs", "list", "--wide", cwd=proj)).stdout
    assert "record" in wide and runs[0]["record_id"] in wide


def test_worker_until_idle_exits_while_a_timer_is_still_hours_away(deployed_copy: Path) -> None:
    proj = deployed_copy  # deployed
    ok(baton("records", "create", "Parcel", "--data", '{"ref": "C3"}', cwd=proj))
    # The label step runs; the 2 h pause is armed as a job due later: nothing is ready now,
    # so the worker exits (the subprocess timeout is far below 2 h).
    p = ok(baton("worker", "--until-idle", cwd=proj, timeout=300))
    assert "1 steps completed" in p.stdout, p.stdout
    (run,) = ok_json(baton("runs", "list", "--json", cwd=proj))
    assert run["status"] == "in_progress"
    detail = ok_json(baton("runs", "show", run["id"], "--json", cwd=proj))
    status = {s["name"]: s["status"] for s in detail["steps"]}
    assert status == {"label": "completed", "cool_off": "running"}, status
    p = ok(baton("worker", "--until-idle", cwd=proj, timeout=300))  # again: nothing to do
    assert "0 jobs" in p.stdout, p.stdout


ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _run_in_terminal(args: list[str], cwd: Path, timeout: float = 300) -> tuple[int, str]:
    """``baton ARGS`` with a pseudo-terminal as stdout and stderr (as a person runs it);
    its exit code and everything it wrote, escape sequences included."""
    main, child = pty.openpty()
    env = _env("120") | {"TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "baton.cli.main", *args], cwd=cwd, env=env,
                            stdin=subprocess.DEVNULL, stdout=child, stderr=child)
    os.close(child)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                out += chunk
            elif proc.poll() is not None:
                break
        # The text as the person reads it: colours and cursor movements left out.
        return proc.wait(timeout=60), ANSI.sub("", out.decode(errors="replace"))
    finally:
        os.close(main)
        if proc.poll() is None:
            proc.kill()


@pytest.mark.pg_slow  # a terminal session per long command: PostgreSQL's in CI
def test_progress_bars_on_a_terminal_only(tmp_path: Path, db_url: str) -> None:
    """A bar is drawn as soon as its command starts (Rich's ``Progress`` renders when it
    starts, then counts up), so a deploy of a few files and a worker with a few jobs show
    it as surely as many would; the result that follows it is checked whole."""
    proj = make_project(tmp_path / "proj", db_url)
    for i in range(3):  # a deploy of several files
        (proj / "definitions" / f"kind_{i:02}.yaml").write_text(
            f"kind: object\nname: Thing{i}\nfields:\n  n: {{type: int}}\n")
    code, screen = _run_in_terminal(["deploy"], proj)
    assert code == 0, screen
    assert re.search(r"(reading files|validating|deploying)", screen), screen
    assert "Thing2" in screen  # the result table follows the bar
    # Piped, and with --json: the result alone, no bar.
    p = ok(baton("deploy", cwd=proj))
    assert not re.search(r"reading files|validating|deploying|━━", p.stderr), p.stderr
    deployed = ok_json(baton("deploy", "--json", cwd=proj))
    assert len(deployed) == 5 and not any(d["changed"] for d in deployed)
    for i in range(3):
        ok(baton("records", "create", "Parcel", "--data", json.dumps({"ref": f"D{i}"}), cwd=proj))
    code, screen = _run_in_terminal(["worker", "--until-idle"], proj)
    assert code == 0, screen
    assert "worker: jobs done" in screen and "3 steps completed" in screen, screen


@pytest.mark.parametrize("args", [["runs", "list"], ["work", "list"], ["fallout", "list"]])
def test_json_output_has_no_progress_or_markup(deployed: Path, args: list[str]) -> None:
    code, screen = _run_in_terminal([*args, "--json"], deployed)
    assert code == 0, screen
    assert json.loads(screen.replace("\r\n", "\n")) == []
