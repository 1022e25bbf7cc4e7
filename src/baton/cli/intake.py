"""``baton intake``: bring e-mail in by hand (``.eml`` files) the way the SMTP listener does."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from baton.cli.output import print_error, print_json, table

intake_app = typer.Typer(no_args_is_help=True,
                         help="E-mail intake: import .eml files into records.")


@intake_app.command("eml")
def intake_eml(
    files: Annotated[list[Path], typer.Argument(help=".eml files (or folders of them)")],
    mailbox: Annotated[str | None, typer.Option(
        "--mailbox", "-m", help="The mailbox to use (default: by the To/Cc addresses, or the "
                                "only mailbox)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Import e-mails: each becomes a record, a reply to its case, or is skipped (automatic
    mail, or already imported). Safe to run again on the same files."""
    from baton.cli.context import state
    from baton.errors import BatonError
    from baton.intake.mail import MailError, read_file

    paths: list[Path] = []
    for f in files:
        if f.is_dir():
            paths += sorted(f.glob("*.eml"))
        elif f.exists():
            paths.append(f)
        else:
            print_error(f"{f}: no such file or folder")
            raise typer.Exit(1)
    eng = state.engine()
    results: list[dict[str, Any]] = []
    failed = 0
    for path in paths:
        try:
            got = eng.intake.accept(read_file(path, eng.intake.limits.max_message_bytes), via="eml", mailbox=mailbox,
                                    actor=f"cli:intake:{path.name}")
            results.append({"file": str(path), **got.as_dict()})
        except (MailError, BatonError) as exc:
            failed += 1
            results.append({"file": str(path), "outcome": "error", "error": str(exc)})
            print_error(f"{path}: {exc}")
    if as_json:
        print_json(results)
    else:
        table("Intake", ["file", "outcome", "record", "from", "subject / reason"],
              [[Path(r["file"]).name, r["outcome"], r.get("record_id") or "",
                r.get("sender", ""), r.get("error") or r.get("reason") or r.get("subject", "")]
               for r in results])
    if failed:
        raise typer.Exit(1)
