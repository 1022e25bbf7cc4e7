"""``baton export`` and ``baton import``: definitions (and people) between environments."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.cli.output import console, print_json, progress, show_progress, table


def _engine() -> Any:
    from baton.cli.context import state

    return state.engine()


def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the bundle here (default: standard output)")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Also export: people (users with roles, groups and queues; never passwords or tokens)")] = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Every version, not only the active one of each definition")] = False,
) -> None:
    """Write a bundle (.tar.gz) of the deployed definitions, for `baton import` elsewhere."""
    from baton.runtime.bundle import export_bundle

    extras = set(include or [])
    if extras - {"people"}:
        raise typer.BadParameter(f"unknown {', '.join(sorted(extras - {'people'}))} "
                                 "(only: people)", param_hint="--include")
    if output is None and sys.stdout.isatty():
        raise typer.BadParameter("the bundle is binary: redirect it (> bundle.tar.gz) or "
                                 "give --output FILE", param_hint="--output")
    # A bar only when a person watches (--output FILE on a terminal), never in the bundle.
    with progress("reading definitions", 2, enabled=output is not None and show_progress()) as step:
        data = export_bundle(_engine(), include_people="people" in extras,
                             all_versions=all_versions)
        step(description=f"writing {output}")
        if output is not None:
            output.write_bytes(data)
        step()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        console.print(f"wrote {output} ({len(data)} bytes)", highlight=False)


def import_(
    bundle: Annotated[Path, typer.Argument(help="A bundle from `baton export` (- for standard input)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print what would change; change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Validate a bundle, then import it in one transaction (all of it, or nothing)."""
    from baton.runtime.bundle import apply_import, plan_import, read_bundle

    with progress("reading the bundle", 2 if dry_run else 3,
                  enabled=show_progress(as_json)) as step:
        data = sys.stdin.buffer.read() if str(bundle) == "-" else bundle.read_bytes()
        eng = _engine()
        step(description="validating everything in it")
        plan = plan_import(eng, read_bundle(data))
        step(description="importing (one transaction)")
        if not dry_run:
            apply_import(eng, plan, actor="cli")
            step()
    rows = [{"kind": c.kind, "name": c.name, "change": c.action, "writes": c.writes}
            for c in plan.changes]
    if as_json:
        print_json({"dry_run": dry_run, "changes": rows})
        return
    table("Would change (dry run)" if dry_run else "Imported", ["kind", "name", "change"],
          [[r["kind"], r["name"], r["change"]] for r in rows])
    if not plan.writes:
        console.print("nothing to change")
