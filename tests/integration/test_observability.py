"""What an SRE reads: Prometheus metrics that agree with the database, take few label values
and read no history at a scrape; ``/readyz`` and ``/metrics`` when the database hangs; log
lines that carry the ids and none of the data (real Engine, app, SMTP listener, loopback
HTTP server; SQLite and PostgreSQL)."""

from __future__ import annotations

import io
import json
import logging
import re
import smtplib
import sqlite3
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import event, text

from baton import logs
from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.clock import iso
from baton.runtime import metrics
from baton.runtime.metrics import StoreCollector
from baton.web import health
from baton.web.app import create_app
from tests.api.conftest import CASE_TRIAGE, FLAKY
from tests.bank import Bank, bank_server
from tests.conftest import Harness
from tests.integration import test_plans as plans
from tests.net import free_port
from tests.procs import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]
HISTORY = ("baton_runs", "baton_run_steps", "baton_work_items", "baton_jobs", "baton_events",
           "baton_records")


def samples(text_: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text_):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(got: Samples, name: str, **labels: str) -> float:
    return got.get((name, tuple(sorted(labels.items()))), 0.0)


class Served:
    """The whole app over the harness's engine, with an operator's token."""

    def __init__(self, h: Harness) -> None:
        h.engine.directory.add_user("opal", roles=["operator"])
        h.engine.directory.add_user("ann", roles=["agent"], queues=["tier1"])
        self.token = h.engine.directory.create_token("opal", "tests")[1]
        self.client = TestClient(create_app(h.engine))

    def get(self, url: str) -> Any:
        return self.client.get(url, headers={"Authorization": f"Bearer {self.token}"})

    def metrics(self) -> Samples:
        r = self.get("/metrics")
        assert r.status_code == 200, r.text
        return samples(r.text)


@pytest.fixture
def served(harness: Harness) -> Iterator[Served]:
    s = Served(harness)
    yield s
    s.client.close()


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier().start()
    yield c
    c.stop()


def _deploy_all(h: Harness, carrier: DemoCarrier) -> None:
    """case_triage, a job whose step goes to fallout, and order fulfillment (a plan run per
    order, its ship callouts to a real carrier on loopback)."""
    h.engine.deploy([CASE_TRIAGE / "definitions"], actor="setup")
    h.deploy_text(FLAKY, "flaky.yaml")
    h.setenv(CARRIER_TOKEN=carrier.token)
    h.engine.deploy(texts=pointed_at(plans.EXAMPLE, carrier.url), known_flows=None)


def test_metrics_agree_with_the_database_and_name_no_run_record_or_person(
        harness: Harness, served: Served, carrier: DemoCarrier) -> None:
    h = harness
    _deploy_all(h, carrier)
    for n in range(3):
        h.engine.create_record("Case", {"subject": f"Invoice {n} wrong", "origin": "Web"})
    h.engine.start("flaky_job", {"n": 1})
    orders = [h.engine.create_record("Order", {"number": f"O-{n}", "status": "Submitted"},
                                     children={"OrderLine": plans.LINES})["id"]
              for n in range(2)]
    h.work()
    triage = h.engine.list_work(queue="tier1")
    assert len(triage) == 3, triage
    h.engine.reassign(triage[0]["id"], "user:ann")  # a person's item: no name in a label
    h.engine.complete(triage[1]["id"], "ann", {"resolution": "close"})
    h.work()

    got = served.metrics()
    in_db: dict[str, int] = {}
    for run in h.engine.list_runs(limit=1000):
        if run.status.value == "in_progress":
            name = "plan" if run.orchestration.startswith("plan:") else run.orchestration
            in_db[name] = in_db.get(name, 0) + 1
    assert in_db.get("plan") == len(orders) and in_db.get("case_triage") == 2, in_db
    shown = {dict(k[1])["orchestration"]: v for k, v in got.items()
             if k[0] == "baton_runs_in_progress"}
    assert shown == in_db, (shown, in_db)

    fallout = h.engine.list_fallout()
    assert len(fallout) == 1 and value(got, "baton_steps_in_fallout",
                                       orchestration="flaky_job") == 1, (fallout, got)

    items: dict[tuple[str, str], int] = {}
    for item in h.engine.list_work(limit=1000):
        kind = item["assignee_kind"]
        key = (kind, "" if kind == "user" else item["assignee"])
        items[key] = items.get(key, 0) + 1
    seen: dict[tuple[str, str], float] = {}
    for (name, labels), v in got.items():
        if name == "baton_work_items_open":
            d = dict(labels)
            key = (d["assignee_kind"], d["assignee"])
            seen[key] = seen.get(key, 0) + v
    assert seen == items and items[("user", "")] == 1, (seen, items)

    assert value(got, "baton_database_up") == 1
    labels = {v for (name, ls) in got if name.startswith("baton_") for _, v in ls}
    people = {"ann", "opal"}
    assert not labels & people, labels
    assert not [v for v in labels if re.match(r"(run|rec|wi|plan:|inc)_?", v)], labels
    assert not [k for k in got if k[0].startswith("baton_") and "user" in dict(k[1])]


def test_a_scrape_reads_what_is_current_not_the_history(tmp_path: Path, clock: Any,
                                                          carrier: DemoCarrier) -> None:
    """Every statement a scrape sends is an index range (SQLite's plan says SEARCH), never
    a scan of the runs, their steps, work items, jobs or audit events: its cost follows
    what is in progress, not the millions of runs a database keeps."""
    h = Harness(tmp_path, clock, f"sqlite:///{tmp_path / 'baton.db'}")
    try:
        _deploy_all(h, carrier)
        for n in range(4):
            h.engine.create_record("Case", {"subject": f"Case {n}", "origin": "Web"})
        h.engine.start("flaky_job", {"n": 1})
        h.engine.create_record("Order", {"number": "O-1", "status": "Submitted"},
                               children={"OrderLine": plans.LINES})
        h.work()
        reader = h.engine.store._reader  # (the engine the reads go through)
        sent: list[tuple[str, Any]] = []

        def keep(conn: Any, cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            if statement.lstrip().upper().startswith("SELECT"):
                sent.append((statement, parameters))

        event.listen(reader, "before_cursor_execute", keep)
        try:
            got = samples(generate_latest(metrics.server_registry(h.engine)).decode())
        finally:
            event.remove(reader, "before_cursor_execute", keep)
        assert value(got, "baton_database_up") == 1 and value(
            got, "baton_runs_in_progress", orchestration="plan") == 1, got
        scans = []
        con = sqlite3.connect(str(tmp_path / "baton.db"))
        try:
            for statement, parameters in sent:
                plan = [r[3] for r in con.execute("EXPLAIN QUERY PLAN " + statement,
                                                  parameters)]
                scans += [(p, statement) for p in plan
                          if re.match(rf"SCAN ({'|'.join(HISTORY)})\b", p)]
        finally:
            con.close()
        # (the Team page's "routed in the last hour" reads an index range since migration 27)
        assert sent and scans == [], scans
    finally:
        h.engine.close()


CALLOUT_DEFS = """\
kind: object
name: Ping
fields:
  path: {type: string, required: true}
---
kind: connection
name: obs_bank
type: http
base_url: URL
timeout: {connect: 2s, read: 2s}
---
kind: orchestration
name: ping
trigger: {type: record, object: Ping}
stages:
  - name: only
    steps:
      - {name: call, type: callout, connection: obs_bank, method: POST, path: =record.path,
         body: {}, retry: {max: 1}}
"""


def test_callouts_are_counted_by_connection_and_status_class(harness: Harness) -> None:
    """Each call once, by the process that made it, under its status class: as many as the
    audit log's calls of each class."""
    bank = Bank()
    bank.script["/created"] = [(201, {}, {"ok": True})]
    bank.script["/missing"] = [(404, {}, {"error": "no"})]
    bank.script["/down"] = [(503, {}, {"error": "later"})]
    registry = metrics.process_registry()

    def counted() -> dict[str, float]:
        return {c: registry.get_sample_value("baton_callouts_total",
                                             {"connection": "obs_bank", "status": c}) or 0.0
                for c in ("2xx", "4xx", "5xx", "error")}

    before = counted()
    with bank_server(bank):
        harness.deploy_text(CALLOUT_DEFS.replace("URL", bank.url), "ping.yaml")
        for path in ("/created", "/missing", "/down"):
            harness.engine.create_record("Ping", {"path": path})
        harness.work()
    # nothing listens there any more: no answer
    port = free_port()
    harness.deploy_text(CALLOUT_DEFS.replace("URL", f"http://127.0.0.1:{port}"), "ping.yaml")
    harness.engine.create_record("Ping", {"path": "/refused"})
    harness.work()
    after = counted()
    delta = {c: after[c] - before[c] for c in after}

    audited: dict[str, int] = {}
    with harness.engine.store.read() as tx:
        for run in harness.engine.list_runs(orchestration="ping", limit=100):
            for e in tx.events_txn(run_id=run.id):
                if e["type"] == "http_call":
                    c = metrics.status_class(e["data"].get("status"))
                    audited[c] = audited.get(c, 0) + 1
    assert delta == {c: float(audited.get(c, 0)) for c in delta}, (delta, audited)
    assert delta["2xx"] == 1 and delta["4xx"] == 1 and delta["5xx"] >= 1 \
        and delta["error"] >= 1, delta
    exposed = generate_latest(registry).decode()
    assert not re.search(r'baton_callouts_total\{[^}]*status="\d{3}"', exposed), exposed


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_readyz_and_metrics_when_the_database_hangs(harness: Harness, served: Served,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The SQLite file locked by another process: a read waits for it (up to a minute).
    /readyz says not ready after its deadline, and at once while that check still waits;
    /healthz answers; a scrape serves this process's metrics with baton_database_up 0."""
    store = harness.engine.store
    store.register_worker("w-ready", store.host(), 1, iso(harness.clock.now()))
    assert served.get("/readyz").status_code == 200
    monkeypatch.setattr(health, "READY_TIMEOUT_S", 0.5)
    served.client.app.state.readyz = None  # (made again with the deadline above)
    path = harness.db_url.removeprefix("sqlite:///")
    for pool in (store._reader, store._writer):  # (its idle connections let go of the file)
        pool.dispose()
    lock = sqlite3.connect(path, isolation_level=None)
    try:
        lock.execute("PRAGMA locking_mode=EXCLUSIVE")
        lock.execute("BEGIN EXCLUSIVE")
        lock.execute("UPDATE baton_workers SET heartbeat_at = heartbeat_at")
        first = served.get("/readyz")
        assert first.status_code == 503, first.text
        assert "did not answer within 0.5 s" in first.json()["checks"]["database"]["detail"]
        second = served.get("/readyz")  # the first check still waits: told, not queued
        assert second.status_code == 503
        assert "has not answered for" in second.json()["checks"]["database"]["detail"]
        assert served.client.get("/healthz").status_code == 200

        collector = StoreCollector(harness.engine, ttl=0, timeout=0.5)
        got = {m.name: m for m in collector.collect()}
        assert [s.value for s in got["baton_database_up"].samples] == [0.0], got
        assert "baton_runs_in_progress" not in got
    finally:
        lock.execute("COMMIT")
        lock.execute("PRAGMA locking_mode=NORMAL")
        lock.execute("SELECT 1 FROM baton_workers").fetchall()  # (gives the lock up)
        lock.close()
    eventually(lambda: served.get("/readyz").status_code == 200, timeout=120,
               what="/readyz once the lock is gone")


# ---- logs -------------------------------------------------------------------------------
@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """``logs.configure("json", DEBUG)`` into a buffer; logging as it was afterwards."""
    root = logging.getLogger()
    kept = (root.handlers[:], root.level,
            {n: logging.getLogger(n).level for n in logs.QUIET})
    buf = io.StringIO()
    stderr = logs.sys.stderr
    logs.sys.stderr = buf  # type: ignore[assignment]
    try:
        logs.configure("json", logging.DEBUG)
    finally:
        logs.sys.stderr = stderr  # type: ignore[assignment]
    yield buf
    root.handlers[:], root.level = kept[0], kept[1]
    for n, level in kept[2].items():
        logging.getLogger(n).setLevel(level)
    logs._context = False


def _lines(buf: io.StringIO) -> list[dict[str, Any]]:
    out = []
    for line in buf.getvalue().splitlines():
        obj = json.loads(line)  # every line one JSON object
        assert {"at", "level", "logger", "event"} <= set(obj), obj
        out.append(obj)
    return out


def test_json_lines_carry_the_ids_and_no_sql_parameters(json_logs: io.StringIO,
                                                         harness: Harness) -> None:
    log = logging.getLogger("baton.worker")
    with logs.job_context(run_id="run_1", step="push", job_id=7, record_id="rec_1"):
        log.warning("step %s failed", "push")
    secret = "Zelda Quuxmarker 4417"
    try:
        with harness.engine.store.write() as tx:
            for _ in range(2):  # the same id twice: the database refuses the second
                tx.conn.execute(text("INSERT INTO baton_workers (id, host, pid, started_at, "
                                     "heartbeat_at) VALUES ('w-dup', :h, 1, :t, :t)"),
                                {"h": secret, "t": "2026-01-01"})
    except Exception:  # (logged as a real failure would be)
        log.exception("the batch failed")
    lines = _lines(json_logs)
    ids = lines[0]
    assert (ids["run_id"], ids["step"], ids["job_id"], ids["record_id"], ids["level"]) == (
        "run_1", "push", 7, "rec_1", "warning"), ids
    failed = lines[-1]
    assert failed["level"] == "error" and "IntegrityError" in failed["exception"], failed
    assert "[parameters hidden]" in failed["exception"]
    assert secret not in json_logs.getvalue()


def test_a_repeated_warning_is_written_once_a_window() -> None:
    now = [0.0]
    repeats = logs.Repeats(window=60.0, clock=lambda: now[0])

    def record(msg: str, level: int = logging.WARNING) -> logging.LogRecord:
        return logging.LogRecord("baton.worker", level, __file__, 1, msg, (), None)

    assert repeats.filter(record("heartbeat failed"))
    assert [repeats.filter(record("heartbeat failed")) for _ in range(5)] == [False] * 5
    assert repeats.filter(record("heartbeat failed: other"))  # another message: its own
    assert repeats.filter(record("an info line", logging.INFO))  # below warning: all kept
    assert repeats.filter(record("an info line", logging.INFO))
    now[0] = 61.0
    again = record("heartbeat failed")
    assert repeats.filter(again) and getattr(again, "repeated", 0) == 5


def test_access_lines_hide_callback_tokens_and_query_values() -> None:
    assert logs.redact_target("/api/callbacks/WyJydW5fMDF.7tv5ZHD8") == "/api/callbacks/***"
    assert logs.redact_target("/api/records?q=Zelda+Quux&limit=5&status=open") == \
        "/api/records?q=***&limit=5&status=open"
    assert logs.redact_target("/login?next=/records/rec_1") == "/login?next=***"
    assert logs.redact_target("/api/runs/run_1") == "/api/runs/run_1"


MAILBOX = """\
kind: object
name: Note
fields:
  subject: {type: string}
  body: {type: text}
  sender: {type: string}
---
kind: mailbox
name: notes
object: Note
addresses: [notes@obs.example]
fields: {subject: subject, body: body, sender: sender}
"""


def test_an_smtp_session_stays_out_of_debug_logs(json_logs: io.StringIO,
                                                 harness: Harness) -> None:
    """aiosmtpd writes every SMTP line (at DEBUG the message itself): none reaches Baton's
    log, whatever the level."""
    from baton.intake.smtp import SmtpListener

    harness.deploy_text(MAILBOX, "mail.yaml")
    listener = SmtpListener(harness.engine.intake, "127.0.0.1", free_port())
    listener.start()
    body, subject, sender = "BODY-SECRET-6621", "SUBJECT-SECRET-31", "zelda@private.example"
    try:
        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = sender, "notes@obs.example", subject
        msg.set_content(f"Hello,\n{body}\n")
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=30) as s:
            s.send_message(msg)
    finally:
        listener.stop()
    assert harness.engine.list_records("Note")  # it was taken
    lines = _lines(json_logs)
    assert not [x for x in lines if x["logger"].startswith("mail.log")], lines
    text_ = json_logs.getvalue()
    assert body not in text_ and subject not in text_, text_
    assert sender not in text_, "no line names the sender's address"
