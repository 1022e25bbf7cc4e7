"""Records through a real ``baton serve`` over HTTP on loopback, from concurrent clients
(issue 19's group commit): every answered record is committed when it is answered, so a
server killed right after the answers (SIGKILL: no shutdown, nothing flushed on the way
out) has lost none of them, and each has its triage run."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2 as httpx

from tests.e2e.test_cli import EXAMPLES, _env, baton, ok
from tests.net import free_port

CLIENTS = 8
PER_CLIENT = 15


def _serve(proj: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "baton.cli.main", "serve", "--port", str(port),
                             "--workers", "0"], cwd=proj, env=_env("400"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait_ready(proc: subprocess.Popen[bytes], url: str, token: str) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, "baton serve exited"
        try:
            if httpx.get(f"{url}/api/me", headers={"Authorization": f"Bearer {token}"},
                         timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("baton serve did not answer within 90 s")


def test_concurrent_creates_are_durable_when_answered(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "case_triage", proj)
    ok(baton("deploy", cwd=proj))
    ok(baton("users", "add", "intake", "--role", "operator", cwd=proj))
    token = json.loads(ok(baton("tokens", "create", "intake", "--json", cwd=proj)).stdout)
    secret = token["token"]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(proj, port)
    answered: dict[int, str] = {}
    failures: list[str] = []
    lock = threading.Lock()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, timeout=60,
                          headers={"Authorization": f"Bearer {secret}"}) as c:
            for j in range(PER_CLIENT):
                n = k * PER_CLIENT + j
                r = c.post("/api/objects/Case/records",
                           json={"data": {"subject": f"case {n}", "number": n}})
                with lock:
                    if r.status_code == 201:
                        answered[n] = r.json()["id"]
                    else:
                        failures.append(f"{n}: {r.status_code} {r.text}")

    try:
        _wait_ready(proc, url, secret)
        threads = [threading.Thread(target=client, args=(k,)) for k in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert not failures, failures[:5]
    assert len(answered) == CLIENTS * PER_CLIENT
    with sqlite3.connect(proj / "baton.db") as db:
        rows: list[Any] = db.execute(
            "SELECT r.id, json_extract(r.data, '$.number'), (SELECT COUNT(*) FROM baton_runs u "
            "WHERE u.record_id = r.id AND u.orchestration = 'case_triage') "
            "FROM baton_records r WHERE r.object_type = 'Case'").fetchall()
    stored = {n: (rid, runs) for rid, n, runs in rows}
    assert len(rows) == len(answered)
    for n, rid in answered.items():
        assert stored.get(n) == (rid, 1), (n, rid, stored.get(n))
