"""``baton import``: a bundle (``baton import bundle.tar.gz``, as before) or, with the
sub-command ``salesforce``, Salesforce flow metadata made into a Baton project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from baton.cli import bundle as bundle_cli
from baton.cli.output import console, print_json


class ImportGroup(TyperGroup):
    """``baton import X``: ``X`` is a sub-command (``salesforce``) or, as it always was, the
    bundle to import (then the hidden ``bundle`` command takes it)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


import_app = typer.Typer(cls=ImportGroup, no_args_is_help=True,
                         help="Import definitions: a bundle from `baton export` "
                              "(`baton import FILE [--dry-run] [--json]`; see `baton import "
                              "bundle --help`), or Salesforce flows (`baton import salesforce "
                              "PATH... --out DIR`).")
import_app.command("bundle", hidden=True)(bundle_cli.import_)


@import_app.command("salesforce")
def salesforce(
    paths: Annotated[list[Path], typer.Argument(help="Flow metadata files (*.flow-meta.xml, "
                                                "*.flow), folders of them (an SFDX project, a "
                                                "retrieve folder) or a retrieve zip; the "
                                                "object metadata there (objects/, "
                                                "globalValueSets/, standardValueSets/) is "
                                                "read too")],
    out: Annotated[Path, typer.Option("--out", "--output", "-o", help="The Baton project folder to write (new, or empty unless --force)")],
    force: Annotated[bool, typer.Option("--force", help="Write into a folder that is not "
                                        "empty: a project imported before gets the "
                                        "orchestrations again; its baton.toml, flows.py "
                                        "and objects.yaml are kept, with what is new added")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON (when nothing is imported: the files that could not be read, as `validate --json` lists problems).")] = False,
) -> None:
    """Salesforce orchestrations (and the screen flows they use) -> a Baton project, and
    the import report: what was translated, what was not (file and line), what to do next.

    Orchestrator and ApprovalWorkflow flows of API versions 52 to 65 are translated; see
    docs/salesforce-import.md. The project is written all or nothing. A file that cannot be
    read (not XML, truncated, not Flow metadata) is listed in the report; when no file
    holds an orchestration, nothing is imported and the error lists each such file as
    `path:line: reason` (exit status 1). Of several versions of a flow (`X-1.flow`,
    `X-2.flow`) the Active one is imported, as `x`. Importing again with --force updates
    the orchestrations and keeps what you wrote (baton.toml, flows.py, objects.yaml); a
    lookup to an object the retrieve lacks points at objects.yaml's object type of that
    name. Two objects that would read alike (`Vendor`, `Vendor__c`) stay two object types
    (`Vendor`, `Vendor_c`), said in the report; standard picklists (Case Status) take the
    values of the standard value sets given.

    Examples:
      baton import salesforce force-app/main/default/flows --out quotes
      baton import salesforce unpackaged.zip --out quotes --force
      cd quotes && baton validate && baton deploy
    """
    from baton.importers.salesforce import import_salesforce
    from baton.importers.salesforce.project import NothingImported

    try:
        report: Any = import_salesforce(paths, out, force=force)
    except NothingImported as exc:
        if not as_json:
            raise  # (the entry point prints it: the summary, then a line per file)
        from baton.cli.commands import issues_json
        from baton.cli.output import print_error

        print_json(issues_json(exc.issues))
        print_error(exc.summary, kind="definition")
        raise typer.Exit(1) from None
    if as_json:
        print_json(report.to_json())
    else:
        console.print(report.to_text(), highlight=False, markup=False)
