"""Real ``baton`` processes for tests: the environment they run in, waiting with a deadline
instead of a fixed sleep, and a long-running process (``baton serve``, ``baton worker``)
that a test can SIGKILL and start again, with every life's output kept in one log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def baton_env(**extra: str) -> dict[str, str]:
    """This process's environment for a ``baton`` child: ``src/`` on PYTHONPATH (the tests
    run whether or not the package is installed), no inherited database or fault point."""
    env = {k: v for k, v in os.environ.items() if k not in ("BATON_DB", "BATON_FAULT")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    env.update(extra)
    return env


def baton_command(project: Path, db_url: str, *args: str) -> list[str]:
    return [sys.executable, "-m", "baton.cli.main", "--project", str(project), "--db", db_url,
            *args]


def eventually(probe: Callable[[], T | None], *, timeout: float = 60.0, what: str = "it") -> T:
    """Poll ``probe`` until it returns something truthy (a deadline, not a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


class BatonProcess:
    """``baton ARGS`` on a project and database, started, SIGKILLed and started again.

    Standard output and error of every life go to ``<log_dir>/<name>.log``, each life
    headed by its number and pid, so a failure can show what the process said before it
    died. ``kills`` and ``starts`` count what the test did to it.
    """

    def __init__(self, name: str, project: Path, db_url: str, args: Sequence[str],
                 log_dir: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.command = baton_command(project, db_url, *args)
        self.cwd = project
        self.env = env if env is not None else baton_env()
        self.log = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, f"{self.name} was never started"
        return self.proc.pid

    def start(self, **env: str) -> None:
        """Start a new life (``env``: variables for this life only, on top of ``env``)."""
        assert self.proc is None or self.proc.poll() is not None, f"{self.name} is running"
        self._close_log()
        self._log_file = self.log.open("ab")
        self._log_file.write(f"\n--- {self.name} life {self.starts + 1}\n".encode())
        self._log_file.flush()
        self.proc = subprocess.Popen(self.command, cwd=self.cwd, env={**self.env, **env},
                                     stdout=self._log_file, stderr=subprocess.STDOUT)
        self.starts += 1

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exited(self) -> int | None:
        """The exit status of a life that ended by itself (None while running)."""
        return None if self.proc is None else self.proc.poll()

    def kill(self, timeout: float = 30) -> None:
        """SIGKILL: no clean-up, no unregistering, a connection cut mid-request."""
        assert self.proc is not None and self.alive(), f"{self.name} is not running"
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=timeout)
        self.kills += 1

    def stop(self, timeout: float = 30, sig: int = signal.SIGTERM) -> int | None:
        """``sig`` and wait (SIGKILL after ``timeout``); the exit status, None if never run.
        (``baton serve`` stops on SIGINT, Ctrl-C, and SIGTERM with status 0.)"""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self._close_log()
        return self.proc.returncode

    def tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def triage_open_items(engine: Any) -> int:
    """Complete the open case-triage items (queues tier1 and tier2) as the benchmark's
    driver does: escalate a level-1 case whose number is a multiple of 5, close the rest.
    Returns how many it completed (0: none was open)."""
    items = engine.list_work(queue="tier1", limit=500) + engine.list_work(queue="tier2", limit=500)
    for item in items:
        case = engine.get_record(item["record_id"])
        escalate = case["number"] % 5 == 0 and case["level"] == 1
        engine.complete(item["id"], "driver", {"resolution": "escalate" if escalate else "close"})
    return len(items)
