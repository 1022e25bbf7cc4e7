"""The ``baton`` commands (Typer): thin commands over the Engine (the API uses the same).

``baton.cli.main`` is the entry point: it answers the common read commands on SQLite
through the lean read path (``baton.cli.reads``, no Typer, no SQLAlchemy) and hands every
other command line to :func:`main` here.

Start-up cost matters: a read command (``runs list``) should answer in a fraction of a
second of CPU. So this module imports only Typer, Rich's console and light Baton modules;
the Engine (SQLAlchemy), the web stack, the worker and CEL load inside the commands that
use them, and :func:`main` hands Typer only the command named (:func:`app_for`).
``tests/unit/test_cli_imports.py`` and ``tests/e2e/test_cli_read_imports.py`` hold that
line; ``bench/cli.py`` measures.
"""

from __future__ import annotations

import copy
import dataclasses
import decimal
import json
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import typer.main
from rich.markup import escape

from baton.cli import bundle as bundle_cli
from baton.cli import complete, output, render
from baton.cli.ai import ai_app  # scikit-learn and rapidfuzz load when its command runs
from baton.cli.bench import bench_app
from baton.cli.connections import connections_app
from baton.cli.context import (
    State,  # noqa: F401 - re-exported (baton.cli.main.State)
    require_migrated,
    state,
)
from baton.cli.definitions import definitions_app
from baton.cli.importer import import_app
from baton.cli.intake import intake_app
from baton.cli.output import (
    console,
    err_console,
    error_kind,
    print_error,
    print_json,
    progress,
    run_detail,
    show_progress,
    styled,
    table,
)
from baton.cli.params import install_fast_coercion, install_flag_help, listed, one_of
from baton.cli.people import tokens_app, users_app
from baton.cli.plans import plans_app
from baton.cli.render import describe_event  # noqa: F401 - re-exported (baton.cli.main.describe_event)
from baton.clock import iso
from baton.engine.status import IncidentStatus, RunStatus, WorkItemStatus
from baton.errors import BatonError, DefinitionError, Issue, ValidationError
from baton.settings import LOG_FORMATS

install_fast_coercion()  # option values without importing pydantic (see cli/params.py)
install_flag_help()  # `--until-idle`, not `--until-idle <bool>`

# add_completion: `baton --install-completion` / `--show-completion` (Typer's); the names and
# ids come from the project (baton.cli.complete).
app = typer.Typer(no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)
records_app = typer.Typer(no_args_is_help=True, help="Create, update and read records.")
runs_app = typer.Typer(no_args_is_help=True, help="Runs: list and show them; cancel, resume or signal one.")
work_app = typer.Typer(no_args_is_help=True, help="Work items: list, claim, accept or decline an offer, complete, reassign.")
db_app = typer.Typer(no_args_is_help=True, help="The database's schema: apply pending migrations (every command applies them too).")
fallout_app = typer.Typer(no_args_is_help=True,
                          help="Steps in fallout: list them; retry, complete or skip one (ID = RUN_ID:STEP).")
app.add_typer(fallout_app, name="fallout")
incidents_app = typer.Typer(no_args_is_help=True,
                            help="Incidents (a trigger's when or an evaluation flow that raised): "
                                 "list them; retry or dismiss one.")
app.add_typer(incidents_app, name="incidents")
app.add_typer(definitions_app, name="definitions")
app.add_typer(connections_app, name="connections")
app.command("export")(bundle_cli.export)
app.add_typer(records_app, name="records")
app.add_typer(import_app, name="import")  # the importers load when their command runs
app.add_typer(runs_app, name="runs")
app.add_typer(work_app, name="work")
app.add_typer(db_app, name="db")
app.add_typer(bench_app, name="bench")
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.add_typer(intake_app, name="intake")
app.add_typer(ai_app, name="ai")
app.add_typer(plans_app, name="plans")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WideOpt = Annotated[bool, typer.Option("--wide", "-w", help="More columns (the table may need a wide terminal).")]
LimitOpt = Annotated[int, typer.Option("--limit", help="At most this many rows (1-500)")]
OffsetOpt = Annotated[int, typer.Option("--offset", help="Skip this many rows first (at most 1000; further on, page with --after)")]
RunIdArg = Annotated[str, typer.Argument(help="Run id (run_...), as `baton runs list` prints it", autocompletion=complete.run_ids)]
RecordIdArg = Annotated[str, typer.Argument(help="Record id (rec_...), as `baton records list` prints it", autocompletion=complete.record_ids)]
ItemIdArg = Annotated[str, typer.Argument(help="Work item id (wi_...), as `baton work list` prints it", autocompletion=complete.open_work_item_ids)]
AnyItemIdArg = Annotated[str, typer.Argument(help="Work item id (wi_...), as `baton work list` prints it", autocompletion=complete.work_item_ids)]
FalloutIdArg = Annotated[str, typer.Argument(help="RUN_ID:STEP, as `baton fallout list` prints it", autocompletion=complete.fallout_ids)]
IncidentIdArg = Annotated[str, typer.Argument(help="Incident id, as `baton incidents list` prints it", autocompletion=complete.open_incident_ids)]
UserOpt = Annotated[str, typer.Option("--user", "-u", help="The person acting (a user name)", autocompletion=complete.users)]
DataOpt = Annotated[str, typer.Option("--data", help="JSON object, e.g. '{\"field\": \"value\"}'")]
RUN_STATUSES = [s.value for s in RunStatus]
WORK_STATUSES = [s.value for s in WorkItemStatus]
INCIDENT_STATUSES = [s.value for s in IncidentStatus]




def _print_version(value: bool) -> None:
    if value:
        render.version()
        raise typer.Exit()


@app.callback()
def _main(
    project: Annotated[str | None, typer.Option("--project", "-p", help="Project folder (default: the nearest folder from here upward with a baton.toml)")] = None,
    db: Annotated[str | None, typer.Option("--db", help="Database URL (default: BATON_DB, else baton.toml's, else sqlite:///baton.db)")] = None,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print Baton's version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="On any error, print the full traceback, SQL statements and their values included (also BATON_DEBUG=1). Without it, a bug in Baton prints its traceback without them, to paste into a report")] = False,
) -> None:
    """Baton: durable business process orchestration.

    Commands act on the project in this folder or the nearest one above it with a
    baton.toml (or --project DIR). Outside a project only `init`, `validate FILE`, `demo`,
    `bench` and `--help`/`--version` work, unless a database is named with --db or BATON_DB.
    `baton COMMAND --help` tells more of each command.

    Exit status: 0 done; 1 an error the message explains (bad input, a database that is
    locked or away...); 2 a usage error; 70 an internal error (a bug: please report it).

    Examples:
      baton init myproject && cd myproject
      baton deploy
      baton records create Ticket --data '{"subject": "Printer on fire"}'
      baton worker --until-idle
      baton work list
    """
    state.project_dir = project
    state.db = db
    state.debug = debug


def fail(message: str, kind: str = "bad-request") -> NoReturn:
    """End the command with an error the user can act on: one line on stderr (a JSON
    object under ``--json``), exit 1."""
    print_error(message, kind=kind)
    raise typer.Exit(1)


def parse_json(text: str, what: str, *, exact: bool = False) -> dict[str, Any]:
    """``--data``/``--input`` as a JSON object. ``exact``: numbers with a fraction are
    Decimals (checked against field definitions: a ``decimal`` field keeps every digit)."""
    try:
        value = json.loads(text, parse_float=decimal.Decimal if exact else float)
    except json.JSONDecodeError as exc:
        fail(f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}")
    if not isinstance(value, dict):
        fail(f"{what} must be a JSON object like '{{\"field\": \"value\"}}'")
    return value


# ---- project and definitions ------------------------------------------------------------
@app.command()
def init(folder: Annotated[Path, typer.Argument(help="Folder to create (new, or empty)")],
         as_json: JsonOpt = False) -> None:
    """Create a project folder with example definitions and flows.

    Examples:
      baton init myproject && cd myproject && baton deploy
    """
    template = Path(__file__).resolve().parent.parent / "templates" / "project"
    try:
        existed = folder.exists()
        if existed and not folder.is_dir():
            fail(f"{folder} exists and is not a folder")
        if existed and any(folder.iterdir()):
            fail(f"{folder} exists and is not empty")
    except OSError as exc:  # (a folder that cannot be read, a parent that is a file)
        fail(f"cannot create {folder}: {exc.strerror or exc}")
    try:
        shutil.copytree(template, folder, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    except OSError as exc:  # (no permission, a read-only or special file system, disk full)
        _undo_init(folder, existed)
        reason = exc.strerror or str(exc)
        if isinstance(exc, shutil.Error):  # (several files failed: the first one's reason)
            reason = str(exc.args[0][0][2]) if exc.args and exc.args[0] else str(exc)
        fail(f"cannot create {folder}: {reason}")
    if as_json:
        print_json({"project": str(folder.resolve()),
                    "files": sorted(p.relative_to(folder).as_posix()
                                    for p in folder.rglob("*") if p.is_file())})
        return
    console.print(f"Created project in [bold]{folder}[/bold]. Next:\n"
                  f"  cd {folder} && baton deploy && baton records create Ticket --data "
                  "'{\"subject\": \"Printer on fire\"}' && baton worker --until-idle && baton work list")


def _undo_init(folder: Path, existed: bool) -> None:
    """Remove what a failed ``baton init`` copied: the folder it made, or (an empty folder
    given) what it put in it. Nothing else was there to lose."""
    if not existed:
        shutil.rmtree(folder, ignore_errors=True)
        return
    try:
        children = list(folder.iterdir())
    except OSError:
        return
    for child in children:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _paths(path: Path | None) -> list[Path]:
    if path is not None:
        return [path]
    return [state.project().definitions_dir]


@app.command()
def validate(path: Annotated[Path | None, typer.Argument(help="File or folder (default: definitions/)")] = None,
             as_json: JsonOpt = False) -> None:
    """List every problem in the definitions, with file, line and path. An mcp step's tool
    and argument names are checked against its server's tools when it can be reached (a
    warning says when it cannot).

    Outside a project, `validate FILE` checks the files alone: their flows and the object
    types deployed elsewhere are not known, so those references are not checked.

    Files are named as the path was given (`baton validate definitions` prints
    definitions/ticket.yaml); with no path, by their absolute path, as `baton deploy` does.

    Validate never creates the database: when its SQLite file does not exist yet (nothing
    deployed), the files are checked against no deployed definitions, and it says so.

    Exit status 1 when there is a problem (a warning alone is not one).

    Examples:
      baton validate
      baton validate definitions/ticket_flow.yaml --json
    """
    warnings: list[Issue] = []
    if path is not None and state.find_project() is None:
        from baton.definitions.loader import check_definitions

        _docs, issues = check_definitions([path], known_flows=None, unknown_objects=True,
                                          warnings=warnings)
        err_console.print("[dim]outside a project: flow names and deployed object types "
                          "are not checked[/dim]")
    elif (missing := _missing_sqlite(state.database_url())) is not None:
        # Nothing is deployed yet: the files are checked against no deployed definitions,
        # on an empty database of its own that goes with it (the project's is not made).
        import tempfile

        from baton.runtime.engine import Engine

        state.project().import_flows()
        err_console.print(f"[dim]database {escape(missing)} does not exist yet: nothing is "
                          "deployed to check against (validate does not create it)[/dim]")
        with tempfile.TemporaryDirectory(prefix="baton-validate-") as folder:
            eng = Engine(f"sqlite:///{Path(folder) / 'empty.db'}", settings=state.settings())
            try:
                issues = _validate_on(eng, path, warnings)
            finally:
                eng.close()
    else:
        issues = _validate_on(state.engine(flows=True), path, warnings)
    if as_json:
        print_json(issues_json(issues + warnings))
    else:
        for i in sorted(issues + warnings, key=lambda i: (i.file, i.line)):
            console.print(str(i), highlight=False, markup=False)
        if warnings:
            err_console.print(f"[yellow]{len(warnings)} warning"
                              f"{'s' if len(warnings) != 1 else ''}[/yellow]")
        if issues:
            err_console.print(f"[red]{len(issues)} problem{'s' if len(issues) != 1 else ''}[/red]")
        else:
            console.print("[green]valid[/green]")
    if issues:
        raise typer.Exit(1)


def _validate_on(eng: Any, path: Path | None, warnings: list[Issue]) -> list[Issue]:
    """``validate``'s checks of the files under ``path`` against what ``eng``'s database
    has deployed: the problems (warnings go to ``warnings``)."""
    from baton.cli.connections import mcp_schema_check

    issues: list[Issue] = eng.validate(_paths(path), warnings=warnings)
    found, unchecked, _checked = mcp_schema_check(eng, _paths(path))
    warnings += [dataclasses.replace(w, level="warning") for w in unchecked]
    return issues + found


def _missing_sqlite(url: str) -> str | None:
    """The path of the SQLite file ``url`` names when there is none there yet (or it is
    empty: no database was ever written in it); None for one that exists, or PostgreSQL."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        u = make_url(url)
    except ArgumentError:  # (not a URL: opening it says so, as every command does)
        return None
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    file = Path(u.database).expanduser()
    try:
        return None if file.stat().st_size > 0 else str(file)
    except FileNotFoundError:
        return str(file)
    except OSError:  # (not ours to judge here: opening it says what is wrong)
        return None


@app.command()
def deploy(path: Annotated[Path | None, typer.Argument(help="File or folder (default: definitions/)")] = None,
           as_json: JsonOpt = False,
           skip_tool_check: Annotated[bool, typer.Option(
               "--skip-tool-check", help="Do not ask the MCP servers for their tools (a deploy "
                                         "where they cannot be reached)")] = False) -> None:
    """Validate and deploy definitions; a changed definition becomes a new version.

    All or nothing: when a definition has a problem, each is listed (as `baton validate`
    lists them) and nothing is deployed. An unchanged file keeps its version.

    Examples:
      baton deploy
      baton deploy definitions/routing.yaml
    """
    eng = state.engine(flows=True)
    if not skip_tool_check:  # what validate checks: mcp steps against their servers' tools
        from baton.cli.connections import mcp_schema_check
        from baton.errors import DefinitionError

        found, unchecked, _checked = mcp_schema_check(eng, _paths(path))
        if found:
            raise DefinitionError(found)
        for issue in unchecked:
            err_console.print(f"warning (not checked): {issue}", highlight=False, markup=False)
    phases = {"read": "reading files", "validate": "validating", "write": "deploying"}
    with progress("reading files", None, enabled=show_progress(as_json)) as advance:
        def on_progress(phase: str, done: int, total: int) -> None:
            advance(0, total=total, description=phases.get(phase, phase), completed=done)

        results = eng.deploy(_paths(path), on_progress=on_progress)
    if as_json:
        print_json([{"kind": r.kind, "name": r.name, "version": r.version, "changed": r.changed}
                    for r in results])
        return
    # An unchanged text keeps its version, and does not make it active: after a rollback
    # (`definitions activate`) the older version stays in effect, which the table says.
    active = {(row.kind, row.name): row.version for row in eng.definitions.list_versions()
              if row.active} if not all(r.changed for r in results) else {}

    def unchanged(r: Any) -> str:
        now = active.get((r.kind, r.name))
        return ("unchanged" if now == r.version
                else "unchanged; deactivated: no version is active" if now is None
                else f"unchanged; not the active version: v{now} is")

    table("Deployed", ["kind", "name", "version", ""],
          [[r.kind, r.name, r.version, "new version" if r.changed else unchanged(r)]
           for r in results])


@db_app.command("upgrade")
def db_upgrade(as_json: JsonOpt = False) -> None:
    """Apply pending schema migrations (every command applies them too: this one only
    migrates, e.g. before starting workers with --no-migrate)."""
    from baton.cli.context import opening
    from baton.store.sql import SqlStore

    url = state.database_url()
    store = SqlStore(url, **state.settings().store_options())
    with opening(url):
        applied = store.migrate()
    if as_json:
        print_json({"applied": list(applied)})
        return
    console.print("\n".join(f"applied {a}" for a in applied) or "schema is up to date")


# ---- workers ----------------------------------------------------------------------------
LogFormatOpt = Annotated[str | None, typer.Option("--log-format", callback=one_of(LOG_FORMATS), help=f"{listed(LOG_FORMATS)} (json: one object a line, with run, step and job ids); default: BATON_LOG_FORMAT, else text")]


def at_least(low: int) -> Any:
    """An option callback: a whole number of at least ``low`` (a usage error otherwise)."""
    def check(value: int | None) -> int | None:
        if value is not None and value < low:
            raise typer.BadParameter(f"must be at least {low}, got {value}")
        return value

    return check


def more_than(low: float) -> Any:
    """An option callback: a number greater than ``low`` (a usage error otherwise)."""
    def check(value: float | None) -> float | None:
        if value is not None and not value > low:  # (NaN too)
            raise typer.BadParameter(f"must be more than {low:g}, got {value:g}")
        return value

    return check


def a_port(value: int | None) -> int | None:
    """An option callback: a TCP port, 1-65535."""
    if value is not None and not 1 <= value <= 65535:
        raise typer.BadParameter(f"a port is between 1 and 65535, got {value}")
    return value


def _configure_logs(fmt: str | None) -> bool:
    """Send the process's log lines to stderr in ``fmt`` (else BATON_LOG_FORMAT's): True
    when that is JSON, so that what the command itself says goes there too (:func:`_say`)."""
    from baton import logs

    fmt = fmt or state.settings().log_format
    logs.configure(fmt)
    return fmt == "json"


def _say(as_log: bool, rich: str, plain: str | None = None, *, level: str = "info") -> None:
    """What ``serve`` and ``worker`` tell a person (where they listen, the first admin,
    their totals): printed (``rich``, Rich markup) with text logs; with JSON logs a log
    line (``plain``, else ``rich`` without its markup) of logger ``baton.cli``, so that
    stdout and stderr hold JSON lines alone for a log pipeline."""
    if not as_log:
        console.print(rich)
        return
    import logging

    from rich.text import Text

    getattr(logging.getLogger("baton.cli"), level)(
        plain if plain is not None else Text.from_markup(rich).plain)


@app.command()
def worker(
    until_idle: Annotated[bool, typer.Option("--until-idle", help="Exit as soon as no job is ready, even with timers due later (scripts, tests); without it the workers run until stopped. No IMAP mailbox is polled with it (a folder may get mail at any time: 'until idle' would never come); run `baton worker` or `baton serve` for that")] = False,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", callback=at_least(1), help="Worker threads in this process (at least 1)")] = 1,
    batch: Annotated[int, typer.Option(callback=at_least(1), help="Jobs claimed per transaction (at least 1); their results commit together, unless their flows run longer than --batch-hold")] = 32,
    batch_hold: Annotated[float, typer.Option("--batch-hold", callback=more_than(0), help="Seconds a batch runs its jobs before it commits what is done and keeps the rest, still claimed, for its next batch (more than 0): slow flows' results are seen, and a killed worker runs its flows again, no later than this after they ran")] = 1.0,
    heartbeat_timeout: Annotated[float, typer.Option(callback=more_than(0), help="Seconds before a silent worker's jobs are taken over (more than 0)")] = 30.0,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not apply schema migrations at start")] = False,
    log_format: LogFormatOpt = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", callback=a_port, help="Serve this process's Prometheus metrics (steps, e-mails, jobs) on this port at /metrics")] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address for --metrics-port")] = "127.0.0.1",
    no_imap: NoImapOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="When the workers stop, print their totals as one JSON object (jobs, steps completed and failed)")] = False,
) -> None:
    """Run the workers: background steps, condition checks, re-evaluation (and poll the
    mailboxes with an imap: source, except with --until-idle).

    Until stopped (SIGTERM or Ctrl-C: each worker finishes the job in hand, commits it and
    releases the rest; after Ctrl-C the exit status is 130, and a second Ctrl-C stops at once),
    or with --until-idle until nothing is ready (without polling IMAP: mail may come at any
    time, so there is no "idle" to wait for). Workers run the flow code they imported at
    start: restart them after changing a flow module (they log a warning when one changed).

    Examples:
      baton worker --until-idle
      baton worker --concurrency 4 --log-format json --metrics-port 9100
    """
    from baton.runtime.worker import run_workers

    as_log = _configure_logs(log_format)
    eng = _engine_watching_flows(migrate=not no_migrate)
    if no_migrate:
        require_migrated(eng, state.database_url())
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from baton.runtime.metrics import process_registry

        start_http_server(metrics_port, addr=metrics_host, registry=process_registry())
    workers: list[Any] = []
    import threading

    # SIGTERM and Ctrl-C (SIGINT) ask every worker to finish the job in hand and release
    # the rest. The handler only notes it (no I/O in a handler); the loop below tells it
    # and stops the workers, again for any that starts after (a worker clears its stop as
    # it starts). The main thread waits on an Event, never in Thread.join: a
    # KeyboardInterrupt raised inside join() marks a running thread as stopped (CPython
    # 3.11's _wait_for_tstate_lock), and the process then exited with the flow in hand
    # abandoned and run again later. A second Ctrl-C stops at once (told so).
    asked: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGINT and signal.SIGINT in asked:
            _force_stop()
        asked.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:  # (ignored: left ignored, as
        signal.signal(signal.SIGINT, on_signal)  # a background job of a shell starts)

    def stop() -> None:
        for w in workers:
            if not w.stopping.is_set():
                w.stop()

    polling = None if no_imap or until_idle else _imap_polling(eng)
    # An error that ends a worker thread ends the command, told as any other (a database
    # without Baton's tables under --no-migrate, a bug); not a thread's traceback followed
    # by "0 jobs" and exit status 0. The other workers stop: the process exits with it.
    raised: list[BaseException] = []

    def record(args: threading.ExceptHookArgs) -> None:  # (run_workers' threads, concurrency > 1)
        if args.thread is None or not args.thread.name.startswith("baton-worker-") \
                or args.exc_value is None:
            previous_hook(args)
            return
        raised.append(args.exc_value)
        stop()

    finished = threading.Event()

    def run() -> None:
        try:
            run_workers(eng, concurrency, until_idle=until_idle, batch=batch,
                        batch_hold=batch_hold, heartbeat_timeout=heartbeat_timeout,
                        _created=workers)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            raised.append(exc)
        finally:
            finished.set()

    previous_hook, threading.excepthook = threading.excepthook, record
    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    told = False
    # A person watching `--until-idle` work through many jobs sees how far it is; the
    # total is not known ahead (each job may enqueue more), so the bar counts up.
    with progress("worker: jobs done", None,
                  enabled=until_idle and not as_log and show_progress(as_json)) as advance:
        shown = 0
        while not finished.wait(0.2):
            if asked:
                if not told:
                    told = True
                    _say_stopping(as_log, signal.SIGINT in asked)
                stop()
            done = sum(w.stats.jobs for w in workers)
            advance(done - shown)
            shown = done
    runner.join()  # (it has ended: run() set `finished` last)
    threading.excepthook = previous_hook
    if polling is not None:
        polling.stop()
    if raised:
        raise raised[0]
    # (every worker has ended: its totals count what it committed)
    jobs = sum(w.stats.jobs for w in workers)
    done = sum(w.stats.steps_completed for w in workers)
    failed = sum(w.stats.steps_failed for w in workers)
    if as_json:
        print_json({"workers": len(workers), "jobs": jobs, "steps_completed": done,
                    "steps_failed": failed})
    else:
        _say(as_log, f"{len(workers)} worker(s): {jobs} jobs, {done} steps completed, "
                     f"{failed} failed")
    if signal.SIGINT in asked:  # Ctrl-C: stopped as asked, but not done (as any command)
        raise typer.Exit(130)


def _say_stopping(as_log: bool, ctrl_c: bool) -> None:
    """What a worker asked to stop says on stderr (JSON logs: a log line)."""
    text = "stopping after the job in hand; the others are released"
    if ctrl_c:
        text += " (Ctrl-C again to stop at once: the job in hand then runs again later)"
    if as_log:
        import logging

        logging.getLogger("baton.cli").warning(text)
    else:
        err_console.print(text, highlight=False, markup=False)


def _force_stop() -> NoReturn:
    """A second Ctrl-C on ``baton worker``: exit now (status 130), from the signal handler.
    Nothing half-done is committed (each batch commits in one transaction); the jobs in hand
    go back to the queue when the workers' heartbeat times out (--heartbeat-timeout), and
    run again then. (os.write and os._exit: nothing that takes a lock the interrupted main
    thread may hold.)"""
    import os

    os.write(2, b"\nstopped at once: the jobs in hand run again after the heartbeat timeout\n")
    os._exit(130)


def _engine_watching_flows(*, migrate: bool) -> Any:
    """The engine of a process that runs workers (``worker``, ``serve``), its project's flow
    modules imported, their files noted just before: a flow module changed since is told
    once in the log (the workers keep running the code they imported), and a step whose
    flow was added since says so (``baton.steps.background.FlowFiles``)."""
    from baton.steps.background import watch_flow_files

    project = state.project()
    files = watch_flow_files(project.root, project.flows)
    eng = state.engine(flows=True, migrate=migrate)
    files.add_imported()
    return eng


NoImapOpt = Annotated[bool, typer.Option(
    "--no-imap", help="Do not poll the mailboxes that have an imap: source (another process does)")]


def _imap_polling(eng: Any) -> Any:
    """Poll the mailboxes with an ``imap:`` source in a background thread (each at its
    ``every``; mailboxes deployed later are picked up)."""
    from baton.intake.imap import ImapPolling

    polling = ImapPolling(eng.intake, tick=5.0, env=eng.settings.secrets_env)
    polling.start()
    return polling


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", callback=a_port, help="Port to listen on (1-65535)")] = 8000,
    workers_: Annotated[int, typer.Option("--workers", "-w", callback=at_least(0), help="Worker threads in this process (0: run workers separately with `baton worker`)")] = 1,
    base_url: Annotated[str | None, typer.Option("--base-url", help="How browsers reach this server (links in e-mails; default: BATON_BASE_URL, else its own address)")] = None,
    no_migrate: Annotated[bool, typer.Option("--no-migrate", help="Do not apply schema migrations at start")] = False,
    log_format: LogFormatOpt = None,
    smtp_at: Annotated[str | None, typer.Option("--smtp", help="Also receive e-mail over SMTP on HOST:PORT (e.g. 127.0.0.1:2525) into the deployed mailboxes")] = None,
    smtp_max_bytes: Annotated[int | None, typer.Option("--smtp-max-bytes", callback=at_least(1), help="Largest message the SMTP listener takes (bytes; default: BATON_INTAKE_MAX_MESSAGE_BYTES, else 25 MiB)")] = None,
    smtp_domains: Annotated[list[str] | None, typer.Option("--smtp-domain", help="A recipient domain the SMTP listener takes (repeat; default: any the mailboxes list)")] = None,
    no_imap: NoImapOpt = False,
) -> None:
    """Run the REST API, the web UI and the workers in one process until stopped
    (SIGTERM or Ctrl-C: the workers finish the job in hand and release the rest).

    On a database without users it says how to add the first admin.

    Examples:
      baton serve
      baton serve --host 0.0.0.0 --port 8080 --workers 0 --smtp 127.0.0.1:2525
    """
    import threading

    import uvicorn

    from baton.cli.context import opening
    from baton.runtime.flowpool import FlowPool
    from baton.runtime.worker import Worker
    from baton.web import create_app

    smtp_address = _smtp_address(smtp_at) if smtp_at is not None else None
    as_log = _configure_logs(log_format)
    smtp = state.settings().smtp
    url = (base_url or smtp.base_url
           or f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}").rstrip("/")
    state.configure(smtp=dataclasses.replace(smtp, base_url=url),  # links in e-mails
                    public_url=state.settings().public_url or url)  # callback URLs
    eng = _engine_watching_flows(migrate=not no_migrate)
    with opening(state.database_url()):  # (with --no-migrate, the first connection)
        if no_migrate:
            require_migrated(eng, state.database_url())
        users = eng.directory.count_users()
    if users == 0:
        _say(as_log, "[yellow]No users yet.[/yellow] Create the first admin (in another terminal):\n"
                     "  baton users add admin --role admin --email you@example.com --password\n"
                     f"then log in at {url}/login (API: `baton tokens create admin`).",
             "No users yet. Create the first admin: baton users add admin --role admin "
             f"--email you@example.com --password; then log in at {url}/login (API: "
             "`baton tokens create admin`)", level="warning")
    pool = FlowPool(max(1, workers_), eng.settings.flow_memory_mb)  # the threads share it
    workers = [Worker(eng, flow_pool=pool) for _ in range(workers_)]
    threads = [threading.Thread(target=w.run, name=f"baton-worker-{i}", daemon=True)
               for i, w in enumerate(workers)]
    listener = polling = None
    stop = _StopOnSignal()
    try:
        for t in threads:
            t.start()
        if smtp_address is not None:
            from baton.intake.smtp import SmtpListener

            smtp_host, smtp_port = smtp_address
            listener = SmtpListener(eng.intake, smtp_host, smtp_port, max_bytes=smtp_max_bytes,
                                    allowed_domains=smtp_domains or ())
            listener.start()
            _say(as_log, f"Receiving e-mail over SMTP at {smtp_host}:{listener.port}.")
        polling = None if no_imap else _imap_polling(eng)
        _say(as_log, f"Baton at {url} (API docs {url}/docs) with {len(workers)} worker "
                     "thread(s). Stop with Ctrl-C.")
        app = create_app(eng, base_url=url)
        from baton.runtime import heap

        eng.warm()  # definitions parsed now, not in the first requests' time
        heap.settle()  # (a long-running process: see baton.runtime.heap)
        # proxy_headers=False: forwarding headers are believed from BATON_TRUSTED_PROXIES
        # only (baton.web.proxies), not from whatever uvicorn trusts by default.
        from baton.logs import RequestIds  # (each request's id on its log lines)

        stop.server = uvicorn.Server(uvicorn.Config(
            RequestIds(app), host=host, port=port, log_level="info", proxy_headers=False,
            log_config=None))  # our handlers and format
        if not stop.requested:
            stop.server.run()
    finally:
        import logging

        stop.cleaning = True  # (a signal from now on stops at once)
        if stop.requested and workers and not stop.forced:
            logging.getLogger("baton.cli").info(
                "stopping: the workers finish the job in hand and release the rest "
                "(Ctrl-C again to stop at once: the jobs in hand then run again later)")
        if listener is not None:
            listener.stop()
        if polling is not None:
            polling.stop()
        for w in workers:  # finish the job in hand, release the rest (Worker.run's finally)
            w.stop()
        for t in threads:  # (join with a timeout: the handler raises nothing into it)
            while t.is_alive() and not stop.forced:
                t.join(0.2)
        if stop.forced and any(t.is_alive() for t in threads):
            logging.getLogger("baton.cli").warning(
                "stopped at once: the jobs in hand run again after the heartbeat timeout")
        pool.close()
        stop.restore()


def _smtp_address(text: str) -> tuple[str, int]:
    """``--smtp HOST:PORT``, checked before anything starts (port 0: any free port)."""
    from baton.intake.smtp import parse_address

    host, port = parse_address(text)
    if port > 65535:
        raise BatonError(f"--smtp: a port is between 0 and 65535, got {port}")
    return host, port


class _StopOnSignal:
    """``baton serve``'s SIGTERM and SIGINT handler: a graceful stop, exit status 0.

    While uvicorn serves, its own handlers take these signals; when it has shut down it puts
    back the handlers it found (these) and raises the signal again, for the program that
    embeds it (uvicorn's ``Server.capture_signals``). With the default SIGTERM handler that
    killed the process (status 143) before ``serve``'s cleanup ran: its workers' claimed
    jobs and worker rows stayed behind until another worker's heartbeat timeout. Here the
    signal only asks for the stop; a signal before uvicorn serves stops it as soon as it
    starts (or before). The cleanup waits for the workers to finish the job in hand, however
    long it takes; a second signal (Ctrl-C again) stops at once: the jobs in hand go back
    to the queue when the workers' heartbeat times out. A second one is counted whenever it
    comes: during the cleanup, and during uvicorn's own shutdown too, where uvicorn takes it
    (its force quit) and, once shut down, raises both here again (the stop then waited for
    the workers, and it took a third Ctrl-C)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        import threading

        self.requested = False
        self.received = 0  # signals this handler was given (uvicorn's taken ones included)
        self.cleaning = False  # serve's cleanup has begun
        self.forced = False  # a second signal came: stop without waiting for the workers
        self.server: Any = None  # the uvicorn.Server, once made
        # (Only the main thread may set handlers; uvicorn then leaves signals alone too.)
        main = threading.current_thread() is threading.main_thread()
        self._previous = {sig: signal.signal(sig, self) for sig in self.SIGNALS} if main else {}

    def __call__(self, signum: int, frame: Any) -> None:
        self.received += 1
        if self.cleaning or self.received > 1:
            self.forced = True
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True  # (uvicorn starting: it stops once started)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# ---- paged lists --------------------------------------------------------------------------
AfterOpt = Annotated[str | None, typer.Option(
    "--after", help="The cursor a previous page printed: the page after it")]
MAX_PAGE, MAX_OFFSET = 500, 1000


def _page_size(limit: int) -> int:
    """``--limit`` of a paged list: 1 to MAX_PAGE, or a usage error (exit 2, as a bad
    ``--status`` or a ``--limit`` that is not a number)."""
    if not 1 <= limit <= MAX_PAGE:
        raise typer.BadParameter(f"must be from 1 to {MAX_PAGE}, got {limit}",
                                 param_hint="'--limit'")
    return limit


def _at_least_one(limit: int) -> int:
    """``--limit`` of a list without pages (``fallout list``, ``incidents list``): a limit
    below 1 (SQLite reads -1 as no limit at all) is refused as a usage error."""
    if limit < 1:
        raise typer.BadParameter(f"must be at least 1, got {limit}", param_hint="'--limit'")
    return limit


def _bounded_offset(offset: int) -> int:
    if not 0 <= offset <= MAX_OFFSET:
        raise typer.BadParameter(f"must be from 0 to {MAX_OFFSET} (further on, page with "
                                 f"--after), got {offset}", param_hint="'--offset'")
    return offset


# ---- runs ---------------------------------------------------------------------------------
@app.command()
def start(name: Annotated[str, typer.Argument(help="The orchestration's name (one with trigger: {type: autolaunched})", autocompletion=complete.orchestrations)],
          input: Annotated[str, typer.Option("--input", help="The run's input as a JSON object")] = "{}",
          record: Annotated[str | None, typer.Option("--record", help="Record id the run works on", autocompletion=complete.record_ids)] = None,
          as_json: JsonOpt = False) -> None:
    """Start an autolaunched orchestration (a record-triggered one starts by itself when
    its record is created or changed).

    Examples:
      baton start refund_check --input '{"reason": "duplicate charge"}'
      baton start dealer_case --record REC_ID --json
    """
    from baton.runtime.views import run_summary

    run = state.engine(flows=True).start(name, parse_json(input, "--input", exact=True), record_id=record, actor="cli")
    if as_json:
        print_json(run_summary(run))
    else:
        # (a run that ended at once is in no stage; one that failed says why)
        where = f", stage {escape(run.current_stage)}" if run.current_stage else ""
        why = f": {escape(str(run.error.get('message')))}" if run.error else ""
        console.print(f"started run [bold]{run.id}[/bold] of {run.orchestration} v{run.version} "
                      f"({styled(run.status.value)}{where}{why})")


@runs_app.command("list")
def runs_list(orchestration: Annotated[str | None, typer.Option("--orchestration", "-o", help="Only runs of this orchestration", autocompletion=complete.orchestrations)] = None,
              status: Annotated[str | None, typer.Option("--status", callback=one_of(RUN_STATUSES), help=f"Only runs with this status: {listed(RUN_STATUSES)}")] = None,
              stage: Annotated[str | None, typer.Option("--stage", help="Only runs now in this stage")] = None,
              record: Annotated[str | None, typer.Option("--record", help="Only runs of this record (id)", autocompletion=complete.record_ids)] = None,
              attention: Annotated[bool, typer.Option(
                  "--attention", help="Only runs that need attention: a step in fallout or "
                                      "past its SLA")] = False,
              limit: LimitOpt = 50, offset: OffsetOpt = 0, after: AfterOpt = None,
              wide: WideOpt = False, as_json: JsonOpt = False) -> None:
    """List runs, newest first (a page: --after NEXT gives the following one)."""
    from baton.runtime.views import run_summary_row

    eng = state.engine()
    found = eng.page_runs(orchestration=orchestration, status=status, current_stage=stage,
                          record_id=record, attention=attention or None, after=after,
                          limit=_page_size(limit), offset=_bounded_offset(offset))
    render.next_hint(found.next)
    now = iso(eng.clock.now())
    render.runs_list([run_summary_row(r, now) for r in found.rows], wide=wide, as_json=as_json)


@runs_app.command("show")
def runs_show(run_id: RunIdArg, as_json: JsonOpt = False) -> None:
    """A run's stages and steps with their status, and the decisions taken.

    Examples:
      baton runs show RUN_ID
    """
    run = state.engine().get_run(run_id)
    if as_json:
        print_json(run_detail(state.engine(), run))
        return
    eng = state.engine()
    render.runs_show(run, eng.child_runs(run.id), eng.run_events(run.id))


@runs_app.command("cancel")
def runs_cancel(run_id: RunIdArg, reason: Annotated[str, typer.Option("--reason", help="Why (audited)")] = "canceled from the CLI",
                as_json: JsonOpt = False) -> None:
    """Cancel a run; its open work items are canceled too. A fulfillment plan's run is
    canceled as its plan (`baton plans cancel`: refused past its point of no return, else
    its compensation run rolls back what its steps did)."""
    from baton.runtime.views import run_summary

    eng = state.engine()
    run = eng.cancel_run(run_id, reason, actor="cli")
    if as_json:
        print_json(run_summary(run))
        return
    plan = eng.run_plan(run.id)
    rollback = (f"; the plan of order {plan.order_id}: its rollbacks run in "
                f"{plan.compensation_run_id}" if plan is not None and plan.compensation_run_id
                and plan.compensation_run_id != run.id else "")
    console.print(f"run {run.id} {styled(run.status.value)}{escape(rollback)}")


@runs_app.command("resume")
def runs_resume(run_id: RunIdArg, reason: Annotated[str, typer.Option("--reason", help="Why (audited)")],
                as_json: JsonOpt = False) -> None:
    """Resume a failed run after its cause is fixed: its failed steps run again."""
    from baton.runtime.views import run_summary

    run = state.engine().resume_run(run_id, reason, actor="cli")
    print_json(run_summary(run)) if as_json else console.print(f"run {run.id} {styled(run.status.value)}")


@runs_app.command("signal")
def runs_signal(run_id: RunIdArg,
                name: Annotated[str, typer.Argument(help="The signal's name (a pause step's `signal:`)")],
                data: Annotated[str, typer.Option("--data", help="JSON object: the waiting steps' output")] = "{}",
                as_json: JsonOpt = False) -> None:
    """Send a named signal: pause steps waiting for it complete with --data as their output.

    Examples:
      baton runs signal RUN_ID documents_received --data '{"pages": 3}'
    """
    from baton.runtime.views import run_summary

    run = state.engine().signal(run_id, name, parse_json(data, "--data"), actor="cli")
    print_json(run_summary(run)) if as_json else console.print(
        f"signal {name} delivered; run {run.id} {styled(run.status.value)}")


# ---- fallout ------------------------------------------------------------------------------
@fallout_app.command("list")
def fallout_list(limit: Annotated[int, typer.Option("--limit", help="At most this many steps (at least 1)")] = 100,
                 as_json: JsonOpt = False) -> None:
    """Steps in fallout, with their error; ID is RUN_ID:STEP."""
    render.fallout_list(state.engine().list_fallout(limit=_at_least_one(limit)), as_json=as_json)


def _fallout(action: str, fallout_id: str, reason: str, data: str | None, as_json: bool) -> None:
    from baton.runtime.views import run_summary

    output = parse_json(data, "--data") if data is not None else None
    run = state.engine().resolve_fallout(fallout_id, action, reason=reason, actor="cli",
                                         output=output)
    print_json(run_summary(run)) if as_json else console.print(
        f"{fallout_id}: {action} done; run {run.id} {styled(run.status.value)}")


ReasonOpt = Annotated[str, typer.Option("--reason", help="Why (audited)")]


@fallout_app.command("retry")
def fallout_retry(fallout_id: FalloutIdArg, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Run the step again (its retry policy applies afresh)."""
    _fallout("retry", fallout_id, reason, None, as_json)


@fallout_app.command("complete")
def fallout_complete(fallout_id: FalloutIdArg, reason: ReasonOpt,
                     data: Annotated[str, typer.Option("--data", help="The step's output as JSON")] = "{}",
                     as_json: JsonOpt = False) -> None:
    """Complete the step by hand with --data as its output (checked against its output: specs).

    Examples:
      baton fallout complete RUN_ID:lookup --data '{"account": "ACME"}' --reason "looked up by hand"
    """
    _fallout("complete", fallout_id, reason, data, as_json)


@fallout_app.command("skip")
def fallout_skip(fallout_id: FalloutIdArg, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Skip the step: its dependents go on as if it had completed."""
    _fallout("skip", fallout_id, reason, None, as_json)


# ---- incidents ----------------------------------------------------------------------------
@incidents_app.command("list")
def incidents_list(
    status: Annotated[list[str] | None, typer.Option(
        "--status", callback=one_of(INCIDENT_STATUSES),
        help=f"{listed(INCIDENT_STATUSES)} (default: open); repeat for several")] = None,
    limit: Annotated[int, typer.Option("--limit", help="At most this many incidents (at least 1)")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Incidents, oldest first, with the expression (or flow), the record and the error."""
    render.incidents_list(state.engine().list_incidents(statuses=status or ["open"],
                                                        limit=_at_least_one(limit)), as_json=as_json)


def _incident(action: str, incident_id: str, reason: str, as_json: bool) -> None:
    eng = state.engine()
    act = eng.retry_incident if action == "retry" else eng.dismiss_incident
    inc = act(incident_id, reason=reason, actor="cli")
    if as_json:
        print_json(inc)
        return
    started = f"; run {inc['run_id']} started" if action == "retry" and inc["kind"] == \
        "trigger_failed" and inc["run_id"] else ""
    if inc.get("note"):  # (superseded by a later write: the run, if any, is not the retry's)
        started = f": {inc['note']}"
    error = f" ({inc['error']})" if inc["status"] == "open" else ""
    console.print(f"{incident_id}: {action} done; {styled(inc['status'])}{started}{error}")


@incidents_app.command("retry")
def incidents_retry(incident_id: IncidentIdArg, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Evaluate again, now: a trigger that holds starts its run; an error keeps it open.

    A trigger that a later write of the record evaluated since (starting its run, or not)
    is not evaluated again: the incident is resolved as superseded by that write."""
    _incident("retry", incident_id, reason, as_json)


@incidents_app.command("dismiss")
def incidents_dismiss(incident_id: IncidentIdArg, reason: ReasonOpt, as_json: JsonOpt = False) -> None:
    """Close the incident without evaluating it again."""
    _incident("dismiss", incident_id, reason, as_json)


# ---- records ------------------------------------------------------------------------------
@records_app.command("create")
def records_create(object_type: Annotated[str, typer.Argument(help="Object type (a deployed `kind: object`), e.g. Ticket", autocompletion=complete.object_types)],
                   data: Annotated[str, typer.Option("--data", help="The record's fields as a JSON object")] = "{}",
                   children: Annotated[list[str] | None, typer.Option(
                       "--children", help="TYPE=JSON_LIST: child records created with it in one "
                                          "transaction, e.g. an order's lines: "
                                          "OrderLine='[{\"product\": \"DOCK\"}]' (a ref to a "
                                          "line's own type may be \"#N\", the Nth child)")] = None,
                   as_json: JsonOpt = False) -> None:
    """Create a record; orchestrations triggered on create start with it.

    Examples:
      baton records create Ticket --data '{"subject": "Printer on fire"}'
      baton records create Order --data '{"number": "O-1"}' --children OrderLine='[{"product": "DOCK"}]'
    """
    kids: dict[str, Any] = {}
    for given in children or []:
        ctype, sep, text = given.partition("=")
        if not sep or not ctype:
            raise typer.BadParameter(f"expected TYPE=JSON_LIST, got {given[:60]!r}",
                                     param_hint="--children")
        try:
            rows = json.loads(text, parse_float=decimal.Decimal)
        except json.JSONDecodeError as exc:
            fail(f"--children {ctype} is not valid JSON: {exc.msg} at column {exc.colno}")
        if not isinstance(rows, list):
            fail(f"--children {ctype} must be a JSON list of objects")
        kids[ctype] = rows
    rec = state.engine().create_record(object_type, parse_json(data, "--data", exact=True),
                                       actor="cli", children=kids or None)
    print_json(rec) if as_json else console.print(
        f"created {object_type} [bold]{rec['id']}[/bold]")


@records_app.command("update")
def records_update(record_id: RecordIdArg,
                   data: Annotated[str, typer.Option("--data", help="The fields to change as a JSON object")],
                   version: Annotated[int | None, typer.Option("--version", help="Fail unless the record is at this version")] = None,
                   as_json: JsonOpt = False) -> None:
    """Update fields of a record (optimistic concurrency with --version).

    Examples:
      baton records update REC_ID --data '{"status": "Closed"}' --version 2
    """
    rec = state.engine().update_record(record_id, parse_json(data, "--data", exact=True), expected_version=version,
                                       actor="cli")
    print_json(rec) if as_json else console.print(f"updated {record_id} (version {rec['version']})")


@records_app.command("show")
def records_show(record_id: RecordIdArg, as_json: JsonOpt = False) -> None:
    """A record's fields, with its version and times, and its attachments."""
    eng = state.engine()
    rec = eng.get_record(record_id)
    files = eng.intake.attachments(record_id)
    render.records_show(rec, files, as_json=as_json)


@records_app.command("list")
def records_list(object_type: Annotated[str | None, typer.Argument(help="Only records of this object type", autocompletion=complete.object_types)] = None,
                 limit: LimitOpt = 50, offset: OffsetOpt = 0, after: AfterOpt = None,
                 wide: Annotated[bool, typer.Option("--wide", "-w", help="Every field in full (by default the fields are cut at 80 characters)")] = False,
                 as_json: JsonOpt = False) -> None:
    """Records, newest first (a page: --after NEXT gives the following one)."""
    found = state.engine().page_records(object_type, after=after, limit=_page_size(limit),
                                        offset=_bounded_offset(offset))
    render.next_hint(found.next)
    render.records_list(found.rows, wide=wide, as_json=as_json)


@records_app.command("timeline")
def records_timeline(record_id: RecordIdArg, as_json: JsonOpt = False) -> None:
    """Every event that touched the record, in order, with actor and time.

    Examples:
      baton records timeline REC_ID
    """
    render.records_timeline(record_id, state.engine().timeline(record_id), as_json=as_json)


# ---- work items ---------------------------------------------------------------------------
@work_app.command("list")
def work_list(user: Annotated[str | None, typer.Option("--user", "-u", help="Items assigned to or claimed by this user", autocompletion=complete.users)] = None,
              queue: Annotated[str | None, typer.Option("--queue", "-q", help="Items in this queue")] = None,
              group: Annotated[str | None, typer.Option("--group", "-g", help="Items assigned to this group")] = None,
              status: Annotated[list[str] | None, typer.Option("--status", callback=one_of(WORK_STATUSES), help=f"Only items with this status: {listed(WORK_STATUSES)}; repeat for several (default: open and claimed)")] = None,
              all_statuses: Annotated[bool, typer.Option("--all", help="Include completed and canceled")] = False,
              limit: LimitOpt = 100, offset: OffsetOpt = 0, after: AfterOpt = None,
              wide: WideOpt = False, as_json: JsonOpt = False) -> None:
    """Open work items: a user's, a queue's or a group's (all open items if none is given),
    oldest first (a page: --after NEXT gives the following one).

    Examples:
      baton work list --queue support
      baton work list --user ann --all --json
    """
    from baton.work.items import OPEN_STATUSES

    if status:
        statuses = list(status)
    else:
        statuses = [s.value for s in WorkItemStatus] if all_statuses else list(OPEN_STATUSES)
    found = state.engine().page_work(user=user, queue=queue, group=group, statuses=statuses,
                                     after=after, limit=_page_size(limit),
                                     offset=_bounded_offset(offset))
    render.next_hint(found.next)
    render.work_list(found.rows, wide=wide, as_json=as_json)


@work_app.command("show")
def work_show(item_id: AnyItemIdArg, as_json: JsonOpt = False) -> None:
    """A work item: its status, assignment, SLA, instructions and form fields."""
    from baton.runtime.views import work_item_view

    render.work_show(work_item_view(state.engine().get_work_item(item_id)), as_json=as_json)


def _acting_user(engine: Any, name: str) -> Any:
    """Whom ``--user`` acts as, checked like the API checks a token's user: once the
    directory has people (``baton users add``), NAME must be one of them, active, and a
    member of the item's group or queue unless their role may work on every item. A
    project with no users yet (the quickstart) acts as NAME unchecked."""
    from baton.auth.roles import Permission

    if not name.strip():  # else a blank name claims the item: "claimed by " (nobody)
        raise BatonError("--user is empty: give the name of the person acting")
    directory = engine.directory
    if directory.count_users() == 0:
        return None
    found = directory.find_user(name)
    if found is None:
        raise BatonError(f"no user {name!r} (see `baton users list`)")
    if not found.active:
        raise BatonError(f"user {name!r} is inactive")
    return None if found.can(Permission.WORK_ALL) else found


@work_app.command("claim")
def work_claim(item_id: ItemIdArg, user: UserOpt, as_json: JsonOpt = False) -> None:
    """Claim an item; if someone else claimed it first, this fails with a clear message.

    Examples:
      baton work claim WI_ID --user ann
    """
    from baton.runtime.views import work_item_view

    engine = state.engine()
    item = engine.claim(item_id, user, scope=_acting_user(engine, user))
    print_json(work_item_view(item)) if as_json else console.print(f"{item_id} claimed by {user}")


@work_app.command("release")
def work_release(item_id: ItemIdArg, user: Annotated[str, typer.Option("--user", "-u", help="Who releases it: its claimer, or an operator (anyone's claim)", autocompletion=complete.users)],
                 as_json: JsonOpt = False) -> None:
    """Give a claimed item back (unclaim): it is open again for its assignee, and a routed
    item goes back to its queue to be routed again. Its claimer may; a user whose role may
    work on every item (operator, admin) may release anyone's claim.

    Examples:
      baton work release WI_ID --user ann
    """
    from baton.runtime.views import work_item_view

    engine = state.engine()
    item = engine.release(item_id, user, scope=_acting_user(engine, user))
    if as_json:
        print_json(work_item_view(item))
    else:
        console.print(f"{item_id} released by {user}; open for "
                      f"{item['assignee_kind']}:{item['assignee']}")


@work_app.command("accept")
def work_accept(item_id: ItemIdArg, user: UserOpt, as_json: JsonOpt = False) -> None:
    """Accept an item a routing rule offered you (offer mode): it becomes yours."""
    from baton.runtime.views import work_item_view

    engine = state.engine()
    item = engine.accept(item_id, user, scope=_acting_user(engine, user))
    print_json(work_item_view(item)) if as_json else console.print(f"{item_id} accepted by {user}")


@work_app.command("decline")
def work_decline(item_id: ItemIdArg, user: UserOpt, as_json: JsonOpt = False) -> None:
    """Decline an item a routing rule offered you: the next candidate is offered it."""
    from baton.runtime.views import work_item_view

    engine = state.engine()
    item = engine.decline(item_id, user, scope=_acting_user(engine, user))
    if as_json:
        print_json(work_item_view(item))
        return
    now = (f"offered to {item['assignee']}" if item.get("routing_status") == "offered"
           else f"waiting for routing in {item['assignee_kind']}:{item['assignee']}")
    console.print(f"{item_id} declined by {user}; now {now}")


@work_app.command("complete")
def work_complete(item_id: ItemIdArg, user: UserOpt,
                  data: Annotated[str, typer.Option("--data", help="The form's fields as a JSON object")] = "{}",
                  as_json: JsonOpt = False) -> None:
    """Submit the form; the step completes and the run moves on.

    Examples:
      baton work complete WI_ID --user ann --data '{"reply": "Fixed it", "outcome": "solved"}'
    """
    from baton.runtime.views import completed_view

    engine = state.engine()
    result = engine.complete(item_id, user, parse_json(data, "--data", exact=True),
                             scope=_acting_user(engine, user))
    run = result["run"]
    if as_json:
        print_json(completed_view(result))
    else:
        console.print(f"{item_id} completed by {user}; run {run.id} is {styled(run.status.value)}"
                      + (f" in stage {run.current_stage}" if run.current_stage else ""))


@work_app.command("recall")
def work_recall(item_id: ItemIdArg,
                user: Annotated[str, typer.Option("--user", "-u", help="Who recalls it: the approval's submitter, or an operator", autocompletion=complete.users)],
                as_json: JsonOpt = False) -> None:
    """Take back a pending approval: its step completes with decision 'recalled'."""
    from baton.runtime.views import completed_view

    engine = state.engine()
    _acting_user(engine, user)  # (checked like the API's token user)
    result = engine.work.recall(item_id, user, engine.directory.find_user(user))
    run = result["run"]
    if as_json:
        print_json(completed_view(result))
    else:
        console.print(f"{item_id} recalled by {user}; run {run.id} is {styled(run.status.value)}"
                      + (f" in stage {run.current_stage}" if run.current_stage else ""))


@work_app.command("reassign")
def work_reassign(item_id: ItemIdArg, to: Annotated[str, typer.Option("--to", help="user:NAME, group:NAME or queue:NAME")],
                  as_json: JsonOpt = False) -> None:
    """Assign an item to another user, group or queue (a claim on it is released).

    Examples:
      baton work reassign WI_ID --to queue:tier1
    """
    from baton.runtime.views import work_item_view

    item = state.engine().reassign(item_id, to, actor="cli")
    print_json(work_item_view(item)) if as_json else console.print(f"{item_id} reassigned to {to}")


@app.command()
def demo(
    db: Annotated[Path, typer.Option("--db-file", help="SQLite file to (re)create")] = Path("baton-demo.db"),
    cases: Annotated[int, typer.Option("--cases", help="Support cases run through case_triage")] = 200,
    requests: Annotated[int, typer.Option("--requests", help="Address updates run through address_update")] = 20,
    leads: Annotated[int, typer.Option("--leads", help="Sales leads run through lead_enrichment (two MCP tool calls each)")] = 6,
    dealer_mail: Annotated[bool, typer.Option("--dealer-mail/--no-dealer-mail", help="Send dealer_support's 31 e-mails through a real SMTP listener (AI intent and dealer account, routing)")] = True,
    examples: Annotated[Path | None, typer.Option(help="Examples folder")] = None,
) -> None:
    """Deploy the examples, run 200 cases, 20 address updates and 6 leads (looked up in an
    MCP server), send 31 dealer e-mails over SMTP (classified and matched by the AI),
    print what happened."""
    from baton.cli.demo import run_demo

    run_demo(db, cases, requests, examples, state.settings(), leads, dealer_mail)


ROOT_OPTIONS_WITH_VALUE = ("--project", "-p", "--db")  # _main's options that take a value
ROOT_FLAGS = ("--debug",)  # _main's options that take none (but --version, eager)
PROG_NAME = "baton"  # (run as `python -m baton.cli.main` too): its usage lines, and the
# shell completion's variable (_BATON_COMPLETE), as `baton --show-completion` writes it


def app_for(args: list[str]) -> typer.Typer:
    """The app to run ``baton ARGS`` with: only the command named, when one is.

    Typer turns every command of an app into a Click command (reading each function's
    signature and annotations) before it parses a single argument: ~0.07 s of CPU for the
    ~70 commands, on every ``baton`` call. ``baton runs list`` needs the ``runs`` group
    only; the same app with the other commands left out parses, helps and fails exactly
    as the full one for it, and ``--version`` needs none. No command named (``baton``,
    ``--help``, an unknown name): the full app, whose help and errors list every command."""
    name = None
    rest = iter(args)
    for arg in rest:
        if arg in ROOT_OPTIONS_WITH_VALUE:
            next(rest, None)
        elif arg in ROOT_FLAGS:
            continue
        elif not arg.startswith("-"):
            name = arg
            break
        elif arg == "--version":  # (eager: it prints and exits before anything else)
            return _with_commands(app, [], [])
        elif arg == "--" or not arg.startswith(tuple(f"{o}=" for o in ROOT_OPTIONS_WITH_VALUE)):
            return app  # --help, an unknown option: the full app says
    if name is None:
        return app
    groups = [g for g in app.registered_groups if g.name == name]
    commands = [c for c in app.registered_commands
                if (c.name or typer.main.get_command_name(c.callback.__name__  # type: ignore[union-attr]
                                                          )) == name]
    return _with_commands(app, groups, commands) if groups or commands else app


def _with_commands(full: typer.Typer, groups: list[Any], commands: list[Any]) -> typer.Typer:
    """``full`` (its callback, options and settings) with only these commands."""
    lean = copy.copy(full)
    lean.registered_groups = groups
    lean.registered_commands = commands
    return lean


def main() -> None:
    args = sys.argv[1:]
    as_json = _json_asked(args)
    output.json_errors = as_json
    try:
        if as_json:
            _run_for_json(app_for(args))
        else:
            app_for(args)(prog_name=PROG_NAME)
    except DefinitionError as exc:
        _debug_traceback(exc)
        # The issues are the answer, as `validate` gives them: JSON under --json.
        if as_json:
            print_json(issues_json(exc.issues))
        else:
            for issue in exc.issues:
                console.print(str(issue), highlight=False, markup=False)
        done = {"deploy": "nothing was deployed", "import": "nothing was imported"}
        print_error(f"{len(exc.issues)} problem(s); "
                    f"{done.get(_command_of(args) or '', 'nothing was changed')}",
                    kind="definition", traceback=_json_traceback(exc))
        sys.exit(1)
    except BatonError as exc:
        _debug_traceback(exc)
        fields = getattr(exc, "fields", None) if isinstance(exc, ValidationError) else None
        print_error(str(exc), kind=error_kind(exc),
                    errors=[{"field": f, "message": m} for f, m in fields.items()]
                    if fields else None, traceback=_json_traceback(exc))
        sys.exit(1)
    except KeyboardInterrupt:  # Ctrl-C: no traceback
        if as_json:
            print_error("interrupted", kind="interrupted", exit_code=130)
        else:
            err_console.print("interrupted", highlight=False)
        sys.exit(130)
    except BrokenPipeError:  # `baton ... | head`: the reader left; not a bug to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (Python's recipe)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - every other error is told here (cli/failures.py)
        _untranslated(exc)


def _run_for_json(command: typer.Typer) -> None:
    """Run ``command`` as Typer does, but a usage error (a bad option or value, exit 2) is
    told as a JSON error on stderr, not Rich's boxed text: a script that asked for
    ``--json`` reads every error the same way."""
    # Click's exception root, as this Typer has it (Typer 0.2x vendors Click as typer._click).
    click_error: type[Exception] = next(
        c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")
    try:
        code = command(standalone_mode=False, prog_name=PROG_NAME)
    except click_error as exc:
        exit_code = int(getattr(exc, "exit_code", 2))
        if type(exc).__name__ == "NoArgsIsHelpError":  # (the help is printed already)
            sys.exit(exit_code)
        ctx = getattr(exc, "ctx", None)
        print_error(str(getattr(exc, "format_message", exc.__str__)()), kind="usage", exit_code=exit_code,
                    help=f"{ctx.command_path if ctx is not None else 'baton'} --help")
        sys.exit(exit_code)
    except typer.Abort:
        print_error("aborted", kind="aborted")
        sys.exit(1)
    if isinstance(code, int) and not isinstance(code, bool) and code:
        sys.exit(code)


def _untranslated(exc: Exception) -> NoReturn:
    """An error no code translated: a database error the user can act on (read-only, locked,
    a server gone) is one line naming the database, exit 1; anything else is a bug: its
    traceback without SQL parameters (field values), then a line asking for a report, exit
    :data:`~baton.cli.failures.EXIT_INTERNAL`. Never SQLAlchemy's statement and values
    unless asked (``--debug``)."""
    from baton.cli.failures import EXIT_INTERNAL, explain, print_traceback

    try:
        url: str | None = state.database_url()
    except Exception:  # noqa: BLE001 - no project or URL: the line names no database
        url = None
    failure = explain(exc, url)
    debug = _debug_asked()
    code = EXIT_INTERNAL if failure.internal else 1
    if (debug or failure.internal) and output.json_errors:
        # --json: stderr stays one JSON object; the traceback is one of its members.
        from baton.cli.failures import traceback_text

        print_error(failure.line, kind="internal" if failure.internal else "database",
                    exit_code=code, traceback=traceback_text(exc, full=debug))
        sys.exit(code)
    if debug or failure.internal:
        print_traceback(exc, full=debug)
    print_error(failure.line, kind="internal" if failure.internal else "database",
                exit_code=code)
    sys.exit(code)


def _debug_asked() -> bool:
    """``--debug`` (a root option), or ``BATON_DEBUG`` set to anything but ``0`` or empty."""
    import os

    return state.debug or os.environ.get("BATON_DEBUG", "").strip() not in ("", "0")


def _debug_traceback(exc: BaseException) -> None:
    """Under ``--debug``, the full traceback of an error the CLI tells in its own words
    (under ``--json``, :func:`_json_traceback` puts it in the JSON error instead)."""
    if _debug_asked() and not output.json_errors:
        from baton.cli.failures import print_traceback

        print_traceback(exc, full=True)


def _json_traceback(exc: BaseException) -> str | None:
    """Under ``--json --debug``, the full traceback, for the JSON error's ``traceback``."""
    if not (output.json_errors and _debug_asked()):
        return None
    from baton.cli.failures import traceback_text

    return traceback_text(exc, full=True)


def _json_asked(args: list[str]) -> bool:
    """``--json`` among the options (not after ``--``, where it would be a value)."""
    return "--json" in (args[:args.index("--")] if "--" in args else args)


def _command_of(args: list[str]) -> str | None:
    """The command named in ``baton ARGS`` (its first word after the root options)."""
    rest = iter(args)
    for arg in rest:
        if arg in ROOT_OPTIONS_WITH_VALUE:
            next(rest, None)
        elif not arg.startswith("-"):
            return arg
    return None


def issues_json(issues: list[Issue]) -> list[dict[str, Any]]:
    """Definition problems as ``validate --json`` prints them (and ``deploy --json`` and
    ``import --json`` when they refuse): file, line, path, message, level."""
    return [{"file": i.file, "line": i.line, "path": i.path, "message": i.message,
             "level": i.level} for i in sorted(issues, key=lambda i: (i.file, i.line))]


def _tidy_help(t: typer.Typer) -> None:
    """Help as the terminal wraps it. Typer's rich mode keeps a docstring's own line breaks
    (``baton work --help`` broke its lines mid-sentence at the docstring's width): each
    command gets its first paragraph on one line as its ``short_help`` (the group's list
    shows it), and its help with each paragraph on one line, but its examples."""
    import inspect

    for c in t.registered_commands:
        if c.callback is not None:
            doc = c.help or inspect.getdoc(c.callback) or ""
            if c.short_help is None:
                first = " ".join(doc.split("\n\n", 1)[0].split())
                if first:
                    c.short_help = first
            if doc:
                c.help = one_line_paragraphs(doc)
    for g in t.registered_groups:
        if g.typer_instance is not None:
            _tidy_help(g.typer_instance)


def one_line_paragraphs(doc: str) -> str:
    """``doc`` with each paragraph on one line, but an ``Examples:`` paragraph: a command a
    line, each after ``$ `` (Typer dedents the help's last paragraphs, so an indent alone
    would not set them apart from the prose)."""
    out = []
    for p in doc.split("\n\n"):
        lines = p.strip().splitlines()
        if lines and lines[0] == "Examples:":
            out.append("\n".join(["Examples:", *(f"$ {line.strip()}" for line in lines[1:])]))
        else:
            out.append(" ".join(p.split()))
    return "\n\n".join(out)


def _root_help() -> None:
    import inspect

    app.info.help = one_line_paragraphs(inspect.getdoc(_main) or "")


_tidy_help(app)
_root_help()
