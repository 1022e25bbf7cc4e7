"""What the read commands print, from the data they read: one function per command.

The Typer commands (:mod:`baton.cli.commands`, :mod:`baton.cli.definitions`) and the lean
read path (:mod:`baton.cli.reads`) both print through these, so a command prints the
same bytes whichever path read its data. Light imports only (Rich's console, the read
model of :mod:`baton.runtime.views`, imported where it is used): no database, no Typer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.markup import escape

from baton.cli.output import (
    TEXT_COLUMNS,
    Part,
    console,
    err_console,
    first_line,
    print_json,
    print_wrapped,
    styled,
    table,
)
from baton.runtime.describe import describe_event as describe_event  # noqa: PLC0414 - re-exported

if TYPE_CHECKING:
    from baton.engine.state import Run

CALL_TEXTS = TEXT_COLUMNS | {"status"}  # a call's status: its HTTP status, or why it failed
ATTENTION_TEXT = {"fallout": "[red]! step in fallout[/red]",
                  "sla_breached": "[yellow]! SLA breached[/yellow]"}


def version() -> None:
    """``baton --version``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    import baton

    try:
        number = installed("baton")
    except PackageNotFoundError:  # run from a source tree that is not installed
        number = baton.__version__
    console.print(f"baton {number}", highlight=False)


def next_hint(cursor: str | None) -> None:
    """Where the next page starts (stderr, so the table or JSON on stdout stays clean)."""
    if cursor:
        err_console.print(f"more: --after {cursor}")


def runs_list(rows: Sequence[Mapping[str, Any]], *, wide: bool, as_json: bool) -> None:
    """``baton runs list``: ``rows`` are :func:`~baton.runtime.views.run_summary_row`'s."""
    from baton.runtime.views import human_duration

    if as_json:
        print_json(rows)
        return
    columns = ["id", "title", "orchestration", "status", "attention", "stage", "duration"]
    if wide:  # (a narrow terminal keeps what an operator scans for; the rest on --wide)
        columns += ["v", "created", "record", "completed"]
    table("Runs", columns,
          [[r["id"], r["title"], r["orchestration"], styled(r["status"]),
            ", ".join(ATTENTION_TEXT[k] for k in r["attention"]), r["current_stage"],
            human_duration(r["duration_seconds"]),
            *([r["version"], r["created_at"], r["record_id"], r["completed_at"]] if wide
              else [])] for r in rows])


def runs_show(run: Run, children: Sequence[Mapping[str, Any]],
              events: Sequence[Mapping[str, Any]]) -> None:
    """``baton runs show`` (the table): the run, the runs it started, its audit events
    (the calls to other systems among them)."""
    from baton.runtime.views import call_views
    from baton.runtime.waiting import waiting_text, waits_from_events

    first_line([Part(f"[bold]{run.id}[/bold]", "", keep=True),
                Part(f"{run.orchestration} v{run.version}", " ", label="orchestration"),
                Part(styled(run.status.value), keep=True),
                Part(f"record {run.record_id or '-'}")])
    if run.error:
        print_wrapped(f"[red]error:[/red] {escape(str(run.error.get('message')))}")
    if run.parent is not None:
        p = run.parent
        print_wrapped(f"child of run {p.run_id} step {escape(p.step)} #{p.iteration} "
                      f"(element {p.index})")
    rows = []
    waits = waits_from_events(run, events)  # (a step whose flow no worker that took it has)
    for st in run.stages.values():
        rows.append([f"[bold]{st.name}[/bold]", f"#{st.iteration}", styled(st.status.value), ""])
        for sr in run.steps.values():
            if sr.stage == st.name:
                wait = waits.get(sr.name)
                detail = sr.work_item_id or (escape(waiting_text(wait)) if wait else
                                             (sr.error or {}).get("message", ""))
                sla = f"{styled(sr.sla['status'])} due {sr.sla['due_at']}" if sr.sla else ""
                rows.append([f"  {sr.name}", f"#{sr.iteration}", styled(sr.status.value), sla,
                             detail])
    table("Stages and steps", ["stage / step", "iteration", "status", "sla", "detail"], rows)
    if children:
        table("Child runs", ["id", "step", "orchestration", "v", "status", "record", "created"],
              [[c["id"], c["parent_step"], c["orchestration"], c["version"], styled(c["status"]),
                c["record_id"], c["created_at"]] for c in children])
    calls = call_views(list(events))
    if calls:
        table("Calls to other systems", ["at", "step", "attempt", "request", "status", "ms",
                                         "sent / received"],
              [[c["at"], f"{c['step']} #{c['iteration']}", c.get("attempt"),
                f"{c['method']} {c['url']}", c["status"] if c["status"] is not None
                else f"[red]{escape(str(c.get('error')))}[/red]", c["duration_ms"],
                f"{c['request_bytes']} B / {c['response_bytes']} B"] for c in calls],
              texts=CALL_TEXTS)
        last = calls[-1]
        for label, key in (("request", "request_body"), ("response", "response_body")):
            if last.get(key):
                console.print(f"[bold]last call's {label} body[/bold] (first KB):")
                console.print(escape(last[key]))
    if run.decisions:
        table("Decisions", ["after stage", "iteration", "goto", "outcome", "rule"],
              [[d["stage"], d["iteration"], d["goto"], d.get("label") or "",
                "default" if d["rule"] is None else f"next[{d['rule']}]"]
               for d in run.decisions])


def work_show(item: Mapping[str, Any], *, as_json: bool) -> None:
    """``baton work show``: ``item`` is :func:`~baton.runtime.views.work_item_view`'s."""
    if as_json:
        print_json(item)
        return
    first_line([Part(f"[bold]{item['id']}[/bold]", "", keep=True),
                Part(escape(str(item["title"])), " ", text=True),
                Part(styled(item["status"]), keep=True),
                Part(f"assigned to {item['assigned_to']}")])
    if item.get("routing_status") == "offered":
        console.print(f"offered to {item['assignee']}: baton work accept|decline "
                      f"{item['id']} --user {item['assignee']}")  # (one line: to paste)
    sla = f"; SLA {styled(item['sla_status'])}, due {item['due_at']}" \
        if item["sla_status"] else ""
    print_wrapped(f"priority {priority_name(item.get('priority'))}{sla}")
    if item["instructions"]:  # (free text, not markup: "[x]" is printed as it is)
        print_wrapped(escape(str(item["instructions"])))
    given = item.get("input")
    if isinstance(given, Mapping) and given:
        # what the step was given (a rejection's comments reach the rework step here)
        table("Input", ["field", "value"],
              [[escape(str(k)), escape(v if isinstance(v, str) else json.dumps(v, default=str))]
               for k, v in given.items()])
    elif given:
        print_wrapped("input: " + escape(json.dumps(given, default=str)))
    table("Form", ["field", "type", "required", "choices"],
          [[f["name"], f["type"], "yes" if f["required"] else "",
            ", ".join(f.get("choices") or [])] for f in item["form"]])


def fallout_list(items: Sequence[Mapping[str, Any]], *, as_json: bool) -> None:
    """``baton fallout list``: ``items`` are :func:`~baton.runtime.views.fallout_view`'s."""
    if as_json:
        print_json(items)
        return
    table("Fallout", ["id", "orchestration", "stage", "attempts", "error", "since"],
          [[f["id"], f["orchestration"], f["stage"], f["attempts"],
            f"{(f['error'] or {}).get('type', '')}: {(f['error'] or {}).get('message', '')}",
            f["since"]] for f in items])


INCIDENT_COLUMNS = ["id", "kind", "status", "orchestration", "record", "run", "expression",
                    "error", "since"]
INCIDENT_TEXTS = ("expression", "error")  # free text: they wrap, down to what the table keeps
INCIDENT_TEXT_ROOM = 30  # the least each of them keeps in the table


def incidents_list(items: Sequence[Mapping[str, Any]], *, as_json: bool) -> None:
    """``baton incidents list``: a table where it fits, else one block per incident (the
    ids whole, the expression and the error each on a line of its own): squeezed into a
    narrow table they would run down the screen a character a line."""
    if as_json:
        print_json(items)
        return
    rows = [dict(zip(INCIDENT_COLUMNS, (
        i["id"], i["kind"], i["status"], f"{i['orchestration']} v{i['version']}",
        i["record_id"] or "", i["run_id"] or "", i["expression"] or "", i["error"] or "",
        i["created_at"]), strict=True)) for i in items]
    widths = {c: max([len(c)] + [len(r[c]) for r in rows]) for c in INCIDENT_COLUMNS}
    needed = sum(min(w, INCIDENT_TEXT_ROOM) if c in INCIDENT_TEXTS else w
                 for c, w in widths.items()) + 3 * len(INCIDENT_COLUMNS) + 1  # (+ borders)
    if console.width >= needed:
        table("Incidents", INCIDENT_COLUMNS,
              [[styled(v) if c == "status" else escape(v) for c, v in r.items()] for r in rows])
        return
    console.print("Incidents" if rows else "Incidents: none", style="italic")
    for r in rows:
        console.print(f"\n[bold]{r['id']}[/bold]  {r['kind']}  {styled(r['status'])}  "
                      f"{r['since']}", highlight=False)
        for c in ("orchestration", "record", "run", *INCIDENT_TEXTS):
            if r[c]:
                console.print(f"  {c:<13} {escape(r[c])}", highlight=False)


def records_show(rec: Mapping[str, Any], files: Sequence[Mapping[str, Any]], *,
                 as_json: bool) -> None:
    """``baton records show``: the record as the API answers it, and its attachments."""
    if as_json:
        print_json({**rec, "attachments": files} if files else rec)
        return
    table(f"{rec['object_type']} {rec['id']}", ["field", "value"],
          [[k, json.dumps(v) if isinstance(v, dict | list) else v] for k, v in rec.items()])
    if files:
        table("Attachments", ["id", "file", "type", "bytes", "stored", "text"],
              [[a["id"], a["filename"], a["content_type"], a["size"],
                "yes" if a["status"] == "stored" else f"no: {a['reason']}",
                "yes" if a["text"] else (a["text_error"] or "-")] for a in files])


RECORD_SYSTEM_FIELDS = ("id", "object_type", "version", "created_at", "updated_at")


def records_list(recs: Sequence[Mapping[str, Any]], *, wide: bool, as_json: bool) -> None:
    """``baton records list``: ``recs`` are the records' flat views (fields beside the
    system fields)."""
    if as_json:
        print_json(recs)
        return
    table("Records", ["id", "type", "version", "updated", "fields"],
          [[r["id"], r["object_type"], r["version"], r["updated_at"],
            cut(json.dumps({k: v for k, v in r.items() if k not in RECORD_SYSTEM_FIELDS},
                           default=str), None if wide else 80)]
           for r in recs])


def cut(text: str, at: int | None) -> str:
    return text if at is None or len(text) <= at else text[:at - 1] + "…"


def work_list(items: Sequence[Mapping[str, Any]], *, wide: bool, as_json: bool) -> None:
    """``baton work list``: ``items`` are work item rows (``as_json``: their
    :func:`~baton.runtime.views.work_item_view`)."""
    if as_json:
        from baton.runtime.views import work_item_view

        print_json([work_item_view(i) for i in items])
        return
    columns = ["id", "title", "status", "step", "assigned to", "claimed by", "sla", "due"]
    if wide:
        columns += ["priority", "run", "record", "created"]
    table("Work items", columns,
          [[i["id"], headline(i), styled(i["status"]) + (
              " (offered)" if i.get("routing_status") == "offered" else ""), i["step"],
            f"{i['assignee_kind']}:{i['assignee']}", i["claimed_by"],
            styled(i["sla_status"] or ""), i["due_at"],
            *([priority_name(i["priority"]), i["run_id"], i["record_id"], i["created_at"]]
              if wide else [])]
           for i in items])


def priority_name(priority: Any) -> str:
    """A work item's priority as the definitions write it (``high``): the API and
    ``--json`` keep the number stored, an index into ``PRIORITIES`` (0 low ... 3 urgent)."""
    from baton.definitions.model import PRIORITIES

    if isinstance(priority, int) and not isinstance(priority, bool) \
            and 0 <= priority < len(PRIORITIES):
        return PRIORITIES[priority]
    return "" if priority is None else str(priority)


def headline(item: Mapping[str, Any]) -> str:
    """A work item's title, its summary on the line below (as text, not Rich markup)."""
    summary = item.get("summary")
    return escape(f"{item['title']}\n{summary}" if summary else str(item["title"]))


def definitions_summary(rows: Sequence[Any], schedules: Mapping[str, Mapping[str, Any]]
                        ) -> list[dict[str, Any]]:
    """One entry per definition from its versions' rows (``kind``, ``name``, ``version``,
    ``active``): its active and latest version, and when its schedule fires next."""
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        d = latest.setdefault((row.kind, row.name), {"kind": row.kind, "name": row.name,
                                                     "active": None, "latest": 0})
        d["latest"] = max(d["latest"], row.version)
        if row.active:
            d["active"] = row.version
    out = []
    for (k, name), d in sorted(latest.items()):
        sch = schedules.get(name) if k == "orchestration" else None
        d["next_run_at"] = sch["next_at"] if sch else None
        out.append(d)
    return out


def definitions_list(out: Sequence[Mapping[str, Any]], *, as_json: bool) -> None:
    """``baton definitions list``: one entry per definition (kind, name, active, latest,
    next_run_at)."""
    if as_json:
        print_json(out)
        return
    table("Definitions", ["kind", "name", "active", "latest", "next scheduled run"],
          [[d["kind"], d["name"], d["active"] or "-", d["latest"], d["next_run_at"] or ""]
           for d in out])


def definitions_show(kind: str, name: str, shown: Any, versions: Sequence[Any],
                     sch: Mapping[str, Any] | None, *, as_json: bool) -> None:
    """``baton definitions show``: ``shown`` and ``versions`` are definition rows (with
    ``version``, ``active``, ``deployed_at``, ``deployed_by``, ``file``, ``source``)."""
    active = next((v.version for v in versions if v.active), None)
    if as_json:
        # ``version``: which one ``source`` is (the latest without --version)
        print_json({"kind": kind, "name": name, "schedule": sch, "version": shown.version,
                    "checksum": shown.checksum, "source": shown.source,
                    "active_version": active,
                    "latest_version": max((v.version for v in versions), default=None),
                    "versions": [{"version": v.version, "active": v.active,
                                  "checksum": v.checksum,
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
    state = ("" if shown.active else "; deactivated: no version is active" if active is None
             else f"; not the active version: v{active} is")
    console.print(f"\n# v{shown.version} ({shown.file}){state}", markup=False)
    console.print(shown.source, markup=False, highlight=False)


def records_timeline(record_id: str, events: Sequence[Mapping[str, Any]], *,
                     as_json: bool) -> None:
    """``baton records timeline``: the record's audit events in order."""
    from baton.runtime.views import event_view

    if as_json:
        print_json([event_view(e) for e in events])
        return
    table(f"Timeline of {record_id}", ["at", "event", "actor", "run", "detail"],
          [[e["at"], e["type"], e["actor"], e["run_id"], describe_event(e)] for e in events])
