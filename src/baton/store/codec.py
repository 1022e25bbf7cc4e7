"""How stored values are encoded: the JSON columns' codec and packed audit events.

Stdlib and orjson only (no SQLAlchemy), so that the CLI's lean read path
(:mod:`baton.store.lean`) decodes a stored value with the very code the store uses.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import orjson


def json_dumps(value: Any) -> str:
    """The JSON columns' encoder: orjson (~5x faster than json.dumps on run states).
    What orjson refuses (an integer beyond 64 bits, an unknown type) falls back to json,
    so it encodes whatever json.dumps did.

    A dict key that is not a string (json.dumps writes ``1`` as ``"1"``) needs orjson's
    ``OPT_NON_STR_KEYS``, which makes every encoding ~1.5x slower (it checks each key's
    type the slow way): the value is encoded without it first, and again with it only when
    orjson refuses (the same text either way for string keys)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        pass
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value)


def json_loads(text: str | bytes) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:  # what json.dumps wrote and orjson does not read (NaN)
        return json.loads(text)


PACKED = "*"
"""The ``type`` of an event row that holds the events one transaction appended together."""
EVENT_ID_SPAN = 1024
"""Event ids of a packed row: ``row id * EVENT_ID_SPAN + j`` for its j-th event."""


def pack_events(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that store ``events``: one row per run of consecutive events with the same
    ``at``, ``record_id`` and ``run_id`` (what one decision appends), holding their types,
    data and, where it is not the row's, actor. Appended in order, so ids stay in order.

    Rows written before migration 10 hold one event each under its own type, and keep
    their ids; packed rows come after all of them, so ``row id * EVENT_ID_SPAN + j`` is
    above every id given before and ids stay in the order the events were appended."""
    rows: list[dict[str, Any]] = []
    cur: list[Any] = []
    key: tuple[Any, ...] = ()
    actor = ""
    for e in events:
        k = (e["at"], e["record_id"], e["run_id"])
        if k != key or len(cur) >= EVENT_ID_SPAN:
            key, actor, cur = k, e["actor"], []
            rows.append({"at": e["at"], "type": PACKED, "actor": actor,
                         "record_id": e["record_id"], "run_id": e["run_id"],
                         "data": {"e": cur}})
        cur.append((e["type"], e["data"]) if e["actor"] == actor
                   else (e["type"], e["data"], e["actor"]))
    return rows


def unpack_event_row(row: Any) -> list[dict[str, Any]]:
    """The events an event row holds, as they were appended, with their ids."""
    if row["type"] != PACKED:
        return [dict(row)]
    base = row["id"] * EVENT_ID_SPAN
    at, actor, rec, run = row["at"], row["actor"], row["record_id"], row["run_id"]
    return [{"id": base + j, "at": at, "type": e[0], "actor": e[2] if len(e) > 2 else actor,
             "record_id": rec, "run_id": run, "data": e[1]}
            for j, e in enumerate(row["data"]["e"])]
