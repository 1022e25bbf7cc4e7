"""The canonical schema (SQLAlchemy Core). Migrations in ``migrations.py`` must produce it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    literal_column,
)
from sqlalchemy import func as _func
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

metadata = MetaData()


class JsonDocument(TypeDecorator[Any]):
    """JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text on SQLite.

    A type decorator rather than ``JSON().with_variant(JSONB(), "postgresql")``: the
    variant needs a JSONB instance when this module is imported, and importing
    ``sqlalchemy.dialects.postgresql`` (its drivers' dialects with it) costs a SQLite
    process ~0.1 s of CPU it never uses (``baton runs list`` pays it on every call).
    Here the PostgreSQL type is imported when a PostgreSQL connection first asks."""

    impl = JSON
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return dialect.type_descriptor(JSONB())
        return dialect.type_descriptor(self.impl_instance)


class OrderedJsonDocument(JsonDocument):
    """A JSON document whose keys keep their order: ``json`` on PostgreSQL (its text as
    written), JSON text on SQLite. A run's state: its stages and steps are kept in the
    order of the process (``baton runs show``, the run page, the API), which ``jsonb``
    would sort by key length and bytes (migration 26)."""

    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import JSON as PgJSON

            return dialect.type_descriptor(PgJSON())
        return dialect.type_descriptor(self.impl_instance)


JSON = JsonDocument  # type: ignore[assignment,misc]

# Partial indexes carry their WHERE per database. SQLite's is given when they are made;
# PostgreSQL's when a PostgreSQL connection first needs the schema (use_postgresql()),
# because naming ``postgresql_where`` here makes SQLAlchemy import its PostgreSQL dialect to
# check the keyword, the cost JsonDocument avoids.
_PARTIAL_INDEXES: list[tuple[Index, Any]] = []


def _partial_index(name: str, *columns: Any, where: Any) -> Index:
    index = Index(name, *columns, sqlite_where=where)
    _PARTIAL_INDEXES.append((index, where))
    return index


def use_postgresql() -> None:
    """Give the partial indexes their PostgreSQL WHERE (idempotent): called by the store
    on a PostgreSQL URL and before ``metadata.create_all`` on PostgreSQL."""
    for index, where in _PARTIAL_INDEXES:
        if index.dialect_kwargs.get("postgresql_where") is None:
            index.dialect_kwargs["postgresql_where"] = where


@event.listens_for(metadata, "before_create")
def _before_create(target: MetaData, connection: Any, **kw: Any) -> None:
    if connection.dialect.name == "postgresql":
        use_postgresql()

# Big integer ids that autoincrement on SQLite too (SQLite only autoincrements INTEGER PRIMARY KEY).
AutoId = BigInteger().with_variant(Integer(), "sqlite")

schema_migrations = Table(
    "baton_schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("applied_at", String(40), nullable=False),
)

definitions = Table(
    "baton_definitions",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("checksum", String(64), nullable=False),
    Column("source", Text, nullable=False),
    Column("file", String(500), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("deployed_at", String(40), nullable=False),
    Column("deployed_by", String(200), nullable=False),
    UniqueConstraint("kind", "name", "version", name="uq_definitions_kind_name_version"),
)

# One row (id 1): a number raised in the transaction of every write to baton_definitions
# (a version deployed or imported, one (de)activated). A process's index of the active
# versions is good while the number it was read at is still the one stored; of two
# indexes, the one read at the higher number is the newer (migration 28).
definitions_generation = Table(
    "baton_definitions_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)

records = Table(
    "baton_records",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("object_type", String(200), nullable=False),
    Column("data", JSON, nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    # Migration 8: the id after the time, so a page ends exactly (keyset pagination).
    Index("ix_records_object_type", "object_type", "created_at", "id"),
    Index("ix_records_created", "created_at", "id"),  # the newest records of every type
)

# Migration 24: the records that name a record, by field (what a ``ref`` field holds). One
# row per top-level field of a record whose value is a record id (text starting ``rec_``,
# at most 40 characters: what a ref field holds, since a record's id is made so); kept by
# database triggers on baton_records (``REF_TRIGGERS``), so every write of a record -- one
# made by a worker's batched update, a planned commit's replay, a delete -- changes its
# entries in its own statement, in its own transaction. Finding an order's lines
# (``find_records_txn(OrderLine, {order: id})``) is then a range of ix_record_refs_target
# in the list's order (newest first) instead of a scan of every record of the type.
REF_PREFIX = "rec_"
REF_MAX = 40  # baton_records.id's length: a longer text names no record

record_refs = Table(
    "baton_record_refs",
    metadata,
    Column("record_id", String(40), primary_key=True),  # the record whose field names it
    Column("field", String(200), primary_key=True),
    Column("target_id", String(40), nullable=False),  # the record named
    Column("object_type", String(200), nullable=False),  # record_id's (never changes)
    Column("created_at", String(40), nullable=False),  # record_id's (never changes)
    Index("ix_record_refs_target", "target_id", "object_type", "field", "created_at",
          "record_id"),
)


def is_record_ref(value: Any) -> bool:
    """Would ``value``, a record's field, have an entry in baton_record_refs? (The
    triggers' test, in Python: a lookup by any other value cannot use the index.)"""
    return (isinstance(value, str) and value.startswith(REF_PREFIX)
            and len(value) <= REF_MAX)


_SQLITE_REFS = (  # a text member of the record's JSON object that is a record id
    f"FROM json_each(NEW.data) AS j WHERE j.type = 'text' AND substr(j.value, 1, "
    f"{len(REF_PREFIX)}) = '{REF_PREFIX}' AND length(j.value) <= {REF_MAX}")
REF_TRIGGERS: dict[str, tuple[str, ...]] = {
    # SQLite: a write indexes only data with a record id in it (a quick text search
    # first: the body, which parses the JSON, is skipped for most records' writes).
    "sqlite": (
        ("CREATE TRIGGER IF NOT EXISTS tr_records_refs_insert AFTER INSERT ON baton_records "
         f"WHEN instr(NEW.data, '\"{REF_PREFIX}') > 0 "
         "BEGIN INSERT INTO baton_record_refs (record_id, field, target_id, object_type, "
         "created_at) SELECT NEW.id, j.key, j.value, NEW.object_type, NEW.created_at "
         f"{_SQLITE_REFS}; END"),
        ("CREATE TRIGGER IF NOT EXISTS tr_records_refs_update AFTER UPDATE OF data "
         f"ON baton_records WHEN instr(OLD.data, '\"{REF_PREFIX}') > 0 "
         f"OR instr(NEW.data, '\"{REF_PREFIX}') > 0 "
         "BEGIN DELETE FROM baton_record_refs WHERE record_id = OLD.id AND NOT EXISTS ("
         "SELECT 1 FROM json_each(NEW.data) AS j WHERE j.key = baton_record_refs.field "
         "AND j.type = 'text' AND j.value = baton_record_refs.target_id); "
         "INSERT OR IGNORE INTO baton_record_refs (record_id, field, target_id, object_type, "
         "created_at) SELECT NEW.id, j.key, j.value, NEW.object_type, NEW.created_at "
         f"{_SQLITE_REFS}; END"),
        ("CREATE TRIGGER IF NOT EXISTS tr_records_refs_delete AFTER DELETE ON baton_records "
         "BEGIN DELETE FROM baton_record_refs WHERE record_id = OLD.id; END"),
    ),
    "postgresql": (
        ("CREATE OR REPLACE FUNCTION baton_record_refs_sync() RETURNS trigger "
         "LANGUAGE plpgsql AS $$ BEGIN "
         "IF TG_OP <> 'INSERT' THEN "
         "DELETE FROM baton_record_refs x WHERE x.record_id = OLD.id AND (TG_OP = 'DELETE' "
         "OR (NEW.data -> x.field) IS DISTINCT FROM to_jsonb(x.target_id)); "
         "END IF; "
         "IF TG_OP <> 'DELETE' THEN "
         "INSERT INTO baton_record_refs (record_id, field, target_id, object_type, created_at) "
         "SELECT NEW.id, j.key, j.value #>> '{}', NEW.object_type, NEW.created_at "
         "FROM jsonb_each(NEW.data) AS j WHERE jsonb_typeof(j.value) = 'string' "
         f"AND left(j.value #>> '{{}}', {len(REF_PREFIX)}) = '{REF_PREFIX}' "
         f"AND length(j.value #>> '{{}}') <= {REF_MAX} "
         "ON CONFLICT (record_id, field) DO NOTHING; "
         "END IF; RETURN NULL; END $$"),
        "DROP TRIGGER IF EXISTS tr_records_refs_write ON baton_records",
        ("CREATE TRIGGER tr_records_refs_write AFTER INSERT OR DELETE OR UPDATE OF data "
         "ON baton_records FOR EACH ROW EXECUTE FUNCTION baton_record_refs_sync()"),
    ),
}


def create_ref_triggers(connection: Any) -> None:
    """Make the triggers that keep baton_record_refs (idempotent)."""
    for statement in REF_TRIGGERS[connection.dialect.name]:
        connection.exec_driver_sql(statement)


@event.listens_for(record_refs, "after_create")
def _after_refs_create(target: Table, connection: Any, **kw: Any) -> None:
    create_ref_triggers(connection)

runs = Table(
    "baton_runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("orchestration", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("record_id", String(40), nullable=True),
    Column("status", String(20), nullable=False),
    Column("current_stage", String(200), nullable=True),
    Column("state", OrderedJsonDocument, nullable=False),  # (json on PostgreSQL: migration 26)
    Column("seq", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("completed_at", String(40), nullable=True),
    # Migration 10: the earliest SLA instant still to come over the run's open steps
    # (baton.engine.sla), written with every state; the workers' claim finds due runs by it.
    Column("sla_at", String(40), nullable=True),
    # Migration 16: a child run's parent run and the step that started it (a run's children
    # are read by this index: the run page, ``GET /api/runs/{id}``).
    Column("parent_run_id", String(40), nullable=True),
    Column("parent_step", String(200), nullable=True),
    # Migration 13: what needs an operator (baton.engine.attention: 1 a step in fallout,
    # 2 an open step past its SLA, 3 both; NULL nothing), written with every run state.
    Column("attention", SmallInteger, nullable=True),
    # Migration 8: the Monitor's filters, each index going on in the list's order
    # (created_at, id), so a page of any filter is an index range read (store/sql/keyset.py).
    Index("ix_runs_record", "record_id", "created_at", "id"),
    Index("ix_runs_status", "status", "created_at", "id"),
    Index("ix_runs_created", "created_at", "id"),
    Index("ix_runs_orchestration", "orchestration", "status", "created_at", "id"),
    Index("ix_runs_stage", "current_stage", "status", "created_at", "id"),
    Index("ix_runs_sla_at", "sla_at"),
    Index("ix_runs_parent", "parent_run_id", "parent_step"),
)

# Migration 25: the steps of a run of more than SPLIT_STEPS steps (a plan's), one row each:
# its entry of the run's document (``baton.engine.state``: ``_step_doc``), ``pos`` its place
# in the run's order of steps. Such a run's ``state`` is its document without ``steps``,
# marked ``"split": true`` (state format 4): a commit writes the steps that changed, not the
# whole document. The run row's compare-and-set on ``seq`` serializes every writer of a
# run, so the step rows need no guard of their own; they are written in the same
# transaction as the run row, and read back into the document by the store.
run_steps = Table(
    "baton_run_steps",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("step", String(200), primary_key=True),
    Column("pos", Integer, nullable=False),
    Column("doc", JSON, nullable=False),
)

# Migration 13: the Monitor's "needs attention" filter, newest first. Partial: a run that
# needs nothing has no entry, so the writes of the many such runs never touch this index.
_needs = runs.c.attention.isnot(None)
_partial_index("ix_runs_attention", runs.c.attention, runs.c.created_at, runs.c.id, where=_needs)

# Migration 31: the steps in fallout, one row each (of a run in progress), so the Fallout
# list, its totals and its groups read these rows, not every such run's state. Written by
# the run writer (store/sql/fallout.py) with each row of a run that has a step in fallout
# (its ``attention`` holds bit 1), in the same transaction: the run's rows replaced by its
# steps in fallout as written. The writer deletes the rows of every run it writes (one
# statement per batch of runs), so a run whose last step in fallout was resolved, or that
# ended, has none. (Migration 31 also made a trigger on baton_runs doing that delete; it
# cost about 6 % of the CPU per triage run on SQLite, every run write firing it: migration
# 33 drops it.)
fallout = Table(
    "baton_fallout",
    metadata,
    # (The Fallout page's order: run, step, as Python orders text: "C" on PostgreSQL, whose
    # database collation may order text otherwise; SQLite's is bytes, that order.)
    Column("run_id", String(40).with_variant(String(40, collation="C"), "postgresql"),
           primary_key=True),
    Column("step", String(200).with_variant(String(200, collation="C"), "postgresql"),
           primary_key=True),
    Column("pos", Integer, nullable=False),  # the step's place in its run's steps
    Column("created_at", String(40), nullable=False),  # the run's (never changes)
    Column("orchestration", String(200), nullable=False),  # the run's (never changes)
    Column("message", Text, nullable=False),  # the error's message: the page's groups
    # The API's order (the oldest run first, a run's steps in its order): a page is a range.
    Index("ix_fallout_created", "created_at", "run_id", "pos"),
)

# A work item's due time for sorting, no due time last (after any ISO timestamp): the same
# expression in the indexes and in the queries, so both databases read it from the index.
NO_DUE = "9999-12-31T23:59:59.999Z"


def due_key(column: Any) -> Any:
    return _func.coalesce(column, literal_column(f"'{NO_DUE}'"))


work_items = Table(
    "baton_work_items",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("run_id", String(40), nullable=False),
    Column("record_id", String(40), nullable=True),
    Column("orchestration", String(200), nullable=False),
    Column("stage", String(200), nullable=False),
    Column("step", String(200), nullable=False),
    Column("iteration", Integer, nullable=False),
    Column("title", String(300), nullable=False),
    Column("instructions", Text, nullable=True),
    Column("form", JSON, nullable=False),
    Column("status", String(20), nullable=False),
    Column("assignee_kind", String(10), nullable=False),
    Column("assignee", String(200), nullable=False),
    Column("claimed_by", String(200), nullable=True),
    Column("data", JSON, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("completed_at", String(40), nullable=True),
    Column("completed_by", String(200), nullable=True),
    # Migration 3: how urgent (0 low, 1 normal, 2 high, 3 urgent) and the step's SLA due time,
    # kept on the item so the Work Guide can sort by them.
    Column("priority", Integer, nullable=False, server_default="1"),
    Column("due_at", String(40), nullable=True),
    # Migration 17: a line about the record under the title, and when the SLA turns
    # in_jeopardy (the Work Guide's SLA filter).
    Column("summary", String(500), nullable=True),
    Column("jeopardy_at", String(40), nullable=True),
    # Migration 12: the step's input (evaluated when it started), shown with the form.
    Column("input", JSON, nullable=True),
    # Migration 21: the type of the step that made the item (interactive, approval): an
    # approver's delegate may act on approvals only.
    Column("step_type", String(40), nullable=True),
    # Migration 19: routing (baton.work.router). ``routing`` is the rule as the item was
    # made (its name, strategy, filters and the skills its expressions gave then);
    # ``routing_status`` waiting | offered | routed (null: not routed; offered: offer mode,
    # to ``routed_to`` since ``routed_at``); ``routed_to`` the person whose load this item
    # counts in (cleared when it stops counting).
    Column("routing", JSON, nullable=True),
    Column("routing_status", String(10), nullable=True),
    Column("routed_to", String(200), nullable=True),
    Column("routed_at", String(40), nullable=True),
    Index("ix_work_items_run", "run_id", "step", "iteration"),
)

# Migration 8: the Work Guide's orders, for every item (an operator) and per assignee (an
# agent's user, groups and queues): `created`, and `due`/`priority` read per priority (four
# index ranges merged), the due time with "none" last (due_key).
_wi = work_items.c
Index("ix_work_items_created", _wi.status, _wi.created_at, _wi.id)
Index("ix_work_items_urgent", _wi.status, _wi.priority, due_key(_wi.due_at), _wi.created_at,
      _wi.id)
Index("ix_work_items_assignee", _wi.status, _wi.assignee_kind, _wi.assignee, _wi.created_at,
      _wi.id)
Index("ix_work_items_assignee_urgent", _wi.status, _wi.assignee_kind, _wi.assignee,
      _wi.priority, due_key(_wi.due_at), _wi.created_at, _wi.id)
Index("ix_work_items_claimed", _wi.claimed_by, _wi.status)
Index("ix_work_items_record", _wi.record_id)
# Migration 19: the items waiting for routing in a queue or group, in the order they are
# routed (most urgent first, then earliest due, then oldest). Partial: only waiting items.
_waiting = _wi.routing_status == "waiting"
_partial_index("ix_work_items_waiting", _wi.assignee_kind, _wi.assignee, _wi.priority.desc(),
               due_key(_wi.due_at), _wi.created_at, _wi.id, where=_waiting)
# Migration 27: the items routed since an instant (the Team page's and the metrics' "routed
# in the last hour", store/sql/routing.py routing_figures_txn): an index range, not a read
# of every item. Partial: an item never routed (most, where no rule routes) is not in it.
_partial_index("ix_work_items_routed", _wi.routed_at, where=_wi.routed_at.isnot(None))

jobs = Table(
    "baton_jobs",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("kind", String(40), nullable=False),
    Column("run_id", String(40), nullable=True),
    Column("payload", JSON, nullable=False),
    Column("status", String(20), nullable=False),  # ready | claimed
    Column("run_after", String(40), nullable=False),
    Column("claimed_by", String(80), nullable=True),
    Column("claimed_at", String(40), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Index("ix_jobs_ready", "status", "run_after", "id"),
    Index("ix_jobs_claimed_by", "claimed_by"),
    Index("ix_jobs_run", "run_id", "kind"),  # a run's pending timers (canceled when done)
)

events = Table(
    "baton_events",
    metadata,
    Column("id", AutoId, primary_key=True, autoincrement=True),
    Column("at", String(40), nullable=False),
    Column("type", String(60), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("record_id", String(40), nullable=True),
    Column("run_id", String(40), nullable=True),
    Column("data", JSON, nullable=False),
    Index("ix_events_record", "record_id", "id"),
    Index("ix_events_run", "run_id", "id"),
)

workers = Table(
    "baton_workers",
    metadata,
    Column("id", String(80), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("heartbeat_at", String(40), nullable=False),
)

# ---- people: users, their groups and queues, API tokens, UI sessions (migration 3) -------
users = Table(
    "baton_users",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("display_name", String(200), nullable=False),
    Column("email", String(320), nullable=True),
    Column("roles", JSON, nullable=False),  # list of role names
    Column("password_hash", String(300), nullable=True),  # argon2 (pwdlib); null: no UI login
    Column("active", Boolean, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    # Migration 21: who may act on this user's approvals, optionally between two dates
    # (inclusive, YYYY-MM-DD, UTC); null: nobody.
    Column("delegate", String(200), nullable=True),
    Column("delegate_from", String(10), nullable=True),
    Column("delegate_until", String(10), nullable=True),
    Index("ix_users_delegate", "delegate"),
)

memberships = Table(
    "baton_memberships",
    metadata,
    Column("user_name", String(200), primary_key=True),
    Column("kind", String(10), primary_key=True),  # group | queue
    Column("name", String(200), primary_key=True),
    Index("ix_memberships_kind_name", "kind", "name"),
)

api_tokens = Table(
    "baton_api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_name", String(200), nullable=False),
    Column("label", String(200), nullable=False),
    Column("secret_hash", String(64), nullable=False, unique=True),  # sha256 of the secret
    Column("created_at", String(40), nullable=False),
    Column("last_used_at", String(40), nullable=True),
    Column("revoked_at", String(40), nullable=True),
    Index("ix_api_tokens_user", "user_name"),
)

sessions = Table(
    "baton_sessions",
    metadata,
    Column("secret_hash", String(64), primary_key=True),  # sha256 of the cookie value
    Column("user_name", String(200), nullable=False),
    Column("csrf_token", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False),
    Index("ix_sessions_user", "user_name"),
)

# ---- failed logins, per account and per client address (migration 5) ---------------------
login_throttle = Table(
    "baton_login_throttle",
    metadata,
    Column("kind", String(10), primary_key=True),  # account | address
    Column("name", String(200), primary_key=True),  # the user name tried, or the IP address
    Column("failures", Integer, nullable=False),  # in the window that began at window_start
    Column("window_start", String(40), nullable=False),
    Column("lockouts", Integer, nullable=False),  # in a row: each doubles the next one
    Column("locked_until", String(40), nullable=True),
    Column("updated_at", String(40), nullable=False),
    Index("ix_login_throttle_updated", "updated_at"),
)

# ---- idempotency keys: a create retried with the same key creates nothing (migration 6) ---
idempotency_keys = Table(
    "baton_idempotency_keys",
    metadata,
    Column("principal", String(200), primary_key=True),  # whose key: keys are per user
    Column("key", String(255), primary_key=True),  # the Idempotency-Key header's value
    Column("method", String(10), nullable=False),
    Column("path", String(1000), nullable=False),
    Column("fingerprint", String(64), nullable=False),  # sha256 of method, path and body
    Column("resource", String(20), nullable=False),  # record | run
    Column("resource_id", String(40), nullable=True),  # bound in the creating transaction
    Column("response", JSON, nullable=True),  # {status, headers, body}: stored after commit
    Column("created_at", String(40), nullable=False),
    Index("ix_idempotency_keys_created", "created_at"),  # the sweep of expired keys
)

# ---- incidents (migration 7): a definition's bug met at run time, for an operator -------
# A record trigger whose `when` raised (the record is saved, the run not started) or an
# evaluation flow that raised (its condition stays false). Retried or dismissed by an
# operator; the status moves open -> resolved | dismissed (baton.engine.status).
incidents = Table(
    "baton_incidents",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("kind", String(40), nullable=False),  # trigger_failed | condition_flow_failed
    Column("status", String(20), nullable=False),
    Column("orchestration", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("record_id", String(40), nullable=True),
    Column("run_id", String(40), nullable=True),  # the run it concerns, or a retry started
    Column("expression", Text, nullable=False),  # the trigger's `when`, or the flow's name
    Column("error", Text, nullable=False),
    Column("detail", JSON, nullable=False),  # what a retry needs (the trigger's op and old)
    Column("attempts", Integer, nullable=False),  # evaluations that raised
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("resolved_at", String(40), nullable=True),
    Column("resolved_by", String(200), nullable=True),
    Column("reason", Text, nullable=True),
    Index("ix_incidents_status", "status", "created_at"),
    Index("ix_incidents_record", "record_id"),
)

# One row per orchestration with a `schedule` trigger whose version is active: the tick its
# armed job stands for. Deploying or activating another version replaces the row (a new
# ``token``), so the job armed for the old one finds itself stale and starts nothing.
schedules = Table(
    "baton_schedules",
    metadata,
    Column("orchestration", String(200), primary_key=True),
    Column("version", Integer, nullable=False),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(80), nullable=False),
    Column("token", String(40), nullable=False),  # the armed job's payload carries it
    Column("next_at", String(40), nullable=True),  # None: deactivated, nothing armed
    Column("last_at", String(40), nullable=True),  # the tick that last started a run
    Column("last_run_id", String(40), nullable=True),
    Column("updated_at", String(40), nullable=False),
)

# One row per e-mail intake accepted (:mod:`baton.intake`): stored once, by its Message-ID,
# in the transaction that made or updated its record, so a message delivered twice (an SMTP
# retry, the same .eml imported again) is recognised and a reply finds its case.
messages = Table(
    "baton_messages",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("message_id", String(500), nullable=False),  # the Message-ID, without < >
    Column("mailbox", String(200), nullable=False),
    Column("record_id", String(40), nullable=True),  # None: not turned into a case (automatic)
    Column("outcome", String(20), nullable=False),  # created | threaded | ignored
    Column("received_at", String(40), nullable=False),
    Column("via", String(20), nullable=False),  # smtp | eml | imap | api
    Column("sender", String(320), nullable=False),
    Column("subject", Text, nullable=False),
    Column("sent_at", String(40), nullable=True),  # the Date header, UTC
    Column("in_reply_to", String(500), nullable=True),
    Column("thread", JSON, nullable=False),  # References + In-Reply-To, newest first
    Column("automatic", String(200), nullable=True),  # why it is automatic mail, else None
    Column("new_text", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("attachments", JSON, nullable=False),  # [{filename, content_type, size, sha256}]
    Column("raw_sha256", String(64), nullable=False),
    Column("size", Integer, nullable=False),
    # What intake noted reading it (the body cut, an attachment stored as what its bytes
    # are…), as on its record's timeline: ["…"]; None: stored before migration 29.
    Column("notes", JSON, nullable=True),
    Index("ux_messages_message_id", "message_id", unique=True),
    Index("ix_messages_record", "record_id", "received_at"),
)


# ---- callbacks (migration 14): external systems calling a waiting callout step back -----
# Keys the server keeps for itself (``callbacks``: the HMAC key callback tokens are made
# with), written once by the migration. Not connection secrets: those are never stored.
server_keys = Table(
    "baton_server_keys",
    metadata,
    Column("name", String(40), primary_key=True),
    Column("value", String(200), nullable=False),
    Column("created_at", String(40), nullable=False),
)

# One row per callback received for a step iteration (a token is single-use): ``early``
# when it came before the request's result was committed (matched at that commit), then
# ``delivered`` once it completed the step. ``answer``: what its delivery was answered
# (``early``: 202, ``delivered``: 200), which a repeat of it with the same body is answered
# again (migration 30; NULL for one received before: its ``status`` stands for it).
callbacks = Table(
    "baton_callbacks",
    metadata,
    Column("run_id", String(40), primary_key=True),
    Column("step", String(200), primary_key=True),
    Column("iteration", Integer, primary_key=True),
    Column("status", String(20), nullable=False),  # early | delivered
    Column("body", JSON, nullable=True),
    Column("received_at", String(40), nullable=False),
    Column("delivered_at", String(40), nullable=True),
    Column("answer", String(20), nullable=True),  # early | delivered (migration 30)
)


# Attachments of intake's messages (:mod:`baton.intake.attachments`), as blobs in the database,
# content-addressed: one ``baton_blobs`` row per distinct content (its sha256), with the text
# extracted from it for AI steps; one ``baton_attachments`` row per attachment of a message
# (refused ones too: what was refused and why, without content). Written in the transaction
# that stores the message.
blobs = Table(
    "baton_blobs",
    metadata,
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),
    Column("content", LargeBinary, nullable=False),
    Column("text", Text, nullable=True),  # the extracted text; None: nothing could be read
    Column("text_error", String(500), nullable=True),  # why no text (a broken PDF…)
    Column("created_at", String(40), nullable=False),
)

attachments = Table(
    "baton_attachments",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("message", String(40), nullable=False),  # baton_messages.id
    Column("record_id", String(40), nullable=True),  # the message's record (None: no case)
    Column("position", Integer, nullable=False),  # order in the message
    Column("filename", String(255), nullable=False),  # made safe by the parser
    Column("content_type", String(200), nullable=False),
    Column("size", Integer, nullable=False),
    Column("sha256", String(64), nullable=False),  # baton_blobs.sha256 when stored
    Column("status", String(20), nullable=False),  # stored | refused
    Column("reason", String(500), nullable=True),  # why it was refused
    Column("created_at", String(40), nullable=False),
    Index("ix_attachments_record", "record_id", "created_at"),
    Index("ix_attachments_message", "message"),
)

# IMAP polling (:mod:`baton.intake.imap`): per mailbox, the folder's UIDVALIDITY and the last
# UID taken, so a poll fetches only what is new and no message is imported twice (a UID
# taken again after a crash is a duplicate by its Message-ID anyway).
imap_state = Table(
    "baton_imap_state",
    metadata,
    Column("mailbox", String(200), primary_key=True),
    Column("account", String(700), nullable=False),  # user@host:port/folder it tracks
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("updated_at", String(40), nullable=False),
)


# Mail intake refused or could not take (migration 32, :mod:`baton.store.sql.refusals`): one
# row per refusal, written in a short transaction of its own where the refusal happens (the
# SMTP listener's 5xx, an IMAP poll going past a message, an ``.eml`` file or an API post
# refused), so an operator sees which mail was refused, when, from whom and why. What the
# message said of itself (From, Subject, Message-ID: bounded), never its body: at most the
# sha256 of its bytes, to tell which file or message it was. IMAP: where it stays (the
# account, folder, UIDVALIDITY and UID). Bounded: the newest rows, for a time (refusals.py).
intake_refusals = Table(
    "baton_intake_refusals",
    metadata,
    Column("id", String(40), primary_key=True),  # rfm_…
    Column("refused_at", String(40), nullable=False),
    Column("mailbox", String(200), nullable=True),  # None: no mailbox could be told
    Column("via", String(20), nullable=False),  # smtp | imap | eml | api
    Column("outcome", String(20), nullable=False),  # refused | unreadable | too_large | failed
    Column("reason", Text, nullable=False),  # the refusal's message (bounded)
    Column("message_id", String(500), nullable=True),  # as its header says it, if any
    Column("sender", String(320), nullable=True),
    Column("subject", String(300), nullable=True),  # its start
    Column("size", BigInteger, nullable=True),  # bytes (as received, or as announced)
    Column("raw_sha256", String(64), nullable=True),  # of the bytes received, when all were
    Column("account", String(700), nullable=True),  # IMAP: user@host:port/folder
    Column("folder", String(300), nullable=True),  # IMAP
    Column("uidvalidity", BigInteger, nullable=True),  # IMAP
    Column("uid", BigInteger, nullable=True),  # IMAP
    Index("ix_intake_refusals_at", "refused_at", "id"),
    Index("ix_intake_refusals_mailbox", "mailbox", "refused_at", "id"),
)


# Classifiers trained from labelled texts (``baton ai train NAME --from FILE.csv``,
# :mod:`baton.ai.trained`), versioned: each training is a new version, an ``ai`` step with
# ``classifier: NAME`` uses the latest. What is stored is the training set (gzip-compressed
# JSON of texts and labels), not a pickled model: loading a pickle from the database would run
# whatever it holds, and pickles break across scikit-learn versions; the classifier is trained
# from it again, deterministically, once per process and version.
classifiers = Table(
    "baton_classifiers",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("labels", JSON, nullable=False),  # the distinct labels, sorted
    Column("examples", Integer, nullable=False),  # how many texts
    Column("fingerprint", String(64), nullable=False),  # of texts and labels (offline.fingerprint)
    Column("data", LargeBinary, nullable=False),  # gzip JSON {"texts": [...], "labels": [...]}
    Column("source", String(500), nullable=True),  # the file it was trained from
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
)


plans = Table(
    "baton_plans",
    metadata,
    # One row per revision of an order's plan: revision 1 is the plan generated when the
    # order was submitted; a later one compensates it (cancel) or plans an amendment. The
    # step graph is data generated for this order, pinned to the versions it came from;
    # the run of a revision executes it (its orchestration is "plan:ORDER", its version the
    # revision).
    Column("order_id", String(40), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),  # plan | compensation
    Column("run_id", String(40), nullable=False),
    Column("fulfillment", String(200), nullable=False),
    Column("fulfillment_version", Integer, nullable=False),
    Column("catalog", String(200), nullable=False),
    Column("catalog_version", Integer, nullable=False),
    Column("graph", JSON, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
)

# ---- routing (migration 19): people as routing sees them ---------------------------------
# One row per person with a routing profile (none: available, no capacity limit, no
# skills). ``load`` counts the open items routing gave them; routing raises it with a
# compare-and-set (``load < capacity``) in the transaction that assigns the item.
agents = Table(
    "baton_agents",
    metadata,
    Column("user_name", String(200), primary_key=True),
    Column("availability", String(10), nullable=False),  # available | away | offline
    Column("capacity", Integer, nullable=True),  # most open routed items; null: no limit
    Column("skills", JSON, nullable=False),  # {"brand:ford": 3, "lang:pt": null}
    Column("calendar", String(200), nullable=True),  # a kind: calendar of working hours
    Column("load", Integer, nullable=False),
    Column("idle_since", String(40), nullable=True),  # last routed to or freed (longest_idle)
    Column("updated_at", String(40), nullable=False),
)

# A person's capacity in one queue (or group), and their load there.
agent_queues = Table(
    "baton_agent_queues",
    metadata,
    Column("user_name", String(200), primary_key=True),
    Column("queue", String(200), primary_key=True),
    Column("capacity", Integer, nullable=True),
    Column("load", Integer, nullable=False),
)

# One row (id 1): a number raised in the transaction of every change to what routing
# keeps of a pool between transactions (memberships, users, routing profiles' skills,
# capacities and calendars, per-queue capacities). A process's cache of a pool is good
# while the number it was read at is still the one stored (migration 23).
routing_generation = Table(
    "baton_routing_generation",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", BigInteger, nullable=False),
)

# The last person a round_robin rule gave an item to.
routing_cursors = Table(
    "baton_routing_cursors",
    metadata,
    Column("rule", String(200), primary_key=True),
    Column("last_user", String(200), nullable=False),
)
