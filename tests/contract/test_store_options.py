"""SqlStore's options come from the entry point's Settings; the store reads no environment."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from baton.settings import Settings
from baton.store.sql import SqlStore

NOW = "2026-01-05T09:00:00.000Z"


def test_sqlite_synchronous_from_the_settings_never_from_the_environment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_SQLITE_SYNCHRONOUS", "OFF")  # not read below the edges
    given = SqlStore(f"sqlite:///{tmp_path / 'a.db'}", **Settings.from_environment(
        {"BATON_SQLITE_SYNCHRONOUS": "normal"}).store_options())
    default = SqlStore(f"sqlite:///{tmp_path / 'b.db'}")
    try:
        assert (given.synchronous, given.durability()["synchronous"]) == ("NORMAL", "NORMAL")
        assert (default.synchronous, default.durability()["synchronous"]) == ("FULL", "FULL")
    finally:
        given.close()
        default.close()


def test_the_worker_host_given_decides_which_workers_are_judged_by_their_pid(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BATON_WORKER_HOST", "from-the-environment")  # not read by the store
    gone = subprocess.Popen(["true"])  # a process that existed and has exited
    gone.wait()
    for host, released in (("here", 1), ("elsewhere", 0)):
        store = SqlStore(f"sqlite:///{tmp_path / f'{host}.db'}", worker_host=host)
        try:
            store.migrate()
            assert store.host() == host
            store.register_worker("w1", "here", gone.pid, NOW)
            with store.write() as tx:
                tx.enqueue_job_txn("step", "run_1", {}, NOW, NOW)
            assert len(store.claim_jobs("w1", NOW, 10)) == 1
            # Within the heartbeat timeout: only a worker on this store's host is checked by pid.
            assert store.release_jobs_of_dead_workers(NOW, 30) == released
        finally:
            store.close()
