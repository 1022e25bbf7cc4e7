"""``baton definitions``: what is deployed, which version is active, when schedules fire."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from baton.cli import complete, render
from baton.cli.params import listed, one_of
from baton.definitions import KINDS

definitions_app = typer.Typer(no_args_is_help=True,
                              help="Deployed definitions: versions, the active one, schedules.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _engine() -> Any:
    from baton.cli.context import state

    return state.engine()




@definitions_app.command("list")
def definitions_list(
    kind: Annotated[str | None, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"Only this kind: {listed(KINDS)}")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Every deployed definition: its active and latest version, and when a schedule fires next."""
    eng = _engine()
    out = render.definitions_summary(eng.definitions.list_versions(kind),
                                     eng.definitions.schedules())
    render.definitions_list(out, as_json=as_json)


@definitions_app.command("show")
def definitions_show(
    name: Annotated[str, typer.Argument(help="Definition name", autocompletion=complete.definitions)],
    kind: Annotated[str, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"The definition's kind: {listed(KINDS)}")] = "orchestration",
    version: Annotated[int | None, typer.Option("--version", "-v", help="Print this version's YAML")] = None,
    as_json: JsonOpt = False,
) -> None:
    """A definition's versions, its schedule (next and last tick), and a version's YAML."""
    eng = _engine()
    shown = eng.definitions.get_version(kind, name, version)  # NotFound says what to do
    versions = sorted(eng.definitions.list_versions(kind, name), key=lambda r: r.version)
    sch = eng.definitions.schedules().get(name) if kind == "orchestration" else None
    render.definitions_show(kind, name, shown, versions, sch, as_json=as_json)
