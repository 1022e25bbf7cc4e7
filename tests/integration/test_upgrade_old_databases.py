"""Databases written by older releases of Baton, upgraded by this code and carried on.

``tests/data/upgrade`` holds one database per release (the last commit of each day of work,
schema 3 to 26) on SQLite and on PostgreSQL, each made by THAT release's own code from its
own examples (``make_old_db.py``; README.md there says how), as SQL to run, with a manifest
of what it holds: work items open and claimed, SLAs in jeopardy, a step in fallout, pauses on
a timer and for a signal (then a step whose name this code's validation refuses, stored
before it did), completed runs; from schema 22 on a callout waiting for its
callback, plans (completed, canceled, waiting, split in step rows, past a point of no
return with a timer to come), a parent waiting for its child, a schedule, an approval with a
delegate, an open incident, intake messages, routing profiles, a classifier, an idempotency
key, a session and an API token.

Each is upgraded as an operator does it (``baton db upgrade``, twice: the second does
nothing) into the schema a new database gets; then on virtual time, with this code, every
stored thing reads back through the engine, the API and the pages (the old session and
token still work), and every run carries on to its end as it would have: the waiting items
are completed, the callbacks and signals delivered, the fallout retried, the timers fire.
Nothing written before the upgrade is lost or changed: every audit event keeps its id and
content. Also: a database newer than the code is refused and left as it is; an upgrade
killed in the middle (SIGKILL, its transaction written to) leaves the old schema, whole, and
runs again.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import lzma
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from baton.clock import VirtualClock, parse_iso
from baton.errors import TransitionConflict
from baton.flows import get_flow
from baton.project import load_project
from baton.runtime.callbacks import sign
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings
from baton.store.codec import json_loads, unpack_event_row
from baton.store.migrations import LATEST
from baton.store.sql import SqlStore
from baton.web.app import create_app
from baton.web.security import CSRF_HEADER, SESSION_COOKIE
from tests.bank import bank_server
from tests.conftest import EXAMPLES, _pg_admin, _pg_url_for
from tests.procs import baton_env

DATA = Path(__file__).resolve().parents[1] / "data" / "upgrade"
RELEASES = ("7eb1957", "c7cab55", "2a39513", "a15cbe2")  # schema 3, 22, 25, 26
PASSWORD = "correct horse battery"  # make_old_db.PASSWORD
SECRETS = {"BANK_TOKEN": "bank-token-1", "BANK_HMAC": "bank-hmac-1",
           "CARRIER_TOKEN": "carrier-token-1"}
DONE = ("completed", "canceled")
SUFFIX = {"sqlite": "sqlite", "postgres": "pg"}  # the fixtures' names: RELEASE.SUFFIX.json


def _import_flows() -> None:
    """The flows of the projects the old databases ran (at run time, not collection: another
    module may register some of them its own way first, as test_plans does)."""
    for example, probe in (("case_triage", "cases.classify"),
                           ("address_update", "requests.close"),
                           ("order_fulfillment", "orders.credit_check"),
                           ("dealer_support", "dealers.route")):
        if get_flow(probe) is None:
            load_project(EXAMPLES / example).import_flows()
    if get_flow("upg.flaky") is None:
        spec = importlib.util.spec_from_file_location("upg_flows", DATA / "upg_flows.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["upg_flows"] = module
        spec.loader.exec_module(module)


# ---- the old databases -----------------------------------------------------------------
@dataclass
class Old:
    release: str
    backend: str
    url: str
    made: dict[str, Any]  # the manifest make_old_db.py wrote
    tmp: Path

    @property
    def schema(self) -> int:
        return int(self.made["schema"])

    def has(self, schema: int) -> bool:
        """Did the release that made it have this migration's features?"""
        return self.schema >= schema


_pg_names = itertools.count(1)


def _restore(release: str, backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    """Make the old database again from its SQL; returns its URL."""
    sql = lzma.decompress((DATA / f"{release}.{SUFFIX[backend]}.sql.xz").read_bytes()).decode()
    if backend == "sqlite":
        path = tmp / f"{release}.db"
        conn = sqlite3.connect(path)
        conn.executescript(sql)
        conn.close()
        return f"sqlite:///{path}"
    request.getfixturevalue("pg_template")  # (skips when PostgreSQL is not reachable)
    name = f"baton_upg_{os.getpid()}_{next(_pg_names)}"
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    request.addfinalizer(drop)
    import psycopg

    with psycopg.connect(_pg_url_for(name), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type] # (the dump: many statements, no parameters)
    return _pg_url_for(name)


def _old(release: str, backend: str, tmp: Path, request: pytest.FixtureRequest) -> Old:
    made = json.loads((DATA / f"{release}.{SUFFIX[backend]}.json").read_text())
    return Old(release, backend, _restore(release, backend, tmp, request), made, tmp)


# The oldest and the newest release on SQLite in every run of the suite; the releases between
# and every PostgreSQL variant (pg_slow) with the long tests (CI).
CASES = [pytest.param(r, b, id=f"{r}-{b}",
                      marks=[pytest.mark.slow] if r in ("c7cab55", "2a39513") else [])
         for r in RELEASES for b in ("sqlite", "postgres")]


def _sa_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+psycopg://", 1)


def _snapshot(url: str) -> dict[str, Any]:
    """What the database holds, read with plain SQL (whatever its schema): every audit event
    unpacked with its id, every run's and work item's status, every record's data."""
    eng = create_engine(_sa_url(url))
    try:
        with eng.connect() as conn:
            def rows(sql: str) -> list[dict[str, Any]]:
                out = []
                for row in conn.execute(text(sql)).mappings():
                    got = dict(row)
                    for key in ("data", "state"):
                        if isinstance(got.get(key), str | bytes):
                            got[key] = json_loads(got[key])
                    out.append(got)
                return out

            events = [e for row in rows("SELECT id, at, type, actor, record_id, run_id, data "
                                        "FROM baton_events ORDER BY id")
                      for e in unpack_event_row(row)]
            return {
                "events": {e["id"]: e for e in events},
                "runs": {r["id"]: r for r in rows(
                    "SELECT id, orchestration, status, record_id FROM baton_runs")},
                "records": {r["id"]: r["data"] for r in rows("SELECT id, data FROM baton_records")},
                "items": {r["id"]: r["status"] for r in rows(
                    "SELECT id, status FROM baton_work_items")},
                "migrations": sorted(r["version"] for r in rows(
                    "SELECT version FROM baton_schema_migrations")),
            }
    finally:
        eng.dispose()


def _schema_of(url: str) -> dict[tuple[str, ...], Any]:
    """Tables' columns (in any order), indexes, triggers and constraints, as the database
    describes them: what two databases of the same schema have alike."""
    eng = create_engine(_sa_url(url))
    out: dict[tuple[str, ...], Any] = {}
    try:
        with eng.connect() as conn:
            if eng.dialect.name == "sqlite":
                for kind, name, sql in conn.execute(text(
                        "SELECT type, name, sql FROM sqlite_master "
                        "WHERE name NOT LIKE 'sqlite_%'")):
                    if kind == "table":
                        out[(kind, name)] = sorted(tuple(r[1:]) for r in conn.exec_driver_sql(
                            f"PRAGMA table_info({name})"))
                    else:  # (made with IF NOT EXISTS by a migration, without by create())
                        out[(kind, name)] = " ".join(
                            (sql or "").replace(" IF NOT EXISTS", "").split())
            else:
                for table, column, *rest in conn.execute(text(
                        "SELECT table_name, column_name, data_type, is_nullable, "
                        "column_default, character_maximum_length FROM "
                        "information_schema.columns WHERE table_schema = 'public'")):
                    out[("column", table, column)] = tuple(rest)
                for name, definition in conn.execute(text(
                        "SELECT indexname, indexdef FROM pg_indexes "
                        "WHERE schemaname = 'public'")):
                    out[("index", name)] = definition
                for name, definition in conn.execute(text(
                        "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                        "WHERE NOT tgisinternal")):
                    out[("trigger", name)] = definition
                for name, definition in conn.execute(text(
                        "SELECT conname, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                        "JOIN pg_namespace n ON n.oid = c.connamespace "
                        "WHERE n.nspname = 'public'")):
                    out[("constraint", name)] = definition
    finally:
        eng.dispose()
    return out


_CANONICAL: dict[str, dict[tuple[str, ...], Any]] = {}


def _canonical(old: Old, request: pytest.FixtureRequest) -> dict[tuple[str, ...], Any]:
    """The schema this code gives a new database of the same backend (made and read once
    per backend in a session: it is this code's, the same for every old database)."""
    if old.backend not in _CANONICAL:
        if old.backend == "sqlite":
            url = f"sqlite:///{old.tmp / 'new.db'}"
        else:
            url = str(request.getfixturevalue("pg_url"))
        store = SqlStore(url)
        store.migrate()
        store.close()
        _CANONICAL[old.backend] = _schema_of(url)
    return _CANONICAL[old.backend]


def _baton(old: Old, *args: str) -> subprocess.CompletedProcess[str]:
    """``baton --db URL ARGS`` as an operator runs it, from a folder with no project."""
    return subprocess.run([sys.executable, "-m", "baton.cli.main", "--db", old.url, *args],
                          cwd=old.tmp, env=baton_env(), capture_output=True, text=True,
                          timeout=600, check=False)


# ---- carrying on with this code ----------------------------------------------------------
@dataclass
class World:
    """This code over the upgraded database: an Engine on virtual time (from when the old
    release stopped), its worker, the app (requests as the old session and token too)."""

    old: Old
    clock: VirtualClock = field(init=False)
    engine: Engine = field(init=False)
    worker: Worker = field(init=False)
    client: TestClient = field(init=False)

    def __post_init__(self) -> None:
        self.clock = VirtualClock(parse_iso(self.old.made["now"]))
        settings = Settings.from_environment({"BATON_PUBLIC_URL": "http://baton.example"})
        self.engine = Engine(self.old.url, clock=self.clock,
                             settings=replace(settings, secrets_env=dict(SECRETS)))
        self.worker = Worker(self.engine)
        self.client = TestClient(create_app(self.engine))
        self.admin_cookie = ""

    def close(self) -> None:
        self.client.close()
        self.engine.close()

    def work(self) -> None:
        self.worker.run(until_idle=True)

    def run(self, key: str) -> str:
        return str(self.old.made["runs"][key])

    def record(self, key: str) -> str:
        return str(self.old.made["records"][key])

    def status(self, key: str) -> str:
        return str(self.engine.get_run(self.run(key)).status.value)

    def items(self, run_key: str | None = None) -> list[dict[str, Any]]:
        found = self.engine.list_work(limit=500, run_id=self.run(run_key) if run_key else None)
        return [dict(i) for i in found]

    def page(self, path: str, cookie: str | None = None) -> Any:
        """A page of the web UI, as the admin (or the session ``cookie``), not followed."""
        self.client.cookies.clear()
        self.client.cookies.set(SESSION_COOKIE, cookie or self.admin_cookie)
        answer = self.client.get(path, follow_redirects=False)
        self.client.cookies.clear()
        return answer

    def api(self, method: str, path: str, token: str, **kw: Any) -> Any:
        return self.client.request(method, path, headers={"Authorization": f"Bearer {token}",
                                                          **kw.pop("headers", {})}, **kw)

    def all_pages(self, path: str, token: str) -> list[dict[str, Any]]:
        """Every element of a paged API list (``next`` cursors or ``next_offset`` followed)."""
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"limit": 100}
        while True:
            got = self.api("GET", path, token, params=params)
            assert got.status_code == 200, (path, got.text)
            body = got.json()
            out += body["items"]
            if body.get("next"):
                params = {"limit": 100, "after": body["next"]}
            elif body.get("next_offset"):
                params = {"limit": 100, "offset": body["next_offset"]}
            else:
                return out


def _answer(item: dict[str, Any]) -> dict[str, Any]:
    """A submission for an item's form: its required fields, a choice's first choice (close,
    approve, retained: what ends the run)."""
    data: dict[str, Any] = {}
    for f in item.get("form") or []:
        if f.get("required"):
            data[f["name"]] = (f["choices"][0] if f.get("type") == "choice"
                               else "done after the upgrade")
    return data


def _finish_people_work(w: World, rounds: int = 8) -> None:
    """Everyone completes what waits for them (claimed items by their claimer, the others
    by their assignee or a colleague), until nothing more comes."""
    for _ in range(rounds):
        items = w.items()
        if not items:
            return
        for listed in items:
            item = dict(w.engine.get_work_item(listed["id"]))  # (routing may have moved it)
            if item["status"] not in ("open", "claimed"):
                continue
            user = item.get("claimed_by") or (item["assignee"] if item["assignee_kind"] == "user"
                                              else "bob")
            if item["status"] == "open":
                w.engine.claim(item["id"], user)
            w.engine.complete(item["id"], user, _answer(item))
        w.work()
    raise AssertionError(f"work items keep coming: {w.items()}")


# ---- the tests -------------------------------------------------------------------------
@pytest.mark.pg_slow
@pytest.mark.parametrize(("release", "backend"), CASES)
def test_an_old_database_is_upgraded_and_every_run_carries_on(
        release: str, backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    _import_flows()
    old = _old(release, backend, tmp_path, request)
    before = _snapshot(old.url)
    assert before["migrations"][-1] == old.schema

    # ---- the operator's upgrade: once, then again (nothing to do) -------------------------
    first = _baton(old, "db", "upgrade")
    assert first.returncode == 0, first.stderr
    missing = [m for m in range(old.schema + 1, LATEST + 1) if m != 9]
    applied = [int(line.split()[1]) for line in first.stdout.splitlines()
               if line.startswith("applied ")]
    assert applied == missing, first.stdout
    again = _baton(old, "db", "upgrade")
    assert (again.returncode, again.stdout.strip()) == (0, "schema is up to date"), again
    assert _schema_of(old.url) == _canonical(old, request)

    w = World(old)
    try:
        _reads_back_whole(w, before, first=True)
        _carries_on(w)
        _reads_back_whole(w, before, first=False)  # (and each run's and record's page: in
        _history_kept(w, before)                   # _history_kept, which counts their rows)
    finally:
        w.close()


def _reads_back_whole(w: World, before: dict[str, Any], *, first: bool) -> None:
    """Every run, record and work item the old release wrote reads back through the engine,
    the API (with the old API token) and the pages; the old session still opens the Work
    Guide; what was written before the upgrade is there unchanged. (Not ``first``: the
    pages of the runs and records are left to :func:`_history_kept`, which comes next and
    renders each of them anyway, to count its timeline's rows.)"""
    token = w.old.made["token"]
    w.admin_cookie = w.engine.directory.create_session("admin")[0]  # (now, on virtual time)
    for run_id, row in before["runs"].items():
        run = w.engine.get_run(run_id)
        assert (run.orchestration, run.record_id) == (row["orchestration"], row["record_id"])
        got = w.api("GET", f"/api/runs/{run_id}", token)
        assert got.status_code == 200, got.text
        if first:
            assert w.page(f"/runs/{run_id}").status_code == 200, run_id
    for record_id, data in before["records"].items():
        got = w.api("GET", f"/api/records/{record_id}", token)
        assert got.status_code == 200, got.text
        if first:  # (the runs change some of them afterwards)
            assert got.json()["data"] == data, record_id
            assert w.page(f"/records/{record_id}").status_code == 200, record_id
    for item_id in before["items"]:
        got = w.api("GET", f"/api/work/{item_id}", token)
        assert got.status_code == 200, got.text
        assert w.page(f"/work/{item_id}").status_code == 200, item_id
    for path in ("/runs", "/work", "/records", "/fallout", "/definitions", "/team", "/settings",
                 "/runs?attention=1"):
        assert w.page(path).status_code == 200, path
    if first:  # the step in fallout and the open incident are on the Fallout page
        fallout = w.page("/fallout").text
        assert w.run("flaky") in fallout
        assert not w.old.has(20) or w.old.made["incident"] in fallout
    if first:  # ann's session, made before the upgrade (it lasts 12 hours)
        assert w.page("/work", cookie=w.old.made["session"]["secret"]).status_code == 200
    users = {u.name: u for u in w.engine.directory.list_users()}
    assert {"admin", "ann", "bob", "ops", "gone"} <= set(users) and not users["gone"].active
    assert w.engine.directory.authenticate("bob", PASSWORD) is not None  # the old hash
    if w.old.has(20):
        for key in ("o1", "o2", "o3", "o4", "p1"):
            got = w.api("GET", f"/api/plans/{w.record(key)}", token)
            assert got.status_code == 200, got.text
        _intake_and_people_read_back(w)


def _intake_and_people_read_back(w: World) -> None:
    """The e-mail intake (messages, a reply threaded onto its case, an attachment with its
    content), routing profiles and a trained classifier the old release stored."""
    import hashlib

    from baton.ai.trained import training_set

    token, mail = w.old.made["token"], w.old.made["mail"]
    assert mail["28_reply_portal_en"]["outcome"] == "threaded"
    for name, got in mail.items():
        if got["record_id"] is None:  # (the out-of-office reply: kept, no case)
            continue
        listed = w.api("GET", f"/api/records/{got['record_id']}/messages", token)
        assert listed.status_code == 200, listed.text
        expected = 2 if name.startswith(("11_", "28_")) else 1  # the case and its reply
        assert len(listed.json()["items"]) == expected, (name, listed.json())
        # stored before messages kept their notes (migration 29): none
        assert [m["notes"] for m in listed.json()["items"]] == [[]] * expected, name
    case = mail["07_billing_pdf_de"]["record_id"]
    (pdf,) = w.api("GET", f"/api/records/{case}/attachments", token).json()["items"]
    assert pdf["status"] == "stored"
    content = w.api("GET", f"/api/attachments/{pdf['id']}", token)
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == pdf["sha256"]
    nora = w.engine.team.get("nora")
    assert nora.capacity == 2 and nora.skills["pod:pod_north"] is None
    assert nora.skills["brand:Aurora"] == 3
    with w.engine.store.read() as tx:
        classifier = training_set(tx.classifier_txn("upg_intents"))
    assert classifier.version == 1 and len(classifier.texts) == 6
    assert classifier.labels == ("billing", "technical", "cancellation") * 2


def _carries_on(w: World) -> None:
    """Every run goes on from where the old release left it, to its end."""
    old, eng = w.old, w.engine
    w.work()  # nothing was due: nothing moves, nothing fails
    assert not [r for r in eng.list_runs(limit=500) if r.status.value == "failed"]
    assert [i["status"] for i in w.items("c2")] == ["claimed"]
    if old.has(20):  # the idempotency key: a retry of the old create creates nothing
        again = w.api("POST", "/api/objects/Case/records", old.made["token"],
                      json={"data": {"subject": "invoice via api 8", "number": 8}},
                      headers={"Idempotency-Key": "upg-key-1"})
        assert again.status_code == 201 and again.json()["id"] == w.record("c8"), again.text

    # ann completes the item she claimed, over the API, with her old session and its CSRF
    (c2,) = w.items("c2")
    w.client.cookies.set(SESSION_COOKIE, old.made["session"]["secret"])
    done = w.client.post(f"/api/work/{c2['id']}/complete",
                         json={"data": {"resolution": "close", "notes": "after the upgrade"}},
                         headers={CSRF_HEADER: old.made["session"]["csrf"]})
    w.client.cookies.clear()
    assert done.status_code == 200, done.text

    # the step in fallout: the ticket is fixed, the operator retries it
    eng.update_record(w.record("flaky"), {"fixed": True}, actor="ops")
    eng.resolve_fallout(f"{w.run('flaky')}:flaky", "retry", reason="fixed", actor="ops")
    eng.signal(w.run("signal"), "go", {"by": "ops"}, actor="ops")

    if old.has(14):  # the bank calls back (signed) the request it acknowledged before
        raw = json.dumps({"reference": "BNK-42", "status": "done"}).encode()
        stamp = str(int(w.clock.now().timestamp()))
        url = old.made["callback"]["r2"].removeprefix("http://baton.example")
        got = w.client.post(url, content=raw, headers={
            "Content-Type": "application/json", "X-Timestamp": stamp,
            "X-Signature": sign(SECRETS["BANK_HMAC"], stamp, raw)})
        assert got.status_code == 200, got.text
    if old.has(20):
        eng.signal(w.run("child"), "go", actor="ops")  # the child ends, then its parent
        # ann's approval, decided by her delegate bob over the API
        (approval,) = w.items("x1")
        bob = eng.directory.create_token("bob", "after the upgrade")[1]
        got = w.api("POST", f"/api/work/{approval['id']}/complete", bob,
                    json={"data": {"decision": "approve", "comments": "ok"}})
        assert got.status_code == 200, got.text
        # the incident: the expense is mended, the trigger evaluated again
        eng.update_record(w.record("x2"), {"broken": False}, actor="ops")
        assert eng.retry_incident(old.made["incident"], reason="mended",
                                  actor="ops")["status"] == "resolved"
        with pytest.raises(TransitionConflict, match="point of no return"):  # o1: billed
            eng.plans.cancel(w.record("o1"), "too late", "ops")
    w.work()

    # the request still at verification is approved: sent to the bank (its address moved)
    with bank_server() as bank:
        if old.has(14):
            text_ = (EXAMPLES / "address_update" / "definitions" / "bank.yaml").read_text()
            eng.deploy(texts={"bank.yaml": text_.replace("http://127.0.0.1:8765/api",
                                                         f"{bank.url}/api")}, actor="ops")
        (verify,) = w.items("r1")
        eng.claim(verify["id"], "ann")
        eng.complete(verify["id"], "ann", {"decision": "approve", "notes": "ok"})
        w.work()
        if old.has(14):
            calls = bank.calls("/api/addresses")
            assert len(calls) == 1, bank.requests
            raw = json.dumps({"reference": "BNK-43", "status": "done"}).encode()
            stamp = str(int(w.clock.now().timestamp()))
            got = w.client.post(str(calls[0].json()["reply_to"]).removeprefix(
                "http://baton.example"), content=raw, headers={
                "Content-Type": "application/json", "X-Timestamp": stamp,
                "X-Signature": sign(SECRETS["BANK_HMAC"], stamp, raw)})
            assert got.status_code == 200, got.text
            w.work()
    assert w.status("r1") == "completed" and w.status("r2") == "completed"
    assert eng.get_record(w.record("r1"))["status"] == "Closed"

    # time passes: the nap's pause ends, SLAs are breached, the hourly schedule ticks
    w.clock.advance(timedelta(hours=2, minutes=1))
    w.work()
    assert w.status("nap") == "completed"
    for key in ("flaky", "signal", "c2"):
        assert w.status(key) == "completed", key
    assert eng.get_record(w.record("flaky"))["notes"] == 1
    if old.made["null_step"]:  # a step name this code's validation refuses, stored before
        assert eng.get_run(w.run("signal")).steps["null"].status.value == "completed"
    c1 = [e["type"] for e in eng.run_events(w.run("c1"))]
    assert c1.count("sla_in_jeopardy") == 1 and c1.count("sla_overdue") == 1, c1
    if old.has(20):
        assert w.status("child") == "completed" and w.status("parent") == "completed"
        assert w.status("x1") == "completed"
        decided = [e for e in eng.timeline(w.record("x1")) if e["type"] == "approval_decided"]
        assert decided and decided[-1]["data"].get("on_behalf_of") == "ann", decided
        hourly = eng.list_runs(orchestration="upg_hourly", limit=50)
        assert hourly and {r.status.value for r in hourly} == {"completed"}

    _finish_people_work(w)  # the triage, installations, sign-off, dealers, approvals
    if old.has(20):  # the plan's not_before: two days after the order
        w.clock.set(parse_iso(old.made["t0"]) + timedelta(days=2, hours=1))
        w.work()
        _finish_people_work(w)
        for key in ("o1", "o3", "o4", "p1"):
            assert eng.plans.show(w.record(key))["status"] == "completed", key
        assert eng.plans.show(w.record("o2"))["status"] == "canceled"
    w.clock.advance(timedelta(days=1))
    w.work()
    runs = eng.list_runs(limit=1000)
    assert {r.id: r.status.value for r in runs if r.status.value not in DONE} == {}
    with eng.store.read() as tx:
        assert tx.conn.exec_driver_sql(
            "SELECT count(*) FROM baton_work_items WHERE status IN ('open', 'claimed')"
        ).scalar_one() == 0


def _timeline_rows(html: str) -> int:
    """The events a page's timeline table shows (its body's rows)."""
    table = html.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
    return table.split("<tbody>", 1)[1].count("<tr>")


def _history_kept(w: World, before: dict[str, Any]) -> None:
    """Every audit event written before the upgrade is still there, with its id and content,
    in its run's events and its record's timeline, through the engine, the API and the pages
    (a row each); each run's events are in order and end as the run did."""
    token = w.old.made["token"]
    seen: dict[int, dict[str, Any]] = {}
    runs = w.engine.list_runs(limit=1000)
    assert set(before["runs"]) <= {run.id for run in runs}
    for run in runs:
        events = w.engine.run_events(run.id)
        ids = [e["id"] for e in events]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), run.id
        assert events[0]["type"] == "run_started", (run.id, events[0])
        final = {"completed": "run_completed", "canceled": "run_canceled"}[run.status.value]
        assert final in [e["type"] for e in events[-3:]], (run.id, [e["type"] for e in events])
        api = w.all_pages(f"/api/runs/{run.id}/events", token)
        assert [e["id"] for e in api] == ids, run.id
        shown = len(w.engine.timeline(run.record_id)) if run.record_id else len(ids)
        page = w.page(f"/runs/{run.id}")
        assert page.status_code == 200, run.id
        assert _timeline_rows(page.text) == shown, run.id
        seen.update({e["id"]: dict(e) for e in events})
        if before["runs"].get(run.id, {}).get("status") == "completed":
            old_ids = sorted(i for i, e in before["events"].items() if e["run_id"] == run.id)
            assert ids == old_ids, run.id  # a run completed before: nothing added
    for record_id in before["records"]:
        timeline = w.engine.timeline(record_id)
        ids = [e["id"] for e in timeline]
        assert ids == sorted(ids) and len(set(ids)) == len(ids), record_id
        api = w.all_pages(f"/api/records/{record_id}/timeline", token)
        assert sorted(e["id"] for e in api) == sorted(ids), record_id
        page = w.page(f"/records/{record_id}")
        assert page.status_code == 200, record_id
        assert _timeline_rows(page.text) == len(ids), record_id
        seen.update({e["id"]: dict(e) for e in timeline})
    with w.engine.store.read() as tx:  # (people's events too: agent_updated has no run)
        every = {e["id"]: e for e in tx.events_txn(limit=1_000_000)}
    assert set(seen) <= set(every)
    assert {i for i, e in every.items() if e["run_id"] or e["record_id"]} == set(seen)
    seen = {**every, **seen}
    lost = sorted(set(before["events"]) - set(seen))
    assert not lost, [before["events"][i] for i in lost[:5]]
    for event_id, old_event in before["events"].items():
        now = seen[event_id]
        assert {k: now[k] for k in ("at", "type", "actor", "record_id", "run_id", "data")} == \
            {k: old_event[k] for k in ("at", "type", "actor", "record_id", "run_id", "data")}, \
            event_id


# ---- a database newer than the code ------------------------------------------------------
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_database_newer_than_the_code_is_refused_and_left_as_it_is(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """A database a newer Baton upgraded (it records a migration this code does not have)
    is refused by ``baton db upgrade`` and by every command that opens it, in one line that
    says so; nothing in it changes."""
    old = _old(RELEASES[-1], backend, tmp_path, request)
    eng = create_engine(_sa_url(old.url))
    with eng.begin() as conn:
        conn.execute(text("INSERT INTO baton_schema_migrations (version, name, applied_at) "
                          "VALUES (:v, 'a migration of a later release', "
                          "'2027-01-01T00:00:00.000Z')"), {"v": LATEST + 1})
    eng.dispose()
    before = _snapshot(old.url)
    for args in (("db", "upgrade"), ("worker", "--until-idle"), ("runs", "list")):
        got = _baton(old, *args)
        assert got.returncode != 0, (args, got.stdout)
        message = got.stderr.strip().splitlines()[-1]
        assert message.startswith("error: the database's schema is newer than this version "
                                  "of Baton"), (args, got.stderr)
        assert f"migration {LATEST + 1} (a migration of a later release)" in message
        assert "Traceback" not in got.stderr
    assert _snapshot(old.url) == before


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_process_started_without_migrating_refuses_a_database_that_needs_them(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``--no-migrate`` applies no migration: on an old database the worker and the server
    refuse to start, saying to run ``baton db upgrade`` (rather than fail every job with
    "no such column", or answer 500), and change nothing."""
    old = _old(RELEASES[0], backend, tmp_path, request)
    before = _snapshot(old.url)
    for args in (("worker", "--no-migrate", "--until-idle"),
                 ("serve", "--no-migrate", "--port", "1")):
        got = _baton(old, *args)
        assert got.returncode == 1, (args, got.stdout, got.stderr)
        message = got.stderr.strip().splitlines()[-1]
        assert "lacks" in message and "run `baton db upgrade` first" in message, (args, message)
        assert "Traceback" not in got.stderr
    assert _snapshot(old.url) == before
    assert _baton(old, "db", "upgrade").returncode == 0
    assert _baton(old, "worker", "--no-migrate", "--until-idle").returncode == 0


# ---- an upgrade killed in the middle -----------------------------------------------------
def _grow(url: str, copies: int) -> None:
    """Make the schema-3 SQLite database large: its runs, work items and records copied
    ``copies`` times under new ids (what migrations 10, 13, 17, 21 and 24 read row by row)."""
    eng = create_engine(url)
    with eng.begin() as conn:
        for table, ids in (("baton_runs", ("id", "record_id")),
                           ("baton_work_items", ("id", "run_id", "record_id")),
                           ("baton_records", ("id",))):
            columns = [c[1] for c in conn.exec_driver_sql(f"PRAGMA table_info({table})")]
            values = [f"t.{c} || '-' || CAST(n.i AS VARCHAR(10))" if c in ids else f"t.{c}"
                      for c in columns]
            conn.execute(text(
                f"INSERT INTO {table} ({', '.join(columns)}) WITH RECURSIVE n(i) AS "
                f"(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {copies}) "
                f"SELECT {', '.join(values)} FROM {table} AS t, n"))
        # (each copy's state names its own run and record, as a run's state does)
        conn.execute(text("UPDATE baton_runs SET state = json_set(state, '$.id', id, "
                          "'$.record_id', record_id)"))
    eng.dispose()


def _sqlite_migrating(url: str) -> bool:
    """Is another process in the middle of migrating the SQLite database: its write
    transaction open (the write lock held) and already written to (the WAL past 1 MB of the
    migrations' pages)?"""
    path = url.removeprefix("sqlite:///")
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as exc:
        wal = Path(f"{path}-wal")
        return "locked" in str(exc) and wal.exists() and wal.stat().st_size > 1_000_000
    finally:
        conn.close()


def _pg_migrating_behind(url: str, holder: int) -> bool:
    """Is another backend in the middle of migrating the PostgreSQL database, stopped by the
    backend ``holder``: the migration lock held, its transaction already written to (it
    has a transaction id), and waiting for a lock ``holder`` holds?"""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return bool(conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND a.backend_xid IS NOT NULL AND %s = ANY(pg_blocking_pids(a.pid))",
            (holder,)).fetchone()[0])  # type: ignore[index]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_an_upgrade_killed_in_the_middle_leaves_the_old_schema_whole(
        backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``baton db upgrade`` of a schema-3 database is SIGKILLed in the middle of its
    transaction (seen open and written to): the database is still the old one, whole (its
    migrations, columns and rows); the next upgrade applies everything.

    On PostgreSQL the kill lands in the middle however fast or slow the machine: the test
    holds a lock on baton_users (a reader's), which the upgrade first needs exclusively at
    migration 21 (delegation), so the upgrade stops there, with migrations 4 to 20 (10, 13
    and 17 rewriting rows) written in its open transaction, and is killed while it waits.
    SQLite has no lock that stops a writer in the middle of its transaction: that database
    is made large (its runs copied 500 times: over 6,000) so that the transaction is seen open
    and past 1 MB of WAL for a second or more (longer on a busy machine, where the upgrade
    is slower too), looked for every 20 ms."""
    old = _old(RELEASES[0], backend, tmp_path, request)
    if backend == "sqlite":
        _grow(old.url, 500)
    before = _snapshot(old.url)
    shape = _schema_of(old.url)
    holder: Any = None
    if backend == "sqlite":
        assert len(before["runs"]) > 6_000

        def under_way() -> bool:
            return _sqlite_migrating(old.url)
    else:
        import psycopg

        holder = psycopg.connect(old.url)  # (its transaction open until it is closed)
        holder.execute("LOCK TABLE baton_users IN ACCESS SHARE MODE")

        def under_way() -> bool:
            return _pg_migrating_behind(old.url, holder.info.backend_pid)
    process = subprocess.Popen(
        [sys.executable, "-m", "baton.cli.main", "--db", old.url, "db", "upgrade"],
        cwd=tmp_path, env=baton_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not under_way() and process.poll() is None:
            assert time.monotonic() < deadline, "timed out waiting for the upgrade to be under way"
            time.sleep(0.02)
        assert process.poll() is None, "the upgrade ended before it could be killed: grow it"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        if process.poll() is None:  # (a failure above: not left running)
            process.kill()
        process.wait(60)
        if holder is not None:  # its lock released: the killed upgrade's backend goes on,
            holder.close()      # finds its client gone and rolls back
    assert process.returncode == -signal.SIGKILL
    assert _schema_of(old.url) == shape
    assert _snapshot(old.url) == before
    done = _baton(old, "db", "upgrade")
    assert done.returncode == 0 and done.stdout.splitlines()[-1].startswith(f"applied {LATEST:03d}")
    assert _schema_of(old.url) == _canonical(old, request)
    after = _snapshot(old.url)
    assert (after["events"], after["records"], after["items"]) == (
        before["events"], before["records"], before["items"])
    assert {k: (r["status"], r["orchestration"]) for k, r in after["runs"].items()} == {
        k: (r["status"], r["orchestration"]) for k, r in before["runs"].items()}
