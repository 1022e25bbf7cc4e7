"""What ``baton serve`` and ``baton worker`` write, as an SRE collects it: real processes with
``--log-format json`` at DEBUG (the most they can say), driven through a day's work — logins
(a wrong password too), an unknown API token, records with personal data, work items, a
callout to a bank on loopback that calls back, a callout the other side refuses (fallout), a
trigger that raises (an incident), a message over SMTP, a forged callback — then:

* every line on stderr is one JSON object with ``at``, ``level``, ``logger``, ``event``; the
  access lines carry method, path, status and the request's id (the caller's
  ``X-Request-ID``, sent back), a callback's token shown as ***;
* no line, on stdout or stderr, holds a value that was put in: field values, the e-mail's
  subject and body, passwords, API tokens, the bank's token and signing key, callback
  tokens, the search text;
* an expected refusal is no error and no traceback;
* each process's ``/metrics`` counts what it did, once: the callouts of both add up to the
  calls the audit log holds; only ``baton serve`` reads the database's counts.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import urllib.error
import urllib.request
from email.message import EmailMessage
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlencode

from prometheus_client.parser import text_string_to_metric_families

from baton.cli.demo_bank import DemoBank
from baton.runtime.metrics import status_class
from tests.bank import Bank, bank_server
from tests.e2e.test_cli import EXAMPLES
from tests.net import free_port
from tests.procs import baton_env, eventually

# The baton command with its logs at DEBUG (no option sets a level): the real CLI otherwise.
LAUNCHER = """\
import logging, sys
import baton.logs as logs
_configure = logs.configure
logs.configure = lambda fmt="text", level=logging.INFO: _configure(fmt, logging.DEBUG)
from baton.cli.main import main
sys.argv[0] = "baton"
main()
"""

PROBE = """\
kind: object
name: Probe
fields:
  code: {type: string}
  email: {type: string}
  subject: {type: string}
  body: {type: text}
  sender: {type: string}
---
kind: connection
name: ledger
type: http
base_url: LEDGER
auth: {type: bearer, secret: env:LEDGER_TOKEN}
---
kind: orchestration
name: probe_ledger
trigger: {type: record, object: Probe, on: [create], when: '=int(record.code) > 5'}
stages:
  - name: only
    steps:
      - {name: ledger, type: callout, connection: ledger, method: POST, path: /entries,
         body: {code: '=record.code', email: '=record.email'}, retry: {max: 1}}
---
kind: mailbox
name: probes
object: Probe
addresses: [probe@obs.example]
fields: {subject: subject, body: body, sender: sender}
"""

SECRET = {
    "password": "Pw-Secret-4417!x",
    "wrong_password": "Wrong-Pw-9931x",
    "customer": "Zelda Quuxmarker",
    "account": "ACCT-99887766",
    "address": "42 Privet Lane Secretville",
    "code": "notanumber-SECRETCODE",
    "email": "zelda.private@personal.example",
    "mail_body": "my-mail-body-BODYSECRET-77",
    "mail_subject": "SubjectSECRET-55",
    "ledger_token": "LEDGER-TOKEN-abc123xyz",
    "bad_token": "baton_not-a-real-TOKENSECRET",
    "forged_callback": "forged-CALLBACKSECRET",
}
SENDER = "mailsender.secret@dealer.example"


class Proc:
    """A long-running ``baton`` command, its stdout and stderr kept apart."""

    def __init__(self, name: str, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.out, self.err = tmp / f"{name}.out", tmp / f"{name}.err"
        self._files: list[IO[bytes]] = [self.out.open("wb"), self.err.open("wb")]
        self.proc = subprocess.Popen([sys.executable, str(tmp / "launch.py"), *args],
                                     env=env, stdout=self._files[0], stderr=self._files[1])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        for f in self._files:
            f.close()
        return int(self.proc.returncode)


def _metrics(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_logs_carry_ids_and_no_personal_data_or_secrets(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "address_update", proj, ignore=shutil.ignore_patterns("*.db*"))
    bank = DemoBank().start()
    SECRET["bank_token"], SECRET["bank_hmac"] = bank.token, bank.hmac_secret
    ledger = Bank()
    ledger.script["/entries"] = [(400, {}, {"error": f"bad entry for {SECRET['account']}"})] * 4
    (tmp_path / "launch.py").write_text(LAUNCHER)
    db = f"sqlite:///{tmp_path / 'baton.db'}"
    port, mport, sport = free_port(), free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = baton_env(BANK_TOKEN=bank.token, BANK_HMAC=bank.hmac_secret, COLUMNS="200",
                    LEDGER_TOKEN=SECRET["ledger_token"], BATON_PUBLIC_URL=base,
                    BATON_BASE_URL=base)
    procs: list[Proc] = []
    try:
        with bank_server(ledger):
            yaml = proj / "definitions" / "bank.yaml"
            yaml.write_text(yaml.read_text().replace("http://127.0.0.1:8765/api",
                                                     bank.url + "/api"))
            (proj / "definitions" / "probe.yaml").write_text(PROBE.replace("LEDGER", ledger.url))

            def cli(*args: str, stdin: str | None = None) -> str:
                p = subprocess.run([sys.executable, "-m", "baton.cli.main", "--project",
                                    str(proj), "--db", db, *args], env=env, input=stdin,
                                   capture_output=True, text=True, timeout=300, check=False)
                assert p.returncode == 0, (args, p.stdout, p.stderr)
                return p.stdout

            cli("deploy")
            cli("users", "add", "admin", "--role", "admin", "--password-stdin",
                stdin=SECRET["password"] + "\n")
            match = re.search(r"^(baton_\S+)$", cli("tokens", "create", "admin"), re.MULTILINE)
            assert match, "no token printed"
            token = SECRET["api_token"] = match.group(1)

            common = ["--project", str(proj), "--db", db]
            procs.append(Proc("serve", tmp_path, [*common, "serve", "--port", str(port),
                                                  "--smtp", f"127.0.0.1:{sport}",
                                                  "--log-format", "json"], env))
            procs.append(Proc("worker", tmp_path, [*common, "worker", "--metrics-port",
                                                   str(mport), "--log-format", "json"], env))
            serve, worker = procs

            def http(method: str, path: str, body: Any = None, *, auth: str | None = token,
                     headers: dict[str, str] | None = None,
                     form: dict[str, str] | None = None) -> tuple[int, bytes, Any]:
                h = dict(headers or {})
                data = None
                if form is not None:
                    data = urlencode(form).encode()
                    h["Content-Type"] = "application/x-www-form-urlencoded"
                elif body is not None:
                    data = json.dumps(body).encode()
                    h["Content-Type"] = "application/json"
                if auth:
                    h["Authorization"] = f"Bearer {auth}"
                req = urllib.request.Request(base + path, data=data, method=method, headers=h)
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        return r.status, r.read(), r.headers
                except urllib.error.HTTPError as e:
                    return e.code, e.read(), e.headers

            def up() -> bool:
                assert serve.alive() and worker.alive(), serve.err.read_text()[-3000:]
                try:
                    return http("GET", "/readyz", auth=None)[0] == 200
                except OSError:
                    return False

            eventually(up, timeout=120, what="baton serve ready with two workers")

            # Logins: the form's CSRF cookie is not sent here, so each is refused before
            # the password is looked at — still, the password must not be logged.
            for pw in (SECRET["wrong_password"], SECRET["password"]):
                http("POST", "/login", form={"username": "admin", "password": pw}, auth=None)
            assert http("GET", "/api/runs", auth=SECRET["bad_token"])[0] == 401
            status, _, headers = http("GET", "/api/runs?limit=5",
                                      headers={"X-Request-ID": "obs-e2e-1"})
            assert status == 200 and headers["X-Request-ID"] == "obs-e2e-1"
            for _ in range(2):
                status, body, _ = http("POST", "/api/objects/ServiceRequest/records", {"data": {
                    "customer": SECRET["customer"], "account_number": SECRET["account"],
                    "new_address": SECRET["address"], "documents": ["bill.pdf"]}})
                assert status == 201, body
            for code in (SECRET["code"], "9"):  # a trigger that raises; a call refused
                status, body, _ = http("POST", "/api/objects/Probe/records",
                                       {"data": {"code": code, "email": SECRET["email"]}})
                assert status == 201, body
            status, body, _ = http("POST", "/api/objects/ServiceRequest/records",
                                   {"data": {"customer": SECRET["customer"],
                                             "account_number": 12345678}})
            assert status == 422, body
            # (a parameter the list does not take: refused, naming it, never its value)
            assert http("GET", "/api/records?q=" + SECRET["customer"].replace(" ", "+"))[0] \
                == 422

            def verify_items() -> list[dict[str, Any]]:
                got = json.loads(http("GET", "/api/work?status=open&limit=50")[1])["items"]
                return [i for i in got if i["step"] == "verify_documents"]

            items = eventually(lambda: len(verify_items()) == 2 and verify_items(),
                               timeout=60, what="the verify items")
            for item in items:
                assert http("POST", f"/api/work/{item['id']}/claim")[0] == 200
                status, body, _ = http("POST", f"/api/work/{item['id']}/complete", {"data": {
                    "decision": "approve", "notes": "fine for " + SECRET["customer"]}})
                assert status == 200, body

            msg = EmailMessage()
            msg["From"], msg["To"] = SENDER, "probe@obs.example"
            msg["Subject"] = SECRET["mail_subject"]
            msg.set_content("Hello,\n" + SECRET["mail_body"] + "\n")
            with smtplib.SMTP("127.0.0.1", sport, timeout=30) as s:
                s.send_message(msg)
            assert http("POST", "/api/callbacks/" + SECRET["forged_callback"], {"x": 1},
                        auth=None)[0] == 404

            def done() -> bool:
                con = sqlite3.connect(str(tmp_path / "baton.db"))
                try:
                    return con.execute("SELECT count(*) FROM baton_runs WHERE orchestration ="
                                       " 'address_update' AND status = 'completed'"
                                       ).fetchone()[0] == 2
                finally:
                    con.close()

            eventually(done, timeout=120, what="both address updates confirmed by the bank")
            eventually(lambda: json.loads(http("GET", "/api/fallout")[1])["items"],
                       timeout=60, what="the refused ledger call in fallout")

            served = _metrics(http("GET", "/metrics")[1].decode())
            with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=30) as r:
                worked = _metrics(r.read().decode())
        statuses = [p.stop() for p in procs]
    finally:
        for p in procs:
            p.stop()
        bank.stop()
    assert statuses == [0, 0], statuses

    # Each line on stderr: one JSON object with the fields a pipeline indexes.
    lines: list[dict[str, Any]] = []
    for p in procs:
        for raw in p.err.read_text().splitlines():
            obj = json.loads(raw)
            assert {"at", "level", "logger", "event"} <= set(obj), obj
            lines.append(obj)
    access = [x for x in lines if x["logger"] == "uvicorn.access"]
    assert access and all({"method", "path", "status", "request_id", "duration_ms"} <= set(x)
                           for x in access), access
    assert any(x["request_id"] == "obs-e2e-1" and x["path"] == "/api/runs?limit=5"
               for x in access), access
    assert any(x["path"] == "/api/callbacks/***" and x["status"] == 200 for x in access)
    failed = [x for x in lines if x["level"] == "warning" and "failed (attempt" in x["event"]]
    assert failed and all(x.get("run_id") and x.get("step") for x in failed), failed

    # Expected refusals (a wrong login, an unknown token, a forged callback, a 422): no
    # error, no traceback.
    assert not [x for x in lines if x["level"] in ("error", "critical") or "exception" in x]

    # Nothing put in comes out, on either stream.
    everything = "\n".join(p.out.read_text() + p.err.read_text() for p in procs)
    leaked = {k: v for k, v in SECRET.items() if v in everything}
    assert not leaked, leaked
    assert SENDER not in everything, "no line names the sender's address"
    assert not re.search(r"/api/callbacks/(?!\*\*\*)[A-Za-z0-9_-]{20,}", everything)

    # Each call counted once, by the process that made it: both add up to the audit log.
    con = sqlite3.connect(str(tmp_path / "baton.db"))
    try:
        rows = [json.loads(r[0]) for r in con.execute("SELECT data FROM baton_events")]
    finally:
        con.close()
    audited: dict[tuple[str, str], int] = {}
    for row in rows:
        for entry in row.get("e", []) if isinstance(row, dict) else []:
            if entry[0] == "http_call":
                key = (entry[1]["connection"], status_class(entry[1].get("status")))
                audited[key] = audited.get(key, 0) + 1
    counted: dict[tuple[str, str], float] = {}
    for got in (served, worked):
        for (name, labels), v in got.items():
            if name == "baton_callouts_total":
                d = dict(labels)
                key = (d["connection"], d["status"])
                counted[key] = counted.get(key, 0) + v
    assert audited and counted == {k: float(n) for k, n in audited.items()}, (counted, audited)
    assert served[("baton_database_up", ())] == 1
    assert not [k for k in worked if k[0] in ("baton_database_up", "baton_runs_in_progress")]
