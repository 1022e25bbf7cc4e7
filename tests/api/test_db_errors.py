"""Database errors at the API's edge, and in the IMAP poller: a database that is away or
locked is a ``503`` problem document with ``Retry-After``; any other failure a ``500``
problem document that shows nothing of the error (no SQL, no field values) while the
server's log has the traceback; the IMAP polling thread outlives a database error."""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from baton.intake.imap import ImapPolling
from baton.runtime.engine import Engine
from baton.web.app import create_app
from tests.api.conftest import CASE_TRIAGE, Api, assert_problem
from tests.imapd import ImapServer
from tests.net import free_port
from tests.procs import eventually

SUBJECT = "Invoice 12 is wrong: secret-subject-xyz"


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """``path`` read-only for this process, root included: ``chmod 0444`` for another
    user; for root (whom modes do not stop) the immutable attribute (``chattr +i``), and
    the test skips where the file system or the container does not allow it."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        try:
            yield
        finally:
            path.chmod(0o644)
        return
    try:
        subprocess.run(["chattr", "+i", str(path)], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        pytest.skip(f"cannot make a file read-only as root here (chattr +i: {exc})")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def _no_internals(body: dict[str, Any]) -> None:
    text = str(body)
    for leak in ("INSERT", "UPDATE", "SELECT", "[SQL", "parameters", "secret-subject-xyz",
                 "sqlite3", "OperationalError", "Traceback"):
        assert leak not in text, (leak, body)


def test_a_read_only_database_file_is_a_500_problem_and_a_logged_traceback(
        sqlite_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    db = Path(sqlite_api.db_url.removeprefix("sqlite:///"))
    sqlite_api.close()  # (closed connections: SQLite checkpoints its WAL into the file)
    with read_only(db):
        engine = Engine(sqlite_api.db_url, migrate=False)  # opens the file read-only
        try:
            client = TestClient(create_app(engine), raise_server_exceptions=False)
            auth = sqlite_api.auth("opal")
            with caplog.at_level(logging.ERROR, logger="baton.web.problems"):
                r = client.post("/api/objects/Case/records", json={"data": {"subject": SUBJECT}},
                                headers=auth)
            body = assert_problem(r, 500)
            assert body["type"].endswith("/internal") and "database error" in body["detail"]
            _no_internals(body)
            logged = [rec for rec in caplog.records if rec.name == "baton.web.problems"]
            assert logged and logged[0].exc_info is not None, caplog.text
            assert "POST /api/objects/Case/records" in logged[0].getMessage()
            assert "readonly database" in logged[0].getMessage()
            # Reads still answer.
            assert client.get("/api/records", headers=auth).status_code == 200
            client.close()
        finally:
            engine.close()


@pytest.mark.parametrize("path", ["/api/objects/Case/records", "/metrics"])
def test_postgresql_away_is_a_503_problem_with_retry_after(
        path: str, caplog: pytest.LogCaptureFixture) -> None:
    # Nothing listens on the port: every connection is refused, as for a server that is down.
    engine = Engine(f"postgresql://postgres@127.0.0.1:{free_port()}/baton", migrate=False)
    try:
        client = TestClient(create_app(engine), raise_server_exceptions=False)
        auth = {"Authorization": "Bearer baton_not_checked_the_database_is_away"}
        with caplog.at_level(logging.WARNING, logger="baton.web.problems"):
            r = (client.post(path, json={"data": {"subject": SUBJECT}}, headers=auth)
                 if path.startswith("/api/") else client.get(path, headers=auth))
        body = assert_problem(r, 503)
        assert r.headers["retry-after"] == "5"
        assert body["type"].endswith("/unavailable") and "database is unavailable" in body["detail"]
        _no_internals(body)
        assert "Connection refused" in caplog.text
        client.close()
    finally:
        engine.close()


def _locked(*_: Any, **__: Any) -> Any:
    raise OperationalError("INSERT INTO baton_records VALUES (?)", (SUBJECT,),
                           sqlite3.OperationalError("database is locked"))


def test_a_locked_database_is_a_503_after_one_more_try(sqlite_api: Api,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tries: list[int] = []

    def locked(*a: Any, **kw: Any) -> Any:
        tries.append(1)
        return _locked()

    monkeypatch.setattr(sqlite_api.engine.store, "write", locked)
    r = sqlite_api.post("opal", "/api/objects/Case/records", {"data": {"subject": SUBJECT}})
    body = assert_problem(r, 503)
    assert r.headers["retry-after"] == "5"
    _no_internals(body)
    assert len(tries) >= 2  # the group committer tried once more before answering


def test_an_unexpected_error_is_a_500_problem_showing_nothing_of_it(
        sqlite_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret-subject-xyz: internal state")

    monkeypatch.setattr(sqlite_api.engine.store, "write", broken)
    client = TestClient(sqlite_api.app, raise_server_exceptions=False)
    r = client.post("/api/objects/Case/records", json={"data": {"subject": "x"}},
                    headers=sqlite_api.auth("opal"))
    body = assert_problem(r, 500)
    assert "unexpected error" in body["detail"]
    _no_internals(body)
    assert "RuntimeError" not in str(body) and "internal state" not in str(body)
    client.close()


# ---- the IMAP poller ----------------------------------------------------------------------
MAILBOX = """
kind: mailbox
name: inbox
object: Case
fields: {{subject: subject}}
imap: {{host: 127.0.0.1, port: {port}, username: support, password_secret: env:T_IMAP_PW,
        folder: INBOX, ssl: false, every: 5}}
"""


def _mail() -> bytes:
    return (b"From: client@dealer.example\r\nTo: support@baton.example\r\n"
            b"Subject: Question after the outage\r\nMessage-ID: <imap-db-1@dealer.example>\r\n"
            b"\r\nHello.\r\n")


def test_the_imap_poller_outlives_a_database_error(harness: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    harness.engine.deploy([CASE_TRIAGE / "definitions"], known_flows=None)
    with ImapServer("support", "pw-imap") as server:
        harness.deploy_text(MAILBOX.format(port=server.port))
        server.add(_mail())
        intake = harness.engine.intake
        real = intake.definitions.mailboxes
        failures = [2]  # the first two rounds cannot read the deployed mailboxes
        lock = threading.Lock()

        def flaky() -> Any:
            with lock:
                if failures[0]:
                    failures[0] -= 1
                    raise OperationalError("SELECT * FROM baton_definitions", {},
                                           sqlite3.OperationalError("disk I/O error"))
            return real()

        intake.definitions.mailboxes = flaky  # type: ignore[method-assign]
        polling = ImapPolling(intake, tick=0.05, env={"T_IMAP_PW": "pw-imap"})
        with caplog.at_level(logging.WARNING, logger="baton.intake.imap"):
            polling.start()
            try:
                def taken() -> bool:
                    return bool(harness.engine.list_records("Case"))

                eventually(taken, timeout=30, what="the message polled after the outage")
                assert polling._thread is not None and polling._thread.is_alive()
            finally:
                polling.stop()
    warnings = [r for r in caplog.records if "cannot read the deployed mailboxes" in r.getMessage()]
    assert len(warnings) == 2 and all(r.levelno == logging.WARNING for r in warnings)
    assert "disk I/O error" in warnings[0].getMessage()
    assert "SELECT" not in caplog.text and all(r.exc_info is None for r in warnings)
