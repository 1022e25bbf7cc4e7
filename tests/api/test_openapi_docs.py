"""The API's own documentation reads well (issue 16, item 5): every operation has a readable
operationId (a verb of the glossary, camelCase), a tag that has a description, and every
request body an example that the operation itself accepts.

The walk covers every operation the app serves, so a route added without its entries in
``baton.web.openapi`` (OPERATION_IDS, REQUEST_EXAMPLES) fails here by name.
"""

from __future__ import annotations

import re
from typing import Any

from baton.web.openapi import OPERATION_IDS, REQUEST_EXAMPLES, TAGS, describe_operations
from tests.api.conftest import Api

# The glossary's verbs (docs/glossary.md: claim, complete, reassign, cancel, ...) and the
# plain ones of any API; an operationId is one of them, then what it acts on.
VERBS = ("list", "get", "create", "update", "delete", "start", "cancel", "resume", "signal",
         "claim", "complete", "reassign", "retry", "skip", "dismiss", "validate", "deploy",
         "activate", "deactivate", "diff", "unlock", "revoke", "recall", "release", "receive",
         "accept", "decline", "amend", "export", "import")
OPERATION_ID = re.compile(rf"^({'|'.join(VERBS)})([A-Z][a-z]+)+$")


def _operations(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(f"{method.upper()} {path}", op) for path, ops in doc["paths"].items()
            for method, op in ops.items()]


def test_every_operation_has_a_readable_id_a_described_tag_and_a_request_example(
        sqlite_api: Api) -> None:
    r = sqlite_api.client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    described = {t["name"]: t.get("description", "") for t in doc.get("tags", [])}
    problems = []
    seen: dict[str, str] = {}
    for key, op in _operations(doc):
        op_id = op.get("operationId", "")
        if not OPERATION_ID.match(op_id):
            problems.append(f"{key}: operationId {op_id!r} is not a glossary verb in camelCase "
                            "(add it to baton.web.openapi.OPERATION_IDS)")
        if op_id in seen:
            problems.append(f"{key}: operationId {op_id!r} is also {seen[op_id]}'s")
        seen[op_id] = key
        tags = op.get("tags") or []
        if len(tags) != 1 or len(described.get(tags[0], "")) < 40:
            problems.append(f"{key}: tags {tags}: one tag with a description (TAGS) wanted")
        body = op.get("requestBody")
        if body is not None:
            for media, content in body["content"].items():
                if "example" not in content:
                    problems.append(f"{key}: {media} request body has no example "
                                    "(REQUEST_EXAMPLES)")
    assert not problems, "\n".join(problems)
    # the tags in the order /docs shows them, the areas a reader looks for first
    assert [t["name"] for t in doc["tags"]][:3] == ["Runs", "Work", "Records"]
    assert {"listRuns", "getRun", "claimWorkItem", "completeWorkItem", "createRecord",
            "startRun", "cancelRun", "retryFallout"} <= set(seen)
    # the links between operations name the readable ids
    links = doc["paths"]["/api/runs"]["get"]["responses"]["200"]["links"]
    assert links["ReadRun"]["operationId"] == "getRun"
    assert links["CancelRun"]["operationId"] == "cancelRun"


def test_every_request_example_is_accepted_by_its_operations_body_model(
        sqlite_api: Api) -> None:
    """An example that the operation would refuse with a 422 teaches the wrong thing."""
    from baton.web import api as areas
    from baton.web.api import common

    doc = sqlite_api.app.openapi()
    modules = [*areas.AREAS, common]
    checked = set()
    for key, op in _operations(doc):
        if "requestBody" not in op:
            continue
        content = op["requestBody"]["content"]
        if "application/json" not in content:  # raw bytes (a bundle): its own example
            continue
        schema = content["application/json"]["schema"]
        if "$ref" not in schema:  # a free-form body (a callback's: what the other system sends)
            checked.add(op["operationId"])
            continue
        ref = schema["$ref"]
        name = ref.rsplit("/", 1)[-1]
        (model,) = {getattr(m, name) for m in modules if hasattr(m, name)}
        example = REQUEST_EXAMPLES[op["operationId"]]
        model.model_validate(example)  # extra="forbid": a misspelt key fails too
        checked.add(op["operationId"])
    assert checked == set(REQUEST_EXAMPLES)


def test_the_examples_do_what_they_say_on_a_real_server(api: Api) -> None:
    """Through the API, as /docs' "Try it out" would send them: the definitions validate
    and deploy, a run of them starts and is canceled, a record is created."""
    ex = REQUEST_EXAMPLES
    r = api.post("root", "/api/definitions/validate", ex["validateDefinitions"])
    body = r.json()
    assert r.status_code == 200 and body["valid"] is True and not body["issues"], r.text
    assert not body.get("warnings"), body
    assert api.post("root", "/api/definitions/deploy", ex["deployDefinitions"]).status_code == 200
    r = api.post("opal", "/api/runs", ex["startRun"])
    assert r.status_code == 201, r.text
    r = api.post("opal", f"/api/runs/{r.json()['id']}/cancel", ex["cancelRun"])
    assert r.status_code == 200 and r.json()["status"] == "canceled", r.text
    r = api.post("opal", "/api/objects/Case/records", ex["createRecord"])
    assert r.status_code == 201, r.text


def test_a_table_entry_naming_no_operation_is_refused() -> None:
    import pytest

    doc = {"paths": {"/api/runs": {"get": {"operationId": "x", "responses": {}}}}}
    with pytest.raises(ValueError, match="OPERATION_IDS names 'GET /api/me'"):
        describe_operations(doc)
    assert len(OPERATION_IDS) == len(set(OPERATION_IDS.values()))
    assert len({name for name, _ in TAGS}) == len(TAGS)
