"""``baton export`` and ``baton import``: definitions (and people) between environments."""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.cli.output import console, print_json, progress, show_progress, table
from baton.errors import BatonError


def _engine() -> Any:
    from baton.cli.context import state

    return state.engine()


def export(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the bundle here (default: standard output)")] = None,
    include: Annotated[list[str] | None, typer.Option("--include", help="Also export: people (users with roles, groups and queues; never passwords or tokens)")] = None,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="Every version, not only the active one of each definition")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --output: print what was written as JSON (the file, its size in bytes, and what was included)")] = False,
) -> None:
    """Write a bundle (.tar.gz) of the deployed definitions, for `baton import` elsewhere.

    Examples:
      baton export --include people -o bundle.tar.gz
      baton --project ../staging import bundle.tar.gz --dry-run
    """
    from baton.runtime.bundle import export_bundle

    extras = set(include or [])
    if extras - {"people"}:
        raise typer.BadParameter(f"unknown {', '.join(sorted(extras - {'people'}))} "
                                 "(only: people)", param_hint="--include")
    if output is None and as_json:
        raise typer.BadParameter("--json prints what was written to --output FILE: give one "
                                 "(without it, the bundle itself goes to standard output)",
                                 param_hint="--output")
    if output is None and sys.stdout.isatty():
        raise typer.BadParameter("the bundle is binary: redirect it (> bundle.tar.gz) or "
                                 "give --output FILE", param_hint="--output")
    if output is not None:
        _check_writable(output)  # before the work: a wrong path is said at once
    # A bar only when a person watches (--output FILE on a terminal), never in the bundle.
    with progress("reading definitions", 2,
                  enabled=output is not None and show_progress(as_json)) as step:
        data = export_bundle(_engine(), include_people="people" in extras,
                             all_versions=all_versions)
        step(description=f"writing {output}")
        if output is not None:
            _write_whole(output, data)
        step()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    elif as_json:
        print_json({"output": str(output), "bytes": len(data), "people": "people" in extras,
                    "all_versions": all_versions})
    else:
        console.print(f"wrote {output} ({len(data)} bytes)", highlight=False)


def import_(
    bundle: Annotated[Path, typer.Argument(help="A bundle from `baton export` (- for standard input)")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print what would change; change nothing")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    max_bytes: Annotated[int | None, typer.Option("--max-bytes", min=1, help="The most the bundle may unpack to, in bytes (default: 16 MiB)")] = None,
) -> None:
    """Validate a bundle, then import it in one transaction (all of it, or nothing).

    Examples:
      baton import bundle.tar.gz --dry-run
      baton import bundle.tar.gz
    """
    from baton.runtime.bundle import (
        MAX_BUNDLE_BYTES,
        BundleError,
        apply_import,
        plan_import,
        read_bundle,
    )

    limit = max_bytes or MAX_BUNDLE_BYTES
    shown = "standard input" if str(bundle) == "-" else str(bundle)
    with progress("reading the bundle", 2 if dry_run else 3,
                  enabled=show_progress(as_json)) as step:
        data = _read(bundle, limit)
        eng = _engine()
        step(description="validating everything in it")
        try:
            members = read_bundle(data, limit)
        except BundleError as exc:
            raise BundleError(f"{shown}: {exc}") from None
        plan = plan_import(eng, members)
        step(description="importing (one transaction)")
        if not dry_run:
            apply_import(eng, plan, actor="cli")
            step()
    report = plan.report(dry_run=dry_run)  # (what POST /api/bundle/import answers)
    rows = report["changes"]
    if as_json:
        print_json(report)
        return
    table("Would change (dry run)" if dry_run else "Imported", ["kind", "name", "change"],
          [[r["kind"], r["name"], r["change"]] for r in rows])
    if not plan.writes:
        console.print("nothing to change")


def _why(exc: OSError) -> str:
    """An OS error's reason in a few words (no errno, no repeated file name)."""
    if isinstance(exc, IsADirectoryError):
        return "it is a folder"
    if isinstance(exc, FileNotFoundError):
        return "no such file or folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def _read(path: Path, limit: int) -> bytes:
    """The bundle's bytes (``-``: standard input), refused unread past ``limit`` (gzip
    makes nothing larger than what it unpacks to, but a few bytes of headers)."""
    cap = limit + 64 * 1024
    try:
        if str(path) == "-":
            data = sys.stdin.buffer.read(cap + 1)
        else:
            with path.open("rb") as f:
                data = f.read(cap + 1)
    except OSError as exc:
        raise BatonError(f"cannot read {path}: {_why(exc)}") from None
    if len(data) > cap:
        shown = "standard input" if str(path) == "-" else str(path)
        raise BatonError(f"{shown}: more than {cap:,} bytes: not a bundle of at most "
                         f"{limit:,} bytes unpacked (--max-bytes to read more)")
    return data


def _check_writable(output: Path) -> None:
    """``--output`` names a file that can be written: not a folder, in a folder that exists."""
    if output.is_dir():
        raise BatonError(f"cannot write {output}: it is a folder (name a file in it)")
    if not output.parent.is_dir():
        raise BatonError(f"cannot write {output}: folder {output.parent} does not exist")


def _write_whole(output: Path, data: bytes) -> None:
    """Write the bundle beside ``output`` under a temporary name, then rename it into
    place: an export that fails (a full disk, an interrupt) leaves no half bundle, and
    a bundle already there stays whole. A pipe or device (``-o /dev/stdout``) is written
    as it is: it cannot be renamed onto."""
    try:
        mode: int | None = output.stat().st_mode
    except FileNotFoundError:
        mode = None
    try:
        if mode is not None and not stat.S_ISREG(mode):
            with open(output, "wb") as f:
                f.write(data)
            return
        # A symlink's file is replaced, not the link.
        target = Path(os.path.realpath(output)) if mode is not None else output
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, stat.S_IMODE(mode) if mode is not None else 0o666 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise BatonError(f"cannot write {output}: {_why(exc)}") from None


def _umask() -> int:
    """The process's umask (a new bundle gets the mode ``write_bytes`` would give it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
