"""A PostgreSQL server that hangs must not stop the web server's event loop: who is asking
(an API token, a session cookie) is looked up in the database, and on PostgreSQL a lookup
that waits for it holds a request thread, never the loop that answers ``/healthz`` and every
other request; so do an error page's lookup of who is signed in and a public form's write.
(SQLite looks tokens up on the loop: a WAL reader of a local file waits for no writer.)

A real server (uvicorn on loopback) on a real PostgreSQL database, hung for the lookups by a
lock another connection holds on the tokens (then sessions, then records) table."""

from __future__ import annotations

import asyncio
import re
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx2 as httpx
import psycopg
import pytest
import uvicorn

from baton.web import security
from baton.web.app import create_app
from tests.conftest import Harness

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)

FORM = """
kind: object
name: Inquiry
fields:
  subject: {type: string, required: true}
---
kind: intake_form
name: contact
object: Inquiry
fields: [subject]
"""


class Server:
    """``create_app`` served by uvicorn on a loopback port, in a thread of its own."""

    def __init__(self, harness: Harness) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(create_app(harness.engine),
                                                    log_level="critical", lifespan="on"))
        self.thread = threading.Thread(target=lambda: asyncio.run(
            self.server.serve(sockets=[self.sock])), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


@pytest.fixture
def served(harness: Harness) -> Iterator[Server]:
    s = Server(harness)
    yield s
    s.close()


def test_a_token_lookup_waiting_for_a_hung_database_holds_no_other_request(
        harness: Harness, served: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """And ``/metrics`` waits for its token lookup at most ``LOOKUP_TIMEOUT_S``: then a token
    verified lately is taken (the scrape is answered), one that was not gets 503; while that
    lookup is still stuck, the next scrape is answered at once, without another."""
    monkeypatch.setattr(security, "LOOKUP_TIMEOUT_S", 0.5)
    directory = harness.engine.directory
    directory.add_user("ops", roles=["admin"])
    _, secret = directory.create_token("ops")
    _, unverified = directory.create_token("ops")
    cookie, _ = directory.create_session("ops")
    auth = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(base_url=served.url, timeout=30) as c:
        assert c.get("/api/runs", headers=auth).status_code == 200  # the token works
        assert c.get("/metrics", headers=auth).status_code == 200  # (and is verified)

    locker = psycopg.connect(harness.db_url.replace("postgresql+psycopg://", "postgresql://"),
                             autocommit=False)
    try:  # every read of the tokens table waits for this lock: the database "hangs" for them
        locker.execute("LOCK TABLE baton_api_tokens IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(2) as pool:
            held: Any = [pool.submit(httpx.get, f"{served.url}/api/runs", headers=auth,
                                     timeout=60) for _ in range(2)]
            time.sleep(0.5)  # (both are waiting in their lookups by now)
            assert not any(f.done() for f in held)
            with httpx.Client(base_url=served.url, timeout=5) as c:
                started = time.monotonic()
                assert c.get("/healthz").status_code == 200
                # an answer that needs no database at all: the login page
                assert c.get("/login").status_code == 200
                # (generous: on a loaded host a blocked loop shows as the full 5 s timeout)
                assert time.monotonic() - started < 4.5

                scrape = c.get("/metrics", headers=auth)  # its lookup waits 0.5 s, then...
                assert scrape.status_code == 200, scrape.text  # ...the verified token is taken
                assert "baton_database_up" in scrape.text
                started = time.monotonic()
                assert c.get("/metrics", headers=auth).status_code == 200
                assert time.monotonic() - started < 0.45  # (no second wait: the first is stuck)
                refused = c.get("/metrics", headers={"Authorization": f"Bearer {unverified}"})
                assert refused.status_code == 503, refused.text
                assert refused.headers["Retry-After"]
            locker.rollback()  # the database answers again: the held requests go on
            assert [f.result(timeout=60).status_code for f in held] == [200, 200]

        # a session cookie: the page's lookup, and an error page's (it names who is signed
        # in), wait in request threads too
        locker.execute("LOCK TABLE baton_sessions IN ACCESS EXCLUSIVE MODE")
        with ThreadPoolExecutor(2) as pool:
            cookies = {"baton_session": cookie}
            held = [pool.submit(httpx.get, f"{served.url}{path}", cookies=cookies, timeout=60)
                    for path in ("/work", "/no-such-page")]
            time.sleep(0.5)
            assert not any(f.done() for f in held)
            with httpx.Client(base_url=served.url, timeout=5) as c:
                assert c.get("/healthz").status_code == 200
            locker.rollback()
            assert [f.result(timeout=60).status_code for f in held] == [200, 404]

        # a public form's submission writes its record in a request thread too
        harness.deploy_text(FORM, "form.yaml")
        with httpx.Client(base_url=served.url, timeout=30) as visitor:
            page = visitor.get("/forms/contact")
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf is not None, page.text
            locker.execute("LOCK TABLE baton_records IN ACCESS EXCLUSIVE MODE")
            with ThreadPoolExecutor(1) as pool:
                sent = pool.submit(visitor.post, "/forms/contact",
                                   data={"subject": "Hello", "csrf_token": csrf[1]})
                time.sleep(0.5)
                assert not sent.done()
                with httpx.Client(base_url=served.url, timeout=5) as c:
                    assert c.get("/healthz").status_code == 200
                locker.rollback()
                assert sent.result(timeout=60).status_code == 303  # to its thanks page
        assert [r["subject"] for r in harness.engine.list_records("Inquiry")] == ["Hello"]
    finally:
        locker.close()
