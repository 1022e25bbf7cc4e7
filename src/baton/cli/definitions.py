"""``baton definitions``: what is deployed, which version is active, when schedules fire."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baton.cli.output import console, print_json, table
from baton.cli.params import listed, one_of

definitions_app = typer.Typer(no_args_is_help=True,
                              help="Deployed definitions: versions, the active one, schedules.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
KINDS = ("object", "orchestration", "calendar", "mailbox", "connection", "routing", "intake_form")


def _engine() -> Any:
    from baton.cli.main import state

    return state.engine()




@definitions_app.command("list")
def definitions_list(
    kind: Annotated[str | None, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"Only this kind: {listed(KINDS)}")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every deployed definition: its active and latest version, and when a schedule fires next."""
    eng = _engine()
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in eng.definitions.list_versions(kind):
        d = latest.setdefault((row.kind, row.name), {"kind": row.kind, "name": row.name,
                                                     "active": None, "latest": 0})
        d["latest"] = max(d["latest"], row.version)
        if row.active:
            d["active"] = row.version
    schedules = eng.definitions.schedules()
    out = []
    for (k, name), d in sorted(latest.items()):
        sch = schedules.get(name) if k == "orchestration" else None
        d["next_run_at"] = sch["next_at"] if sch else None
        out.append(d)
    if as_json:
        print_json(out)
        return
    table("Definitions", ["kind", "name", "active", "latest", "next scheduled run"],
          [[d["kind"], d["name"], d["active"] or "-", d["latest"], d["next_run_at"] or ""]
           for d in out])


@definitions_app.command("show")
def definitions_show(
    name: Annotated[str, typer.Argument(help="Definition name")],
    kind: Annotated[str, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"The definition's kind: {listed(KINDS)}")] = "orchestration",
    version: Annotated[int | None, typer.Option("--version", "-v", help="Print this version's YAML")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A definition's versions, its schedule (next and last tick), and a version's YAML."""
    eng = _engine()
    shown = eng.definitions.get_version(kind, name, version)  # NotFound says what to do
    versions = sorted(eng.definitions.list_versions(kind, name), key=lambda r: r.version)
    sch = eng.definitions.schedules().get(name) if kind == "orchestration" else None
    if as_json:
        print_json({"kind": kind, "name": name, "schedule": sch, "source": shown.source,
                    "versions": [{"version": v.version, "active": v.active,
                                  "deployed_at": v.deployed_at, "deployed_by": v.deployed_by,
                                  "file": v.file} for v in versions]})
        return
    table(f"{kind} {name}", ["version", "active", "deployed", "by", "file"],
          [[v.version, "active" if v.active else "", v.deployed_at, v.deployed_by, v.file]
           for v in versions])
    if sch is not None:
        nxt = sch["next_at"] or "not armed (deactivated)"
        console.print(f"schedule {sch['cron']!r} ({sch['timezone']}, v{sch['version']}): next run "
                      f"{nxt}; last tick {sch['last_at'] or 'never'}"
                      + (f" (run {sch['last_run_id']})" if sch["last_run_id"] else ""))
    console.print(f"\n# v{shown.version} ({shown.file})", markup=False)
    console.print(shown.source, markup=False, highlight=False)
