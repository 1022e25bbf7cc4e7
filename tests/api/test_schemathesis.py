"""Schemathesis against a real ``baton serve`` over HTTP, on SQLite and on PostgreSQL.

For each backend (a SQLite file, or a fresh PostgreSQL database cloned from the session's
template; without a server PostgreSQL skips, and fails under ``CI=true``), a ``baton serve``
subprocess runs on a free loopback port over a seeded copy of case_triage
(``tests/api/fuzzing.py``). Then, derandomized and bounded:

1. stateless, as the admin: every operation, examples, coverage and fuzzing phases,
   positive and negative inputs;
2. stateless, as an agent: the same operations with fewer examples;
3. stateful: the OpenAPI links of the app's document (``baton.web.openapi``) chain
   operations so ids come from real answers; some steps are sent as the agent (every
   other one where its role allows the operation, every fourth where it does not).
   PostgreSQL's walk is half as long as SQLite's, on seeds of its own (``STATEFUL_BUDGET``).

Every answer is checked: no 5xx; status code, content type and body as the schema
declares; schema-valid data accepted (``positive_data_acceptance``) and invalid data
refused (``negative_data_rejection``); and, on every agent answer, no 2xx on an operation
the agent's role may not do (derived from the routes' ``Need`` dependencies and
``baton.auth.roles.GRANTS``) nor on a work item outside the agent's scope. At the end,
every operation the admin can reach must have answered the admin with a 2xx at least
once. A summary line per backend (operations, requests, 2xx, failures, status codes) is
printed at the end of the session and written to ``test-output/schemathesis-summary.txt``.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis.errors import Flaky
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    positive_data_acceptance,
    response_schema_conformance,
    status_code_conformance,
)

from baton.auth.roles import GRANTS
from baton.runtime.engine import Engine
from baton.web.app import create_app
from tests.api.fuzzing import (
    AGENT_FORBIDDEN,
    AGENT_USER,
    OTHERS_TOKENS,
    FuzzServer,
    required_permissions,
    tally,
)
from tests.conftest import _pg_admin, _pg_url_for
from tests.procs import eventually

# The whole fuzz on PostgreSQL is CI's (its SQLite run covers the same operations locally).
pytestmark = pytest.mark.pg_slow

MAX_EXAMPLES = 10  # per operation and mode (positive, negative), as the admin
AGENT_EXAMPLES = 4  # and no coverage phase: most answers are the same 403
STATEFUL_SCENARIOS = 40  # per suite
STATEFUL_STEPS = 10  # at most, per scenario
STATEFUL_SUITES = 30
# Requests, per backend. The walk is derandomized: on the same seeds, PostgreSQL's walk
# replays SQLite's, step for step (measured: the same request count after every suite, the
# same links in the same order), so a full second walk on PostgreSQL would spend its second
# half re-walking chains SQLite already walked, only on another database. PostgreSQL walks
# half as far, on seeds of its own: every chain SQLite walks is still walked, and
# PostgreSQL's scenarios are ones SQLite's seeds do not draw (the two walks together cover
# more links than two replays of one did), each answer checked on PostgreSQL as before.
STATEFUL_BUDGET = {"sqlite": 2400, "postgres": 1200}
STATEFUL_SEEDS = {"sqlite": 0, "postgres": 1000}  # the first suite's; the next ones count up
MIN_ADMIN_2XX = 1  # per operation the admin can reach
# Operations authenticated by a token in their path, not by a role: a fuzzer cannot make
# one (tests/api/test_callbacks.py reaches their 2xx with a real waiting callout step).
TOKEN_AUTHENTICATED = frozenset({"POST /api/callbacks/{token}"})
# Operations any signed-in user may call, the operation itself deciding who may act (recall:
# the approval's submitter or an operator). The fuzz project has no approval step, so no 2xx
# is expected here; tests/integration/test_approvals.py reaches it.
SUBMITTER_CHECKED = frozenset({"POST /api/work/{item_id}/recall"})
# Operations on an item offered to one person (routing's offer mode), who alone may answer
# it: the fuzz project routes nothing, so no 2xx is expected here;
# tests/api/test_work_offers.py reaches it.
OFFEREE_CHECKED = frozenset({"POST /api/work/{item_id}/accept",
                             "POST /api/work/{item_id}/decline"})
# A person's routing profile: anyone may read theirs and set their own availability; the
# rest needs the `team` permission, checked inside the handler (web/api/team.py).
SELF_OR_TEAM = frozenset({"GET /api/users/{name}/routing", "PATCH /api/users/{name}/routing"})

# Health checks suppressed, each for a reason:
SUPPRESSED: list[HealthCheck] = [
]

BUILTIN_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
                  response_schema_conformance, positive_data_acceptance,
                  negative_data_rejection]

# Operations whose schema-valid body may still be refused with 422, because part of it is
# checked against what is deployed or stored, which no static schema can say; the prefix
# is where such a refusal must point (``refusals_are_located`` checks it).
KEY = "header.Idempotency-Key"  # a key reused with another body: 422, as the IETF draft says
CHECKED_AGAINST_STATE: dict[str, tuple[tuple[str, ...], str]] = {
    "POST /api/objects/{object_type}/records": (("data", KEY),
                                                "the object type's fields, or a key in use"),
    "PATCH /api/records/{record_id}": (("data",), "the object type's fields"),
    "POST /api/runs": (("input", "record_id", KEY),
                       "the trigger's input fields and object (a record only with one), or a key in use"),
    "POST /api/work/{item_id}/complete": (("data", KEY), "the step's form, or a key in use"),
    "POST /api/work/{item_id}/reassign": (("to", KEY),
                                          "the users and groups that exist, or a key in use"),
    # a delegate must be another user that exists; the dates real days, the first one first
    **{op: (("delegate", "delegate_from", "delegate_until"),
            "the users that exist and the calendar")
       for op in ("PATCH /api/me", "PATCH /api/users/{name}")},
    "PATCH /api/users/{name}/routing": (("calendar",), "the calendars deployed"),
    "POST /api/fallout/{fallout_id}/complete": (("data", KEY),
                                                "the step's output fields, or a key in use"),
    "POST /api/definitions/deploy": (("issues", KEY), "the definition language (YAML), the "
                                     + "active definitions an object type change breaks, "
                                     + "or a key in use"),
    # (an Idempotency-Key reused with another body)
    "POST /api/users": ((KEY,), "a key in use"),
    "POST /api/tokens": ((KEY,), "a key in use"),
    "POST /api/work/next": ((KEY,), "a key in use"),
    # (every action POST reads it too)
    **{f"POST /api/{op}": ((KEY,), "a key in use") for op in (
        *(f"work/{{item_id}}/{a}" for a in ("claim", "release", "accept", "decline", "recall")),
        *(f"runs/{{run_id}}/{a}" for a in ("cancel", "resume", "signal")),
        *(f"fallout/{{fallout_id}}/{a}" for a in ("retry", "skip")),
        *(f"incidents/{{incident_id}}/{a}" for a in ("retry", "dismiss")),
        *(f"plans/{{order_id}}/{a}" for a in ("cancel", "amend")),
        "definitions/{kind}/{name}/deactivate", "users/{name}/unlock",
        "addresses/{address}/unlock")},
    "POST /api/definitions/{kind}/{name}/activate": (
        ("issues", KEY), ("the object types deployed (the version must fit them), or a "
                          "key in use")),
    "POST /api/intake/{target}": (
        ("body", KEY), "what parses as an e-mail, the mailbox's object type's fields, or a key"),
    "POST /api/bundle/import": (
        ("body", "issues", KEY), "what unpacks as a bundle, the definitions it holds and what "
        + "they break, or a key in use"),
    # An `after` cursor is opaque: only the `next` values this server issued are cursors;
    # and `after` with `offset` is refused (one way of paging at a time), which the schema
    # cannot say.
    **{f"GET /api/{what}": (("query.after", "query.offset"),
                            "the cursors the server issued, and one way of paging")
       for what in ("runs", "work", "records", "users", "tokens", "definitions",
                    "records/{record_id}/timeline", "runs/{run_id}/events", "fallout",
                    "incidents", "records/{record_id}/messages",
                    "records/{record_id}/attachments", "intake/refused")},
}
ACCEPTED = ["2xx", "3xx", "401", "403", "404", "409", "429", "5xx"]  # schemathesis' default
# schemathesis' default, with 413: a body over BATON_MAX_BODY_BYTES is refused before it is read
REJECTED = ["400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429",
            "5xx"]

# Fuzzing dictionaries: names a client of this deployment would know (what is deployed in
# the seeded project, the first page), drawn with these probabilities; the rest of the time
# the value is generated as usual.
DICTIONARIES = {
    "object_types": ["Case", "Account", "Gadget"],
    "definitions": ["Case", "Account", "Gadget", "case_triage", "errand", "flaky_job",
                    "doomed", "gadget_check"],
    "orchestrations": ["errand", "flaky_job", "doomed", "case_triage"],
    "mailboxes": ["fuzzbox", "fuzzform"],
    "signals": ["docs_received"],
    "assignees": ["queue:tier1", "queue:tier2", "group:billing", "user:fuzz-agent-k3"],
    "first": [0],
    "one": [1],
}


def _bind(name: str, probability: float = 0.5) -> dict[str, Any]:
    return {"dictionary": name, "probability": probability}


@schemathesis.serializer("message/rfc822")
def _rfc822(ctx: Any, value: Any) -> bytes:
    """A raw e-mail body (``POST /api/intake/{target}``): the generated string as UTF-8."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


@schemathesis.serializer("application/gzip")
def _gzip(ctx: Any, value: Any) -> bytes:
    """A bundle's bytes (``POST /api/bundle/import``): generated bytes as they are, else
    the generated value's text as UTF-8 (never a bundle: a 422 naming ``body``)."""
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "surrogatepass")


CONFIG: dict[str, Any] = {
    "dictionaries": {name: {"values": values} for name, values in DICTIONARIES.items()},
    "parameters": {"path.object_type": _bind("object_types"), "path.target": _bind("mailboxes"),
                   "query.offset": _bind("first", 0.7),
                   "query.from": _bind("one"), "query.to": _bind("one", 0.3)},
    "generation": {
        "deterministic": True,
        # The tests send each identity's real token; a generated Authorization header would
        # only be overwritten (and its "missing header" mutation would not reach the server).
        "with-security-parameters": False,
        # Every route refuses NUL in any string with a located 422 (web/api/common.py,
        # clean_input; tests/api/test_security.py), which the schema cannot declare per string.
        "allow-x00": False,
    },
    "checks": {"negative_data_rejection": {"expected-statuses": REJECTED}},
    "operations": [
        *({"include-name": label,
           "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}}}
          for label in CHECKED_AGAINST_STATE),
        {"include-name": "POST /api/runs", "parameters": {"body.orchestration":
                                                          _bind("orchestrations")}},
        {"include-name": "POST /api/runs/{run_id}/signal",
         "parameters": {"body.name": _bind("signals", 0.9)}},
        {"include-name": "POST /api/work/{item_id}/reassign",
         "parameters": {"body.to": _bind("assignees")}},
        {"include-path-regex": "^/api/definitions/\\{kind\\}/\\{name\\}",
         "parameters": {"path.name": _bind("definitions"), "path.version": _bind("one"),
                        "body.version": _bind("one")}},
    ],
}


# ---- the server, per backend --------------------------------------------------------------
@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzz_server(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzServer]:
    backend: str = request.param
    base = tmp_path_factory.mktemp(f"fuzz-{backend}")
    dbname = None
    if backend == "postgres":
        template = request.getfixturevalue("pg_template")  # skips, or fails under CI=true
        dbname = f"baton_fuzz_{os.getpid()}"
        with _pg_admin() as admin:  # type: ignore[attr-defined]
            admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")
            admin.execute(f"CREATE DATABASE {dbname} TEMPLATE {template}")
        url = _pg_url_for(dbname)
    else:
        url = f"sqlite:///{Path(base) / 'baton.db'}"
    srv = FuzzServer(Path(base), url, backend)
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()
        if dbname is not None:
            with _pg_admin() as admin:  # type: ignore[attr-defined]
                admin.execute(f"DROP DATABASE IF EXISTS {dbname} WITH (FORCE)")


@pytest.fixture(scope="module")
def admin_schema(fuzz_server: FuzzServer) -> Any:
    """The document the server serves, loaded over HTTP, for the state machine; its
    dictionaries add the ids of what was seeded (each drawn for a path parameter half the
    time when no link supplied it), so operations whose ids no answer in a short
    scenario happens to carry are reached too."""
    config = copy.deepcopy(CONFIG)
    # Only the document's links: schemathesis would also infer links by matching names
    # (GET /api/tokens -> DELETE /api/tokens/{token_id}, GET /api/me -> PATCH
    # /api/users/{name}), and revoke or deactivate the very identities it acts as.
    config["phases"] = {"stateful": {"inference": {"algorithms": []}}}
    for name, values in fuzz_server.seeded.items():
        config["dictionaries"][f"seeded_{name}"] = {"values": values}
        config["parameters"][f"path.{name}"] = _bind(f"seeded_{name}", 0.5)
    return schemathesis.openapi.from_url(f"{fuzz_server.url}/openapi.json",
                                         config=schemathesis.Config.from_dict(config))


# ---- checks -------------------------------------------------------------------------------
def _sent(response: Any) -> Any:
    return response.request.headers


def agent_stays_in_its_role(srv: FuzzServer) -> Any:
    """A custom check: an agent's answer is never a 2xx where its role forbids the
    operation, nor shows it a work item outside its scope."""

    def check(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
        if srv.who(_sent(response)) != "agent" or not 200 <= response.status_code < 300:
            return None
        label = case.operation.label
        assert label not in AGENT_FORBIDDEN, (
            f"the agent got {response.status_code} on {label}, which its role forbids "
            f"(needs {sorted(p.value for p in required_permissions()[label])})")
        if label in OTHERS_TOKENS:
            other = (case.query or {}).get("user") if case.method == "GET" else (
                case.body.get("user") if isinstance(case.body, dict) else None)
            assert other in (None, AGENT_USER.name), (
                f"the agent got {response.status_code} on {label} for user {other!r}")
        if label.startswith(("GET /api/work", "POST /api/work")) \
                and response.status_code != 204:  # (next item: 204 when none is left)
            body = response.json()
            items = body.get("items", [body])
            outside = [i["id"] for i in items if not AGENT_USER.in_scope(i)]
            assert not outside, f"the agent got work items outside its scope: {outside}"
        return None

    check.__name__ = "agent_stays_in_its_role"
    return check


def refusals_are_located(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """A schema-valid request refused with 422 (allowed only in CHECKED_AGAINST_STATE)
    is a problem document naming where, under the part checked against stored state."""
    meta = case.meta
    if response.status_code != 422 or meta is None or not meta.generation.mode.is_positive:
        return None
    if case.operation.label not in CHECKED_AGAINST_STATE:
        return None  # positive_data_acceptance reports it
    where, against = CHECKED_AGAINST_STATE[case.operation.label]
    body = response.json()
    if "issues" in where and body.get("issues"):
        return None  # (a definition's problems, located by file, line and path)
    fields = [e["field"] for e in body.get("errors") or []]
    assert fields and all(any(f == w or f.startswith(f"{w}.") for w in where)
                          for f in fields), (
        f"a schema-valid request was refused with 422 naming {fields or 'nothing'}; only "
        f"{', '.join(where)} is checked against {against}: {body}")
    return None


def call_and_check(srv: FuzzServer, case: schemathesis.Case, who: str, phase: str) -> None:
    response = case.call(base_url=srv.url, headers=srv.auth(who), timeout=60)
    record_and_validate(srv, case, response, phase)


def record_and_validate(srv: FuzzServer, case: schemathesis.Case, response: Any, phase: str,
                        *, keep_going: bool = False, **validate: Any) -> None:
    """Count the answer and run every check on it; a failure is tallied, then raised
    (``keep_going``: only tallied, for the state machine to assert at its end)."""
    who = srv.who(_sent(response))
    label = case.operation.label
    t = tally(srv.backend)
    t.count(phase, who, label, response.status_code)
    try:
        case.validate_response(response, checks=BUILTIN_CHECKS,
                               additional_checks=[agent_stays_in_its_role(srv),
                                                  refusals_are_located], **validate)
    except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is the latter
        t.fail(f"{phase} {who} {label}", exc)
        if keep_going:
            t.details.append(f"{phase} {who} {label}:\n{str(exc)[:3000]}")
            return
        raise


# ---- stateless ----------------------------------------------------------------------------
def _document() -> dict[str, Any]:
    """The app's OpenAPI document, read at collection time (pytest needs the operations to
    parametrize before any server runs); ``test_the_server_serves_the_fuzzed_document``
    checks each server serves exactly this."""
    tmp = Path(tempfile.mkdtemp(prefix="baton-openapi-"))
    try:
        engine = Engine(f"sqlite:///{tmp / 'doc.db'}")
        try:
            return create_app(engine).openapi()
        finally:
            engine.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


DOCUMENT = _document()
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT),
                                        config=schemathesis.Config.from_dict(CONFIG))
agent_schema = schemathesis.openapi.from_dict(
    copy.deepcopy(DOCUMENT),
    config=schemathesis.Config.from_dict({**CONFIG, "phases": {"coverage": {"enabled": False}}}))


def test_the_server_serves_the_fuzzed_document(fuzz_server: FuzzServer) -> None:
    assert fuzz_server.get("/openapi.json")[1] == DOCUMENT


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=SUPPRESSED)
def test_admin_stateless(case: schemathesis.Case, fuzz_server: FuzzServer) -> None:
    call_and_check(fuzz_server, case, "admin", "stateless-admin")


@agent_schema.parametrize()
@settings(max_examples=AGENT_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=SUPPRESSED)
def test_agent_stateless(case: schemathesis.Case, fuzz_server: FuzzServer) -> None:
    call_and_check(fuzz_server, case, "agent", "stateless-agent")


# ---- stateful -----------------------------------------------------------------------------
def test_stateful_links_with_admin_and_agent(fuzz_server: FuzzServer, admin_schema: Any) -> None:
    srv = fuzz_server
    base = admin_schema.as_state_machine()

    class Workflow(base):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            self.steps_taken = 0

        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, Any]:
            # Deterministic by step: what an agent may do, every other step as the agent;
            # what it may not, every fourth (each such answer must not be a 2xx).
            self.steps_taken += 1
            every = 4 if case.operation.label in AGENT_FORBIDDEN else 2
            who = "agent" if self.steps_taken % every == 0 else "admin"
            return {"headers": srv.auth(who), "timeout": 60}

        def validate_response(self, response: Any, case: schemathesis.Case,
                              additional_checks: Any = None, **kwargs: Any) -> None:
            # Not raised: Hypothesis replays a failing scenario to report it, and against a
            # server whose state has moved on the replay draws differently (its "flaky
            # strategy" error would hide the failure); tallied and asserted below instead.
            record_and_validate(srv, case, response, "stateful", keep_going=True,
                                transport_kwargs=kwargs or None, recorder=self.recorder)

    t = tally(srv.backend)
    before = len(t.details)
    flaky = 0
    # Like schemathesis' own runner: suites of scenarios, each seeded (so the run is
    # repeatable as far as the server's own timing allows), until the step budget is
    # spent. A suite ends early when Hypothesis notices that the server's answers (a
    # bundle empty now that held a work item before) change what it drew: that is the
    # live server's state, not a failure, and the next suite goes on from there.
    budget = STATEFUL_BUDGET[srv.backend]
    for suite in range(STATEFUL_SUITES):
        if t.requests["stateful"] >= budget:
            break
        try:
            hypothesis.seed(STATEFUL_SEEDS[srv.backend] + suite)(Workflow).run(settings=settings(
                max_examples=STATEFUL_SCENARIOS, stateful_step_count=STATEFUL_STEPS,
                deadline=None, database=None,
                # generate only: shrinking replays a scenario against a server whose state
                # has moved on; a failing answer is tallied as found (see validate_response)
                phases=[Phase.generate], suppress_health_check=SUPPRESSED))
        except Flaky:
            flaky += 1
    assert t.requests["stateful"] >= budget // 2, (
        f"the state machine made only {t.requests['stateful']} requests "
        f"({flaky} suite(s) cut short by the server's changing state)")
    found = t.details[before:]
    assert not found, f"{len(found)} failing answer(s) in the stateful run:\n\n" + "\n\n".join(
        found[:10])


def test_every_operation_has_its_permissions_derived() -> None:
    """The agent's forbidden set covers the whole document: every operation's permissions
    were read from its route, and each operation but the self-service ones needs one."""
    perms = required_permissions()
    labels = {f"{m.upper()} {p}" for p, ops in DOCUMENT["paths"].items() for m in ops}
    assert labels == set(perms), labels ^ set(perms)
    self_service = {op for op, needed in perms.items() if not needed}
    assert self_service == {"GET /api/me", "PATCH /api/me", "POST /api/tokens",
                            "GET /api/tokens", "DELETE /api/tokens/{token_id}"} | TOKEN_AUTHENTICATED \
        | SUBMITTER_CHECKED | SELF_OR_TEAM, self_service


# ---- directed: operations whose 2xx needs a precondition the fuzzer rarely sets up --------
def _directed(srv: FuzzServer) -> dict[str, Callable[[], tuple[dict[str, Any], Any]]]:
    """Operation -> what builds one admin request that should succeed now, from the live
    server's state: (path parameters, body). A random PATCH of a record almost never
    carries the version the record is at; a signal, a fallout step or an incident the
    fuzzer drew may have been used up by an earlier request."""
    def active(name: str, kind: str = "orchestration") -> str:
        """The fuzzer may have deactivated it (designers can): make its latest version
        active again, as an operator would before relying on it."""
        detail = srv.get(f"/api/definitions/{kind}/{name}")[1]
        if detail["active_version"] is None:
            srv.post(f"/api/definitions/{kind}/{name}/activate",
                     {"version": detail["latest_version"]})
        return name

    def start(name: str) -> dict[str, Any]:
        return dict(srv.post("/api/runs", {"orchestration": active(name), "input": {}}))

    def record() -> dict[str, Any]:
        active("case_triage")
        return dict(srv.post("/api/objects/Case/records",
                             {"data": {"subject": "Directed case", "number": 900}}))

    def waiting(path: str, what: str) -> dict[str, Any]:
        found: list[dict[str, Any]] = []

        def probe() -> bool:
            found[:] = srv.get(path)[1]["items"]
            return bool(found)
        eventually(probe, what=what, timeout=120)
        return found[0]

    def account() -> dict[str, Any]:
        """A record no orchestration starts from: its version stays where it was read."""
        return dict(srv.post("/api/objects/Account/records", {"data": {"name": "Directed"}}))

    def patch() -> tuple[dict[str, Any], Any]:
        rec = account()
        return {"record_id": rec["id"]}, {"data": {"name": "Directed, edited"},
                                          "version": rec["version"]}

    def signal() -> tuple[dict[str, Any], Any]:
        return {"run_id": start("errand")["id"]}, {"name": "docs_received", "data": {"pages": 3}}

    def fallout(body: dict[str, Any]) -> Callable[[], tuple[dict[str, Any], Any]]:
        def build() -> tuple[dict[str, Any], Any]:
            start("flaky_job")
            entry = waiting("/api/fallout?limit=1", "a step in fallout")
            return {"fallout_id": entry["id"]}, body
        return build

    def incident() -> tuple[dict[str, Any], Any]:
        active("gadget_check")
        srv.post("/api/objects/Gadget/records", {"data": {"label": "directed gadget"}})
        entry = waiting("/api/incidents?limit=1", "an open incident")
        return {"incident_id": entry["id"]}, {"reason": "directed"}

    def item() -> dict[str, Any]:
        rec = record()
        return waiting(f"/api/work?record_id={rec['id']}&limit=1", "the case's triage item")

    def claimed() -> dict[str, Any]:
        it = item()
        srv.post(f"/api/work/{it['id']}/claim", None)
        return it

    def failed_run() -> tuple[dict[str, Any], Any]:
        run = start("doomed")
        eventually(lambda: srv.get(f"/api/runs/{run['id']}")[1]["status"] == "failed",
                   what="the doomed run to fail", timeout=120)
        return {"run_id": run["id"]}, {"reason": "directed"}

    directed_yaml = ("kind: orchestration\nname: directed_job\ntrigger: {type: autolaunched}\n"
                     "stages:\n  - name: only\n    steps: [{name: wait, type: pause, "
                     "signal: never}]\n")

    def deployed() -> dict[str, Any]:
        srv.post("/api/definitions/deploy", {"files": {"directed.yaml": directed_yaml}})
        return {"kind": "orchestration", "name": "directed_job"}

    def deactivated() -> tuple[dict[str, Any], Any]:
        path = deployed()
        srv.post("/api/definitions/orchestration/directed_job/deactivate", None)
        return path, {"version": 1}

    def mailed() -> str:
        """A record made by a message (the fuzzer's record ids rarely are one that exists)."""
        box = active("fuzzbox", "mailbox")
        return str(srv.post(f"/api/intake/{box}", {"subject": "Directed mail",
                                                    "sender": "d@fuzz.example"})["record_id"])

    def bundle() -> tuple[dict[str, Any], Any]:
        """The server's own bundle (its definitions, as GET /api/bundle answers them):
        imported back, it changes nothing."""
        req = urllib.request.Request(srv.url + "/api/bundle", headers=srv.auth("admin"))
        with urllib.request.urlopen(req, timeout=30) as r:
            return {}, r.read()

    reason = {"reason": "directed"}
    return {
        "POST /api/bundle/import": bundle,
        "POST /api/objects/{object_type}/records": lambda: (
            {"object_type": "Case"}, {"data": {"subject": "Directed new", "number": 901}}),
        "POST /api/definitions/deploy": lambda: ({}, {"files": {"directed2.yaml": directed_yaml.replace(
            "directed_job", "directed_job2")}}),
        "POST /api/definitions/{kind}/{name}/deactivate": lambda: (deployed(), None),
        "POST /api/definitions/{kind}/{name}/activate": deactivated,
        "POST /api/runs/{run_id}/cancel": lambda: ({"run_id": start("errand")["id"]}, reason),
        "POST /api/runs/{run_id}/resume": failed_run,
        "DELETE /api/tokens/{token_id}": lambda: (
            {"token_id": srv.post("/api/tokens", {"label": "directed"})["id"]}, None),
        "POST /api/work/{item_id}/claim": lambda: ({"item_id": item()["id"]}, None),
        "POST /api/work/{item_id}/release": lambda: ({"item_id": claimed()["id"]}, None),
        "POST /api/work/{item_id}/complete": lambda: (
            {"item_id": claimed()["id"]}, {"data": {"resolution": "close"}}),
        "POST /api/work/{item_id}/reassign": lambda: ({"item_id": item()["id"]},
                                                      {"to": "queue:tier2"}),
        "PATCH /api/records/{record_id}": patch,
        "DELETE /api/records/{record_id}": lambda: ({"record_id": account()["id"]}, None),
        # a read of one record: reached through links from a record's creation, when the
        # derandomized stateful run walks them (adding the offer operations moved its
        # walk off them on SQLite)
        "GET /api/records/{record_id}": lambda: ({"record_id": account()["id"]}, None),
        # ... and its timeline, the same way (a CI run's walk on PostgreSQL missed it)
        "GET /api/records/{record_id}/timeline": lambda: ({"record_id": account()["id"]}, None),
        # a run's reads and a definition's: reached through links from a run's start or a
        # deploy, when the stateful walk takes them (the PostgreSQL walk, on its own seeds
        # and half SQLite's budget, missed GET .../events in a CI run)
        "GET /api/runs/{run_id}": lambda: ({"run_id": start("errand")["id"]}, None),
        "GET /api/runs/{run_id}/events": lambda: ({"run_id": start("errand")["id"]}, None),
        "GET /api/definitions/{kind}/{name}": lambda: (deployed(), None),
        "GET /api/definitions/{kind}/{name}/versions/{version}": lambda: (
            {**deployed(), "version": 1}, None),
        "POST /api/runs/{run_id}/signal": signal,
        "POST /api/fallout/{fallout_id}/retry": fallout(reason),
        "POST /api/fallout/{fallout_id}/skip": fallout(reason),
        "POST /api/fallout/{fallout_id}/complete": fallout({**reason, "data": {}}),
        "POST /api/intake/{target}": lambda: (
            {"target": active("fuzzbox", "mailbox")},
            {"subject": "Directed mail", "sender": "d@fuzz.example"}),
        "GET /api/records/{record_id}/messages": lambda: ({"record_id": mailed()}, None),
        "GET /api/records/{record_id}/attachments": lambda: ({"record_id": mailed()}, None),
        "GET /api/attachments/{attachment_id}": lambda: (
            {"attachment_id": srv.seeded["attachment_id"][0]}, None),
        "POST /api/incidents/{incident_id}/retry": incident,
        "POST /api/incidents/{incident_id}/dismiss": incident,
        # reads of one item or incident: an id the stateful run may or may not carry into
        # them (which it does depends on how the document names its operations)
        "GET /api/work/{item_id}": lambda: ({"item_id": item()["id"]}, None),
        "GET /api/incidents/{incident_id}": lambda: (incident()[0], None),
        # the admin's own delegation, ended (a fuzzed delegate rarely names a user)
        "PATCH /api/me": lambda: ({}, {"delegate": ""}),
        # a person's routing profile: one who exists (the fuzzer's names rarely do)
        "GET /api/users/{name}/routing": lambda: ({"name": AGENT_USER.name}, None),
        "PATCH /api/users/{name}/routing": lambda: (
            {"name": AGENT_USER.name}, {"availability": "available", "capacity": 3}),
        # a plan before its point of no return: a fresh order's (the fuzzer's order ids are
        # rarely orders, and the seeded ones may have been canceled by then)
        "GET /api/plans/{order_id}": lambda: ({"order_id": srv.order()}, None),
        "POST /api/plans/{order_id}/cancel": lambda: ({"order_id": srv.order()}, reason),
        "POST /api/plans/{order_id}/amend": lambda: ({"order_id": srv.order()},
                                                     {"dry_run": False}),
    }


def test_directed_requests_reach_what_needs_a_precondition(fuzz_server: FuzzServer,
                                                          admin_schema: Any) -> None:
    """For each such operation that no fuzzed request got a 2xx from, one request built
    from the server's state now, sent as the admin and checked like the fuzzer's own
    (every check above); it counts toward the 2xx minimum below, as phase "directed"."""
    srv = fuzz_server
    t = tally(srv.backend)
    if not t.requests:
        pytest.skip("the fuzz tests above did not run in this session")
    ops = {r.ok().label: r.ok() for r in admin_schema.get_all_operations()}
    for label, build in _directed(srv).items():
        if t.ok_by_op.get(label, {}).get("admin", 0) >= MIN_ADMIN_2XX:
            continue
        params, body = build()
        op = ops[label]
        media = "application/gzip" if isinstance(body, bytes) else "application/json"
        case = (op.Case(path_parameters=params) if body is None else
                op.Case(path_parameters=params, body=body, media_type=media))
        call_and_check(srv, case, "admin", "directed")


# ---- what the runs above must add up to ---------------------------------------------------
def test_every_operation_answered_the_admin_with_a_2xx(fuzz_server: FuzzServer,
                                                       admin_schema: Any) -> None:
    t = tally(fuzz_server.backend)
    if not t.requests:
        pytest.skip("the fuzz tests above did not run in this session")
    perms = required_permissions()
    labels = [r.ok().label for r in admin_schema.get_all_operations()]
    reachable = [op for op in labels if perms[op] <= GRANTS["admin"]]
    assert len(reachable) == len(labels) >= 40
    never = sorted(op for op in reachable if op not in TOKEN_AUTHENTICATED | SUBMITTER_CHECKED
                   | OFFEREE_CHECKED
                   and t.ok_by_op.get(op, {}).get("admin", 0) < MIN_ADMIN_2XX)
    assert not never, (f"{len(never)} operation(s) never answered the admin with a 2xx "
                       f"({t.backend}):\n  " + "\n  ".join(never))


def test_the_agent_was_exercised_on_what_it_may_and_may_not_do(fuzz_server: FuzzServer,
                                                               admin_schema: Any) -> None:
    t = tally(fuzz_server.backend)
    if not t.requests:
        pytest.skip("the fuzz tests above did not run in this session")
    labels = {r.ok().label for r in admin_schema.get_all_operations()}
    assert AGENT_FORBIDDEN <= labels, AGENT_FORBIDDEN - labels
    assert "POST /api/objects/{object_type}/records" in AGENT_FORBIDDEN
    assert "POST /api/work/{item_id}/complete" not in AGENT_FORBIDDEN
    agent_ok = {op for op, c in t.ok_by_op.items() if c["agent"]}
    assert not agent_ok & AGENT_FORBIDDEN
    # the agent did real work: it listed and claimed items in its scope (each answer
    # checked by agent_stays_in_its_role: nothing outside its scope)
    assert {"GET /api/work", "POST /api/work/{item_id}/claim"} <= agent_ok, agent_ok
