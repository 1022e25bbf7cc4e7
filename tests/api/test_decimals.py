"""Exact ``decimal`` fields through the REST API (issue 17, defect 6), on both databases:
JSON numbers and strings in, exact strings out, 422 beyond the field's limits."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from baton import flow
from baton.flows import FlowContext
from tests.api.conftest import Api, assert_problem
from tests.integration.test_decimal_fields import EIGHTEEN, NEXT, ORDER, deploy, stored


def post_raw(api: Api, url: str, body: str, method: str = "POST", **headers: str) -> Any:
    """A body as the client wrote it: Python's json module would turn 1234567890123456.78
    into a float before it left the test."""
    return api.client.request(method, url, content=body.encode(),
                              headers=api.auth("opal") | {"Content-Type": "application/json"}
                              | headers)


# ---- the REST API ---------------------------------------------------------------------------
def test_the_api_keeps_decimals_exact_both_ways(api: Api, tmp_path: Any) -> None:
    deploy(api.engine, tmp_path, ORDER)
    r = post_raw(api, "/api/objects/Order/records",
                 '{"data": {"a": 0.1, "b": "0.2", "big": 1234567890123456.78, '
                 '"rate": 0.0001, "rounded": 2.345, "seen": {"x": 1.5}}}')
    assert r.status_code == 201, r.text
    data = r.json()["data"]
    assert data["a"] == "0.10" and data["b"] == "0.20" and data["big"] == EIGHTEEN
    assert data["rate"] == "0.0001" and data["rounded"] == "2.34"  # half_even, as declared
    assert data["seen"] == {"x": 1.5}  # a json field keeps its number
    assert '"big":"1234567890123456.78"' in r.text.replace(" ", "")  # a JSON string, not a number
    rid = r.json()["id"]
    # stored as the exact string, on this backend
    assert stored(api.engine, rid)["big"] == EIGHTEEN
    assert stored(api.engine, rid)["a"] == "0.10"
    got = api.get("opal", f"/api/records/{rid}").json()["data"]
    assert (got["a"], got["big"]) == ("0.10", EIGHTEEN)
    listed = api.get("opal", "/api/records?object_type=Order").json()["items"]
    assert listed[0]["data"]["big"] == EIGHTEEN
    # an update with a number of 18 digits, exactly
    r = post_raw(api, f"/api/records/{rid}", '{"data": {"big": 1234567890123456.79}}',
                 method="PATCH")
    assert r.status_code == 200, r.text
    assert r.json()["data"]["big"] == NEXT and stored(api.engine, rid)["big"] == NEXT
    # the timeline's change is exact too
    events = api.get("opal", f"/api/records/{rid}/timeline").json()["items"]
    assert events[-1]["data"]["changes"]["big"] == [EIGHTEEN, NEXT]


def test_the_api_refuses_what_a_field_cannot_hold_naming_field_and_limit(api: Api,
                                                                         tmp_path: Any) -> None:
    deploy(api.engine, tmp_path, ORDER)
    r = post_raw(api, "/api/objects/Order/records",
                 '{"data": {"a": 12.345, "rate": 1000, "big": 12345678901234567.8}}')
    body = assert_problem(r, 422, "data.a", "data.rate", "data.big")
    errors = {e["field"]: e["message"] for e in body["errors"]}
    assert errors["data.a"] == ("12.345 has 3 decimal places: at most 2 "
                                "(scale: 2; or declare rounding: half_even)")
    assert errors["data.rate"] == ("1000 is out of range: at most 3 digits before the point "
                                   "(precision: 7, scale: 4)")
    assert "at most 16 digits before the point" in errors["data.big"]
    r = post_raw(api, "/api/objects/Order/records", '{"data": {"a": "twelve"}}')
    assert assert_problem(r, 422, "data.a")["errors"][0]["message"] == "expected a number, got 'twelve'"
    assert api.get("opal", "/api/records?object_type=Order").json()["total"] == 0


def test_the_openapi_schema_says_decimals_are_strings(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    data = schema["components"]["schemas"]["RecordOut"]["properties"]["data"]
    assert "decimal" in data["description"] and "string" in data["description"]




APPROVAL = """
kind: orchestration
name: approve_order
trigger: {type: record, object: Order, on: [create], when: '=record.subject == "approve"'}
stages:
  - name: approve
    steps:
      - name: approve
        type: interactive
        assign: {queue: tier1}
        form:
          - {name: amount, type: decimal, required: true}
          - {name: fee, type: decimal, scale: 4, default: 2.5}
    next:
      - {when: '=decimal.compare(steps.approve.output.amount, record.big) == 0', goto: end}
      - {goto: mismatch}
  - name: mismatch
    steps: [{name: never, type: interactive, assign: {queue: tier1}}]
"""


def test_the_work_guide_shows_and_takes_decimals_exactly(api: Api, tmp_path: Any) -> None:
    """The UI: the record's 18-digit amount shown as it is, the form's decimal inputs are
    text (a number input would read them as floats), and a submission is kept exactly."""
    from tests.api.test_throttle import PASSWORD, browser, log_in

    deploy(api.engine, tmp_path, ORDER, APPROVAL)
    rec = api.engine.create_record("Order", {"subject": "approve", "big": EIGHTEEN})
    (item,) = api.engine.list_work(record_id=rec["id"])
    api.engine.directory.update_user("ann", password=PASSWORD)
    c = browser(api.app)
    assert log_in(c, "ann", PASSWORD).status_code == 303
    page = c.get(f"/work/{item['id']}")
    assert page.status_code == 200, page.text
    assert EIGHTEEN in page.text  # the record's details
    amount = re.search(r'<input type="text" inputmode="decimal"[^>]*name="amount"[^>]*>',
                       page.text)
    assert amount, page.text
    assert "at most 2 decimal places" in amount.group(0)
    fee = re.search(r'<input[^>]*name="fee"[^>]*>', page.text)
    assert fee and 'value="2.5"' in fee.group(0) and "at most 4 decimal places" in fee.group(0)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token
    c.post(f"/work/{item['id']}/claim", data={"csrf_token": token.group(1)})
    bad = c.post(f"/work/{item['id']}", data={"csrf_token": token.group(1), "amount": "1.005"})
    assert "has 3 decimal places: at most 2" in bad.text  # shown beside the field
    assert 'value="1.005"' in bad.text  # what was typed is kept
    done = c.post(f"/work/{item['id']}", data={"csrf_token": token.group(1), "amount": EIGHTEEN})
    assert done.status_code in (200, 303), done.text
    api.work()
    (run,) = api.engine.list_runs(record_id=rec["id"])
    run = api.engine.get_run(run.id)
    assert run.steps["approve"].output == {"amount": EIGHTEEN, "fee": "2.5000"}
    assert run.status.value == "completed", run  # decimal.compare held: no mismatch stage
    # The operator's Records page shows it as stored
    api.engine.directory.update_user("opal", password=PASSWORD)
    o = browser(api.app, "198.51.100.2")
    assert log_in(o, "opal", PASSWORD).status_code == 303
    shown = o.get(f"/records/{rec['id']}")
    assert shown.status_code == 200 and EIGHTEEN in shown.text


REFUND = """
kind: orchestration
name: refund
trigger:
  type: autolaunched
  input: {amount: {type: decimal, required: true}}
stages:
  - name: pay
    steps:
      - name: pay
        type: background
        flow: t_dec_api.pay
        when: '=decimal.compare(input.amount, "1234567890123456.78") == 0 && input.amount != null'
      - {name: check, type: interactive, assign: {queue: tier1}, after: [pay],
         form: [{name: paid, type: decimal, required: true}]}
      - {name: confirm, type: background, flow: t_dec_api.confirm, after: [check]}
"""


@flow("t_dec_api.pay")
def _pay(ctx: FlowContext) -> dict[str, Any]:
    amount = ctx.input["amount"]
    assert type(amount) is Decimal, repr(amount)
    return {"doubled": str(amount * 2)}


@flow("t_dec_api.confirm")
def _confirm(ctx: FlowContext) -> dict[str, Any]:
    paid = ctx.steps["check"].output["paid"]
    assert type(paid) is Decimal, repr(paid)  # a form's decimal, typed like the record's
    return {"same": paid == ctx.input["amount"]}


def test_run_input_and_work_item_forms_keep_decimals_exact(api: Api, tmp_path: Any) -> None:
    deploy(api.engine, tmp_path, REFUND)
    r = post_raw(api, "/api/runs", '{"orchestration": "refund", "input": {"amount": '
                                   '1234567890123456.78}}')
    assert r.status_code == 201, r.text
    assert r.json()["input"] == {"amount": EIGHTEEN}
    run_id = r.json()["id"]
    api.work()
    (item,) = api.engine.list_work(run_id=run_id)
    ann = api.auth("ann") | {"Content-Type": "application/json"}
    assert api.client.post(f"/api/work/{item['id']}/claim", headers=api.auth("ann")
                           ).status_code == 200
    bad = api.client.post(f"/api/work/{item['id']}/complete", headers=ann,
                          content=b'{"data": {"paid": 1234567890123456.789}}')
    assert assert_problem(bad, 422, "data.paid")["errors"][0]["message"].startswith(
        "1234567890123456.789 has 3 decimal places: at most 2")
    done = api.client.post(f"/api/work/{item['id']}/complete", headers=ann,
                           content=b'{"data": {"paid": 1234567890123456.78}}')
    assert done.status_code == 200, done.text
    api.work()
    run = api.engine.get_run(run_id)
    assert run.status.value == "completed", run
    assert run.steps["pay"].output == {"doubled": "2469135780246913.56"}
    assert run.steps["check"].output == {"paid": EIGHTEEN}
    assert run.steps["confirm"].output == {"same": True}
    r = post_raw(api, "/api/runs", '{"orchestration": "refund", "input": {"amount": 0.001}}')
    assert assert_problem(r, 422, "input.amount")
