"""A fulfillment plan's run canceled through the runs API: ``POST /api/runs/{id}/cancel``
cancels it as its plan (refused past its point of no return with the plan's message and
nothing changed; before it, a compensation run rolls back what its steps did, and the
answer, the canceled run, is replayed as it was for a retried key); the plan's compensation run is
not canceled (409). The run page's cancel: test_plan_run_cancel_page.py. Real Engine and
Worker behind the whole ASGI app, virtual time."""

from __future__ import annotations

from baton.engine.status import RunStatus

# the shop's fulfillment and its flows (api_plans.*): registered by that module
from tests.api.conftest import Api, assert_problem
from tests.api.test_plans import PLAN_DEFINITIONS

BILL = "after: [confirm, ship], ponr: true}\n"
# after `bill` (the point of no return) the plan waits for its delivery: still in progress
DEFINITIONS = PLAN_DEFINITIONS.replace(BILL, BILL + (
    "      - {name: deliver, type: pause, lane: billing, scope: plan, signal: delivered,\n"
    "         after: [bill]}\n"))
assert DEFINITIONS != PLAN_DEFINITIONS


def _order(api: Api, *products: str) -> tuple[str, str]:
    """An order of ``products`` planned and worked until it waits for its confirmation:
    (order id, its plan's run id)."""
    r = api.post("root", "/api/definitions/deploy", {"files": {"shop.yaml": DEFINITIONS}})
    assert r.status_code in (200, 201), r.text
    order = str(api.engine.create_record(
        "ShopOrder", {"number": "S-1", "status": "Submitted"},
        children={"ShopLine": [{"product": p} for p in products]})["id"])
    api.work()
    return order, str(api.get("opal", f"/api/plans/{order}").json()["run_id"])


def _past_ponr(api: Api, run_id: str) -> None:
    r = api.post("opal", f"/api/runs/{run_id}/signal", {"name": "confirmed", "data": {}})
    assert r.status_code == 200, r.text
    api.work()
    detail = api.get("opal", f"/api/runs/{run_id}").json()
    steps = {s["name"]: s["status"] for s in detail["steps"]}
    assert detail["status"] == "in_progress" and steps["bill"] == "completed", steps


def test_the_runs_cancel_of_a_plans_run_cancels_the_plan(api: Api) -> None:
    order, run_id = _order(api, "ROUTER")
    key = {"Idempotency-Key": "cancel-plan-1"}
    r = api.post("opal", f"/api/runs/{run_id}/cancel", {"reason": "customer withdrew"},
                 headers=key)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["id"] == run_id and out["status"] == "canceled"
    plan = api.get("opal", f"/api/plans/{order}").json()
    assert plan["status"] == "canceled"
    comp = plan["compensation"]
    assert comp["status"] == "in_progress" and out["orchestration"] == f"plan:{order}"
    assert [s["name"] for s in comp["steps"]] == ["rollback_check", "rollback_ship[L1]"]
    again = api.post("opal", f"/api/runs/{run_id}/cancel", {"reason": "customer withdrew"},
                     headers=key)  # a retry: answered as the first, nothing more done
    assert again.status_code == 200 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == out
    # the compensation run is not canceled: its rollbacks would never run
    problem = assert_problem(api.post("opal", f"/api/runs/{comp['run_id']}/cancel",
                                      {"reason": "stop"}), 409)
    assert f"compensation of order {order}'s canceled plan" in problem["detail"]
    api.work()
    plan = api.get("opal", f"/api/plans/{order}").json()
    assert plan["compensation"]["status"] == "completed"
    assert {s["status"] for s in plan["compensation"]["steps"]} == {"completed"}
    problem = assert_problem(api.post("opal", f"/api/runs/{run_id}/cancel",
                                      {"reason": "again"}), 409)
    assert f"its compensation is run {comp['run_id']}" in problem["detail"]
    events = api.get("opal", f"/api/records/{order}/timeline?limit=500").json()["items"]
    (canceled,) = [e for e in events if e["type"] == "plan_canceled"]
    assert canceled["actor"] == "opal" and canceled["data"]["reason"] == "customer withdrew"
    assert canceled["data"]["compensation_run"] == comp["run_id"]


def test_past_the_point_of_no_return_the_runs_cancel_is_refused_as_the_plans(api: Api
                                                                            ) -> None:
    order, run_id = _order(api, "ROUTER")
    _past_ponr(api, run_id)
    by_plan = assert_problem(api.post("opal", f"/api/plans/{order}/cancel",
                                      {"reason": "too late"}), 409)
    by_run = assert_problem(api.post("opal", f"/api/runs/{run_id}/cancel",
                                     {"reason": "too late"}), 409)
    assert by_run["detail"] == f"run {run_id} is the plan of order {order}: {by_plan['detail']}"
    assert "'bill' is a point of no return" in by_run["detail"]
    assert api.engine.get_run(run_id).status is RunStatus.IN_PROGRESS
    assert api.get("opal", f"/api/plans/{order}").json()["compensation"] is None
