"""Two things the CLI must not do, as real processes:

* ``baton validate`` never creates a database: with no SQLite file at the URL (a project
  not deployed yet, a typo in ``--db``) it checks the files against nothing deployed, says
  so on stderr, and leaves no file behind; with the file there it reads what is deployed.
* with ``--log-format json``, ``baton serve`` and ``baton worker`` write nothing but JSON
  lines: where the server listens, the first-admin hint and the workers' totals are log
  lines of ``baton.cli`` on stderr, not text beside them; with text logs they are printed
  as before.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from tests.e2e.test_cli import baton, ok
from tests.net import free_port
from tests.procs import baton_env, eventually

NOT_DEPLOYED = "does not exist yet: nothing is deployed to check against"


def _project(tmp_path: Path) -> Path:
    ok(baton("init", tmp_path / "proj", cwd=tmp_path))
    return tmp_path / "proj"


def test_validate_never_creates_the_database(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    default = proj / "baton.db"
    p = ok(baton("validate", cwd=proj))  # the project's own database, not made yet
    assert p.stdout.strip() == "valid" and f"database {default} {NOT_DEPLOYED}" in p.stderr
    assert not default.exists()
    for missing in (tmp_path / "typo.db", tmp_path / "no-such-folder" / "x.db"):
        p = ok(baton("--db", missing, "validate", "--json", cwd=proj))
        assert json.loads(p.stdout) == [] and NOT_DEPLOYED in p.stderr, p.stderr
        assert not missing.exists() and not missing.parent.joinpath("x.db-wal").exists()
    # The flow alone refers to an object type it does not define: nothing deployed defines
    # it either, so that is a problem (the check ran, against an empty database) ...
    flow = proj / "definitions" / "ticket_flow.yaml"
    alone = baton("validate", flow, cwd=proj)
    assert alone.returncode == 1 and "Ticket" in alone.stdout, (alone.stdout, alone.stderr)
    assert not default.exists()
    # ... and once the project is deployed, validate reads it: the flow alone is valid.
    ok(baton("deploy", cwd=proj))
    p = ok(baton("validate", flow, cwd=proj))
    assert p.stdout.strip() == "valid" and NOT_DEPLOYED not in p.stderr, p.stderr


def _json_lines(text: str) -> list[dict[str, object]]:
    lines = [json.loads(line) for line in text.splitlines()]  # each one a JSON object
    for line in lines:
        assert {"at", "level", "logger", "event"} <= set(line), line
    return lines


def test_serve_and_worker_with_json_logs_write_json_lines_only(tmp_path: Path) -> None:
    proj = _project(tmp_path)
    port = free_port()
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen([sys.executable, "-m", "baton.cli.main", "serve", "--port",
                                 str(port), "--log-format", "json"],
                                cwd=proj, env=baton_env(COLUMNS="400"), stdout=o, stderr=e)
        try:
            def answers() -> bool:
                assert proc.poll() is None, err.read_text()
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5):
                        return True
                except (urllib.error.URLError, ConnectionError):
                    return False

            eventually(answers, timeout=90, what="baton serve to answer")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    assert proc.returncode == 0, err.read_text()
    assert out.read_text() == ""
    said = {line["event"]: line for line in _json_lines(err.read_text())
            if line["logger"] == "baton.cli"}
    url = f"http://127.0.0.1:{port}"
    banner = f"Baton at {url} (API docs {url}/docs) with 1 worker thread(s). Stop with Ctrl-C."
    assert said[banner]["level"] == "info", said
    (hint,) = [line for event, line in said.items() if str(event).startswith("No users yet")]
    assert hint["level"] == "warning" and f"{url}/login" in str(hint["event"]), hint

    worker = subprocess.run([sys.executable, "-m", "baton.cli.main", "worker", "--until-idle",
                             "--log-format", "json"], cwd=proj, env=baton_env(),
                            capture_output=True, text=True, timeout=180, check=False)
    assert worker.returncode == 0 and worker.stdout == "", (worker.stdout, worker.stderr)
    assert {"event": "1 worker(s): 0 jobs, 0 steps completed, 0 failed", "level": "info",
            "logger": "baton.cli"}.items() <= _json_lines(worker.stderr)[-1].items()
    # text logs: the totals printed on stdout, as before
    text = ok(baton("worker", "--until-idle", cwd=proj))
    assert text.stdout == "1 worker(s): 0 jobs, 0 steps completed, 0 failed\n", text.stdout
