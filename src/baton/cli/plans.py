"""``baton plans``: an order's fulfillment plan by lane; cancel it (compensation).

Registered in :mod:`baton.cli.commands` with ``app.add_typer(plans_app, name="plans")``.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from baton.cli import complete
from baton.cli.output import console, print_json, table

plans_app = typer.Typer(no_args_is_help=True,
                        help="Fulfillment plans of orders: show one by lane, cancel one, or "
                             "diff and amend it to its lines as they are now.")
OrderArg = Annotated[str, typer.Argument(help="Order record id (rec_...)", autocompletion=complete.record_ids)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
STYLE = {"completed": "green", "running": "cyan", "fallout": "red", "failed": "red",
         "canceled": "dim", "skipped": "dim", "not_started": "white", "waiting": "yellow"}


def _state() -> Any:
    from baton.cli.context import state

    return state


def _sla(sla: dict[str, Any] | None, status: str, completed_at: str | None) -> str:
    """An open step's SLA state (``on_track (due ...)``); a completed step's how it ended
    (``met``, or ``missed (due ...)`` when it completed after its due time); nothing for a
    step skipped, canceled or failed (no SLA holds for it any more): as ``plans show
    --json`` gives it (:func:`baton.plans.service.step_sla`)."""
    from baton.plans.service import SLA_MET, SLA_MISSED, step_sla

    view = step_sla(sla, status, completed_at)
    if not view:
        return ""
    due = view.get("due_at") or ""
    state = view.get("status") or ""
    if state == SLA_MET:
        return state
    if state == SLA_MISSED:
        return f"{state} (due {due[:16]})" if due else state
    return f"{state} (due {due[:16]})" if due and state else str(state)


@plans_app.command("show")
def show(order: OrderArg, as_json: JsonOpt = False) -> None:
    """The order's plan: each lane's steps with their scope instance, status, SLA and
    dependencies; the compensation run after a cancel."""
    plan = _state().engine().plans.show(order)
    if as_json:
        print_json(plan)
        return
    console.print(f"plan of order [bold]{order}[/bold] r{plan['revision']}  run "
                  f"{plan['run_id']}  [bold]{plan['status']}[/bold]  "
                  f"({plan['fulfillment']} v{plan['fulfillment_version']}, catalog "
                  f"{plan['catalog']} v{plan['catalog_version']}; {len(plan['lines'])} "
                  f"fulfillment line{'' if len(plan['lines']) == 1 else 's'})")
    if not plan["steps"]:  # no scenario holds for its lines (a canceled line's, say)
        console.print("no steps: no scenario of the fulfillment holds for the order's lines")
    _steps_by_lane(plan["lanes"], plan["steps"])
    comp = plan.get("compensation")
    if comp:
        console.print(f"\ncompensation r{comp['revision']}  run {comp['run_id']}  "
                      f"[bold]{comp['status']}[/bold]")
        _steps_by_lane(plan["lanes"], comp["steps"])


def _steps_by_lane(lanes: list[str], steps: list[dict[str, Any]]) -> None:
    for lane in lanes:
        mine = [s for s in steps if s["lane"] == lane]
        if not mine:
            continue
        rows = []
        for s in mine:
            scope = s["scope"] if not s["instance"] else f"{s['scope']} {s['instance']}"
            mark = " [bold red]PONR[/bold red]" if s.get("ponr") else ""
            status = s["status"]
            rows.append([escape(s["name"]) + mark, escape(scope), s["type"],
                         f"[{STYLE.get(status, 'white')}]{status}[/]",
                         _sla(s.get("sla"), status, None),  # (met/missed: the view's)
                         escape(", ".join(s["after"]))])
        table(f"lane {lane}", ["step", "scope", "type", "status", "SLA", "after"], rows,
              ids=("step",))


@plans_app.command("cancel")
def cancel(order: OrderArg,
           reason: Annotated[str, typer.Option("--reason", help="Why (audited)")],
           as_json: JsonOpt = False) -> None:
    """Cancel the order's plan before its point of no return: running steps stop and
    each completed step's rollback runs, in reverse dependency order."""
    out = _state().engine().plans.cancel(order, reason, "cli")
    if as_json:
        print_json(out)
        return
    console.print(f"canceled the plan of order [bold]{order}[/bold]; compensation run "
                  f"{out['compensation_run_id']} rolls back: "
                  f"{', '.join(out['rollbacks']) or 'nothing'}")


@plans_app.command("diff")
def diff(order: OrderArg, as_json: JsonOpt = False) -> None:
    """What `baton plans amend` would do with the order's lines as they are now: steps
    added, removed, changed, rewired, and the completed ones it would compensate. A plan
    that cannot be amended (its point of no return passed, or it is not in progress) is
    said so, why, and the command fails (exit 1), as `amend` and the API's dry run do;
    the difference is still shown while the plan is in progress (`--json`: with
    ``refused``, the reason)."""
    from baton.errors import TransitionConflict

    plans = _state().engine().plans
    try:
        out = plans.diff(order, refuse=True)
    except TransitionConflict as exc:  # (refused: the difference again, to show it)
        refused = f"the amendment could not be applied: {exc}"
        out = plans.diff(order)
        if as_json:
            print_json({**out, "refused": str(exc)})
        elif _state().engine().get_run(out["run_id"]).status.value == "in_progress":
            console.print("what the amendment would be (it cannot be applied):")
            _print_diff(out)
        raise TransitionConflict(refused) from None
    if as_json:
        print_json(out)
        return
    _print_diff(out)


def _print_diff(out: dict[str, Any]) -> None:
    marks = (("added", "green", "+"), ("removed", "red", "-"), ("changed", "yellow", "~"),
             ("rewired", "cyan", ">"))
    for key, style, mark in marks:
        for name in out[key]:
            extra = f" ({out['status'][name]})" if name in out.get("status", {}) else ""
            console.print(f"[{style}]{mark} {escape(name)}{extra}[/]")
    n = len(out["unchanged"])
    console.print(f"{n} step{'' if n == 1 else 's'} unchanged; compensate: "
                  f"{', '.join(out['compensate']) or 'nothing'}")
    if out.get("cancels_order"):
        console.print("[bold]every line of the order is canceled: the amendment cancels "
                      "the order[/bold] (as `baton plans cancel`), its rollbacks in a "
                      "compensation run: " + (escape(", ".join(out["rollbacks"]))
                                              or "nothing to roll back"))


@plans_app.command("amend")
def amend(order: OrderArg, as_json: JsonOpt = False) -> None:
    """Amend the order's plan to its lines as they are now (add lines, or set a line's
    action to cancel, first): only the difference is planned; removed completed steps are
    rolled back. Refused once a point-of-no-return step has completed. Every line
    canceled: the order is canceled, as `baton plans cancel` does."""
    out = _state().engine().plans.amend(order, "cli")
    if as_json:
        print_json(out)
        return
    _print_diff(out)
    if not out["applied"]:
        console.print(f"nothing to amend: the plan of order [bold]{order}[/bold] (revision "
                      f"{out['revision']}) already matches its lines")
        return
    if out.get("cancels_order"):
        console.print(f"canceled the plan of order [bold]{order}[/bold] (every line "
                      f"canceled); compensation run {out['compensation_run_id']} rolls "
                      f"back: {escape(', '.join(out['rollbacks'])) or 'nothing'}")
        return
    console.print(f"plan of order [bold]{order}[/bold] is now revision {out['revision']}"
                  + (f"; compensation run {out['compensation_run_id']}"
                     if out["compensation_run_id"] else ""))
