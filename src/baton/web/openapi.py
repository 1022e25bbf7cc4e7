"""The OpenAPI document, with links between operations, no null parameters, and the
answers every operation may give before its route runs (413, 406, 415, 429).

FastAPI generates the operations; :func:`install` adds OpenAPI ``links`` to their
responses, so a client (or a stateful fuzzer) can follow ids from real answers: a record
created, then read, updated and deleted; a run started, then shown and canceled; work
items listed, then claimed and completed; definitions validated, then deployed, then
activated. Every link is in :data:`LINKS`, one table, written as ``METHOD PATH`` on both
sides; :func:`add_links` refuses a link whose source, status or target does not exist,
so the table cannot drift from the routes silently.

Links never go from a list of users or of tokens to a change of them: following the first
item of ``GET /api/users`` into ``PATCH`` would let a fuzzer deactivate the very account it
acts as. Users and tokens are changed only along links from their creation.

The document reads well in ``/docs``: every operation has a readable ``operationId`` from
:data:`OPERATION_IDS` (a verb of the glossary, camelCase: ``listRuns``, ``claimWorkItem``),
every tag a description (:data:`TAGS`), and every request body an example
(:data:`REQUEST_EXAMPLES`). ``tests/api/test_openapi_docs.py`` fails for an operation
without them, and a table entry naming no operation is refused when the document is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from baton.web.problems import PROBLEM_JSON


@dataclass(frozen=True)
class Link:
    """One OpenAPI link: from an answer of ``source`` (with ``status``) to ``target``."""

    name: str
    source: str  # "METHOD /api/path"
    status: str
    target: str
    parameters: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    description: str = ""


def _links() -> list[Link]:
    out: list[Link] = []

    def add(source: str, status: str, targets: dict[str, tuple[str, dict[str, Any]]],
            body: dict[str, dict[str, Any]] | None = None) -> None:
        for name, (target, params) in targets.items():
            out.append(Link(name, source, status, target, params, (body or {}).get(name)))

    rec = "/api/records/{record_id}"
    read_version = {"version": "$response.body#/version"}  # the version just read
    record = {  # what can follow a record, given an expression for its id
        "ReadRecord": f"GET {rec}", "UpdateRecord": f"PATCH {rec}",
        "DeleteRecord": f"DELETE {rec}", "RecordTimeline": f"GET {rec}/timeline",
    }

    def of_record(expr: str) -> dict[str, tuple[str, dict[str, Any]]]:
        targets = {name: (op, {"path.record_id": expr}) for name, op in record.items()}
        targets["RunsOfRecord"] = ("GET /api/runs", {"query.record_id": expr})
        targets["WorkOfRecord"] = ("GET /api/work", {"query.record_id": expr})
        targets["IncidentsOfRecord"] = ("GET /api/incidents", {"query.record_id": expr})
        targets["PlanOfRecord"] = ("GET /api/plans/{order_id}", {"path.order_id": expr})
        return targets

    add("POST /api/objects/{object_type}/records", "201", of_record("$response.body#/id"),
        body={"UpdateRecord": read_version})
    add("GET /api/records", "200", {**of_record("$response.body#/items/0/id"),
                                    "CreateAnother": ("POST /api/objects/{object_type}/records",
                                                      {"path.object_type":
                                                       "$response.body#/items/0/object_type"})})
    add(f"GET {rec}", "200", {
        "UpdateIfMatch": (f"PATCH {rec}", {"path.record_id": "$response.body#/id",
                                            "header.If-Match": "$response.header.ETag"}),
        "UpdateVersion": (f"PATCH {rec}", {"path.record_id": "$response.body#/id"}),
        "DeleteIfMatch": (f"DELETE {rec}", {"path.record_id": "$response.body#/id",
                                             "header.If-Match": "$response.header.ETag"}),
        "RecordTimeline": (f"GET {rec}/timeline", {"path.record_id": "$response.body#/id"}),
    }, body={"UpdateIfMatch": read_version, "UpdateVersion": read_version})
    add(f"PATCH {rec}", "200", {
        "ReadRecord": (f"GET {rec}", {"path.record_id": "$response.body#/id"}),
        "UpdateAgain": (f"PATCH {rec}", {"path.record_id": "$response.body#/id",
                                          "header.If-Match": "$response.header.ETag"}),
    }, body={"UpdateAgain": read_version})

    run = "/api/runs/{run_id}"
    run_ops = {"ReadRun": f"GET {run}", "RunEvents": f"GET {run}/events",
               "CancelRun": f"POST {run}/cancel", "ResumeRun": f"POST {run}/resume",
               "SignalRun": f"POST {run}/signal"}

    def of_run(expr: str, only: tuple[str, ...] = tuple(run_ops)) -> dict[str, tuple[str,
                                                                                 dict[str, Any]]]:
        return {name: (run_ops[name], {"path.run_id": expr}) for name in only}

    add("POST /api/runs", "201", of_run("$response.body#/id"))
    add("GET /api/runs", "200", {
        **of_run("$response.body#/items/0/id"),
        "RecordOfRun": (f"GET {rec}", {"path.record_id": "$response.body#/items/0/record_id"}),
        "StartAnother": ("POST /api/runs", {}),
    }, body={"StartAnother": {"orchestration": "$response.body#/items/0/orchestration"}})
    add(f"GET {run}", "200", {
        **of_run("$response.body#/id", ("RunEvents", "CancelRun", "ResumeRun", "SignalRun")),
        "WorkOfRun": ("GET /api/work", {"query.record_id": "$response.body#/record_id"}),
        "WorkItemOfStep": ("GET /api/work/{item_id}",
                           {"path.item_id": "$response.body#/steps/0/work_item_id"}),
        "StartLikeThis": ("POST /api/runs", {}),
        "RecordOfRun": (f"GET {rec}", {"path.record_id": "$response.body#/record_id"}),
        "UpdateRecordOfRun": (f"PATCH {rec}", {"path.record_id": "$response.body#/record_id"}),
    }, body={"StartLikeThis": {"orchestration": "$response.body#/orchestration",
                               "input": "$response.body#/input"}})
    for action in ("cancel", "resume", "signal"):
        add(f"POST {run}/{action}", "200", of_run("$response.body#/id", ("ReadRun", "RunEvents")))

    item = "/api/work/{item_id}"
    item_ops = {"ReadWorkItem": f"GET {item}", "ClaimWorkItem": f"POST {item}/claim",
                "CompleteWorkItem": f"POST {item}/complete",
                "ReassignWorkItem": f"POST {item}/reassign"}

    def of_item(expr: str, only: tuple[str, ...] = tuple(item_ops)) -> dict[str, tuple[str,
                                                                                  dict[str, Any]]]:
        return {name: (item_ops[name], {"path.item_id": expr}) for name in only}

    add("GET /api/work", "200", {
        **of_item("$response.body#/items/0/id"),
        "RunOfWorkItem": (f"GET {run}", {"path.run_id": "$response.body#/items/0/run_id"}),
        "EventsOfWorkItemRun": (f"GET {run}/events",
                                {"path.run_id": "$response.body#/items/0/run_id"}),
    })
    add(f"GET {item}", "200", {
        **of_item("$response.body#/id", ("ClaimWorkItem", "CompleteWorkItem", "ReassignWorkItem")),
        "RunOfWorkItem": (f"GET {run}", {"path.run_id": "$response.body#/run_id"}),
        "RecordOfWorkItem": (f"GET {rec}", {"path.record_id": "$response.body#/record_id"}),
        "UpdateRecordOfWorkItem": (f"PATCH {rec}",
                                   {"path.record_id": "$response.body#/record_id"}),
    })
    add(f"POST {item}/claim", "200", of_item("$response.body#/id",
                                             ("ReadWorkItem", "CompleteWorkItem",
                                              "ReassignWorkItem")))
    add(f"POST {item}/reassign", "200", of_item("$response.body#/id",
                                                ("ReadWorkItem", "ClaimWorkItem")))
    add(f"POST {item}/complete", "200", {
        "RunAfterCompletion": (f"GET {run}", {"path.run_id": "$response.body#/run/id"}),
        "ReadWorkItem": (f"GET {item}", {"path.item_id": "$response.body#/id"}),
    })

    fallout = "/api/fallout/{fallout_id}"
    add("GET /api/fallout", "200", {
        **{f"{a.capitalize()}Fallout": (f"POST {fallout}/{a}",
                                        {"path.fallout_id": "$response.body#/items/0/id"})
           for a in ("retry", "complete", "skip")},
        "RunInFallout": (f"GET {run}", {"path.run_id": "$response.body#/items/0/run_id"}),
        "EventsOfRunInFallout": (f"GET {run}/events",
                                 {"path.run_id": "$response.body#/items/0/run_id"}),
    })
    for action in ("retry", "complete", "skip"):
        add(f"POST {fallout}/{action}", "200", of_run("$response.body#/id", ("ReadRun",)))

    incident = "/api/incidents/{incident_id}"
    incident_ops = {"ReadIncident": f"GET {incident}", "RetryIncident": f"POST {incident}/retry",
                    "DismissIncident": f"POST {incident}/dismiss"}
    add("GET /api/incidents", "200", {
        name: (op, {"path.incident_id": "$response.body#/items/0/id"})
        for name, op in incident_ops.items()})
    add(f"GET {incident}", "200", {
        **{name: (op, {"path.incident_id": "$response.body#/id"})
           for name, op in incident_ops.items() if name != "ReadIncident"},
        "RecordOfIncident": (f"GET {rec}", {"path.record_id": "$response.body#/record_id"}),
        "UpdateRecordOfIncident": (f"PATCH {rec}",
                                   {"path.record_id": "$response.body#/record_id"}),
    })

    plan = "/api/plans/{order_id}"
    add(f"GET {plan}", "200", {
        "CancelPlan": (f"POST {plan}/cancel", {"path.order_id": "$response.body#/order_id"}),
        "AmendPlan": (f"POST {plan}/amend", {"path.order_id": "$response.body#/order_id"}),
        "RunOfPlan": (f"GET {run}", {"path.run_id": "$response.body#/run_id"}),
        "OrderOfPlan": (f"GET {rec}", {"path.record_id": "$response.body#/order_id"}),
    })
    for action, extra in (("cancel", {"CompensationRun": (
            f"GET {run}", {"path.run_id": "$response.body#/compensation_run_id"})}),
            ("amend", {})):
        add(f"POST {plan}/{action}", "200", {
            "ReadPlan": (f"GET {plan}", {"path.order_id": "$response.body#/order_id"}),
            **extra})

    defn = "/api/definitions/{kind}/{name}"

    def of_definition(kind: str, name: str, version: str) -> dict[str, tuple[str,
                                                                           dict[str, Any]]]:
        where = {"path.kind": kind, "path.name": name}
        return {
            "ReadDefinition": (f"GET {defn}", where),
            "ReadVersion": (f"GET {defn}/versions/{{version}}", {**where,
                                                                 "path.version": version}),
            "DiffVersions": (f"GET {defn}/diff", {**where, "query.from": 1,
                                                  "query.to": version}),
            "ActivateVersion": (f"POST {defn}/activate", where),
            "DeactivateDefinition": (f"POST {defn}/deactivate", where),
        }

    def version_body(version: str) -> dict[str, dict[str, Any]]:
        return {"ActivateVersion": {"version": version}}

    add("POST /api/definitions/validate", "200",
        {"DeployValidated": ("POST /api/definitions/deploy", {})},
        body={"DeployValidated": {"files": "$request.body#/files"}})
    found = ("$response.body#/deployed/0/kind", "$response.body#/deployed/0/name",
             "$response.body#/deployed/0/version")
    add("POST /api/definitions/deploy", "200", of_definition(*found), version_body(found[2]))
    listed = ("$response.body#/items/0/kind", "$response.body#/items/0/name",
              "$response.body#/items/0/latest_version")
    add("GET /api/definitions", "200", of_definition(*listed), version_body(listed[2]))
    one = ("$response.body#/kind", "$response.body#/name", "$response.body#/latest_version")
    add(f"GET {defn}", "200",
        {k: v for k, v in of_definition(*one).items() if k != "ReadDefinition"},
        version_body(one[2]))
    add(f"POST {defn}/deactivate", "200",
        {k: v for k, v in of_definition(*one).items() if k == "ActivateVersion"},
        version_body(one[2]))

    user = "/api/users/{name}"
    add("POST /api/users", "201", {
        "ReadUser": (f"GET {user}", {"path.name": "$response.body#/name"}),
        "UpdateUser": (f"PATCH {user}", {"path.name": "$response.body#/name"}),
        "UnlockUser": (f"POST {user}/unlock", {"path.name": "$response.body#/name"}),
        "TokenForUser": ("POST /api/tokens", {}),
        "TokensOfUser": ("GET /api/tokens", {"query.user": "$response.body#/name"}),
    }, body={"TokenForUser": {"user": "$response.body#/name"}})
    add(f"PATCH {user}", "200", {"ReadUser": (f"GET {user}", {"path.name": "$response.body#/name"})})
    add("GET /api/users", "200", {  # reading only: see the module's docstring
        "ReadUser": (f"GET {user}", {"path.name": "$response.body#/items/0/name"})})
    add("GET /api/me", "200", {"ReadMe": (f"GET {user}", {"path.name": "$response.body#/name"})})
    add("POST /api/tokens", "201", {
        "RevokeToken": ("DELETE /api/tokens/{token_id}", {"path.token_id": "$response.body#/id"}),
    })
    return out


OPERATION_IDS: dict[str, str] = {
    # People
    "GET /api/me": "getMe",
    "PATCH /api/me": "updateMe",
    "GET /api/users": "listUsers",
    "POST /api/users": "createUser",
    "GET /api/users/{name}": "getUser",
    "PATCH /api/users/{name}": "updateUser",
    "POST /api/users/{name}/unlock": "unlockUser",
    "POST /api/addresses/{address}/unlock": "unlockAddress",
    "POST /api/tokens": "createToken",
    "GET /api/tokens": "listTokens",
    "DELETE /api/tokens/{token_id}": "revokeToken",
    # Team
    "GET /api/team": "getTeam",
    "GET /api/users/{name}/routing": "getRoutingProfile",
    "PATCH /api/users/{name}/routing": "updateRoutingProfile",
    # Definitions
    "GET /api/definitions": "listDefinitions",
    "POST /api/definitions/validate": "validateDefinitions",
    "POST /api/definitions/deploy": "deployDefinitions",
    "GET /api/definitions/{kind}/{name}": "getDefinition",
    "GET /api/definitions/{kind}/{name}/versions/{version}": "getDefinitionVersion",
    "GET /api/definitions/{kind}/{name}/diff": "diffDefinitionVersions",
    "POST /api/definitions/{kind}/{name}/activate": "activateDefinition",
    "POST /api/definitions/{kind}/{name}/deactivate": "deactivateDefinition",
    "GET /api/bundle": "exportBundle",
    "POST /api/bundle/import": "importBundle",
    # Records
    "POST /api/objects/{object_type}/records": "createRecord",
    "GET /api/records": "listRecords",
    "GET /api/records/{record_id}": "getRecord",
    "PATCH /api/records/{record_id}": "updateRecord",
    "DELETE /api/records/{record_id}": "deleteRecord",
    "GET /api/records/{record_id}/timeline": "getRecordTimeline",
    # Runs
    "POST /api/runs": "startRun",
    "GET /api/runs": "listRuns",
    "GET /api/runs/{run_id}": "getRun",
    "GET /api/runs/{run_id}/events": "listRunEvents",
    "POST /api/runs/{run_id}/cancel": "cancelRun",
    "POST /api/runs/{run_id}/resume": "resumeRun",
    "POST /api/runs/{run_id}/signal": "signalRun",
    # Plans
    "GET /api/plans/{order_id}": "getPlan",
    "POST /api/plans/{order_id}/cancel": "cancelPlan",
    "POST /api/plans/{order_id}/amend": "amendPlan",
    # Work
    "GET /api/work": "listWorkItems",
    "GET /api/work/{item_id}": "getWorkItem",
    "POST /api/work/{item_id}/claim": "claimWorkItem",
    "POST /api/work/{item_id}/accept": "acceptWorkItem",
    "POST /api/work/{item_id}/decline": "declineWorkItem",
    "POST /api/work/{item_id}/complete": "completeWorkItem",
    "POST /api/work/{item_id}/reassign": "reassignWorkItem",
    "POST /api/work/{item_id}/recall": "recallWorkItem",
    "POST /api/work/{item_id}/release": "releaseWorkItem",
    "POST /api/work/next": "claimNextWorkItem",
    "POST /api/callbacks/{token}": "receiveCallback",
    "POST /api/intake/{target}": "receiveIntake",
    "GET /api/records/{record_id}/messages": "listRecordMessages",
    "GET /api/records/{record_id}/attachments": "listRecordAttachments",
    "GET /api/attachments/{attachment_id}": "getAttachment",
    # Fallout
    "GET /api/fallout": "listFallout",
    "POST /api/fallout/{fallout_id}/retry": "retryFallout",
    "POST /api/fallout/{fallout_id}/complete": "completeFallout",
    "POST /api/fallout/{fallout_id}/skip": "skipFallout",
    # Incidents
    "GET /api/incidents": "listIncidents",
    "GET /api/incidents/{incident_id}": "getIncident",
    "POST /api/incidents/{incident_id}/retry": "retryIncident",
    "POST /api/incidents/{incident_id}/dismiss": "dismissIncident",
}
"""``METHOD /api/path`` -> operationId: a verb of ``docs/glossary.md``, then what it acts on."""

TAGS: tuple[tuple[str, str], ...] = (
    ("Runs", ("A run is one execution of an orchestration, pinned to the version it started "
              "on. Start one, list them (with what needs an operator: `attention=true`), read "
              "its stages and steps, cancel, resume or signal it.")),
    ("Work", ("Work items: the interactive steps waiting for a person. List the items in your "
              "scope, claim one, complete it with its form's data, or reassign it.")),
    ("Records", ("Records of the deployed object types. Create, read, update (with the version "
                 "you read) and delete them, and read a record's timeline. Creating or "
                 "updating a record starts the runs its orchestrations' triggers ask for.")),
    ("Plans", ("Fulfillment plans of orders: the step graph a submitted order was "
               "decomposed into, by lane, with each step's status, SLA and dependencies and "
               "the point of no return; cancel it (its completed steps rolled back) or amend "
               "it to the order's lines as they are now (a dry run shows the difference).")),
    ("Intake", ("E-mail and forms that become records: send a raw e-mail or a JSON form to a "
                "mailbox, read a record's messages and attachments, download an attachment.")),
    ("Definitions", ("Object types, orchestrations and calendars, written in YAML. Validate "
                     "and deploy them (each deploy is a new version), activate or deactivate "
                     "a version, diff two versions; export them as a bundle and import one "
                     "(what `baton export` and `baton import` do).")),
    ("Fallout", ("Steps that failed after their retries and wait for an operator: retry "
                 "them, complete them by hand with an output, or skip them.")),
    ("Incidents", ("A definition's bug met at run time (a record trigger's `when` or an "
                   "evaluation flow that raised): retry or dismiss it.")),
    ("People", ("Users with their roles, groups and queues; API tokens; unlocking an account "
                "or a client address after failed logins.")),
    ("Team", ("Routing: people's availability, capacity, skills and working hours, their "
              "load, and per queue the items waiting and how fast they are assigned.")),
    ("Callbacks", ("Calls from other systems into Baton that resume the runs waiting for "
                   "them.")),
)
"""The tags in the order ``/docs`` shows them; only those some operation uses are listed."""

_REASON = {"reason": "the customer asked for it by phone"}
REQUEST_EXAMPLES: dict[str, dict[str, Any]] = {
    "receiveCallback": {"ackId": "ACK-00017", "status": "confirmed"},
    "receiveIntake": {"subject": "Invoice 4411 is wrong",
                      "sender": "ana@dealer-one.example", "sender_name": "Ana Costa",
                      "body": "Hello,\n\nthe invoice 4411 charges twice.\n\nAna"},
    "createUser": {"name": "ann", "roles": ["agent"], "groups": ["billing"],
                   "queues": ["tier1"], "email": "ann@example.com", "display_name": "Ann Lee"},
    "updateUser": {"queues": ["tier1", "tier2"], "display_name": "Ann Lee"},
    "createToken": {"label": "billing integration"},
    "updateMe": {"delegate": "bob", "delegate_from": "2026-12-01",
                 "delegate_until": "2026-12-24"},
    "validateDefinitions": {"files": {"hello.yaml": (
        "kind: orchestration\nname: hello\ntrigger: {type: autolaunched}\nstages:\n"
        "  - name: greet\n    steps: [{name: wait, type: pause, for: 1m}]\n")}},
    "deployDefinitions": {"files": {"hello.yaml": (
        "kind: orchestration\nname: hello\ntrigger: {type: autolaunched}\nstages:\n"
        "  - name: greet\n    steps: [{name: wait, type: pause, for: 1m}]\n")}},
    "activateDefinition": {"version": 1},
    "updateRoutingProfile": {"availability": "available", "capacity": 5,
                             "add_skills": {"brand:ford": 3, "lang:pt": None}},
    "createRecord": {"data": {"subject": "Invoice 42 is wrong", "origin": "Web"}},
    "updateRecord": {"data": {"status": "Triaged"}, "version": 1},
    "startRun": {"orchestration": "hello", "input": {}},
    "cancelRun": {"reason": "duplicate of another case"},
    "resumeRun": {"reason": "the billing system is back"},
    "signalRun": {"name": "docs_received", "data": {"pages": 3}},
    "cancelPlan": {"reason": "the customer withdrew the order"},
    "amendPlan": {"dry_run": True},
    "completeWorkItem": {"data": {"resolution": "close", "notes": "refund sent"}},
    "reassignWorkItem": {"to": "queue:tier2"},
    "retryFallout": {"reason": "the billing system is back"},
    "completeFallout": {"reason": "charged by phone", "data": {"receipt": "R-1042"}},
    "skipFallout": _REASON,
    "retryIncident": {"reason": "the trigger's expression is fixed in version 2"},
    "dismissIncident": {"reason": "a test record"},
}
"""operationId -> an example request body (Swagger's "Try it out" starts from it)."""


def _operations(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``METHOD /path`` -> the operation, for every operation of ``schema``."""
    return {f"{method.upper()} {path}": op for path, ops in schema.get("paths", {}).items()
            for method, op in ops.items() if isinstance(op, dict)}


def describe_operations(schema: dict[str, Any]) -> dict[str, Any]:
    """Readable operationIds (:data:`OPERATION_IDS`), the tags' descriptions (:data:`TAGS`)
    and request examples (:data:`REQUEST_EXAMPLES`), in place. An entry of a table that
    names no operation (or an example for an operation without a body) is a ValueError:
    the tables cannot drift from the routes silently."""
    ops = _operations(schema)
    for key, op_id in OPERATION_IDS.items():
        if key not in ops:
            raise ValueError(f"OPERATION_IDS names {key!r}: no such operation")
        ops[key]["operationId"] = op_id
    by_id = {op["operationId"]: op for op in ops.values()}
    for op_id, example in REQUEST_EXAMPLES.items():
        op = by_id.get(op_id)
        if op is None or "requestBody" not in op:
            raise ValueError(f"REQUEST_EXAMPLES names {op_id!r}: no operation with a body")
        for kind, media in op["requestBody"]["content"].items():
            if kind == "application/json" or "example" not in media:  # (a raw body keeps its own)
                media["example"] = example
    used = {tag for op in ops.values() for tag in op.get("tags", [])}
    schema["tags"] = [{"name": name, "description": text} for name, text in TAGS if name in used]
    return schema


LINKS: list[Link] = _links()


def add_links(schema: dict[str, Any], links: list[Link] = LINKS) -> dict[str, Any]:
    """Add ``links`` to the responses of ``schema`` (in place; returned for convenience).

    Raises ValueError naming the link when its source, status or target is not in the
    document."""
    ids: dict[str, str] = {}
    for path, ops in schema.get("paths", {}).items():
        for method, op in ops.items():
            if isinstance(op, dict) and "operationId" in op:
                ids[f"{method.upper()} {path}"] = op["operationId"]
    for link in links:
        for end in (link.source, link.target):
            if end not in ids:
                raise ValueError(f"OpenAPI link {link.name!r} ({link.source} -> {link.target}): "
                                 f"no operation {end!r}")
        method, path = link.source.split(" ", 1)
        responses = schema["paths"][path][method.lower()]["responses"]
        if link.status not in responses:
            raise ValueError(f"OpenAPI link {link.name!r}: {link.source} declares no "
                             f"{link.status} response")
        definition: dict[str, Any] = {"operationId": ids[link.target]}
        if link.parameters:
            definition["parameters"] = dict(link.parameters)
        if link.body is not None:
            definition["requestBody"] = link.body
        if link.description:
            definition["description"] = link.description
        responses[link.status].setdefault("links", {})[link.name] = definition
    return schema


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """``anyOf: [X, {type: null}]`` -> X (keeping title, description, default)."""
    branches = schema.get("anyOf")
    if not isinstance(branches, list):
        return schema
    kept = [b for b in branches if b != {"type": "null"}]
    if len(kept) == len(branches):
        return schema
    rest = {k: v for k, v in schema.items() if k != "anyOf"}
    return {**kept[0], **rest} if len(kept) == 1 else {**rest, "anyOf": kept}


def no_null_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """Path, query and header parameters are text on the wire: an optional one is left out,
    never sent as null. FastAPI types ``str | None = None`` as ``anyOf [string, null]``,
    which tells clients they may send a null no URL or header can carry (a generator sends
    the text ``null`` and gets a 422 it was promised it would not get); drop that branch."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            for param in op.get("parameters", []) if isinstance(op, dict) else []:
                if isinstance(param.get("schema"), dict):
                    param["schema"] = _not_null(param["schema"])
    return schema


TOO_LARGE = {
    "description": "Request body too large (the limit is BATON_MAX_BODY_BYTES, default 1 MB)",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def body_limit_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """Every operation that takes a body may answer 413 (``baton.web.limits.BodyLimit``
    refuses before the route runs, so the routes cannot declare it themselves)."""
    for ops in schema.get("paths", {}).values():
        for op in ops.values():
            if isinstance(op, dict) and "requestBody" in op:
                op["responses"].setdefault("413", TOO_LARGE)
    return schema


NOT_ACCEPTABLE = {
    "description": "Not acceptable: the Accept header allows no JSON answer",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
UNSUPPORTED = {
    "description": "Unsupported media type: the body is not sent as application/json",
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}
TOO_MANY = {
    "description": "Too many failed logins from this address or for this account: locked "
                   "for the seconds the Retry-After header says",
    "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
}


def media_responses(schema: dict[str, Any]) -> dict[str, Any]:
    """The answers ``baton.web.api.common.clean_input`` and the login throttle give before
    a route runs, declared on the operations that may give them: 406 on every operation
    that answers JSON, 415 on every one with a JSON body, 429 on every authenticated one."""
    for path, ops in schema.get("paths", {}).items():
        if not path.startswith("/api/"):
            continue
        for op in ops.values():
            if not isinstance(op, dict) or op.get("security") == []:
                continue  # (a callback: no token, its own answers)
            responses = op["responses"]
            if any("application/json" in (r.get("content") or {})
                   for code, r in responses.items() if code.startswith("2")):
                responses.setdefault("406", NOT_ACCEPTABLE)
            body = (op.get("requestBody") or {}).get("content") or {}
            if list(body) == ["application/json"]:
                responses.setdefault("415", UNSUPPORTED)
            if "401" in responses:
                responses.setdefault("429", TOO_MANY)
    return schema


def install(app: FastAPI) -> None:
    """Serve the generated document with :data:`LINKS` added (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 openapi_version=app.openapi_version,
                                 description=app.description, routes=app.routes)
            app.openapi_schema = add_links(describe_operations(
                media_responses(body_limit_responses(no_null_parameters(schema)))))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
