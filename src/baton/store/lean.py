"""A read-only SQLite reader for the CLI's read commands, on the stdlib's ``sqlite3``.

``baton runs list`` and friends spend most of their CPU importing SQLAlchemy and the Engine
before they read a handful of rows. This reader answers the same questions with plain SQL
that mirrors the store's (:mod:`baton.store.sql`): the same filters, order and keyset
pages (the same cursors), the same decoding of stored values (:mod:`baton.store.codec`,
packed audit events). It opens the file read-only (``mode=ro``), in one read transaction,
and only at the schema version this code writes: anything it does not handle exactly
raises :class:`Unsupported`, and the caller answers through the full path instead
(correctness first). It imports no SQLAlchemy, definitions model, CEL or web stack.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from baton.store.base import DefinitionRow
from baton.store.codec import json_loads, unpack_event_row

SCHEMA_VERSIONS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, *range(10, 34)})
"""The versions of ``baton.store.migrations.MIGRATIONS`` (a unit test keeps them equal): a
database with any other set of applied migrations is read through the full path (which
migrates it first)."""
SCAN_BUDGET = 2000  # baton.store.sql.keyset.SCAN_BUDGET: a filter no index holds reads this
BUSY_TIMEOUT_MS = 60_000
MAX_CURSOR = 600

RUN_COLUMNS = ("id", "orchestration", "version", "status", "record_id", "current_stage",
               "created_at", "completed_at", "attention")
RECORD_COLUMNS = ("id", "object_type", "data", "version", "created_at", "updated_at")
WORK_ITEM_COLUMNS = (
    "id", "run_id", "record_id", "orchestration", "stage", "step", "iteration", "title",
    "instructions", "form", "status", "assignee_kind", "assignee", "claimed_by", "data",
    "version", "created_at", "updated_at", "completed_at", "completed_by", "priority",
    "due_at", "summary", "jeopardy_at", "input", "step_type", "routing", "routing_status",
    "routed_to", "routed_at")
INCIDENT_COLUMNS = ("id", "kind", "status", "orchestration", "version", "record_id", "run_id",
                    "expression", "error", "detail", "attempts", "created_at", "updated_at",
                    "resolved_at", "resolved_by", "reason")
SCHEDULE_COLUMNS = ("orchestration", "version", "cron", "timezone", "token", "next_at",
                    "last_at", "last_run_id", "updated_at")
DEFINITION_COLUMNS = ("id", "kind", "name", "version", "checksum", "source", "file", "active",
                      "deployed_at", "deployed_by")
EVENT_COLUMNS = ("id", "at", "type", "actor", "record_id", "run_id", "data")
CHILD_COLUMNS = ("id", "orchestration", "version", "status", "record_id", "current_stage",
                 "created_at", "completed_at", "parent_step")
JSON_COLUMNS = frozenset({"data", "form", "input", "routing", "detail", "state", "doc"})
ATTENTION_VALUES = (1, 2, 3)  # baton.engine.attention.VALUES


class Unsupported(Exception):  # (a signal to the caller, never shown)
    """The lean path does not answer this exactly: the full path does."""


@dataclass(frozen=True)
class Field:
    name: str
    type: str


@dataclass(frozen=True)
class ObjectType:
    """What the CLI reads of an object type: its fields' names and types, its title field."""

    name: str
    fields: tuple[Field, ...]
    title_field: str | None


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (as the project resolves it), else None."""
    if not url.startswith("sqlite:///") or "?" in url:
        return None
    path = url[len("sqlite:///"):]
    return path or None


def encode_cursor(tag: str, values: Sequence[Any]) -> str:
    """As :func:`baton.store.sql.keyset.encode_cursor`."""
    raw = json.dumps([tag, *values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def decode_cursor(tag: str, n_keys: int, text: str) -> list[Any]:
    """The keys of a cursor of list ``tag``; a cursor the full path would refuse (with its
    own error message) is :class:`Unsupported`."""
    if len(text) > MAX_CURSOR:
        raise Unsupported("cursor")
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Unsupported("cursor") from None
    if (not isinstance(data, list) or len(data) != n_keys + 1 or data[0] != tag
            or not all(isinstance(v, str) for v in data[1:])):
        raise Unsupported("cursor")
    return data[1:]


class LeanReader:
    """One read-only connection, one read transaction (every query sees one snapshot)."""

    def __init__(self, path: str) -> None:
        if not os.path.isfile(path):
            raise Unsupported("no database file")  # (the full path creates it)
        try:
            self.conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro",
                                        uri=True, isolation_level=None,
                                        timeout=BUSY_TIMEOUT_MS / 1000)
            self.conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            self.conn.execute("BEGIN")
            versions = {r[0] for r in self.conn.execute(
                "SELECT version FROM baton_schema_migrations")}
        except sqlite3.Error as exc:
            raise Unsupported(f"sqlite: {exc}") from None
        if versions != SCHEMA_VERSIONS:
            self.close()
            raise Unsupported("schema version")
        self._types: dict[str, ObjectType | None] = {}
        self._sources: dict[str, str | None] = {}

    def close(self) -> None:
        self.conn.close()

    def _rows(self, sql: str, params: Sequence[Any], columns: Sequence[str]
              ) -> Iterator[dict[str, Any]]:
        try:
            cur = self.conn.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise Unsupported(f"sqlite: {exc}") from None
        for raw in cur:
            row = dict(zip(columns, raw, strict=True))
            for c in JSON_COLUMNS.intersection(row):
                if row[c] is not None:
                    row[c] = json_loads(row[c])
            yield row

    def _select(self, table: str, columns: Sequence[str], where: str = "",
                params: Sequence[Any] = (), tail: str = "") -> list[dict[str, Any]]:
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        if where:
            sql += f" WHERE {where}"
        return list(self._rows(f"{sql} {tail}", params, columns))

    def _rows_up_to(self, table: str, n: int) -> int:
        return int(self.conn.execute(
            f"SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT ?)", (n,)).fetchone()[0])

    def _page(self, table: str, columns: Sequence[str], tag: str, where: list[str],
              params: list[Any], after: str | None, offset: int, limit: int, *,
              desc: bool) -> tuple[list[dict[str, Any]], str | None]:
        """A keyset page in (created_at, id) order, as keyset.read_page gives it when no
        probe runs out of its scan budget."""
        if after is not None:
            at, key = decode_cursor(tag, 2, after)
            op = "<" if desc else ">"
            where = [*where, f"(created_at {op} ? OR (created_at = ? AND id {op} ?))"]
            params = [*params, at, at, key]
        want = offset + limit
        direction = "DESC" if desc else "ASC"
        rows = self._select(table, columns, " AND ".join(where), params,
                            f"ORDER BY created_at {direction}, id {direction} LIMIT {want + 1}")
        page = rows[offset:want]
        nxt = encode_cursor(tag, [page[-1]["created_at"], page[-1]["id"]]) \
            if len(rows) > want else None
        return page, nxt

    # ---- runs ---------------------------------------------------------------------------
    def page_runs(self, filters: dict[str, Any], after: str | None, offset: int, limit: int
                  ) -> tuple[list[dict[str, Any]], str | None]:
        """As ``SqlTx.page_runs_txn`` with each row's record ``title`` (``RunDriver.page``)."""
        f = {k: v for k, v in filters.items() if v is not None and v is not False}
        if self._residual_runs(f) and self._rows_up_to("baton_runs", SCAN_BUDGET) >= SCAN_BUDGET:
            raise Unsupported("a filter read by a bounded scan")
        where, params = [], []
        for key in ("orchestration", "status", "current_stage", "record_id"):
            if key in f:
                where.append(f"{key} = ?")
                params.append(f[key])
        if f.get("attention"):
            where.append(f"attention IN ({', '.join('?' * len(ATTENTION_VALUES))})")
            params += ATTENTION_VALUES
        rows, nxt = self._page("baton_runs", RUN_COLUMNS, "runs", where, params, after,
                               offset, limit, desc=True)
        ids = sorted({r["record_id"] for r in rows if r["record_id"]})
        records = {r["id"]: r for r in self._select(
            "baton_records", ("id", "object_type", "data"),
            f"id IN ({', '.join('?' * len(ids))})", ids)} if ids else {}
        titles = {rid: self.title(rec["object_type"], rec["data"])
                  for rid, rec in records.items()}
        for row in rows:
            row["title"] = titles.get(row["record_id"]) if row["record_id"] else None
        return rows, nxt

    @staticmethod
    def _residual_runs(f: dict[str, Any]) -> bool:
        """Whether ``baton.store.sql.pages.run_probes`` leaves a filter to a bounded scan."""
        if "record_id" in f or "attention" in f:
            return len(f) > 1
        return "current_stage" in f and "orchestration" in f

    def run_state(self, run_id: str) -> dict[str, Any]:
        rows = self._select("baton_runs", ("state",), "id = ?", [run_id])
        if not rows:
            raise Unsupported("no such run")  # (the full path says so)
        state: dict[str, Any] = rows[0]["state"]
        return self._merged(state)

    def _merged(self, state: dict[str, Any]) -> dict[str, Any]:
        """A split run's state (format 4) with its step rows put back, in their order, as
        ``SqlTx.merge_steps_txn`` does (one snapshot here: no seq to check)."""
        if state.get("split"):
            state["steps"] = {r["step"]: r["doc"] for r in self._rows(
                "SELECT step, doc FROM baton_run_steps WHERE run_id = ? ORDER BY pos",
                [state["id"]], ("step", "doc"))}
        return state

    def child_runs(self, run_id: str, limit: int) -> list[dict[str, Any]]:
        return self._select("baton_runs", CHILD_COLUMNS, "parent_run_id = ?", [run_id],
                            f"ORDER BY created_at, id LIMIT {int(limit)}")

    def run_events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's audit events in order, packed rows unpacked (``SqlTx.events_txn``)."""
        out: list[dict[str, Any]] = []
        for row in self._rows("SELECT id, at, type, actor, record_id, run_id, data FROM "
                              "baton_events WHERE run_id = ? ORDER BY id", [run_id],
                              EVENT_COLUMNS):
            out += unpack_event_row(row)
        if len(out) >= 10_000:
            raise Unsupported("more events than the full path reads")
        return out

    def record_events(self, record_id: str) -> list[dict[str, Any]]:
        """The record's audit events in order (``RecordService.timeline``)."""
        self.record(record_id)  # (one that does not exist: the full path says so)
        out: list[dict[str, Any]] = []
        for row in self._rows("SELECT id, at, type, actor, record_id, run_id, data FROM "
                              "baton_events WHERE record_id = ? ORDER BY id", [record_id],
                              EVENT_COLUMNS):
            out += unpack_event_row(row)
        if len(out) >= 10_000:
            raise Unsupported("more events than the full path reads")
        return out

    def fallout_states(self) -> list[dict[str, Any]]:
        """The states of runs with a step in fallout, oldest first (the runs whose
        ``attention`` says so; ``baton fallout list`` reads :meth:`fallout_page`)."""
        values = [v for v in ATTENTION_VALUES if v & 1]
        rows = self._select("baton_runs", ("state",),
                            f"attention IN ({', '.join('?' * len(values))})", values,
                            "ORDER BY created_at DESC, id DESC LIMIT 100000")
        return [self._merged(r["state"]) for r in reversed(rows)]

    def fallout_page(self, limit: int) -> list[tuple[dict[str, Any], str]]:
        """The first ``limit`` steps in fallout, the oldest run first and a run's steps in
        its order (``Engine.list_fallout``): ``(its run's state, the step)`` each, a range
        of ``baton_fallout``'s ix_fallout_created and a read of those runs."""
        keys = self._select("baton_fallout", ("run_id", "step"), "", (),
                            f"ORDER BY created_at, run_id, pos LIMIT {int(limit)}")
        run_ids = sorted({k["run_id"] for k in keys})
        states = {r["id"]: self._merged(r["state"]) for r in self._select(
            "baton_runs", ("id", "state"), f"id IN ({', '.join('?' * len(run_ids))})",
            run_ids)} if run_ids else {}
        return [(states[k["run_id"]], k["step"]) for k in keys if k["run_id"] in states]

    # ---- work items ---------------------------------------------------------------------
    def page_work(self, statuses: Sequence[str], after: str | None, offset: int, limit: int
                  ) -> tuple[list[dict[str, Any]], str | None]:
        """Everyone's work items of ``statuses``, oldest first, each with its step's SLA
        (``WorkService.page`` without a user, queue or group)."""
        where = [f"status IN ({', '.join('?' * len(statuses))})"] if statuses else ["0"]
        rows, nxt = self._page("baton_work_items", WORK_ITEM_COLUMNS, "work.created", where,
                               list(statuses), after, offset, limit, desc=False)
        run_ids = sorted({i["run_id"] for i in rows})
        states = {r["id"]: self._merged(r["state"]) for r in self._select(
            "baton_runs", ("id", "state"), f"id IN ({', '.join('?' * len(run_ids))})",
            run_ids)} if run_ids else {}
        for item in rows:  # as baton.work.service._with_sla_txn
            state = states.get(item["run_id"]) or {}
            step = (state.get("steps") or {}).get(item["step"]) or {}
            sla = step.get("sla") if step.get("iteration") == item["iteration"] else None
            item["sla_status"], item["due_at"] = (sla or {}).get("status"), (sla or {}).get("due_at")
        return rows, nxt

    # ---- records ------------------------------------------------------------------------
    def page_records(self, object_type: str | None, after: str | None, offset: int,
                     limit: int) -> tuple[list[dict[str, Any]], str | None]:
        where, params = (["object_type = ?"], [object_type]) if object_type else ([], [])
        return self._page("baton_records", RECORD_COLUMNS, "records", where, params, after,
                          offset, limit, desc=True)

    def record(self, record_id: str) -> dict[str, Any]:
        rows = self._select("baton_records", RECORD_COLUMNS, "id = ?", [record_id])
        if not rows:
            raise Unsupported("no such record")
        return rows[0]

    def has_attachments(self, record_id: str) -> bool:
        return bool(self.conn.execute(
            "SELECT 1 FROM baton_attachments WHERE record_id = ? LIMIT 1", (record_id,)
        ).fetchone())

    def title(self, object_type: str, data: dict[str, Any]) -> str | None:
        """:func:`baton.records.titles.record_title` with the record's active object type.
        Its YAML is parsed only when the title needs it: an object type that names no
        ``title_field`` gives a record holding text in one of the usual title fields
        (``title``, ``subject`` ...) that text, whatever its other fields are."""
        from baton.records.titles import record_title

        source = self._source(object_type)
        if source is None:
            return record_title(None, data)
        if "title_field" not in source and "\\" not in source:
            plain = record_title(None, data)
            if plain is not None:
                return plain
        return record_title(self.object_type(object_type), data)

    def _source(self, name: str) -> str | None:
        """The YAML of the active version of object type ``name``; None: not deployed."""
        if name not in self._sources:
            rows = self._select("baton_definitions", ("source",),
                                "kind = 'object' AND name = ? AND active", [name],
                                "ORDER BY version DESC LIMIT 1")
            self._sources[name] = rows[0]["source"] if rows else None
        return self._sources[name]

    def decimal_fields(self, name: str) -> list[str] | None:
        """The names of object type ``name``'s ``decimal`` fields (None: not deployed); its
        YAML is parsed only when it has the word ``decimal`` in it."""
        source = self._source(name)
        if source is None:
            return None
        if "decimal" not in source and "\\" not in source:
            return []
        otype = self.object_type(name)
        return [f.name for f in otype.fields if f.type == "decimal"] if otype else None

    def object_type(self, name: str) -> ObjectType | None:
        """The active version of object type ``name`` (None: not deployed), read from its
        YAML; a document this reader cannot read exactly as the loader does is
        :class:`Unsupported`."""
        if name not in self._types:
            source = self._source(name)
            self._types[name] = _object_type(name, source) if source is not None else None
        return self._types[name]

    # ---- incidents and definitions ------------------------------------------------------
    def incidents(self, statuses: Sequence[str], limit: int) -> list[dict[str, Any]]:
        where = f"status IN ({', '.join('?' * len(statuses))})" if statuses else ""
        return self._select("baton_incidents", INCIDENT_COLUMNS, where, list(statuses),
                            f"ORDER BY created_at, id LIMIT {int(limit)} OFFSET 0")

    def definitions(self, kind: str | None = None, name: str | None = None
                    ) -> list[DefinitionRow]:
        where, params = [], []
        if kind:
            where.append("kind = ?")
            params.append(kind)
        rows = self._select("baton_definitions", DEFINITION_COLUMNS, " AND ".join(where),
                            params, "ORDER BY kind, name, version")
        return [DefinitionRow(**{**r, "active": bool(r["active"])}) for r in rows
                if name is None or r["name"] == name]

    def definition(self, kind: str, name: str, version: int | None) -> DefinitionRow:
        found = [r for r in self.definitions(kind, name)
                 if version is None or r.version == version]
        if not found:
            raise Unsupported("no such definition")
        return found[-1]

    def schedules(self) -> dict[str, dict[str, Any]]:
        return {r["orchestration"]: r for r in self._select(
            "baton_schedules", SCHEDULE_COLUMNS, tail="ORDER BY orchestration")}


def _object_type(name: str, source: str) -> ObjectType:
    """An object type's fields and title field from its deployed YAML (the loader read and
    checked it when it was deployed): only a plain document is read here."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        data = yaml.load(source, Loader=loader)  # (a safe loader)
    except yaml.YAMLError:
        raise Unsupported("object type YAML") from None
    fields = data.get("fields") if isinstance(data, dict) else None
    title = data.get("title_field") if isinstance(data, dict) else None
    if not isinstance(fields, dict) or not (title is None or isinstance(title, str)):
        raise Unsupported("object type YAML")
    out = []
    for fname, spec in fields.items():
        if not isinstance(fname, str) or not isinstance(spec, dict) \
                or not isinstance(spec.get("type"), str):
            raise Unsupported("object type YAML")  # (YAML 1.1 keys: `on:` reads as True)
        out.append(Field(fname, spec["type"]))
    return ObjectType(name, tuple(out), title)
