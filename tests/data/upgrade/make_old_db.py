"""Makes an old Baton database for ``tests/integration/test_upgrade_old_databases.py``: run
with THE OLD CODE (the commit whose database it is), never with the current one:

    git worktree add --detach /tmp/old COMMIT
    PYTHONPATH=/tmp/old/src .venv/bin/python tests/data/upgrade/make_old_db.py \\
        /tmp/old/examples sqlite:////tmp/old.db tests/data/upgrade/NAME.sqlite

(README.md in this folder: which commits, and how the files here were made from it.)

On virtual time from ``T0`` it deploys the old examples and ``upg_v1.yaml`` (and from the
commit with migration 20 on, ``upg_v2.yaml``), makes people and leaves runs in every state
a database holds for months: work items open and claimed, SLAs in jeopardy, steps in fallout,
pauses on a timer and on a signal, completed runs; from migration 14 on a callout waiting
for its callback; from 20 on plans (one completed, one canceled, one waiting for its
installations, one with more than 64 steps, one past its point of no return), a parent run
waiting for its child, a schedule, an approval with a delegate, an open incident, a
classifier, an idempotency key, e-mail intake with cases routed by skills. The manifest
(``NAME.json``) names what was made, for the test to look for after the upgrade; the
database itself is dumped as SQL (``NAME.sql.xz``), which the test runs to make it again.
"""

from __future__ import annotations

import dataclasses
import json
import lzma
import re
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy import func, inspect, select

from baton.clock import VirtualClock, iso
from baton.project import load_project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.store import schema as s
from baton.store.migrations import LATEST

HERE = Path(__file__).resolve().parent
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)  # a Monday
PASSWORD = "correct horse battery"
BANK_TOKEN, BANK_HMAC, CARRIER_TOKEN = "bank-token-1", "bank-hmac-1", "carrier-token-1"


class Partner:
    """The bank and the carrier on loopback: the bank acknowledges an address change
    (202, ``ackId``) and keeps the callback URL for later; the carrier books shipments."""

    def __init__(self) -> None:
        self.reply_to: dict[str, str] = {}  # account number -> callback URL
        self.n = 0
        partner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                partner.n += 1
                if self.path.endswith("/addresses"):
                    partner.reply_to[body["account_number"]] = body["reply_to"]
                    status, answer = 202, {"ackId": f"ACK-{partner.n}"}
                else:
                    status, answer = 201, {"trackingId": f"TRK-{partner.n}"}
                raw = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api"

    @contextmanager
    def running(self) -> Iterator[Partner]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()


def pointed_at(folder: Path, url: str) -> dict[str, str]:
    """A project's definitions, its connections pointed at the partner on loopback."""
    return {p.name: re.sub(r"http://127\.0\.0\.1:\d+/api", url, p.read_text())
            for p in sorted(folder.glob("*.yaml"))}


def main(examples: Path, url: str, out: Path) -> None:
    has = LATEST  # what this commit's code has, by its latest migration
    clock = VirtualClock(T0)
    made: dict[str, Any] = {"schema": LATEST, "t0": iso(T0), "runs": {}, "records": {}}
    runs, records = made["runs"], made["records"]
    projects = [load_project(examples / "case_triage"), load_project(examples / "address_update")]
    if has >= 20:
        projects.append(load_project(examples / "order_fulfillment"))
        projects.append(load_project(examples / "dealer_support"))
    for p in projects:
        p.import_flows()
    sys.path.insert(0, str(HERE))
    import upg_flows  # noqa: F401 - registers the flows of upg_*.yaml

    partner = Partner()
    kwargs: dict[str, Any] = {"clock": clock}
    if has >= 14:
        from baton.settings import Settings

        settings = Settings.from_environment({"BATON_PUBLIC_URL": "http://baton.example"})
        kwargs["settings"] = dataclasses.replace(settings, secrets_env={
            "BANK_TOKEN": BANK_TOKEN, "BANK_HMAC": BANK_HMAC, "CARRIER_TOKEN": CARRIER_TOKEN})
    engine = Engine(url, **kwargs)
    worker = Worker(engine)

    def work() -> None:
        worker.run(until_idle=True)

    def run_of(record_id: str) -> str:
        (run,) = engine.list_runs(record_id=record_id)
        return str(run.id)

    def item_of(run_id: str) -> dict[str, Any]:
        found = [i for i in engine.list_work(limit=500, statuses=["open", "claimed"])
                 if i["run_id"] == run_id] if has >= 8 else \
            [i for i in engine.list_work(limit=500) if i["run_id"] == run_id]
        assert len(found) == 1, (run_id, found)
        return dict(found[0])

    with partner.running():
        # ---- definitions ------------------------------------------------------------------
        engine.deploy([projects[0].definitions_dir], actor="fixture")
        if has >= 14:
            engine.deploy(texts=pointed_at(projects[1].definitions_dir, partner.url),
                          actor="fixture")
        else:
            engine.deploy([projects[1].definitions_dir], actor="fixture")
        upg = {"upg_v1.yaml": (HERE / "upg_v1.yaml").read_text()}
        if engine.validate_texts(upg, known_flows=None):  # (a15cbe2 on refuses the name null)
            upg["upg_v1.yaml"] = upg["upg_v1.yaml"].replace("name: 'null'", "name: note")
        made["null_step"] = "name: 'null'" in upg["upg_v1.yaml"]
        if has >= 20:
            engine.deploy(texts={**pointed_at(projects[2].definitions_dir, partner.url),
                                 **upg, "upg_v2.yaml": (HERE / "upg_v2.yaml").read_text()},
                          actor="fixture")
            engine.deploy([projects[3].definitions_dir], actor="fixture")
        else:
            engine.deploy(texts=upg, actor="fixture")

        # ---- people -----------------------------------------------------------------------
        d = engine.directory
        d.add_user("admin", roles=["admin"], password=PASSWORD, display_name="Ada Admin")
        d.add_user("ann", roles=["agent"], queues=["tier1", "back_office"], password=PASSWORD,
                   email="ann@example.com")
        d.add_user("bob", roles=["agent"], queues=["tier1", "tier2", "installers"],
                   groups=["seniors"], password=PASSWORD)
        d.add_user("ops", roles=["operator"], password=PASSWORD)
        d.add_user("gone", roles=["agent"], queues=["tier1"])
        d.update_user("gone", active=False)
        made["session"] = dict(zip(("secret", "csrf"), d.create_session("ann"), strict=True))
        made["token"] = d.create_token("ops", "nightly report")[1]

        # ---- case triage: items open and claimed, SLAs, an escalation, closed cases --------
        def case(i: int, origin: str = "Web") -> dict[str, Any]:
            return {"subject": f"invoice question {i}" if i % 2 else f"login broken {i}",
                    "number": i, "origin": origin}

        for i in (1, 2, 3, 4, 5):
            records[f"c{i}"] = str(engine.create_record("Case", case(i), actor="fixture")["id"])
        records["c6"] = str(engine.create_record("Case", case(6, "Internal"))["id"])
        work()
        for i in (1, 2, 3, 4, 5):
            runs[f"c{i}"] = run_of(records[f"c{i}"])
        engine.claim(item_of(runs["c2"])["id"], "ann")
        engine.complete(item_of(runs["c3"])["id"], "ann", {"resolution": "close",
                                                           "notes": "answered"})
        engine.complete(item_of(runs["c4"])["id"], "bob", {"resolution": "escalate",
                                                           "notes": "site visit"})
        work()  # c3 closes; c4 is back in triage at tier 2

        # ---- address update: an open verification, a rejected request, one at the bank -----
        def request(i: int) -> str:
            return str(engine.create_record("ServiceRequest", {
                "customer": f"Customer {i}", "account_number": f"ACC-{1000 + i}",
                "new_address": f"{i} Solar Way", "documents": [f"proof-{i}.pdf"]},
                actor="fixture")["id"])

        for i in (1, 2, 3):
            records[f"r{i}"] = request(i)
        work()
        for i in (1, 2, 3):
            runs[f"r{i}"] = run_of(records[f"r{i}"])
        engine.complete(item_of(runs["r2"])["id"], "ann", {"decision": "approve",
                                                           "notes": "bill matches"})
        engine.complete(item_of(runs["r3"])["id"], "ann", {"decision": "reject",
                                                           "notes": "unreadable"})
        work()  # r2: at the bank (a callout waiting for its callback; before: sent, closed)
        if has >= 14:
            made["callback"] = {"r2": partner.reply_to["ACC-1002"]}

        # ---- tickets: fallout, a pause on a timer, a pause for a signal --------------------
        def ticket(kind: str) -> None:
            records[kind] = str(engine.create_record(
                "UpgTicket", {"title": f"{kind} ticket", "kind": kind}, actor="fixture")["id"])

        ticket("flaky")
        ticket("signal")
        work()
        clock.advance(timedelta(minutes=1))
        work()  # flaky's retry fails too: fallout
        for kind in ("flaky", "signal"):
            runs[kind] = run_of(records[kind])

        if has >= 20:
            # ---- a parent waiting for its child, a schedule, an approval with a delegate --
            parent = engine.start("upg_parent", {}, actor="fixture")
            work()
            runs["parent"] = str(parent.id)
            (child,) = engine.child_runs(parent.id)
            runs["child"] = str(child["id"])
            d.update_user("ann", delegate="bob")
            for key, (label, broken) in {"x1": ("Laptop", False), "x2": ("Monitor", True)}.items():
                records[key] = str(engine.create_record("UpgExpense", {
                    "label": label, "amount": 1200, "approver": "ann", "broken": broken},
                    actor="ann")["id"])
            work()
            runs["x1"] = run_of(records["x1"])
            (incident,) = engine.list_incidents()
            made["incident"] = str(incident["id"])

            # ---- plans ----------------------------------------------------------------------
            lines = [{"product": "LAPTOP-PRO", "attributes": {"color": "grey"}},
                     {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}]
            for key in ("o1", "o2", "o3"):  # o1 completed, o2 canceled, o3 at its installs
                records[key] = str(engine.create_record(
                    "Order", {"number": key.upper(), "customer": "Acme", "status": "Submitted"},
                    actor="fixture", children={"OrderLine": lines})["id"])
            big = [{"product": "BROADBAND", "attributes": {"site": f"SITE{i:02d}", "speed": "1G"}}
                   for i in range(33)]  # 33 installs + 33 activations: a run of 69 steps
            records["o4"] = str(engine.create_record(
                "Order", {"number": "O4", "customer": "Globex", "status": "Submitted"},
                actor="fixture", children={"OrderLine": big})["id"])
            start = (T0 + timedelta(days=2)).date().isoformat()
            records["p1"] = str(engine.create_record(
                "UpgOrder", {"number": "P1", "status": "Submitted"}, actor="fixture",
                children={"UpgLine": [{"product": "BROADBAND", "start_date": start,
                                       "attributes": {"site": "LYON", "speed": "1G"}}]})["id"])
            work()
            for key in ("o1", "o2", "o3", "o4", "p1"):
                runs[key] = str(engine.plans.show(records[key])["run_id"])
            for it in engine.list_work(queue="installers", limit=500):
                if it["run_id"] == runs["o1"]:
                    engine.complete(it["id"], "bob", {})
            engine.plans.cancel(records["o2"], "customer withdrew", "fixture")
            work()

            # ---- intake: dealers, their agents (skills), e-mail, a classifier ----------------
            import yaml

            from baton.work.team import ProfileChange

            folder = examples / "dealer_support"
            dealers = yaml.safe_load((folder / "dealers.yaml").read_text(encoding="utf-8"))
            engine.create_records("Dealer", list(dealers), actor="fixture")
            for name, skills in {"nora": ("pod_north", "sales", "billing", "technical",
                                          "privacy", "retention"),
                                 "sofia": ("pod_south", "sales", "billing", "technical",
                                           "privacy", "retention")}.items():
                d.add_user(name, roles=["agent"], queues=["dealer_agents"])
                profile: dict[str, int | None] = {f"pod:{skills[0]}": None}
                profile.update({f"team:{t}": None for t in skills[1:]})
                profile.update({f"brand:{b}": 3 for b in ("Aurora", "Kestrel", "Vantor",
                                                          "Solenne")})
                engine.team.update(name, ProfileChange(skills=profile, capacity=2,
                                                       availability="available"), "fixture")
            mails = ("07_billing_pdf_de", "11_tech_portal_en", "26_two_dealers_en",
                     "28_reply_portal_en", "29_out_of_office_de", "16_cancel_service_en")
            made["mail"] = {}
            for name in mails:
                raw = (folder / "mail" / f"{name}.eml").read_bytes()
                got = engine.intake.accept(raw, via="eml",
                                           recipients=["support@dealers.baton.example"])
                made["mail"][name] = {"outcome": got.outcome, "record_id": got.record_id}
                if got.record_id and got.outcome == "created":
                    records[f"mail{name[:2]}"] = str(got.record_id)
            clock.advance(timedelta(minutes=5))
            work()
            from baton.ai import trained

            trained.train(engine.store, "upg_intents",
                          ["invoice charged twice", "portal login fails", "cancel contract",
                           "credit note missing", "tester shows error", "terminate agreement"],
                          ["billing", "technical", "cancellation"] * 2, source="intents.csv",
                          actor="admin", now=iso(clock.now()))

            # ---- an idempotency key, through the old API ------------------------------------
            from fastapi.testclient import TestClient

            from baton.web.app import create_app

            client = TestClient(create_app(engine))
            answer = client.post("/api/objects/Case/records", json={"data": {
                "subject": "invoice via api 8", "number": 8}},
                                 headers={"Authorization": f"Bearer {made['token']}",
                                          "Idempotency-Key": "upg-key-1"})
            assert answer.status_code == 201, answer.text
            records["c8"] = str(answer.json()["id"])
            work()

        # ---- later: SLAs in jeopardy, a case created since --------------------------------
        clock.advance(timedelta(hours=3, minutes=5))
        work()  # the triage items' SLAs are in jeopardy (due at T0 + 4h)
        records["c7"] = str(engine.create_record("Case", case(7), actor="fixture")["id"])
        ticket("nap")  # its pause ends two hours from now
        work()
        runs["c7"] = run_of(records["c7"])
        runs["nap"] = run_of(records["nap"])
        if has >= 20:
            runs["c8"] = run_of(records["c8"])
        for key, rec in records.items():  # every run, even those not named above
            for run in engine.list_runs(record_id=rec):
                runs.setdefault(f"{key}:{run.orchestration}:{run.id}", str(run.id))

        made["now"] = iso(clock.now())
        with engine.store.read() as tx:
            made["counts"] = {
                name: int(tx.conn.execute(select(func.count()).select_from(table)).scalar_one())
                for name, table in sorted(s.metadata.tables.items())
                if inspect(tx.conn).has_table(name)}
        worker.store.unregister_worker(worker.id)
        engine.close()
    Path(f"{out}.json").write_text(json.dumps(made, indent=1, sort_keys=True) + "\n")
    Path(f"{out}.sql.xz").write_bytes(lzma.compress(dump(url).encode(), preset=9))
    print(f"made {url} at migration {LATEST}, dumped to {out}.sql.xz: " + ", ".join(
        f"{n} {k}" for k, n in made["counts"].items() if n))


def dump(url: str) -> str:
    """The database as SQL a test can run to make it again: SQLite's ``iterdump``, or
    ``pg_dump --inserts`` without psql's backslash commands (``\\restrict``)."""
    if url.startswith("sqlite:///"):
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        try:
            return "\n".join(conn.iterdump()) + "\n"
        finally:
            conn.close()
    text = subprocess.run(["pg_dump", "--inserts", "--no-owner", "--no-privileges",
                           "--dbname", url], check=True, capture_output=True, text=True).stdout
    return "".join(line for line in text.splitlines(keepends=True)
                   if not line.startswith("\\"))


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
