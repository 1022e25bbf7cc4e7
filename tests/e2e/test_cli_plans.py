"""`baton plans` through the real CLI on the order example: a disconnect order (canceled
lines) is planned by the example's disconnect scenario alone, an order no scenario holds for
gets an empty plan that says so, and an amendment with nothing to change makes no revision."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import baton, copy_example, ok


def _order(proj: Path, number: str, lines: list[dict[str, object]]) -> str:
    out = ok(baton("records", "create", "Order", "--data",
                   json.dumps({"number": number, "status": "Submitted"}),
                   "--children", "OrderLine=" + json.dumps(lines), cwd=proj)).stdout
    return out.split()[-1]


def test_a_disconnect_an_empty_plan_and_nothing_to_amend(tmp_path: Path) -> None:
    proj = copy_example(tmp_path, "order_fulfillment")
    ok(baton("deploy", cwd=proj))
    cease = _order(proj, "D-1", [
        {"product": "BROADBAND", "action": "cancel", "attributes": {"site": "PARIS", "speed": "1G"}},
        {"product": "DOCK", "action": "cancel"}])
    nothing = _order(proj, "D-2", [{"product": "DOCK", "action": "cancel"}])
    waits = _order(proj, "A-1", [{"product": "BROADBAND", "attributes": {"site": "LYON",
                                                                         "speed": "1G"}}])
    ok(baton("worker", "--until-idle", cwd=proj))
    shown = ok(baton("plans", "show", cease, cwd=proj)).stdout
    assert "completed" in shown and "2 fulfillment lines" in shown, shown
    assert "lane provisioning" in shown and "cease[L1.1]" in shown, shown
    assert "credit_check" not in shown and "install" not in shown, shown  # delivery steps
    plan = json.loads(ok(baton("plans", "show", cease, "--json", cwd=proj)).stdout)
    assert [s["name"] for s in plan["steps"]] == ["cease[L1.1]"]
    assert [ln["action"] for ln in plan["lines"]] == ["cancel", "cancel"]
    empty = ok(baton("plans", "show", nothing, cwd=proj)).stdout
    assert "(order_fulfillment v1, catalog catalog v1; 1 fulfillment line)" in empty, empty
    assert "no steps: no scenario of the fulfillment holds for the order's lines" in empty
    # its installation waits for a person; its lines have not changed: nothing to amend
    same = ok(baton("plans", "amend", waits, cwd=proj)).stdout
    assert "nothing to amend" in same and "(revision 1) already matches its lines" in same, same
    assert " r1 " in ok(baton("plans", "show", waits, cwd=proj)).stdout
