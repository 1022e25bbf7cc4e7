"""``baton runs cancel`` of a fulfillment plan's run, ``baton plans diff`` of a plan that
cannot be amended, and the SLA column of ``baton plans show``, through the real CLI (a
``baton`` process per command) on the order_fulfillment example with its ``ship``
callouts booking at a carrier on loopback (``baton demo``'s), on a SQLite file.

* ``runs cancel PLAN_RUN`` cancels the order's plan: its compensation run rolls back what
  the plan did (and the plan's cancel then says it is canceled); past the point of no
  return it is refused with the plan's message, exit 1.
* ``plans diff`` of a plan past its point of no return says the amendment could not be
  applied and why (exit 1, as ``plans amend`` and the API's dry run refuse), after what it
  would be; of a canceled plan, only why. ``--json``: the difference with ``refused``.
* ``plans show`` gives an SLA for open steps only: a completed step's SLA says how it
  ended (``met`` / ``missed``), a canceled step's nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.cli.demo_carrier import DemoCarrier, pointed_at
from baton.cli.output import console
from baton.cli.plans import _print_diff, _sla
from tests.integration.plan_workers import EXAMPLE, FLOWS, run_baton


@pytest.fixture
def carrier() -> Iterator[DemoCarrier]:
    c = DemoCarrier(busy_first=False).start()  # (no retry to wait for: real time)
    yield c
    c.stop()


def _project(root: Path, carrier: DemoCarrier) -> tuple[Path, str]:
    """The example in ``root/proj`` on a SQLite file, its carrier ``carrier``; after
    ``billing`` (the point of no return) a plan waits for a ``delivered`` signal, so that
    it is still in progress past its point of no return."""
    db_url = f"sqlite:///{root / 'baton.db'}"
    project = root / "proj"
    (project / "definitions").mkdir(parents=True)
    for name, text in pointed_at(EXAMPLE, carrier.url).items():
        if name == "fulfillment.yaml":
            text = text.replace(
                "{name: done, type: milestone, scope: plan, after: [billing]}",
                "{name: delivered, type: pause, lane: billing, scope: plan, "
                "signal: delivered, after: [billing]}")
            assert "signal: delivered" in text
        (project / "definitions" / name).write_text(text)
    (project / "baton.toml").write_text('flows = ["flows"]\n')
    (project / "flows.py").write_text(FLOWS)
    _ok(project, db_url, "deploy")
    return project, db_url


def _ok(project: Path, db_url: str, *args: str, carrier: DemoCarrier | None = None) -> str:
    done = run_baton(project, db_url, *args, carrier=carrier)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _order(project: Path, db_url: str, number: str, lines: list[dict[str, object]]) -> str:
    out = _ok(project, db_url, "records", "create", "Order", "--data",
              json.dumps({"number": number, "status": "Submitted"}),
              "--children", "OrderLine=" + json.dumps(lines))
    return out.split()[-1]


def _plan(project: Path, db_url: str, order: str) -> dict[str, object]:
    return json.loads(_ok(project, db_url, "plans", "show", order, "--json"))  # type: ignore[no-any-return]


def _rows(shown: str) -> dict[str, str]:
    """``plans show``'s table rows by step name (their line; a narrow table's first)."""
    out: dict[str, str] = {}
    for line in shown.splitlines():
        cells = line.replace("│", " ").split()
        if cells and "[" in cells[0] or cells[:1] == ["billing"]:
            out.setdefault(cells[0], line)
    return out


def test_runs_cancel_of_a_plan_and_diff_show_of_plans_that_cannot_change(
        tmp_path: Path, carrier: DemoCarrier) -> None:
    proj, db = _project(tmp_path, carrier)
    waits = _order(proj, db, "B-1", [
        {"product": "LAPTOP-PRO", "attributes": {"color": "red"}},
        {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}}])
    final = _order(proj, db, "F-1", [{"product": "LAPTOP-PRO", "attributes": {"color": "red"}}])
    _ok(proj, db, "worker", "--until-idle", carrier=carrier)
    assert carrier.stats.booked == 2

    # the SLA of open steps only; a completed step's says it was met
    rows = _rows(_ok(proj, db, "plans", "show", waits))
    assert "waiting_for_person" in rows["install[PARIS]"]
    assert "on_track (due " in rows["install[PARIS]"], rows
    assert "completed" in rows["ship[L1.1]"] and " met " in rows["ship[L1.1]"], rows
    assert "on_track" not in rows["ship[L1.1]"], rows

    # past its point of no return: refused as `plans cancel` refuses, nothing changed
    final_run = str(_plan(proj, db, final)["run_id"])
    refused = run_baton(proj, db, "runs", "cancel", final_run, "--reason", "too late")
    assert refused.returncode == 1, refused.stdout
    assert (f"run {final_run} is the plan of order {final}: the order can no longer be "
            "canceled: step 'billing' is a point of no return") in refused.stderr
    assert _plan(proj, db, final)["compensation"] is None
    # its amendment: what it would be, and why it cannot be applied (exit 1)
    _ok(proj, db, "records", "create", "OrderLine", "--data",
        json.dumps({"order": final, "product": "LAPTOP-PRO", "attributes": {"color": "blue"}}))
    diff = run_baton(proj, db, "plans", "diff", final)
    assert diff.returncode == 1, diff.stdout
    assert "what the amendment would be (it cannot be applied):" in diff.stdout
    assert "+ reserve[L2.1]" in diff.stdout and "steps unchanged" in diff.stdout
    assert ("the amendment could not be applied: the order can no longer be amended: "
            "step 'billing' is a point of no return") in diff.stderr.replace("\n", " ")
    as_json = run_baton(proj, db, "plans", "diff", final, "--json")
    assert as_json.returncode == 1
    out = json.loads(as_json.stdout)
    assert "reserve[L2.1]" in out["added"] and "point of no return" in out["refused"]
    assert json.loads(as_json.stderr)["error"]["kind"] == "conflict"

    # before it: the plan is canceled, its compensation recalls what it did
    run_id = str(_plan(proj, db, waits)["run_id"])
    said = _ok(proj, db, "runs", "cancel", run_id, "--reason", "customer withdrew")
    assert f"run {run_id}" in said and "canceled" in said
    _ok(proj, db, "worker", "--until-idle", carrier=carrier)
    plan = _plan(proj, db, waits)
    comp = plan["compensation"]
    assert plan["status"] == "canceled" and isinstance(comp, dict)
    assert comp["status"] == "completed"
    assert f"its rollbacks run in {comp['run_id']}" in " ".join(said.split())
    assert [s["name"] for s in comp["steps"]] == ["rollback_reserve[L1.1]", "rollback_ship[L1.1]"]
    again = run_baton(proj, db, "plans", "cancel", waits, "--reason", "again")
    assert again.returncode == 1 and "is canceled" in again.stderr
    rows = _rows(_ok(proj, db, "plans", "show", waits))
    assert "canceled" in rows["install[PARIS]"] and "(due" not in rows["install[PARIS]"]
    # a canceled plan's diff: only why it cannot be amended
    diff = run_baton(proj, db, "plans", "diff", waits)
    assert diff.returncode == 1 and "unchanged" not in diff.stdout, diff.stdout
    assert "is canceled; only a plan in progress can be amended" in diff.stderr.replace(
        "\n", " ")


def test_the_sla_column_and_the_count_of_unchanged_steps() -> None:
    due = "2030-01-01T10:00:00.000Z"
    sla = {"status": "in_jeopardy", "due_at": due}
    assert _sla(sla, "running", None) == "in_jeopardy (due 2030-01-01T10:00)"
    assert _sla(sla, "completed", "2030-01-01T09:59:59.000Z") == "met"
    assert _sla(sla, "completed", "2030-01-01T10:00:00.001Z") == "missed (due 2030-01-01T10:00)"
    for ended in ("canceled", "skipped", "failed"):
        assert _sla(sla, ended, None) == ""
    assert _sla(None, "running", None) == ""
    diff = {"added": [], "removed": [], "changed": [], "rewired": [], "status": {},
            "compensate": []}
    for unchanged, said in ((["a"], "1 step unchanged"), (["a", "b"], "2 steps unchanged"),
                            ([], "0 steps unchanged")):
        with console.capture() as seen:
            _print_diff({**diff, "unchanged": unchanged})
        assert seen.get().startswith(said + "; compensate: nothing"), seen.get()
