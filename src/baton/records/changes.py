"""What a new version of an object type would do to the records stored under it.

A deployed object type may change: a field retyped, a choice removed, a length cut, a
field made required, a ``ref`` pointed at another type. The records stored under it keep
their values, so a change that some of them no longer satisfy would leave those records
refusing their next full write (an edit form sends every field), far from the change that
broke them. Deploy (and validate, and activating a version) ask :func:`broken_records_txn`
first, and refuse such a change, naming the records.

A stored value is judged by the rules a record write uses (:func:`coerce_fields`, the
``ref`` check of :func:`ref_problem`), under the new field and, when it is refused, under
the old one: only what the change breaks counts (a value the old version already refused
was not broken by this one). Records are read a page at a time, whatever their number.

A deploy judges them first in a read transaction, holding no lock
(:func:`survey_records_txn`), and under the write lock judges again only the pages whose
records were written, created or deleted since (their ids and versions, read without
their data, tell which): bench/object_type_deploy.py measures the lock's hold.
"""

from __future__ import annotations

import decimal
import hashlib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from baton import decimals
from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.errors import ValidationError
from baton.records.fields import MAX_STRING, MAX_TEXT, coerce_fields, ref_problem
from baton.rows import AuditEvent, audit_event
from baton.store.ports import Records, Transaction

PAGE = 100
"""Records read (and kept in memory) at a time: a record may be megabytes (a long
``text`` field), so a page is a hundred."""
SHOWN = 5
"""Records named in a refusal, each with its value and why it is refused."""

# The keys of a field spec in the order a change is located by (its first changed key).
_KEYS = ("type", "object", "choices", "max_length", "precision", "scale", "rounding",
         "required", "check")


@dataclass(frozen=True)
class Sample:
    """One broken record: its id, its stored value and what the new field says of it."""

    record_id: str
    value: Any
    problem: str


@dataclass(frozen=True)
class BrokenField:
    """A changed field that some stored records do not satisfy."""

    object_type: str
    field: str
    key: str  # the spec key located (``type``, ``choices`` …; "" for a new field)
    change: str  # "type string -> int"
    count: int  # records it breaks
    empty: int  # of them, those that leave it empty (it is required now)
    samples: tuple[Sample, ...]  # the oldest SHOWN of them
    hint: str  # what to do instead

    @property
    def path(self) -> str:
        """Where the change is in the definition (``fields.amount.type``)."""
        return f"fields.{self.field}" + (f".{self.key}" if self.key else "")

    def message(self) -> str:
        shown = "; ".join(f"{s.record_id} = {_brief(s.value)} ({s.problem})"
                          for s in self.samples)
        more = f"; and {self.count - len(self.samples):,} more" \
            if self.count > len(self.samples) else ""
        empty = f", {self.empty:,} of them empty" if 0 < self.empty < self.count else ""
        return (f"object type {self.object_type}, field {self.field}: {self.change} would "
                f"break {self.count:,} stored record{'s' if self.count != 1 else ''}{empty} "
                f"({'its' if self.count == 1 else 'their'} value does not fit the new "
                f"definition): {shown}{more}. {self.hint}")


def changed_fields(old: ObjectTypeDefinition, new: ObjectTypeDefinition,
                   removed: Collection[str] | None = None
                   ) -> list[tuple[FieldDefinition | None, FieldDefinition]]:
    """The fields of ``new`` whose stored values must be checked again, each with the
    field of that name in ``old`` (None: a new field). A field only relabelled, or given
    another default, is not one of them. A field removed is not either: records keep its
    value, shown as a field the type no longer has, and no write checks it.

    A new field is checked when it is required (records leave it empty), or when records
    may hold a value under its name, from a field of an earlier version since removed:
    ``removed`` names those that may (None: any may)."""
    before = {f.name: f for f in old.fields}
    out: list[tuple[FieldDefinition | None, FieldDefinition]] = []
    for f in new.fields:
        was = before.get(f.name)
        if was is None:
            if f.required or removed is None or f.name in removed:
                out.append((was, f))
        elif _judged(was) != _judged(f):
            out.append((was, f))
    return out


def _judged(f: FieldDefinition) -> FieldDefinition:
    """What of a field's spec a stored value is judged by: a change to its label,
    description or default alone breaks no record (a default fills records created later,
    never the stored ones)."""
    return replace(f, label=None, description=None, default=None)


def broken_records_txn(tx: Records, old: ObjectTypeDefinition, new: ObjectTypeDefinition,
                       *, removed: Collection[str] | None = None, fills: bool = False,
                       page: int = PAGE, shown: int = SHOWN,
                       survey: Survey | None = None) -> list[BrokenField]:
    """The fields changed from ``old`` to ``new`` that records of the type stored now do
    not satisfy (each with how many, and the oldest ``shown`` of them), in ``new``'s field
    order; empty when every record does (or there are none). Reads the records ``page``
    at a time, in ``tx``; none when no field that matters changed. ``removed``: see
    :func:`changed_fields`.

    ``fills``: the caller gives the records what :func:`rewrite_records_txn` writes when
    nothing is broken (a deploy does): a record that leaves a field now required empty
    is not broken when the field has a ``default`` (it is filled with it). Without it,
    such a record is broken, as a record write would say.

    ``survey``: what :func:`survey_records_txn` found for this same change in an earlier
    transaction (a read one, holding no lock). Then only the records written since are
    read and judged (the pages of the survey whose records' versions all stand are taken
    as it found them): the answer is the one a full read would give. A survey of another
    change (the active version moved since) is not used."""
    judge = _Judge(old, new, removed, fills)
    if not judge.news:
        return []
    total = _Found()
    if survey is not None and survey.fits(old, new, removed, fills, shown):
        for found in _since_txn(tx, judge, survey, page, shown):
            total.add(found, shown)
        return judge.broken(total)
    after: tuple[str, str] | None = None
    while True:
        rows = _scan_txn(tx, new.name, after, page)
        total.add(judge.page_txn(tx, rows, shown), shown)
        if len(rows) < page:
            break
        after = (rows[-1]["created_at"], rows[-1]["id"])
    return judge.broken(total)


@dataclass(frozen=True)
class _Part:
    """A page of records as a survey read it: its last record's ``(created_at, id)``, a
    digest of its records' ``(id, version)`` in order, and what it found broken (None:
    nothing)."""

    last: tuple[str, str]
    digest: bytes
    found: _Found | None


@dataclass(frozen=True)
class Survey:
    """What a read of the records of a type found for one change (``old`` -> ``new``),
    page by page (:func:`survey_records_txn`): given to :func:`broken_records_txn` under
    the write lock, which then judges again only the pages written since. A page a few
    dozen bytes (and what it found broken), whatever its records' size."""

    old: ObjectTypeDefinition
    new: ObjectTypeDefinition
    removed: frozenset[str] | None
    fills: bool
    shown: int
    parts: tuple[_Part, ...]

    def fits(self, old: ObjectTypeDefinition, new: ObjectTypeDefinition,
             removed: Collection[str] | None, fills: bool, shown: int) -> bool:
        """Whether it judged this change (as the check asks it)."""
        return (self.fills == fills and self.shown == shown
                and self.removed == (frozenset(removed) if removed is not None else None)
                and self.old == old and self.new == new)


def survey_records_txn(tx: Records, old: ObjectTypeDefinition, new: ObjectTypeDefinition,
                       *, removed: Collection[str] | None = None, fills: bool = False,
                       page: int = PAGE, shown: int = SHOWN) -> Survey | None:
    """Judge the records of the type for the change from ``old`` to ``new``, as
    :func:`broken_records_txn` does, remembering page by page which records (their ids
    and versions) it judged and what it found: a deploy does this in a read transaction
    first, holding no lock, and under the write lock judges again only what was written
    since (``broken_records_txn(..., survey=)``). None when there is nothing to judge, or
    when a changed field is a checked ``ref`` (its answer depends on other records, the
    ones it names: judged whole under the lock)."""
    judge = _Judge(old, new, removed, fills)
    if not judge.news or judge.refs:
        return None
    parts = []
    after: tuple[str, str] | None = None
    while True:
        rows = _scan_txn(tx, new.name, after, page)
        if rows:
            found = judge.page_txn(tx, rows, shown)
            after = (rows[-1]["created_at"], rows[-1]["id"])
            parts.append(_Part(after, _digest([(r["id"], r["version"]) for r in rows]),
                               found if found.counts else None))
        if len(rows) < page:
            break
    return Survey(old, new, frozenset(removed) if removed is not None else None, fills,
                  shown, tuple(parts))


def _since_txn(tx: Records, judge: _Judge, survey: Survey, page: int, shown: int
               ) -> Iterator[_Found]:
    """What the records of the type stored now break, page by page in their order, the
    survey's pages taken as it found them where their records and versions all stand.

    Reads every record's id and version (not its data) in the order the survey read them,
    cutting it where a survey page ended (its last record found again, by its id: no
    order is computed here, the database's is the one). A piece that is one page of the
    survey, the same records at the same versions, is what the survey found; any other (a
    record written, created or deleted in it, or the page's last record deleted, which
    joins it to the next) is read again and judged, as are the records after the
    survey's last page."""
    from baton.store.sql.records import record_versions

    ends = {p.last[1]: i for i, p in enumerate(survey.parts)}
    first = 0  # the first survey page the piece read now may be
    piece: list[tuple[str, int]] = []
    for chunk in record_versions(tx, survey.new.name):
        start = 0
        for at in [k for k, (rid, _) in enumerate(chunk) if rid in ends]:
            end = ends[chunk[at][0]]
            piece += chunk[start:at + 1]
            start = at + 1
            if end < first:  # (never: each page's last record is read once)
                continue
            if end == first and _digest(piece) == survey.parts[end].digest:
                found = survey.parts[end].found
                if found is not None:
                    yield found
            else:
                yield from _judged_txn(tx, judge, [rid for rid, _ in piece], page, shown)
            piece, first = [], end + 1
        piece += chunk[start:]
    if piece:  # (after the survey's last page, or its last record deleted)
        yield from _judged_txn(tx, judge, [rid for rid, _ in piece], page, shown)


def _judged_txn(tx: Records, judge: _Judge, ids: Sequence[str], page: int, shown: int
                ) -> Iterator[_Found]:
    """The records with these ids (in this order) judged, ``page`` at a time."""
    for i in range(0, len(ids), page):
        chunk = ids[i:i + page]
        rows = tx.get_records_txn(chunk)
        yield judge.page_txn(tx, [rows[rid] for rid in chunk if rid in rows], shown)


def _digest(pairs: Sequence[tuple[str, int]]) -> bytes:
    """Of records' (id, version), in order: equal for the same records at the same
    versions (the text is the list's ``repr``: one C call, each id quoted)."""
    return hashlib.blake2b(repr(pairs).encode(), digest_size=16).digest()


@dataclass
class _Found:
    """Field -> records broken, of them empty, and the first of them (a page's, or all)."""

    counts: dict[str, int] = field(default_factory=dict)
    empties: dict[str, int] = field(default_factory=dict)
    samples: dict[str, list[Sample]] = field(default_factory=dict)

    def add(self, other: _Found, shown: int) -> None:
        for name, n in other.counts.items():
            self.counts[name] = self.counts.get(name, 0) + n
            self.empties[name] = self.empties.get(name, 0) + other.empties.get(name, 0)
            mine = self.samples.setdefault(name, [])
            mine.extend(other.samples.get(name, ())[:max(0, shown - len(mine))])


class _Judge:
    """How a stored record is judged for one change (``old`` -> ``new``): what
    :func:`broken_records_txn` asks of each, made once."""

    def __init__(self, old: ObjectTypeDefinition, new: ObjectTypeDefinition,
                 removed: Collection[str] | None, fills: bool) -> None:
        pairs = changed_fields(old, new, removed)
        self.object_type = new.name
        self.news = tuple(f for _, f in pairs)
        self.filled = frozenset(f.name for f in self.news if fills and _fills(f))
        self.olds = {f.name: was for was, f in pairs}
        # Each old field alone, as the fields a stored value is judged by again (made once:
        # a tuple of fields is what coerce_fields remembers its lookups by).
        self.old_alone = {name: (was,) for name, was in self.olds.items() if was is not None}
        # (the old fields' targets too: a checked ref took a value only if it named a record
        # of its type)
        self.refs = [f for f in (*self.news, *self.olds.values())
                     if f is not None and f.type == "ref" and f.check]

    def page_txn(self, tx: Records, rows: Sequence[Mapping[str, Any]], shown: int) -> _Found:
        """What these records (in their order) break."""
        out = _Found()
        if not rows:
            return out
        targets = _targets_txn(tx, self.refs, rows)
        for row in rows:
            for name, problem in _problems(self.news, self.old_alone, row["data"],
                                           targets).items():
                value = row["data"].get(name)
                if name in self.filled and _empty(value):
                    continue  # (given the field's default: see rewrite_records_txn)
                out.counts[name] = out.counts.get(name, 0) + 1
                out.empties[name] = out.empties.get(name, 0) + (value is None or value == "")
                samples = out.samples.setdefault(name, [])
                if len(samples) < shown:
                    samples.append(Sample(row["id"], value, problem))
        return out

    def broken(self, total: _Found) -> list[BrokenField]:
        out = []
        for f in self.news:
            count = total.counts.get(f.name, 0)
            if count:
                was = self.olds[f.name]
                empty = total.empties.get(f.name, 0)
                key, change = describe_change(was, f)
                out.append(BrokenField(self.object_type, f.name, key, change, count, empty,
                                       tuple(total.samples.get(f.name, ())),
                                       _hint(was, f, count, empty)))
        return out


def rewrite_records_txn(tx: Transaction, old: ObjectTypeDefinition, new: ObjectTypeDefinition,
                        *, actor: str, now: str, because: str,
                        removed: Collection[str] | None = None, page: int = PAGE
                        ) -> dict[str, int]:
    """Give the records of the type what ``new`` says their stored values become, as a
    record write would make them, and answer field -> how many records changed:

    * a field required now (new, or made required) that has a ``default``: each record
      that leaves it empty is given the default (what a record created without it gets);
    * a ``decimal`` field changed that declares ``rounding``: each value with more
      places than its scale is rounded (a scale cut with ``rounding:`` is how a deploy
      is told to round the stored values, where without it the cut is refused).

    Each record changed is written at its next version with a ``record_updated`` event on
    its timeline (``actor``, and ``because``: which deploy), in ``tx``; no trigger fires
    and no run is woken (a definition changed, not a record). Read and written ``page``
    records at a time, their events written with each page: memory stays a page's,
    whatever the number of records. Call it after :func:`broken_records_txn` (with
    ``fills``) found nothing broken: a value the new field still refuses (one the old
    version refused already) is left as it is."""
    pairs = changed_fields(old, new, removed)
    fills = tuple(f for _, f in pairs if _fills(f))
    # (a decimal rounded by its rounding:, or written at the fewer places of a scale cut)
    rounds = tuple((was, f) for was, f in pairs if f.type == "decimal"
                   and (f.rounding or (was is not None and _scale_cut(was, f))))
    if not fills and not rounds:
        return {}
    # the defaults as a record created without them stores them
    defaults = coerce_fields(fills, {}, f"object type {new.name}")
    counts: dict[str, int] = {}
    after: tuple[str, str] | None = None
    while True:
        rows = _scan_txn(tx, new.name, after, page)
        events, writes = [], []
        for row in rows:
            data = row["data"]
            changes: dict[str, list[Any]] = {}
            for f in fills:
                if _empty(data.get(f.name)):
                    changes[f.name] = [data.get(f.name), defaults[f.name]]
            for was, f in rounds:
                value = data.get(f.name)
                if f.name not in changes and value is not None:
                    rounded = _rounded(was, f, value)
                    if rounded is not None:
                        changes[f.name] = [value, rounded]
            if not changes:
                continue
            writes.append((row["id"], {**data, **{k: v[1] for k, v in changes.items()}},
                           row["version"]))
            events.append(audit_event("record_updated", actor, now, row["id"], None,
                                      {"changes": changes, "by": because}))
            for name in changes:
                counts[name] = counts.get(name, 0) + 1
        if writes:
            _write_page_txn(tx, writes, events, now)
        if len(rows) < page:
            break
        after = (rows[-1]["created_at"], rows[-1]["id"])
    return counts


def _scan_txn(tx: Records, object_type: str, after: tuple[str, str] | None, page: int
              ) -> list[dict[str, Any]]:
    """A page of the records of the type (``scan_records_txn``), on the DB-API cursor
    when ``tx`` is the SQL store's (:func:`baton.store.sql.records.scan_records`)."""
    from baton.store.sql.records import scan_records
    from baton.store.sql.tx import SqlTx

    if isinstance(tx, SqlTx):
        return scan_records(tx, object_type, after, page)
    return tx.scan_records_txn(object_type, after, page)


def _write_page_txn(tx: Transaction, writes: Sequence[tuple[str, dict[str, Any], int]],
                    events: list[AuditEvent], now: str) -> None:
    """A page's records and their events, written now (not all at commit: memory stays a
    page's). A transaction that buffers its writes (a :class:`~baton.store.sql.SqlTx`)
    is told to flush them; another writes them in a savepoint, which does (an error
    fails the whole deploy either way: its transaction is rolled back)."""
    flush = getattr(tx, "flush_txn", None)
    if flush is None:
        with tx.savepoint():
            _update_txn(tx, writes, now)
            tx.append_events_txn(events)  # type: ignore[arg-type]
        return
    _update_txn(tx, writes, now)
    tx.append_events_txn(events)  # type: ignore[arg-type]
    flush()


def _update_txn(tx: Transaction, writes: Sequence[tuple[str, dict[str, Any], int]],
                now: str) -> None:
    """Write each record (id, data, version read) at its next version. A transaction that
    can defer its record updates (a :class:`~baton.store.sql.SqlTx`) defers them here, so
    the page's are one statement (an executemany) when the caller's savepoint ends, not one
    round trip each (a hundred thousand records: a few seconds on PostgreSQL, not minutes)."""
    deferring = getattr(tx, "deferred", None) is False
    if deferring:
        setattr(tx, "deferred", True)  # noqa: B010 (not a port's attribute: SqlTx's own)
    try:
        for record_id, data, version in writes:
            tx.update_record_txn(record_id, data, version, now)
    finally:
        if deferring:
            setattr(tx, "deferred", False)  # noqa: B010


def _rounded(was: FieldDefinition | None, f: FieldDefinition, value: Any) -> str | None:
    """A stored decimal as ``f`` stores it (its canonical string, rounded by its
    ``rounding``), when that changes the number it stands for, or after a scale cut from
    ``was``, its text (``"3.1000"`` is ``"3.10"`` at scale 2: what the API shows and an
    export holds, at the field's scale); None otherwise (a value read as what it is:
    ``"1.5"`` under scale 2 is read as 1.50, and written so by the record's next write),
    or when ``f`` refuses it."""
    try:
        rounded = decimals.fit(_at_scale(f, value), f.precision, f.scale, f.rounding)
    except ValueError:
        return None
    text = decimals.canonical(rounded)
    if decimals.read(value) != rounded:
        return text
    return text if was is not None and _scale_cut(was, f) and text != value else None


def _targets_txn(tx: Records, refs: Sequence[FieldDefinition], rows: Sequence[Mapping[str, Any]]
                 ) -> Mapping[str, Mapping[str, Any]]:
    """The records the page's checked ``ref`` values name (one read for the page)."""
    if not refs:
        return {}
    ids = {v for row in rows for f in refs
           if isinstance(v := row["data"].get(f.name), str) and v}
    return tx.get_records_txn(sorted(ids)) if ids else {}


def _problems(news: tuple[FieldDefinition, ...],
              old_alone: Mapping[str, tuple[FieldDefinition]], data: Mapping[str, Any],
              targets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Field -> why the new field does not take the record's stored value, for the values
    the old field took (or that no old field judged: a new field)."""
    found = _refused(news, data, targets)
    return {name: why for name, why in found.items()
            if name not in old_alone or not _refused(old_alone[name], data, targets)}


def _refused(fields: tuple[FieldDefinition, ...], data: Mapping[str, Any],
             targets: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Field -> what a write of the record's stored values to ``fields`` would be told
    (its required fields empty included; a default fills nothing stored), or that the
    field takes the value only by converting it to another kind."""
    given = {f.name: _at_scale(f, data[f.name]) for f in fields if f.name in data}
    try:
        values = coerce_fields(fields, given, "record", apply_defaults=False)
    except ValidationError as exc:
        return dict(exc.fields)
    out = {}
    for f in fields:
        value = values.get(f.name)
        if value is None:
            continue
        if f.type not in _READ_AS_STORED and type(value) is not type(given[f.name]):
            # Taken by converting it ("12" for an int): the stored value stays what it is,
            # and whatever reads the field typed (expressions, flows) gets the wrong kind.
            out[f.name] = (f"stored as {_kind(given[f.name])}, where {_a(f.type)} field holds "
                           f"{_kind(value)}: a write would convert it, the stored value stays")
        elif f.type == "ref" and f.check:
            problem = ref_problem(f, value, targets.get(value))
            if problem is not None:
                out[f.name] = problem
    return out


# Field types whose stored value is read as what it stands for, whatever JSON holds it: a
# decimal stored as a JSON number (before decimals were exact) is read as that number.
_READ_AS_STORED = frozenset({"decimal", "json"})


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def describe_change(was: FieldDefinition | None, f: FieldDefinition) -> tuple[str, str]:
    """(the first spec key changed, the change in words: ``type string -> int``)."""
    if was is None:
        spec = f.type + (f" to {f.object}" if f.object else "") + \
            (", required" if f.required else "")
        return "", f"the new field ({spec})"
    parts: list[tuple[str, str]] = []
    for key in _KEYS:
        a, b = getattr(was, key), getattr(f, key)
        if a == b:
            continue
        if key == "choices":
            gone = [c for c in a if c not in b]
            parts.append((key, f"choices {', '.join(gone)} removed" if gone and was.type == f.type
                          else f"choices {_list(a)} -> {_list(b)}"))
        elif key == "max_length":
            parts.append((key, f"max_length {_limit(was)} -> {_limit(f)}"))
        elif key in ("precision", "scale"):
            parts.append((key, f"{key} {_digits(was, key)} -> {_digits(f, key)}"))
        elif key in ("required", "check"):
            parts.append((key, f"{key} {str(a).lower()} -> {str(b).lower()}"))
        elif key == "object":
            parts.append((key, f"ref to {a or '(none)'} -> {b}"))
        else:
            parts.append((key, f"{key} {a or '(none)'} -> {b or '(none)'}"))
    return (parts[0][0], ", ".join(p for _, p in parts)) if parts else ("", "a change")


def _hint(was: FieldDefinition | None, f: FieldDefinition, count: int, empty: int) -> str:
    """What to do instead, for the kind of break."""
    fill = (f"fill {f.name} in on those records first (`baton records update ID --data "
            f"'{{\"{f.name}\": ...}}'`), or deploy the field without required: true")
    if empty == count:
        return fill[0].upper() + fill[1:] + "."
    if was is None:
        what = (f"Clear or correct {f.name} on those records first (they hold a value of a "
                "field the type had before), or give the new field another name")
    elif f.type == "ref" and was.type == "ref" and was.object != f.object:
        what = (f"Point {f.name} of those records at {f.object} records (or clear it) first, "
                f"or add a new field for the {f.object} reference and leave {f.name} as it is")
    elif f.type == "decimal" and f.rounding is None and _scale_cut(was, f):
        scale = decimals.limits(f.precision, f.scale)[1]
        what = (f"To round them to {_places(scale)}, add `rounding: half_even` to {f.name} "
                f"(or {', '.join(r for r in decimals.ROUNDINGS if r != 'half_even')}) and "
                "deploy again: the "
                "deploy then rounds the stored values in its own transaction, each change on "
                f"its record's timeline. To keep them exact, leave the scale at "
                f"{_digits(was, 'scale')} (or add a new field with scale {scale}), or update "
                f"{f.name} on those records to at most {_places(scale)} first (`baton records "
                f"update ID --data '{{\"{f.name}\": \"...\"}}'`)")
    elif was.required:
        what = (f"Update {f.name} on those records first (`baton records update ID --data "
                f"'{{\"{f.name}\": ...}}'`), or add a new field with the new definition and "
                f"leave {f.name} as it is")
    else:
        what = (f"Update or clear {f.name} on those records first (`baton records update ID "
                f"--data '{{\"{f.name}\": null}}'` clears it), or add a new field with the new "
                f"definition and leave {f.name} as it is")
    return what + (f"; for the empty ones, {fill}." if empty else ".")


def _at_scale(f: FieldDefinition, value: Any) -> Any:
    """A stored decimal string as ``f`` would store the number it stands for, when that
    keeps it exact: ``"3.1000"`` (stored at scale 4) is ``"3.10"`` at scale 2, so a scale
    cut does not blame the zeros a wider scale wrote. Anything else as it is."""
    if f.type != "decimal" or not isinstance(value, str):
        return value
    try:
        d = decimals.parse(value)
        exact = d.quantize(decimal.Decimal(1).scaleb(-decimals.limits(f.precision, f.scale)[1]))
    except (ValueError, ArithmeticError):
        return value
    return decimals.canonical(exact) if exact == d else value


def _scale_cut(was: FieldDefinition, f: FieldDefinition) -> bool:
    """Whether ``f`` keeps fewer decimal places than ``was`` did (a decimal both)."""
    return (was.type == "decimal"
            and decimals.limits(f.precision, f.scale)[1] < decimals.limits(was.precision,
                                                                           was.scale)[1])


def _places(n: int) -> str:
    return f"{n} place{'s' if n != 1 else ''}"


def _fills(f: FieldDefinition) -> bool:
    """Whether a deploy gives the records that leave ``f`` empty its default: it is
    required now, and has one (what a record created without it is given)."""
    return f.required and f.default is not None


def _empty(value: Any) -> bool:
    """A value a required field refuses as empty (as :func:`coerce_fields` does)."""
    return value is None or (isinstance(value, str) and not value.strip())


def _brief(value: Any, width: int = 40) -> str:
    text = "empty" if value is None else repr(value)
    return text if len(text) <= width else text[:width] + "…"


def _list(values: Sequence[str]) -> str:
    return ", ".join(values) or "(none)"


def _limit(f: FieldDefinition) -> str:
    if f.max_length is not None:
        return f"{f.max_length:,}"
    default = {"string": MAX_STRING, "text": MAX_TEXT, "json": MAX_TEXT}.get(f.type)
    return f"{default:,} (the default)" if default is not None else "(none)"


def _digits(f: FieldDefinition, key: str) -> str:
    precision, scale = decimals.limits(f.precision, f.scale)
    value = precision if key == "precision" else scale
    return str(value) if getattr(f, key) is not None else f"{value} (the default)"

