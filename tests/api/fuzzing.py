"""What the schemathesis tests share: a real ``baton serve`` to fuzz, the agent's forbidden
operations derived from the code, the custom checks, and the per-backend tallies.

``FuzzServer`` copies ``examples/case_triage`` with a few fuzz definitions (an orchestration
whose step always fails, for fallout; an autolaunched errand with an all-optional form; a
record trigger whose condition exhausts CEL's budget, for incidents), deploys it, adds an
admin and an agent (queue ``tier1``, group ``billing``) with real API tokens, starts
``baton serve`` on a free loopback port (its own worker thread moves the runs), and seeds
records, runs, fallout and incidents over HTTP as the admin.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from baton.auth.directory import User
from baton.auth.roles import GRANTS, Permission
from tests.conftest import EXAMPLES, REPO
from tests.costly import GADGETS
from tests.net import free_port
from tests.procs import eventually

ADMIN = "fuzz-admin-q7"  # names the fuzzer will not guess (to deactivate them)
AGENT = "fuzz-agent-k3"
AGENT_QUEUES = ("tier1",)
AGENT_GROUPS = ("billing",)
OUT = REPO / "test-output" / "schemathesis-summary.txt"

FUZZ_DEFINITIONS = """\
kind: mailbox
name: fuzzbox
object: Gadget
fields: {subject: label}
---
kind: intake_form
name: fuzzform
object: Gadget
fields: [label]
---
kind: orchestration
name: flaky_job
trigger:
  type: autolaunched
  input: {n: {type: int}}
stages:
  - name: only
    steps:
      - {name: boom, type: background, flow: fuzz.boom}
      - {name: after_boom, type: background, flow: fuzz.ok, after: [boom]}
---
kind: orchestration
name: doomed
trigger: {type: autolaunched}
stages:
  - name: only
    steps:
      - {name: boom, type: background, flow: fuzz.boom, on_failure: fail_run}
---
kind: orchestration
name: errand
trigger:
  type: autolaunched
  input: {note: {type: string}}
stages:
  - name: only
    steps:
      - {name: docs, type: pause, signal: docs_received}
      - name: check
        type: interactive
        assign: {queue: tier1}
        form:
          - {name: notes, type: text}
---
kind: object
name: FuzzOrder
fields:
  number: {type: string}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: FuzzLine
fields:
  order: {type: ref, object: FuzzOrder, required: true}
  product: {type: choice, choices: [WIDGET], default: WIDGET}
---
kind: catalog
name: fuzz_catalog
products:
  - {code: WIDGET, family: Thing}
---
kind: fulfillment
name: fuzz_orders
catalog: fuzz_catalog
trigger: {type: record, object: FuzzOrder, on: [create, update],
          when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: FuzzLine}
lanes: [desk]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: start, type: background, lane: desk, scope: plan, flow: fuzz.ok,
         rollback: {type: background, flow: fuzz.ok}}
      - {name: hold, type: pause, lane: desk, scope: plan, signal: never, after: [start]}
  - name: widgets
    when: '=line.product.code == "WIDGET"'
    steps:
      - {name: fit, type: background, lane: desk, flow: fuzz.ok, after: [start]}
"""

FUZZ_FLOWS = """\
from baton import flow
from baton.errors import StepFailure


@flow("fuzz.boom")
def boom(ctx):
    raise StepFailure("the billing system said no", retryable=False)


@flow("fuzz.ok")
def ok(ctx):
    return {"ok": True}
"""


# ---- the agent's forbidden operations, from the routes and the role table --------------
def _permissions_of(dependant: Dependant) -> set[Permission]:
    from baton.web.security import Need

    found: set[Permission] = set()
    if isinstance(dependant.call, Need):
        found.add(dependant.call.permission)
    for sub in dependant.dependencies:
        found |= _permissions_of(sub)
    return found


def required_permissions() -> dict[str, frozenset[Permission]]:
    """``METHOD /api/path`` -> the permissions its route's dependencies demand.

    Read from each API module's router (``baton.web.api`` mounts them all at ``/api``);
    ``test_every_operation_has_its_permissions_derived`` checks that every operation of the
    OpenAPI document is in this map, so a module added there and not here fails loudly."""
    from baton.web import api

    out: dict[str, frozenset[Permission]] = {}
    for module in API_MODULES:
        for route in getattr(api, module).router.routes:
            if isinstance(route, APIRoute):
                perms = frozenset(_permissions_of(route.dependant))
                for method in route.methods:
                    out[f"{method} /api{route.path}"] = perms
    return out


API_MODULES = ("people", "team", "definitions", "records", "intake", "runs", "plans", "work",
               "fallout", "incidents", "callbacks", "bundle")


def forbidden_for(role: str) -> frozenset[str]:
    """The operations a user with only ``role`` may never succeed at."""
    granted = GRANTS[role]
    return frozenset(op for op, perms in required_permissions().items() if not perms <= granted)


AGENT_FORBIDDEN = forbidden_for("agent")
assert AGENT_FORBIDDEN, "no operation is forbidden to an agent: the derivation found no Need"
AGENT_USER = User(AGENT, AGENT, None, frozenset({"agent"}), frozenset(AGENT_GROUPS),
                  frozenset(AGENT_QUEUES))
# Acting on another user's tokens needs `users` (checked inside the handler, people._for_user):
OTHERS_TOKENS = frozenset({"POST /api/tokens", "GET /api/tokens"})


# ---- tallies ----------------------------------------------------------------------------
@dataclass
class Tally:
    """What the fuzzer did against one backend."""

    backend: str
    requests: Counter[str] = field(default_factory=Counter)  # by phase
    statuses: Counter[int] = field(default_factory=Counter)
    ok_by_op: dict[str, Counter[str]] = field(default_factory=dict)  # op -> identity -> 2xx
    operations: set[str] = field(default_factory=set)
    by_op: dict[str, Counter[str]] = field(default_factory=dict)  # op -> "who status" -> n
    failures: list[str] = field(default_factory=list)
    details: list[str] = field(default_factory=list)  # full text of the stateful failures
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, phase: str, who: str, label: str, status: int) -> None:
        with self.lock:
            self.requests[phase] += 1
            self.statuses[status] += 1
            self.operations.add(label)
            self.by_op.setdefault(label, Counter())[f"{phase}:{who}:{status}"] += 1
            if 200 <= status < 300:
                self.ok_by_op.setdefault(label, Counter())[who] += 1

    def fail(self, label: str, exc: BaseException) -> None:
        parts = getattr(exc, "exceptions", None) or [exc]
        what = "; ".join(" / ".join(line.strip() for line in str(e).strip().splitlines()[:2])
                         or type(e).__name__ for e in parts)
        with self.lock:
            self.failures.append(f"{label}: {what[:400]}")

    def ok_count(self, who: str | None = None) -> int:
        return sum(c[who] if who else sum(c.values()) for c in self.ok_by_op.values())

    def line(self) -> str:
        total = sum(self.requests.values())
        phases = ", ".join(f"{k} {v}" for k, v in sorted(self.requests.items()))
        codes = ", ".join(f"{k}: {v}" for k, v in sorted(self.statuses.items()))
        n = len(self.failures)
        return (f"schemathesis [{self.backend}]: {len(self.operations)} operations, {total} "
                f"requests ({phases}), {self.ok_count()} 2xx ({self.ok_count('admin')} as the "
                f"admin, {self.ok_count('agent')} as the agent), {n} failure"
                f"{'s' if n != 1 else ''}; status codes {{{codes}}}")


TALLIES: dict[str, Tally] = {}


def tally(backend: str) -> Tally:
    return TALLIES.setdefault(backend, Tally(backend))


def write_summary() -> list[str]:
    """The summary lines (one per backend that ran), also written to test-output/."""
    lines = [TALLIES[b].line() for b in sorted(TALLIES)]
    if lines:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        body = []
        for b in sorted(TALLIES):
            t = TALLIES[b]
            body += [t.line(), *(f"  {f}" for f in t.failures)]
            body += [f"  {op}: " + ", ".join(f"{k} {v}" for k, v in sorted(c.items()))
                     for op, c in sorted(t.by_op.items())]
        OUT.write_text("\n".join(body) + "\n")
    return lines


# ---- the server -------------------------------------------------------------------------
class FuzzServer:
    """``baton serve`` over a seeded copy of case_triage on ``db_url``."""

    def __init__(self, base: Path, db_url: str, backend: str) -> None:
        self.backend = backend
        self.db_url = db_url
        self.project = base / "case_triage"
        shutil.copytree(EXAMPLES / "case_triage", self.project,
                        ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
        (self.project / "definitions" / "fuzz.yaml").write_text(FUZZ_DEFINITIONS)
        (self.project / "definitions" / "gadgets.yaml").write_text(GADGETS.lstrip())
        (self.project / "fuzz_flows.py").write_text(FUZZ_FLOWS)
        toml = self.project / "baton.toml"
        toml.write_text(toml.read_text().replace('flows = ["flows"]',
                                                  'flows = ["flows", "fuzz_flows"]'))
        self.log = base / "serve.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.tokens: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.seeded: dict[str, list[str]] = {}

    def cli(self, *args: str) -> str:
        cmd = [sys.executable, "-c", "from baton.cli.main import main; main()",
               "--project", str(self.project), "--db", self.db_url, *args]
        done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=180,
                              cwd=self.project)
        if done.returncode != 0:
            raise AssertionError(f"baton {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done.stdout

    def start(self) -> None:
        self.cli("deploy")
        self.cli("users", "add", ADMIN, "--role", "admin")
        self.cli("users", "add", AGENT, "--role", "agent",
                 *(a for q in AGENT_QUEUES for a in ("--queue", q)),
                 *(a for g in AGENT_GROUPS for a in ("--group", g)))
        for who, name in (("admin", ADMIN), ("agent", AGENT)):
            self.tokens[who] = json.loads(self.cli("tokens", "create", name, "--json"))["token"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", "from baton.cli.main import main; main()", "--project",
                 str(self.project), "--db", self.db_url, "serve", "--port", str(self.port)],
                cwd=self.project, stdout=log, stderr=subprocess.STDOUT, env=env)

        def up() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"baton serve exited ({self.proc.returncode}):\n"
                                     + self.log.read_text())
            try:
                return self.get("/api/me")[0] == 200
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                return False

        eventually(up, what=f"baton serve to answer at {self.url}", timeout=90)
        self.seed()

    def seed(self) -> None:
        """Records, runs at their work items, fallout and incidents, for the fuzzer to find;
        their ids are kept in ``seeded`` (the stateful run's dictionaries)."""
        ids: dict[str, list[str]] = {"record_id": [], "run_id": []}
        for i, subject in enumerate(["Invoice 1 wrong", "Inverter down", "Invoice 3 late",
                                     "Panel cracked", "Battery hot", "Invoice 6 twice"]):
            ids["record_id"].append(self.post("/api/objects/Case/records",
                                              {"data": {"subject": subject, "number": i}})["id"])
        for i in range(6):
            for orchestration in ("flaky_job", "errand") + (("doomed",) if i % 2 else ()):
                ids["run_id"].append(self.post("/api/runs", {"orchestration": orchestration,
                                                             "input": {}})["id"])
            ids["record_id"].append(self.post("/api/objects/Account/records",
                                              {"data": {"name": f"Solar {i}"}})["id"])
            if i % 3 != 2:
                ids["record_id"].append(self.post("/api/objects/Gadget/records",
                                                  {"data": {"label": f"gadget {i}"}})["id"])

        def ready() -> bool:
            work = self.get("/api/work?limit=1")[1]["total"]
            fallout = self.get("/api/fallout?limit=1")[1]["total"]
            incidents = self.get("/api/incidents?limit=1")[1]["total"]
            failed = self.get("/api/runs?status=failed&limit=1")[1]["total"]
            return bool(work >= 12 and fallout >= 6 and incidents >= 4 and failed >= 3)

        eventually(ready, what="the seeded work items, fallout and incidents", timeout=120)
        ids["item_id"] = [i["id"] for i in self.get("/api/work?limit=100")[1]["items"]]
        ids["fallout_id"] = [i["id"] for i in self.get("/api/fallout?limit=100")[1]["items"]]
        ids["incident_id"] = [i["id"] for i in self.get("/api/incidents?limit=100")[1]["items"]]
        ids["token_id"] = [self.post("/api/tokens", {"label": f"spare {i}"})["id"]
                           for i in range(3)]
        taken = self.post("/api/intake/fuzzbox", {
            "subject": "Seeded mail", "sender": "seed@fuzz.example", "body": "seeded",
            "attachments": [{"filename": "seed.txt", "content_type": "text/plain",
                             "content_base64": "c2VlZA=="}]})
        ids["record_id"].append(taken["record_id"])
        ids["attachment_id"] = [a["id"] for a in self.get(
            f"/api/records/{taken['record_id']}/attachments")[1]["items"]]
        ids["mailbox"] = ["fuzzbox"]
        ids["order_id"] = [self.order() for _ in range(3)]
        self.seeded = ids

    def order(self) -> str:
        """A submitted FuzzOrder with two lines: its plan is in progress (its `hold` step
        waits for a signal nobody sends), before its point of no return."""
        for kind, name in (("catalog", "fuzz_catalog"), ("fulfillment", "fuzz_orders")):
            # the fuzzer may have deactivated them (designers can): active again, as an
            # operator would make them before taking orders
            detail = self.get(f"/api/definitions/{kind}/{name}")[1]
            if detail["active_version"] is None:
                self.post(f"/api/definitions/{kind}/{name}/activate",
                          {"version": detail["latest_version"]})
        order = self.post("/api/objects/FuzzOrder/records", {"data": {"number": "F-1"}})["id"]
        for _ in range(2):
            self.post("/api/objects/FuzzLine/records", {"data": {"order": order}})
        status, body = self.request("PATCH", f"/api/records/{order}",
                                    {"data": {"status": "Submitted"}})
        assert status == 200, (status, body)
        eventually(lambda: self.get(f"/api/plans/{order}")[0] == 200,
                   what="the seeded order's plan", timeout=60)
        return str(order)

    def request(self, method: str, path: str, body: Any = None,
                who: str = "admin") -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.tokens[who]}", "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                raw = r.read()
                return r.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, json.loads(raw) if raw else None

    def get(self, path: str, who: str = "admin") -> tuple[int, Any]:
        return self.request("GET", path, who=who)

    def post(self, path: str, body: Any, who: str = "admin") -> Any:
        status, out = self.request("POST", path, body, who)
        assert 200 <= status < 300, (path, status, out)
        return out

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def who(self, headers: Any) -> str:
        """Which identity sent these request headers."""
        sent = str(headers.get("Authorization") or "")
        for who, token in self.tokens.items():
            if sent == f"Bearer {token}":
                return who
        return "anonymous"

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
