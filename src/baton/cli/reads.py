"""The lean read path: the common read commands answered without Typer or SQLAlchemy.

:func:`answer` takes the command line. When it is one of the read commands below, with
options it knows and values it can check the way the command does, on a SQLite database
at this code's schema version, the data is read by :class:`baton.store.lean.LeanReader`
and printed by :mod:`baton.cli.render` (the functions the Typer commands print with), so
the output is the same bytes. Anything else returns False before printing anything and
the Typer app runs as it always has (``baton --version`` alone is answered here too): ``--help``, an unknown option, a bad value (its usage
error), PostgreSQL, a database to migrate, an id that does not exist (its error),
``records show`` of a record with attachments, ``work list`` for a user, queue or group,
``runs show --json`` (which needs the orchestration's definition), a definition document
the lean YAML reading does not take. ``BATON_CLI_LEAN=0`` turns it off.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from baton.definitions import KINDS as DEFINITION_KINDS
from baton.engine.status import WORK_ITEM_OPEN, IncidentStatus, RunStatus, WorkItemStatus

if TYPE_CHECKING:  # (loaded when a command line is for this path: not for --help and others)
    from baton.store.lean import LeanReader

MAX_PAGE, MAX_OFFSET = 500, 1000  # baton.cli.commands: --limit 1-500, --offset 0-1000
RUN_STATUSES = tuple(s.value for s in RunStatus)
WORK_STATUSES = tuple(s.value for s in WorkItemStatus)
WORK_OPEN = [s.value for s in WORK_ITEM_OPEN]  # baton.work.items.OPEN_STATUSES
INCIDENT_STATUSES = tuple(s.value for s in IncidentStatus)

# Each command's options: name -> (key, kind, valid values); kind: flag, int, str, list.
Opt = tuple[str, str, Sequence[str] | None]
_PAGE: dict[str, Opt] = {"--limit": ("limit", "int", None), "--offset": ("offset", "int", None),
                         "--after": ("after", "str", None), "--json": ("json", "flag", None)}
_WIDE: dict[str, Opt] = {"--wide": ("wide", "flag", None), "-w": ("wide", "flag", None)}
_JSON: dict[str, Opt] = {"--json": ("json", "flag", None)}
SPECS: dict[tuple[str, str], tuple[dict[str, Opt], int, int]] = {
    # (group, command): (options, fewest and most positional arguments)
    ("runs", "list"): ({**_PAGE, **_WIDE,
                        "--orchestration": ("orchestration", "str", None),
                        "-o": ("orchestration", "str", None),
                        "--status": ("status", "str", RUN_STATUSES),
                        "--stage": ("stage", "str", None), "--record": ("record", "str", None),
                        "--attention": ("attention", "flag", None)}, 0, 0),
    ("runs", "show"): (_JSON, 1, 1),
    ("work", "list"): ({**_PAGE, **_WIDE, "--status": ("status", "list", WORK_STATUSES),
                        "--all": ("all", "flag", None)}, 0, 0),
    ("records", "list"): ({**_PAGE, "--wide": ("wide", "flag", None),
                           "-w": ("wide", "flag", None)}, 0, 1),
    ("records", "show"): (_JSON, 1, 1),
    ("records", "timeline"): (_JSON, 1, 1),
    ("fallout", "list"): ({**_JSON, "--limit": ("limit", "int", None)}, 0, 0),
    ("incidents", "list"): ({**_JSON, "--limit": ("limit", "int", None),
                             "--status": ("status", "list", INCIDENT_STATUSES)}, 0, 0),
    ("definitions", "list"): ({**_JSON, "--kind": ("kind", "str", DEFINITION_KINDS),
                               "-k": ("kind", "str", DEFINITION_KINDS)}, 0, 0),
    ("definitions", "show"): ({**_JSON, "--kind": ("kind", "str", DEFINITION_KINDS),
                               "-k": ("kind", "str", DEFINITION_KINDS),
                               "--version": ("version", "int", None),
                               "-v": ("version", "int", None)}, 1, 1),
}
ROOT_OPTIONS = {"--project": "project", "-p": "project", "--db": "db"}


def parse(args: Sequence[str]) -> tuple[dict[str, Any], str, str, dict[str, Any],
                                        list[str]] | None:
    """(root options, group, command, options, positionals), or None: not for this path."""
    root: dict[str, Any] = {}
    rest = list(args)
    while rest and rest[0].startswith("-"):
        name, eq, value = _split(rest.pop(0))
        if name not in ROOT_OPTIONS:
            return None
        if not eq:
            if not rest:
                return None
            value = rest.pop(0)
        root[ROOT_OPTIONS[name]] = value
    if len(rest) < 2 or (rest[0], rest[1]) not in SPECS:
        return None
    group, command = rest[0], rest[1]
    spec, fewest, most = SPECS[(group, command)]
    opts: dict[str, Any] = {}
    positional: list[str] = []
    it = iter(rest[2:])
    for arg in it:
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        name, eq, value = _split(arg)
        if name not in spec:
            return None  # --help, --, an unknown option: Typer says
        key, kind, valid = spec[name]
        if kind == "flag":
            if eq:
                return None
            opts[key] = True
            continue
        if not eq:
            nxt = next(it, None)
            if nxt is None:
                return None
            value = nxt
        if valid is not None and value not in valid:
            return None  # (the usage error names the valid values)
        if kind == "int":
            if not value.isdigit() or not value.isascii():
                return None
            opts[key] = int(value)
        elif kind == "list":
            opts.setdefault(key, []).append(value)
        else:
            opts[key] = value
    if not fewest <= len(positional) <= most:
        return None
    return root, group, command, opts, positional


def _split(arg: str) -> tuple[str, str, str]:
    """``--name=value`` as Click splits it; a short option's ``=`` is part of its value
    (``-o=x``), which this path leaves to Click."""
    if arg.startswith("--"):
        return arg.partition("=")
    return (arg, "", "") if "=" not in arg else ("", "", "")


def answer(args: Sequence[str]) -> bool:
    """Print what ``baton ARGS`` prints and return True, or return False (having printed
    nothing) for the full path to answer."""
    if os.environ.get("BATON_CLI_LEAN", "1") == "0":
        return False
    if list(args) == ["--version"]:
        from baton.cli import render

        render.version()
        return True
    parsed = parse(args)
    if parsed is None:
        return False
    root, group, command, opts, positional = parsed
    from baton.store.lean import Unsupported

    try:
        reader, settings = _open(root)
    except Unsupported:
        return False
    try:
        printer = COMMANDS[(group, command)](reader, settings, opts, positional)
    except Exception:  # noqa: BLE001 - Unsupported, or anything unforeseen in stored data:
        return False  # nothing is printed yet, so the full path answers (and says what is wrong)
    finally:
        reader.close()
    printer()
    return True


def _open(root: dict[str, Any]) -> tuple[LeanReader, Any]:
    from baton.cli.context import State
    from baton.errors import BatonError
    from baton.store.lean import LeanReader, Unsupported, sqlite_path

    state = State()
    state.project_dir, state.db = root.get("project"), root.get("db")
    try:
        url = state.database_url()
        settings = state.settings()
    except BatonError:
        raise Unsupported("no project") from None  # (the full path says why)
    path = sqlite_path(url)
    if path is None:
        raise Unsupported("not SQLite")
    return LeanReader(path), settings


def _page_args(opts: dict[str, Any], default_limit: int) -> tuple[int, int]:
    from baton.store.lean import Unsupported

    limit, offset = opts.get("limit", default_limit), opts.get("offset", 0)
    if not 1 <= limit <= MAX_PAGE or not 0 <= offset <= MAX_OFFSET:
        raise Unsupported("out of range")  # (the full path's error)
    return limit, offset


def _at_least_one(limit: int) -> int:
    """``fallout list`` and ``incidents list``'s ``--limit`` (no pages: no upper bound)."""
    from baton.store.lean import Unsupported

    if limit < 1:
        raise Unsupported("out of range")  # (the full path's error)
    return limit


Printer = Callable[[], None]


def runs_list(reader: LeanReader, settings: Any, opts: dict[str, Any], _: list[str]) -> Printer:
    from datetime import timedelta

    from baton.cli import render
    from baton.clock import SystemClock, iso
    from baton.runtime.views import run_summary_row

    limit, offset = _page_args(opts, 50)
    rows, nxt = reader.page_runs(
        {"orchestration": opts.get("orchestration"), "status": opts.get("status"),
         "current_stage": opts.get("stage"), "record_id": opts.get("record"),
         "attention": opts.get("attention") or None}, opts.get("after"), offset, limit)
    now = iso(SystemClock(timedelta(seconds=settings.clock_offset)).now())
    shown = [run_summary_row(r, now) for r in rows]

    def printer() -> None:
        render.next_hint(nxt)
        render.runs_list(shown, wide=bool(opts.get("wide")), as_json=bool(opts.get("json")))
    return printer


def runs_show(reader: LeanReader, _s: Any, opts: dict[str, Any], pos: list[str]) -> Printer:
    from baton.cli import render
    from baton.engine.state import Run
    from baton.runtime.views import MAX_CHILDREN_SHOWN
    from baton.store.lean import Unsupported

    if opts.get("json"):
        raise Unsupported("runs show --json reads the orchestration's definition")
    run = Run.from_json(reader.run_state(pos[0]))
    children = reader.child_runs(run.id, MAX_CHILDREN_SHOWN)
    events = reader.run_events(run.id)
    return lambda: render.runs_show(run, children, events)


def work_list(reader: LeanReader, _s: Any, opts: dict[str, Any], _: list[str]) -> Printer:
    from baton.cli import render

    limit, offset = _page_args(opts, 100)
    if opts.get("status"):
        statuses = list(opts["status"])
    else:
        statuses = list(WORK_STATUSES) if opts.get("all") else list(WORK_OPEN)
    rows, nxt = reader.page_work(statuses, opts.get("after"), offset, limit)

    def printer() -> None:
        render.next_hint(nxt)
        render.work_list(rows, wide=bool(opts.get("wide")), as_json=bool(opts.get("json")))
    return printer


def records_list(reader: LeanReader, _s: Any, opts: dict[str, Any], pos: list[str]) -> Printer:
    from baton.cli import render

    limit, offset = _page_args(opts, 50)
    rows, nxt = reader.page_records(pos[0] if pos else None, opts.get("after"), offset, limit)
    # (as baton.records.service.RecordService.page: the flat view, untyped)
    recs = [{"object_type": r["object_type"], **r["data"], "id": r["id"],
             "created_at": r["created_at"], "updated_at": r["updated_at"],
             "version": r["version"]} for r in rows]

    def printer() -> None:
        render.next_hint(nxt)
        render.records_list(recs, wide=bool(opts.get("wide")), as_json=bool(opts.get("json")))
    return printer


def records_show(reader: LeanReader, _s: Any, opts: dict[str, Any], pos: list[str]) -> Printer:
    import decimal

    from baton import decimals
    from baton.cli import render
    from baton.store.lean import Unsupported

    row = reader.record(pos[0])
    exact = reader.decimal_fields(row["object_type"])
    if exact is None or reader.has_attachments(row["id"]):
        raise Unsupported("an object type not deployed, or attachments")
    data = dict(row["data"])
    for name in exact:  # as baton.records.fields.json_values
        if data.get(name) is not None:
            if not isinstance(data[name], str):
                raise Unsupported("a decimal stored as a number")
            typed = decimals.read(data[name])
            if isinstance(typed, decimal.Decimal):
                data[name] = decimals.canonical(typed)
    rec = {"object_type": row["object_type"], **data, "id": row["id"],
           "created_at": row["created_at"], "updated_at": row["updated_at"],
           "version": row["version"]}
    return lambda: render.records_show(rec, [], as_json=bool(opts.get("json")))


def records_timeline(reader: LeanReader, _s: Any, opts: dict[str, Any], pos: list[str]
                     ) -> Printer:
    from baton.cli import render

    events = reader.record_events(pos[0])
    return lambda: render.records_timeline(pos[0], events, as_json=bool(opts.get("json")))


def fallout_list(reader: LeanReader, _s: Any, opts: dict[str, Any], _: list[str]) -> Printer:
    from baton.cli import render
    from baton.engine.state import Run
    from baton.engine.status import RunStatus, StepStatus
    from baton.runtime.views import fallout_view

    runs: dict[str, Run] = {}
    items = []
    for state, step in reader.fallout_page(_at_least_one(opts.get("limit", 100))):
        run = runs.get(state["id"]) or runs.setdefault(state["id"], Run.from_json(state))
        sr = run.steps.get(step)  # (as RunDriver.in_fallout and Engine.list_fallout)
        if sr is not None and sr.status is StepStatus.FALLOUT \
                and run.status is RunStatus.IN_PROGRESS:
            items.append(fallout_view(run, sr))
    return lambda: render.fallout_list(items, as_json=bool(opts.get("json")))


def incidents_list(reader: LeanReader, _s: Any, opts: dict[str, Any], _: list[str]) -> Printer:
    from baton.cli import render
    from baton.runtime.views import incident_view

    items = [incident_view(r) for r in reader.incidents(opts.get("status") or ["open"],
                                                         _at_least_one(opts.get("limit", 100)))]
    return lambda: render.incidents_list(items, as_json=bool(opts.get("json")))


def definitions_list(reader: LeanReader, _s: Any, opts: dict[str, Any], _: list[str]
                     ) -> Printer:
    from baton.cli import render

    out = render.definitions_summary(reader.definitions(opts.get("kind")), reader.schedules())
    return lambda: render.definitions_list(out, as_json=bool(opts.get("json")))


def definitions_show(reader: LeanReader, _s: Any, opts: dict[str, Any], pos: list[str]
                     ) -> Printer:
    from baton.cli import render

    kind, name = opts.get("kind", "orchestration"), pos[0]
    shown = reader.definition(kind, name, opts.get("version"))
    versions = sorted(reader.definitions(kind, name), key=lambda r: r.version)
    sch = reader.schedules().get(name) if kind == "orchestration" else None
    return lambda: render.definitions_show(kind, name, shown, versions, sch,
                                           as_json=bool(opts.get("json")))


COMMANDS: dict[tuple[str, str], Callable[[LeanReader, Any, dict[str, Any], list[str]],
                                         Printer]] = {
    ("runs", "list"): runs_list, ("runs", "show"): runs_show, ("work", "list"): work_list,
    ("records", "list"): records_list, ("records", "show"): records_show,
    ("records", "timeline"): records_timeline,
    ("fallout", "list"): fallout_list, ("incidents", "list"): incidents_list,
    ("definitions", "list"): definitions_list, ("definitions", "show"): definitions_show,
}
