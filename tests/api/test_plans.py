"""Fulfillment plans over the REST API: read an order's plan graph, cancel it before its
point of no return (compensation), amend it (dry run first), with the roles and problem
documents of the other operations. Real Engine and Worker, virtual time."""

from __future__ import annotations

from typing import Any

from baton import flow
from baton.flows import FlowContext
from tests.api.conftest import Api, assert_problem

DONE: list[str] = []


@flow("api_plans.step")
def _step(ctx: FlowContext) -> dict[str, Any]:
    DONE.append(str((ctx.input.get("plan") or {}).get("instance", "")))
    return {"ok": True}


@flow("api_plans.undo")
def _undo(ctx: FlowContext) -> dict[str, Any]:
    return {"undone": True}


PLAN_DEFINITIONS = """\
kind: object
name: ShopOrder
fields:
  number: {type: string, required: true}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: ShopLine
fields:
  order: {type: ref, object: ShopOrder, required: true}
  product: {type: choice, choices: [ROUTER, CABLE]}
  quantity: {type: int, default: 1}
  action: {type: choice, choices: [add, amend, renew, no_change, cancel], default: add}
  attributes: {type: json}
---
kind: catalog
name: shop
products:
  - {code: ROUTER, family: Device}
  - {code: CABLE, family: Accessory}
---
kind: fulfillment
name: shop_orders
catalog: shop
trigger: {type: record, object: ShopOrder, on: [create, update],
          when: '=record.status == "Submitted"', changed_to_meet: true}
lines: {object: ShopLine}
lanes: [billing, shipping]
scenarios:
  - name: every_order
    when: '=true'
    steps:
      - {name: check, type: background, lane: billing, scope: plan, flow: api_plans.step,
         rollback: {type: background, flow: api_plans.undo}}
      - {name: confirm, type: pause, lane: billing, scope: plan, signal: confirmed,
         after: [check]}
      - {name: bill, type: background, lane: billing, scope: plan, flow: api_plans.step,
         after: [confirm, ship], ponr: true}
  - name: devices
    when: '=line.product.family == "Device"'
    steps:
      - {name: ship, type: background, lane: shipping, flow: api_plans.step, after: [check],
         rollback: {type: background, flow: api_plans.undo}}
"""


def _order(api: Api, *products: str) -> str:
    r = api.post("root", "/api/definitions/deploy", {"files": {"shop.yaml": PLAN_DEFINITIONS}})
    assert r.status_code in (200, 201), r.text
    order = api.engine.create_record(
        "ShopOrder", {"number": "S-1", "status": "Submitted"},
        children={"ShopLine": [{"product": p} for p in products]})
    api.work()
    return str(order["id"])


def test_the_plan_graph_by_lane_with_states_dependencies_and_ponr(api: Api) -> None:
    order = _order(api, "ROUTER", "CABLE", "ROUTER")
    r = api.get("ann", f"/api/plans/{order}")
    assert_problem(r, 403)
    for who in ("opal", "dee", "root"):  # runs:read
        r = api.get(who, f"/api/plans/{order}")
        assert r.status_code == 200, r.text
    plan = r.json()
    assert (plan["order_id"], plan["revision"], plan["status"]) == (order, 1, "in_progress")
    assert (plan["fulfillment"], plan["catalog"]) == ("shop_orders", "shop")
    assert plan["lanes"] == ["billing", "shipping"]
    steps = {s["name"]: s for s in plan["steps"]}
    assert set(steps) == {"check", "confirm", "bill", "ship[L1]", "ship[L3]"}
    assert steps["check"]["status"] == "completed" and steps["check"]["has_rollback"]
    assert steps["confirm"]["status"] in ("waiting", "running")
    assert steps["ship[L1]"] | {"status": "x"} == steps["ship[L1]"] | {
        "status": "x", "lane": "shipping", "scope": "line_item", "instance": "L1",
        "lines": ["L1"], "after": ["check"], "template": "ship"}
    assert steps["ship[L1]"]["status"] == "completed"
    assert steps["bill"]["after"] == ["confirm", "ship[L1]", "ship[L3]"]
    assert steps["bill"]["ponr"] and not steps["check"]["ponr"]
    assert plan["ponr"] == {"steps": ["bill"], "passed": None}
    assert [ln["key"] for ln in plan["lines"]] == ["L1", "L2", "L3"]
    assert plan["compensation"] is None
    assert api.get("root", f"/api/runs/{plan['run_id']}").json()["orchestration"] == \
        f"plan:{order}"


def test_no_plan_is_a_located_404_and_a_bad_id_a_422(api: Api) -> None:
    _order(api, "CABLE")
    body = assert_problem(api.get("opal", "/api/plans/rec_nothing"), 404)
    assert "submitted" in body["detail"]
    assert_problem(api.post("opal", "/api/plans/rec_nothing/cancel", {"reason": "x"}), 404)
    assert_problem(api.post("opal", "/api/plans/rec_nothing/amend", {"dry_run": True}), 404)
    assert_problem(api.get("opal", "/api/plans/bad%20id"), 422)


def test_cancel_rolls_back_completed_steps_in_reverse_order(api: Api) -> None:
    order = _order(api, "ROUTER")
    assert_problem(api.post("ann", f"/api/plans/{order}/cancel", {"reason": "x"}), 403)
    assert_problem(api.post("dee", f"/api/plans/{order}/cancel", {"reason": "x"}), 403)
    assert_problem(api.post("opal", f"/api/plans/{order}/cancel", {}), 422, "reason")
    assert_problem(api.post("opal", f"/api/plans/{order}/cancel", {"reason": "   "}), 422,
                   "reason")
    r = api.post("opal", f"/api/plans/{order}/cancel", {"reason": "customer withdrew"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["rollbacks"] == ["rollback_check", "rollback_ship[L1]"]
    api.work()
    plan = api.get("opal", f"/api/plans/{order}").json()
    assert plan["status"] == "canceled"
    comp = plan["compensation"]
    assert comp["run_id"] == out["compensation_run_id"] and comp["status"] == "completed"
    by_name = {s["name"]: s for s in comp["steps"]}
    assert by_name["rollback_check"]["after"] == ["rollback_ship[L1]"]  # reverse order
    assert by_name["rollback_ship[L1]"]["compensates"] == "ship[L1]"
    body = assert_problem(api.post("opal", f"/api/plans/{order}/cancel", {"reason": "again"}),
                          409)
    assert "canceled" in body["detail"]
    events = api.get("opal", f"/api/records/{order}/timeline?limit=500").json()["items"]
    (canceled,) = [e for e in events if e["type"] == "plan_canceled"]
    assert canceled["actor"] == "opal" and canceled["data"]["reason"] == "customer withdrew"


def test_cancel_and_amend_are_refused_after_the_point_of_no_return(api: Api) -> None:
    order = _order(api, "ROUTER")
    run_id = api.get("opal", f"/api/plans/{order}").json()["run_id"]
    r = api.post("opal", f"/api/runs/{run_id}/signal", {"name": "confirmed", "data": {}})
    assert r.status_code == 200, r.text
    api.work()
    plan = api.get("opal", f"/api/plans/{order}").json()
    assert plan["ponr"] == {"steps": ["bill"], "passed": "bill"}
    for path, body in (("cancel", {"reason": "too late"}), ("amend", {"dry_run": True}),
                       ("amend", {})):
        problem = assert_problem(api.post("opal", f"/api/plans/{order}/{path}", body), 409)
        assert "'bill' is a point of no return" in problem["detail"], problem


def test_amend_shows_the_difference_then_applies_only_it(api: Api) -> None:
    order = _order(api, "ROUTER", "ROUTER")
    assert len(_lines(api, order)) == 2
    # the order changes: a line added, the first one canceled
    api.engine.create_record("ShopLine", {"order": order, "product": "ROUTER"})
    (l1,) = [r for r in _lines(api, order) if r["data"].get("product") == "ROUTER"][:1]
    api.engine.update_record(l1["id"], {"action": "cancel"})
    assert_problem(api.post("ann", f"/api/plans/{order}/amend", {"dry_run": True}), 403)
    assert_problem(api.post("opal", f"/api/plans/{order}/amend", {"dry_run": "maybe"}), 422,
                   "dry_run")
    assert_problem(api.post("opal", f"/api/plans/{order}/amend", {"dryrun": True}), 422)
    r = api.post("opal", f"/api/plans/{order}/amend", {"dry_run": True})
    assert r.status_code == 200, r.text
    diff = r.json()
    assert (diff["applied"], diff["revision"], diff["compensation_run_id"]) == (False, 1, None)
    assert diff["added"] == ["ship[L3]"] and diff["removed"] == ["ship[L1]"]
    assert diff["compensate"] == ["ship[L1]"] and diff["status"] == {"ship[L1]": "completed"}
    assert diff["rewired"] == ["bill"] and "check" in diff["unchanged"]
    assert api.get("opal", f"/api/plans/{order}").json()["revision"] == 1  # nothing applied
    r = api.post("opal", f"/api/plans/{order}/amend")  # no body: applied
    assert r.status_code == 200, r.text
    done = r.json()
    # the rollback is a step of the amended plan (no run of its own)
    assert done["applied"] and done["revision"] == 2 and done["compensation_run_id"] is None
    assert (done["added"], done["removed"]) == (diff["added"], diff["removed"])
    r = api.post("opal", f"/api/plans/{order}/amend")  # asked again: nothing differs now
    assert r.status_code == 200, r.text
    again = r.json()
    assert (again["applied"], again["revision"], again["compensation_run_id"]) == (False, 2, None)
    assert again["added"] == again["removed"] == again["changed"] == again["rewired"] == []
    api.work()
    plan = api.get("opal", f"/api/plans/{order}").json()
    steps = {s["name"]: s for s in plan["steps"]}
    assert plan["revision"] == 2 and "ship[L1]" not in steps
    assert steps["ship[L3]"]["status"] == "completed"
    assert steps["check"]["status"] == "completed"  # kept its state
    assert steps["rollback_ship[L1]"]["status"] == "completed"
    assert steps["rollback_ship[L1]"]["compensates"] == "ship[L1]"
    assert plan["compensation"] is None  # (a cancel's)


def _lines(api: Api, order: str) -> list[dict[str, Any]]:
    with api.engine.store.read() as tx:
        rows = tx.find_records_txn("ShopLine", {"order": order}, 100)
    return sorted(rows, key=lambda r: (r["created_at"], r["id"]))


def test_the_plan_operations_are_in_the_openapi_document(api: Api) -> None:
    doc = api.get("root", "/openapi.json").json()
    ops = {f"{m.upper()} {p}": op for p, o in doc["paths"].items() for m, op in o.items()}
    assert ops["GET /api/plans/{order_id}"]["operationId"] == "getPlan"
    assert ops["POST /api/plans/{order_id}/cancel"]["operationId"] == "cancelPlan"
    assert ops["POST /api/plans/{order_id}/amend"]["operationId"] == "amendPlan"
    assert {"409", "404", "403"} <= set(ops["POST /api/plans/{order_id}/cancel"]["responses"])


def test_catalogs_and_fulfillments_are_definitions_of_the_api_like_the_others(api: Api) -> None:
    """GET /api/definitions lists them: each by-kind operation takes their kind too (the
    fuzzer followed a listed catalog into GET /api/definitions/{kind}/{name} and got 422)."""
    _order(api, "CABLE")
    kinds = {(d["kind"], d["name"]) for d in api.get("dee", "/api/definitions?limit=200")
             .json()["items"]}
    assert {("catalog", "shop"), ("fulfillment", "shop_orders")} <= kinds
    for kind, name in (("catalog", "shop"), ("fulfillment", "shop_orders")):
        r = api.get("dee", f"/api/definitions/{kind}/{name}")
        assert r.status_code == 200, r.text
        assert r.json()["active_version"] == 1
        r = api.get("dee", f"/api/definitions/{kind}/{name}/versions/1")
        assert r.status_code == 200 and f"kind: {kind}" in r.text, r.text
    r = api.get("dee", "/api/definitions?kind=fulfillment")
    assert [d["name"] for d in r.json()["items"]] == ["shop_orders"]
