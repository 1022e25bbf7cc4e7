"""``baton definitions``: what is deployed, which version is active, when schedules fire."""

from __future__ import annotations

import difflib
from typing import Annotated, Any

import typer

from baton.cli import complete, render
from baton.cli.params import listed, one_of
from baton.definitions import KINDS
from baton.errors import BatonError, NotFound

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
    try:
        shown = eng.definitions.get_version(kind, name, version)
    except NotFound as exc:
        raise _not_found(eng, exc, kind, name, version) from None
    versions = sorted(eng.definitions.list_versions(kind, name), key=lambda r: r.version)
    sch = eng.definitions.schedules().get(name) if kind == "orchestration" else None
    render.definitions_show(kind, name, shown, versions, sch, as_json=as_json)


@definitions_app.command("diff")
def definitions_diff(
    name: Annotated[str, typer.Argument(help="Definition name", autocompletion=complete.definitions)],
    from_: Annotated[int | None, typer.Option("--from", min=1, help="The older version (default: the one before --to)")] = None,
    to: Annotated[int | None, typer.Option("--to", min=1, help="The newer version (default: the latest)")] = None,
    kind: Annotated[str, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"The definition's kind: {listed(KINDS)}")] = "orchestration",
    as_json: JsonOpt = False,
) -> None:
    """What changed between two versions: a unified diff of their YAML (lines - in --from,
    + in --to). Without options, the latest version against the one before it. The JSON is
    GET /api/definitions/{kind}/{name}/diff's. Exit 0 whether or not they differ.

    Examples:
      baton definitions diff case_triage
      baton definitions diff case_triage --from 2 --to 5
      baton definitions diff Case --kind object --json
    """
    eng = _engine()
    numbers = sorted(r.version for r in eng.definitions.list_versions(kind, name))
    if not numbers:
        raise _not_found(eng, NotFound(kind, name), kind, name, None)
    new = numbers[-1] if to is None else to
    if from_ is not None:
        old = from_
    else:
        before = [v for v in numbers if v < new]
        if not before:
            if len(numbers) == 1:
                raise BatonError(f"{kind} {name!r} has one version (v{new}): nothing to "
                                 "compare it with")
            raise BatonError(f"v{new} is {name!r}'s first version: nothing before it to "
                             f"compare it with; give --from (its versions are "
                             f"{_listed(numbers)})")
        old = before[-1]
    try:
        text = eng.definitions.diff(kind, name, old, new)
    except NotFound as exc:
        missing = old if old not in numbers else new
        raise _not_found(eng, exc, kind, name, missing) from None
    if as_json:
        from baton.cli.output import print_json

        print_json({"kind": kind, "name": name, "from_version": old, "to_version": new,
                    "diff": text})
        return
    _print_diff(kind, name, old, new, text)


@definitions_app.command("activate")
def definitions_activate(
    name: Annotated[str, typer.Argument(help="Definition name", autocompletion=complete.definitions)],
    version: Annotated[int, typer.Option("--version", "-v", min=1, help="The version to make the active one")],
    kind: Annotated[str, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"The definition's kind: {listed(KINDS)}")] = "orchestration",
    as_json: JsonOpt = False,
) -> None:
    """Make a deployed version the active one (roll back or forward): new runs and record
    triggers use it, runs in progress stay on theirs. Refused, as a deploy is, when the
    version does not fit the object types deployed now."""
    eng = _engine()
    try:
        row = eng.definitions.set_active(kind, name, version, "cli")
    except NotFound as exc:
        raise _not_found(eng, exc, kind, name, version) from None
    _print_active(eng, kind, name, row.version if row is not None else None, as_json=as_json)


@definitions_app.command("deactivate")
def definitions_deactivate(
    name: Annotated[str, typer.Argument(help="Definition name", autocompletion=complete.definitions)],
    kind: Annotated[str, typer.Option("--kind", "-k", callback=one_of(KINDS), help=f"The definition's kind: {listed(KINDS)}")] = "orchestration",
    as_json: JsonOpt = False,
) -> None:
    """Deactivate a definition: no new runs start from it (nor from its record triggers, nor
    its schedule); runs in progress go on. `activate` brings a version back. Object types
    cannot be deactivated."""
    eng = _engine()
    try:
        eng.definitions.set_active(kind, name, None, "cli")
    except NotFound as exc:
        raise _not_found(eng, exc, kind, name, None) from None
    _print_active(eng, kind, name, None, as_json=as_json)


def _not_found(eng: Any, exc: NotFound, kind: str, name: str, version: int | None
               ) -> NotFound:
    """What to do instead, when ``name`` (or its ``version``) is not a deployed ``kind``:
    the versions it has; the kind(s) a definition of that name is (``Case`` is an object:
    ``--kind object``); else a close name, and ``baton definitions list``. Another
    ``NotFound`` (of something the definition names) as it is."""
    if exc.kind != kind or exc.key not in (name, f"{name} v{version}"):
        return exc
    rows = eng.definitions.list_versions()
    flag = "" if kind == "orchestration" else f" --kind {kind}"
    mine = sorted({r.version for r in rows if r.kind == kind and r.name == name})
    if mine and version is not None:
        return NotFound(kind, f"{name} v{version}", f"its versions are {_listed(mine)}: see "
                                                    f"`baton definitions show {name}{flag}`")
    others = sorted({r.kind for r in rows if r.name == name and r.kind != kind})
    if len(others) == 1:
        return NotFound(kind, name, f"'{name}' is {_article(others[0])} {others[0]}, not "
                                    f"{_article(kind)} {kind}: add --kind {others[0]}")
    if others:
        return NotFound(kind, name, f"'{name}' is deployed as {', '.join(others)}: add "
                                    "--kind with the one meant")
    close = difflib.get_close_matches(name, sorted({r.name for r in rows if r.kind == kind}), n=1)
    did = f"did you mean '{close[0]}'? " if close else ""
    return NotFound(kind, name, f"{did}see `baton definitions list{flag}`")


def _listed(versions: list[int]) -> str:
    if len(versions) > 2 and versions == list(range(versions[0], versions[-1] + 1)):
        return f"{versions[0]} to {versions[-1]}"
    return ", ".join(str(v) for v in versions)


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _print_diff(kind: str, name: str, old: int, new: int, text: str) -> None:
    """The unified diff, its removed lines red and added ones green on a terminal."""
    from rich.text import Text

    from baton.cli.output import console

    if not text:
        console.print(f"{kind} {name}: v{old} and v{new} are the same text", highlight=False)
        return
    styles = (("+++", "bold"), ("---", "bold"), ("@@", "cyan"), ("+", "green"), ("-", "red"))
    for line in text.splitlines():
        style = next((st for prefix, st in styles if line.startswith(prefix)), "")
        console.print(Text(line, style=style), soft_wrap=True, highlight=False)


def _print_active(eng: Any, kind: str, name: str, active: int | None, *, as_json: bool) -> None:
    from baton.cli.output import console, print_json

    latest = max(r.version for r in eng.definitions.list_versions(kind, name))
    if as_json:
        print_json({"kind": kind, "name": name, "active": active, "latest": latest})
        return
    if active is None:
        console.print(f"{kind} [bold]{name}[/bold] deactivated: no new runs start from it "
                      f"(latest version {latest})", highlight=False)
    else:
        console.print(f"{kind} [bold]{name}[/bold]: version {active} is active "
                      f"(latest {latest})", highlight=False)
