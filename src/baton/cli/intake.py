"""``baton intake``: bring e-mail in by hand (``.eml`` files) the way the SMTP listener does;
list the mail intake refused (``refused``) and take an IMAP message again (``imap-fetch``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from baton.cli.output import print_error, print_json, table

intake_app = typer.Typer(no_args_is_help=True,
                         help="E-mail intake: import .eml files into records; list the mail "
                              "refused.")


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
    most = eng.intake.limits.max_message_bytes
    for path in paths:
        try:
            try:
                raw = read_file(path, most)
            except MailError as exc:  # (too large to be read: intake never sees it)
                _too_large(eng.intake, path, str(exc), mailbox)
                raise
            got = eng.intake.accept(raw, via="eml", mailbox=mailbox,
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


def _too_large(intake: Any, path: Path, reason: str, mailbox: str | None) -> None:
    """Record a file too large to be read as refused, with what its start says of it."""
    from baton.intake.service import HEAD_BYTES

    try:
        with path.open("rb") as f:
            head = f.read(HEAD_BYTES)
        size: int | None = path.stat().st_size
    except OSError:
        head, size = b"", None
    intake.note_refusal("eml", f"{path.name}: {reason}", outcome="too_large", head=head,
                        size=size, mailbox=mailbox)


@intake_app.command("refused")
def intake_refused(
    mailbox: Annotated[str | None, typer.Option(
        "--mailbox", "-m", help="Only the refusals of this mailbox")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500,
                                       help="At most this many, newest first (1 to 500)")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """The mail intake refused or could not take, newest first: when, the way in (smtp, imap,
    eml, api), the mailbox, from, subject and why; IMAP ones say where the message stays
    and how to take it in once the cause is mended. Kept: the newest 10,000, for 90 days."""
    from baton.cli.context import state
    from baton.cli.output import console

    items, total = state.engine().intake.refusals(mailbox, limit)
    if as_json:
        print_json({"items": items, "total": total})
        return
    table("Refused mail", ["refused at", "via", "mailbox", "from", "subject", "reason"],
          [[r["refused_at"], r["via"] + (f" UID {r['imap']['uid']}" if r["imap"] else ""),
            r["mailbox"] or "", r["sender"] or "", r["subject"] or "",
            f"{r['outcome']}: {r['reason']}"] for r in items])
    if total > len(items):
        console.print(f"{len(items)} of {total} shown (--limit)", style="italic")
    for how in dict.fromkeys(r["remedy"] for r in items if r["via"] in ("imap", "eml")):
        console.print(how, highlight=False, markup=False)


@intake_app.command("imap-fetch")
def intake_imap_fetch(
    mailbox: Annotated[str, typer.Option("--mailbox", "-m",
                                         help="The mailbox whose imap: folder holds it")],
    uid: Annotated[int, typer.Option("--uid", min=1, help="The message's UID (as `baton "
                                     "intake refused` says it)")],
    uidvalidity: Annotated[int | None, typer.Option(
        "--uidvalidity", min=0, help="The folder's UIDVALIDITY as the refusal says it: "
                                     "refused if the folder was recreated since")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Take one message of a mailbox's IMAP folder again, now: one a poll went past (refused,
    failed, too large), once its cause is mended. A message taken already is a duplicate."""
    from baton.cli.context import state
    from baton.errors import NotFound
    from baton.intake.imap import fetch_one

    eng = state.engine()
    box = eng.intake.definitions.mailboxes().get(mailbox)
    if box is None:
        raise NotFound("mailbox", mailbox)
    got = fetch_one(eng.intake, box, uid, uidvalidity=uidvalidity,
                    env=eng.settings.secrets_env)
    if as_json:
        print_json(got.as_dict())
    else:
        table("Intake", ["UID", "outcome", "record", "from", "subject"],
              [[str(uid), got.outcome, got.record_id or "", got.sender, got.subject]])
