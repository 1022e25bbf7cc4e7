"""Numbered, versioned schema migrations, applied in order and recorded.

Each migration is a function of a SQLAlchemy connection inside a transaction.
``tests/contract/test_migrations.py`` checks that migrating an empty database
yields the canonical schema of ``schema.py``.

On PostgreSQL a plain ``CREATE INDEX`` holds a SHARE lock on its table until the
transaction commits: every write to the table waits for the whole build. A migration
that adds an index to a table that grows (work items, runs, records, jobs) names it in
``concurrent``: :func:`build_indexes_concurrently` builds it first, outside the
transaction, ``CONCURRENTLY`` (writes go on meanwhile), and the migration's own
``IF NOT EXISTS`` / ``checkfirst`` creation then finds it made.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Connection, Dialect, Index, delete, inspect, select, text, update
from sqlalchemy.schema import CreateIndex
from sqlalchemy.sql import visitors

from baton.clock import SystemClock, iso
from baton.errors import ConfigError
from baton.store import schema


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    apply: Callable[[Connection], None]
    # Indexes of schema.py (by name) that this migration makes, to be built CONCURRENTLY
    # ahead of the transaction on PostgreSQL (build_indexes_concurrently). Only for an index
    # whose transaction takes no stronger lock on its table anyway: not one on a column the
    # same migration adds (its ALTER TABLE locks the table out until the commit).
    concurrent: tuple[str, ...] = ()
    # Indexes this migration drops and makes again with another definition: one that an
    # earlier pending migration names in ``concurrent`` is not built ahead (it would be
    # dropped and built again in the transaction).
    redefines: tuple[str, ...] = ()


def _m001_initial(conn: Connection) -> None:
    tables = [
        schema.definitions,
        schema.records,
        schema.runs,
        schema.work_items,
        schema.jobs,
        schema.events,
        schema.workers,
    ]
    for table in tables:
        table.create(conn)


def _m002_jobs_by_run(conn: Connection) -> None:
    """Index jobs by run: a step that closes cancels its pending timers (SLA, pause)."""
    for index in schema.jobs.indexes:
        if index.name == "ix_jobs_run":
            index.create(conn, checkfirst=True)  # a fresh database got it from migration 1


def _m003_people(conn: Connection) -> None:
    """Users, their groups and queues, API tokens and UI sessions (the web API and UI)."""
    for table in (schema.users, schema.memberships, schema.api_tokens, schema.sessions):
        table.create(conn)
    # Work items carry their priority and due time (the Work Guide sorts by them).
    columns = {c["name"] for c in inspect(conn).get_columns(schema.work_items.name)}
    if "priority" not in columns:
        conn.exec_driver_sql(
            "ALTER TABLE baton_work_items ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
    if "due_at" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_work_items ADD COLUMN due_at VARCHAR(40)")


def _m004_records_by_creation(conn: Connection) -> None:
    """Index records by creation time: listing the newest records of every type read the
    whole table (each row's data with it) to sort it."""
    for index in schema.records.indexes:
        if index.name == "ix_records_created":
            index.create(conn, checkfirst=True)  # a fresh database got it from migration 1


def _m005_login_throttle(conn: Connection) -> None:
    """Failed logins per account and per client address: after too many, a lockout."""
    schema.login_throttle.create(conn, checkfirst=True)


def _m006_idempotency_keys(conn: Connection) -> None:
    """Idempotency keys: a create retried after a lost answer replays the first one."""
    schema.idempotency_keys.create(conn, checkfirst=True)


def _m007_incidents(conn: Connection) -> None:
    """Incidents: a trigger's `when` or an evaluation flow that raised, for an operator to
    retry or dismiss (the write that fired it is saved all the same)."""
    schema.incidents.create(conn)


# Indexes whose columns migration 8 changed (the name kept): dropped and made again.
_M008_REDEFINED = ("ix_records_object_type", "ix_records_created", "ix_runs_record",
                   "ix_runs_status", "ix_work_items_assignee")


def _m008_list_indexes(conn: Connection) -> None:
    """Indexes for keyset pagination: every list the API, the UI and the CLI page through
    (runs by any Monitor filter, work items in each Work Guide order, records) is an index
    range read in the list's order, the id last, instead of a scan and a sort."""
    for name in _M008_REDEFINED:
        conn.exec_driver_sql(f"DROP INDEX IF EXISTS {name}")
    for table in (schema.records, schema.runs, schema.work_items):
        have = {c["name"] for c in inspect(conn).get_columns(table.name)}
        for index in table.indexes:  # (checkfirst does not see expression indexes)
            if _index_columns(index) <= have:  # (a later migration's column: its index
                conn.execute(CreateIndex(index, if_not_exists=True))  # comes then)


def _index_columns(index: Index) -> set[str]:
    """The names of every column an index reads: its plain columns, those inside its
    expressions (``coalesce(due_at, ...)``) and those of its partial ``WHERE``. (Its plain
    columns alone are not enough: ``ix_work_items_waiting``'s WHERE reads migration 19's
    ``routing_status``, and a database made before migration 8 has no such column.)"""
    parts: list[Any] = list(index.expressions)
    parts += [value for key, value in index.dialect_kwargs.items()
              if key.endswith("_where") and value is not None]
    return {element.name for part in parts for element in visitors.iterate(part)
            if isinstance(element, Column)}


def _m010_stored_formats(conn: Connection) -> None:
    """Stored formats that cost less. SLA instants are kept on the run (``sla_at``, indexed)
    instead of two timer jobs per step: the column is filled from each in-progress run's
    state, and the SLA timer jobs not yet claimed are deleted (one being fired right now
    fires as before; a second firing of an instant is a no-op of the engine's)."""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.runs.name)}
    if "sla_at" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_runs ADD COLUMN sla_at VARCHAR(40)")
    for index in schema.runs.indexes:
        if index.name == "ix_runs_sla_at":
            index.create(conn, checkfirst=True)
    r, j = schema.runs, schema.jobs
    for row in conn.execute(select(r.c.id, r.c.state).where(r.c.status == "in_progress")):
        due = _sla_at_of_state(row.state)
        if due is not None:
            conn.execute(update(r).where(r.c.id == row.id).values(sla_at=due))
    timers = conn.execute(select(j.c.id, j.c.payload).where(j.c.kind == "timer",
                                                            j.c.status == "ready")).all()
    sla_ids = [t.id for t in timers
               if (t.payload or {}).get("kind") in ("sla_jeopardy", "sla_overdue")]
    for i in range(0, len(sla_ids), 500):
        conn.execute(delete(j).where(j.c.id.in_(sla_ids[i:i + 500])))


_OPEN_STEP = frozenset({"not_started", "waiting", "running", "waiting_for_person", "fallout"})


def _sla_at_of_state(state: dict[str, Any]) -> str | None:
    """``baton.engine.sla.sla_at`` on a stored run state of format 1, written out here so
    that this migration keeps meaning what it meant when the engine changes."""
    if state.get("status") != "in_progress":
        return None
    best: str | None = None
    for step in (state.get("steps") or {}).values():
        sla = step.get("sla")
        if not sla or step.get("status") not in _OPEN_STEP:
            continue
        if sla.get("status") == "on_track" and sla.get("jeopardy_at"):
            at = sla["jeopardy_at"]
        elif sla.get("status") in ("on_track", "in_jeopardy") and sla.get("due_at"):
            at = sla["due_at"]
        else:
            continue
        if best is None or at < best:
            best = at
    return best


def _m011_schedules(conn: Connection) -> None:
    """Schedules: the next tick of each orchestration started by a cron `schedule` trigger.
    Orchestrations deployed before this had their schedule validated but never armed: they
    are armed the next time they are deployed or activated."""
    schema.schedules.create(conn, checkfirst=True)


def _m012_work_item_input(conn: Connection) -> None:
    """Work items keep the ``input`` of their step (a mapping of values evaluated when the
    step started), shown with the form; items created before have none."""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.work_items.name)}
    if "input" not in columns:
        kind = "JSONB" if conn.dialect.name == "postgresql" else "JSON"
        conn.exec_driver_sql(f"ALTER TABLE baton_work_items ADD COLUMN input {kind}")


def _m013_attention(conn: Connection) -> None:
    """Runs that need an operator (a step in fallout, an open step past its SLA) carry it
    in ``attention``, under a partial index: the Monitor's "needs attention" filter is an
    index read. Backfilled from each in-progress run's state."""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.runs.name)}
    if "attention" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_runs ADD COLUMN attention SMALLINT")
    for index in schema.runs.indexes:
        if index.name == "ix_runs_attention":
            conn.execute(CreateIndex(index, if_not_exists=True))
    r = schema.runs
    found: dict[int, list[str]] = {}
    for row in conn.execute(select(r.c.id, r.c.state).where(r.c.status == "in_progress")):
        bits = _attention_of_state(row.state)
        if bits:
            found.setdefault(bits, []).append(row.id)
    for bits, ids in found.items():
        for i in range(0, len(ids), 500):
            conn.execute(update(r).where(r.c.id.in_(ids[i:i + 500])).values(attention=bits))


def _attention_of_state(state: dict[str, Any]) -> int | None:
    """``baton.engine.attention.attention`` on a stored run state (format 1, or format 2
    where a step's status is left out while it is ``not_started``), written out here so
    that this migration keeps meaning what it meant when the engine changes."""
    if state.get("status") != "in_progress":
        return None
    bits = 0
    for step in (state.get("steps") or {}).values():
        status = step.get("status", "not_started")
        if status == "fallout":
            bits |= 1
        if (step.get("sla") or {}).get("status") == "overdue" and status in _OPEN_STEP:
            bits |= 2
    return bits or None


def _m014_callbacks(conn: Connection) -> None:
    """Callbacks from external systems to waiting callout steps, and the server's key that
    callback tokens are made with (random, written once here)."""
    schema.server_keys.create(conn, checkfirst=True)
    schema.callbacks.create(conn, checkfirst=True)
    have = conn.execute(select(schema.server_keys.c.name)
                        .where(schema.server_keys.c.name == "callbacks")).first()
    if have is None:
        conn.execute(schema.server_keys.insert().values(
            name="callbacks", value=_secrets.token_hex(32), created_at=iso(SystemClock().now())))


def _m015_messages(conn: Connection) -> None:
    """E-mail intake: each accepted message once, by its Message-ID, with its record."""
    schema.messages.create(conn, checkfirst=True)


def _m016_child_runs(conn: Connection) -> None:
    """Child runs: a run started by a parent run's ``orchestration`` step names its parent
    run and step (columns, indexed to list a run's children). Runs stored before have no
    parent: the columns stay empty. (Self-contained: it may be renumbered.)"""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.runs.name)}
    if "parent_run_id" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_runs ADD COLUMN parent_run_id VARCHAR(40)")
    if "parent_step" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_runs ADD COLUMN parent_step VARCHAR(200)")
    for index in schema.runs.indexes:
        if index.name == "ix_runs_parent":
            index.create(conn, checkfirst=True)  # a fresh database got it from migration 1


def _m017_work_item_headlines(conn: Connection) -> None:
    """Work items carry a summary line from their record (under the title, searched with
    it) and the instant their SLA turns in_jeopardy (the Work Guide's SLA filter compares
    it with the time, as it does ``due_at``). Items still open get it from their run."""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.work_items.name)}
    if "summary" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_work_items ADD COLUMN summary VARCHAR(500)")
    if "jeopardy_at" not in columns:
        conn.exec_driver_sql("ALTER TABLE baton_work_items ADD COLUMN jeopardy_at VARCHAR(40)")
    w, r = schema.work_items, schema.runs
    rows = conn.execute(select(w.c.id, w.c.step, w.c.iteration, r.c.state)
                        .join(r, r.c.id == w.c.run_id)
                        .where(w.c.status.in_(("open", "claimed")))).all()
    for row in rows:
        step = ((row.state or {}).get("steps") or {}).get(row.step) or {}
        sla = step.get("sla") if step.get("iteration") == row.iteration else None
        if sla and sla.get("jeopardy_at"):
            conn.execute(update(w).where(w.c.id == row.id)
                         .values(jeopardy_at=sla["jeopardy_at"]))


def _m018_attachments(conn: Connection) -> None:
    """Attachments of intake's messages: content-addressed blobs with their extracted text,
    and each message's attachments (stored or refused); the UIDs IMAP polling has taken."""
    schema.blobs.create(conn, checkfirst=True)
    schema.attachments.create(conn, checkfirst=True)
    schema.imap_state.create(conn, checkfirst=True)


def _m019_routing(conn: Connection) -> None:
    """Routing: people's availability, capacity, skills and calendar, their load (per queue
    too), round-robin cursors; a work item's routing rule and state."""
    columns = {c["name"] for c in inspect(conn).get_columns(schema.work_items.name)}
    for name, ddl in (("routing", _json_ddl(conn)), ("routing_status", "VARCHAR(10)"),
                      ("routed_to", "VARCHAR(200)"), ("routed_at", "VARCHAR(40)")):
        if name not in columns:
            conn.exec_driver_sql(f"ALTER TABLE baton_work_items ADD COLUMN {name} {ddl}")
    for index in schema.work_items.indexes:
        if index.name == "ix_work_items_waiting":  # (checkfirst misses expression indexes)
            conn.execute(CreateIndex(index, if_not_exists=True))
    for table in (schema.agents, schema.agent_queues, schema.routing_cursors):
        table.create(conn, checkfirst=True)


def _json_ddl(conn: Connection) -> str:
    return "JSONB" if conn.dialect.name == "postgresql" else "JSON"


def _m020_plans(conn: Connection) -> None:
    """Fulfillment plans: each revision of an order's plan with its generated step graph.
    (Self-contained: it may be renumbered.)"""
    schema.plans.create(conn, checkfirst=True)


def _m021_delegation(conn: Connection) -> None:
    """Delegation of approvals: a user names a delegate (optionally between two dates), who
    may act on the user's approvals; work items keep the type of their step, so that the
    delegate's Work Guide can list the approvals (not the other items) of whom they act
    for. Items made before are told apart by their form: an approval's is fixed (decision:
    approve|reject, comments); the others' type is left unknown (null).
    (Self-contained: it may be renumbered.)"""
    users = {c["name"] for c in inspect(conn).get_columns(schema.users.name)}
    for column, size in (("delegate", 200), ("delegate_from", 10), ("delegate_until", 10)):
        if column not in users:
            conn.exec_driver_sql(f"ALTER TABLE baton_users ADD COLUMN {column} VARCHAR({size})")
    for index in schema.users.indexes:
        if index.name == "ix_users_delegate":
            index.create(conn, checkfirst=True)
    items = {c["name"] for c in inspect(conn).get_columns(schema.work_items.name)}
    if "step_type" not in items:
        conn.exec_driver_sql("ALTER TABLE baton_work_items ADD COLUMN step_type VARCHAR(40)")
    w = schema.work_items
    rows = conn.execute(select(w.c.id, w.c.form).where(w.c.step_type.is_(None))).all()
    for row in rows:  # (the others' type stays unknown: only approvals are told apart)
        if _is_approval_form(row.form):
            conn.execute(update(w).where(w.c.id == row.id).values(step_type="approval"))


def _is_approval_form(form: Any) -> bool:
    """The form ``type: approval`` gives every item (baton.steps.approval.FORM), as it was
    when this migration was written."""
    if not isinstance(form, list) or len(form) != 2:
        return False
    first, second = form
    return (isinstance(first, dict) and isinstance(second, dict)
            and first.get("name") == "decision" and first.get("type") == "choice"
            and list(first.get("choices") or []) == ["approve", "reject"]
            and second.get("name") == "comments" and second.get("type") == "text")


def _m022_classifiers(conn: Connection) -> None:
    """Classifiers trained from labelled texts, versioned (``baton ai train``)."""
    schema.classifiers.create(conn, checkfirst=True)


def _m023_routing_generation(conn: Connection) -> None:
    """The routing generation: raised with every change to a pool's people, so that each
    process may keep a pool's static part (members, skills, capacities, calendars) between
    transactions and see another process's change at its next decision.
    (Self-contained: it may be renumbered.)"""
    schema.routing_generation.create(conn, checkfirst=True)
    t = schema.routing_generation
    if conn.execute(select(t.c.n).where(t.c.id == 1)).first() is None:
        conn.execute(t.insert().values(id=1, n=0))


def _m024_record_refs(conn: Connection) -> None:
    """Records indexed by the records their fields name (``ref`` fields): an order's lines,
    the records of a type that point at one record, are an index range instead of a scan
    of the type. The table is kept by triggers on baton_records (schema.REF_TRIGGERS),
    made here with it; the records stored before are indexed from their data.
    (Self-contained: it may be renumbered.)"""
    schema.record_refs.create(conn, checkfirst=True)
    schema.create_ref_triggers(conn)  # (create() made them, unless the table was there)
    conn.exec_driver_sql("DELETE FROM baton_record_refs")
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            "INSERT INTO baton_record_refs (record_id, field, target_id, object_type, "
            "created_at) SELECT r.id, j.key, j.value #>> '{}', r.object_type, r.created_at "
            "FROM baton_records AS r, jsonb_each(r.data) AS j "
            "WHERE jsonb_typeof(r.data) = 'object' AND jsonb_typeof(j.value) = 'string' "
            f"AND left(j.value #>> '{{}}', {len(schema.REF_PREFIX)}) = '{schema.REF_PREFIX}' "
            f"AND length(j.value #>> '{{}}') <= {schema.REF_MAX}")
    else:
        conn.exec_driver_sql(
            "INSERT INTO baton_record_refs (record_id, field, target_id, object_type, "
            "created_at) SELECT r.id, j.key, j.value, r.object_type, r.created_at "
            "FROM baton_records AS r, json_each(r.data) AS j "
            "WHERE json_type(r.data) = 'object' AND j.type = 'text' "
            f"AND substr(j.value, 1, {len(schema.REF_PREFIX)}) = '{schema.REF_PREFIX}' "
            f"AND length(j.value) <= {schema.REF_MAX}")


def _m025_run_steps(conn: Connection) -> None:
    """The steps of large runs (plans) in rows of their own (state format 4), so that a
    commit writes the steps that changed instead of the whole document. Additive: the runs
    stored before keep their one document (formats 2 and 3 are read as they are); a run of
    more than 64 steps moves to format 4 at its next write.
    (Self-contained: it may be renumbered.)"""
    schema.run_steps.create(conn, checkfirst=True)


def _m026_ordered_run_state(conn: Connection) -> None:
    """A run's state as ``json`` on PostgreSQL, not ``jsonb``: ``jsonb`` sorts an object's
    keys (shorter first), so a run's stages and steps came back out of the process's order
    (``baton runs show`` listed ``a, mid, zeta`` where SQLite kept ``zeta, a, mid``). The
    runs stored before keep the order ``jsonb`` gave them (it is not recoverable from the
    row); a run started after keeps its own. Rewrites the table once (PostgreSQL holds
    an exclusive lock on ``baton_runs`` meanwhile). SQLite stores JSON text: nothing to do.
    (Self-contained: it may be renumbered.)"""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("ALTER TABLE baton_runs ALTER COLUMN state TYPE json "
                             "USING state::json")


def _m027_routed_index(conn: Connection) -> None:
    """Index work items by when they were routed (partial: the items routed or offered):
    the Team page's and the metrics' "routed in the last hour" read every item ever routed.
    (Self-contained: it may be renumbered.)"""
    for index in schema.work_items.indexes:
        if index.name == "ix_work_items_routed":  # (a fresh database got it from migration 1)
            conn.execute(CreateIndex(index, if_not_exists=True))


def _m028_definitions_generation(conn: Connection) -> None:
    """The definitions generation: raised in the transaction of every write to the
    definitions (a deploy, an import, an activation), so that each process's index of the
    active versions sees another process's change at its next look (once a second), and
    tells an older index from a newer one. It replaces a sum over the table's rows, which
    two different sets of active versions could share.
    (Self-contained: it may be renumbered.)"""
    t = schema.definitions_generation
    t.create(conn, checkfirst=True)
    if conn.execute(select(t.c.n).where(t.c.id == 1)).first() is None:
        conn.execute(t.insert().values(id=1, n=0))


def _m029_message_notes(conn: Connection) -> None:
    """Messages keep the notes intake made reading them (a body cut to what is kept, a
    multipart read as text, an attachment stored as what its bytes are), which only the
    record's timeline had: the API's answers for a message and ``baton intake eml --json``
    give them. Messages stored before have none (NULL, read as an empty list).
    (Self-contained: it may be renumbered.)"""
    columns = {c["name"] for c in inspect(conn).get_columns("baton_messages")}
    if "notes" not in columns:  # (a fresh database got it from migration 15)
        conn.exec_driver_sql(f"ALTER TABLE baton_messages ADD COLUMN notes {_json_ddl(conn)}")


def _m030_callback_answers(conn: Connection) -> None:
    """Callbacks keep what their delivery was answered (``early``: 202, ``delivered``:
    200): a repeat of a callback with the same body (a sender retrying a delivery whose
    answer it lost) is answered that again. Callbacks received before have none (NULL,
    read as their status). (Self-contained: it may be renumbered.)"""
    columns = {c["name"] for c in inspect(conn).get_columns("baton_callbacks")}
    if "answer" not in columns:  # (a fresh database got it from migration 14)
        conn.exec_driver_sql("ALTER TABLE baton_callbacks ADD COLUMN answer VARCHAR(20)")


def _m031_fallout_steps(conn: Connection) -> None:
    """The steps in fallout in rows of their own (baton_fallout), kept by the run writer
    (a trigger on baton_runs helped it until migration 33): the Fallout list, its totals and its groups read them
    instead of every such run's state. Filled here from the runs in progress whose
    ``attention`` holds the fallout bit (their states, their split steps merged).
    (Self-contained: it may be renumbered.)"""
    schema.fallout.create(conn, checkfirst=True)
    conn.exec_driver_sql("DELETE FROM baton_fallout")
    r, st = schema.runs, schema.run_steps
    rows = conn.execute(select(r.c.id, r.c.orchestration, r.c.created_at, r.c.state)
                        .where(r.c.attention.in_((1, 3)), r.c.status == "in_progress")).all()
    out: list[dict[str, Any]] = []
    for row in rows:
        state = row.state if isinstance(row.state, dict) else {}
        steps = state.get("steps")
        if steps is None and state.get("split"):  # (format 4: its steps in rows)
            found = conn.execute(select(st.c.step, st.c.doc).where(st.c.run_id == row.id)
                                 .order_by(st.c.pos)).all()
            steps = {f.step: f.doc for f in found}
        for pos, (name, doc) in enumerate((steps or {}).items()):
            if isinstance(doc, dict) and doc.get("status") == "fallout":
                err = doc.get("error")
                message = ((err.get("message") if isinstance(err, dict) else None)
                           or str(err)).replace("\x00", "\ufffd")  # (no NUL in PG text)
                out.append({"run_id": row.id, "step": name, "pos": pos,
                            "created_at": row.created_at, "orchestration": row.orchestration,
                            "message": message})
    for i in range(0, len(out), 1000):
        conn.execute(schema.fallout.insert(), out[i:i + 1000])


def _m033_no_fallout_trigger(conn: Connection) -> None:
    """The run writer deletes a run's baton_fallout rows itself (one statement per batch of
    runs): the trigger migration 31 made, which every run write fired (about 6 % of the
    CPU per triage run on SQLite), is dropped. (Self-contained: it may be renumbered.)"""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS tr_runs_fallout_left ON baton_runs")
        conn.exec_driver_sql("DROP FUNCTION IF EXISTS baton_fallout_left()")
    else:
        conn.exec_driver_sql("DROP TRIGGER IF EXISTS tr_runs_fallout_left")


def _m032_intake_refusals(conn: Connection) -> None:
    """The mail intake refused or could not take, one row each (who sent it, its subject,
    why, and for IMAP where it stays): an operator's list (``baton intake refused``, ``GET
    /api/intake/refused``, the Fallout page) where only a log line was before.
    (Self-contained: it may be renumbered.)"""
    schema.intake_refusals.create(conn, checkfirst=True)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _m001_initial),
    Migration(2, "index jobs by run", _m002_jobs_by_run, concurrent=("ix_jobs_run",)),
    Migration(3, "users, memberships, API tokens, sessions", _m003_people),
    Migration(4, "index records by creation time", _m004_records_by_creation,
              concurrent=("ix_records_created",)),
    Migration(5, "failed logins per account and client address", _m005_login_throttle),
    Migration(6, "idempotency keys", _m006_idempotency_keys),
    Migration(7, "incidents", _m007_incidents),
    # (8 drops five indexes of records, runs and work items: its transaction locks those
    # tables out until the commit anyway, so its indexes are built in it.)
    Migration(8, "indexes for keyset pagination of runs, work items and records",
              _m008_list_indexes, redefines=_M008_REDEFINED),
    Migration(10, "stored formats that cost less (SLA instants on the run)",
              _m010_stored_formats),
    Migration(11, "schedules", _m011_schedules),
    Migration(12, "work item input", _m012_work_item_input),
    Migration(13, "runs that need attention (fallout, SLA breached), indexed",
              _m013_attention),
    Migration(14, "callbacks and the server key of callback tokens", _m014_callbacks),
    Migration(15, "e-mail messages of intake", _m015_messages),
    Migration(16, "child runs: a run's parent run and step", _m016_child_runs),
    Migration(17, "work item summaries and SLA jeopardy times", _m017_work_item_headlines),
    Migration(18, "attachments of intake's messages, IMAP polling state", _m018_attachments),
    Migration(19, "routing: people's profiles and loads, work items' routing",
              _m019_routing),
    Migration(20, "fulfillment plans of orders (their generated step graphs)", _m020_plans),
    Migration(21, "delegation of approvals; work items keep their step's type",
              _m021_delegation),
    Migration(22, "classifiers trained from labelled texts", _m022_classifiers),
    Migration(23, "the routing generation (routing's per-process cache of pools)",
              _m023_routing_generation),
    Migration(24, "records indexed by the records their ref fields name", _m024_record_refs),
    Migration(25, "the steps of large runs (plans) in rows of their own", _m025_run_steps),
    Migration(26, "a run's state keeps its stages' and steps' order on PostgreSQL",
              _m026_ordered_run_state),
    Migration(27, "index work items by when they were routed", _m027_routed_index,
              concurrent=("ix_work_items_routed",)),
    Migration(28, "the definitions generation (each process's index of active versions)",
              _m028_definitions_generation),
    Migration(29, "messages keep intake's notes (a body cut, an attachment's type)",
              _m029_message_notes),
    Migration(30, "callbacks keep what they were answered (a repeat is answered again)",
              _m030_callback_answers),
    Migration(31, "the steps in fallout in rows of their own (the Fallout list's reads)",
              _m031_fallout_steps),
    Migration(32, "the mail intake refused, for operators to see", _m032_intake_refusals),
    Migration(33, "the Fallout list's rows kept by the run writer alone (no trigger)",
              _m033_no_fallout_trigger),
)
LATEST = MIGRATIONS[-1].version
_KNOWN = frozenset(m.version for m in MIGRATIONS)


def current_version(conn: Connection) -> int:
    if not inspect(conn).has_table(schema.schema_migrations.name):
        return 0
    row = conn.execute(
        schema.schema_migrations.select().order_by(schema.schema_migrations.c.version.desc())
    ).first()
    return int(row.version) if row else 0


def pending(conn: Connection) -> list[Migration]:
    """The migrations not recorded as applied, in order. Every one, not only those above
    the highest applied: branches numbered their migrations apart (13 and 15 were written
    side by side), and a database that got 15 first still gets 13.

    A database that records a migration this code does not have was upgraded by a newer
    Baton (or one built elsewhere): it is refused (:class:`ConfigError`), never worked on
    as if its schema were the one this code knows."""
    if not inspect(conn).has_table(schema.schema_migrations.name):
        return list(MIGRATIONS)
    m = schema.schema_migrations
    applied: dict[int, str] = {v: n for v, n in conn.execute(select(m.c.version, m.c.name))}
    unknown = sorted(v for v in applied if v not in _KNOWN)
    if unknown:
        names = ", ".join(f"{v} ({applied[v]})" for v in unknown)
        raise ConfigError(
            f"the database's schema is newer than this version of Baton: it records "
            f"migration{'s' if len(unknown) > 1 else ''} {names}, which this version (schema "
            f"{LATEST}) does not have; a newer Baton upgraded it. Run that version, or "
            f"restore the backup taken before its upgrade; nothing was changed")
    return [mig for mig in MIGRATIONS if mig.version not in applied]


def build_indexes_concurrently(conn: Connection) -> list[str]:
    """PostgreSQL: build the indexes the pending migrations name in ``concurrent``, in the
    migrations' order, each with ``CREATE INDEX CONCURRENTLY IF NOT EXISTS``: the table's
    writers go on while it builds (it waits for the transactions that write to the table
    when it starts, and for those older than its snapshot, without stopping new ones).
    ``conn`` is in autocommit (a concurrent build cannot run in a transaction) and holds the
    migration lock (:func:`baton.store.sql.dialects.migration_lock`). Returns the names built.

    An index left INVALID by a concurrent build that was killed or failed (it exists, and
    may cost writes, but is never read; ``IF NOT EXISTS`` would keep it) is dropped
    ``CONCURRENTLY`` and built again. Skipped: a new database (migration 1 pending: it
    makes every index), an index whose table or columns are not there yet (a pending
    migration adds them: the index is made in the transaction after them), one a later
    pending migration redefines. An upgrade that fails or is interrupted after this keeps
    the indexes built here (they are the new schema's, and no code reads them before it is
    migrated); the next upgrade finds them made."""
    todo = pending(conn)
    if not todo or todo[0].version == 1:
        return []
    indexes: dict[str, Index] = {str(index.name): index
                                 for table in schema.metadata.tables.values()
                                 for index in table.indexes}
    built: list[str] = []
    for i, migration in enumerate(todo):
        redefined = {name for later in todo[i + 1:] for name in later.redefines}
        for name in migration.concurrent:
            index = indexes[name]
            if name in redefined or not _can_build(conn, index):
                continue
            valid = conn.execute(text("SELECT indisvalid FROM pg_index "
                                      "WHERE indexrelid = to_regclass(:name)"),
                                 {"name": name}).scalar()
            if valid:
                continue
            if valid is not None:  # (False: a killed or failed build's leftover)
                conn.exec_driver_sql(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
            conn.exec_driver_sql(create_index_concurrently(index, conn.dialect))
            built.append(name)
    return built


def _can_build(conn: Connection, index: Index) -> bool:
    """Are the index's table and every column it reads (in its expressions, in its partial
    WHERE) there already?"""
    table = index.table
    assert table is not None
    inspector = inspect(conn)
    if not inspector.has_table(table.name):
        return False
    have = {c["name"] for c in inspector.get_columns(table.name)}
    return _index_columns(index) <= have


def create_index_concurrently(index: Index, dialect: Dialect) -> str:
    """``CREATE [UNIQUE] INDEX CONCURRENTLY IF NOT EXISTS ...`` for a schema index on
    PostgreSQL, its expressions and partial WHERE as the transaction's ``CreateIndex``
    makes them. (``postgresql_concurrently`` is an option of the Index object itself, which
    the schema's tables share with every migration: the keyword is put in the compiled
    statement instead of changing the shared object.)"""
    ddl = str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect))
    head = "CREATE UNIQUE INDEX " if index.unique else "CREATE INDEX "
    if not ddl.startswith(head + "IF NOT EXISTS "):
        raise RuntimeError(f"unexpected DDL for index {index.name}: {ddl}")
    return head + "CONCURRENTLY " + ddl[len(head):]
