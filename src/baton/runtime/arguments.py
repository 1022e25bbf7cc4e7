"""What the public methods of :class:`~baton.runtime.engine.Engine` are given, checked
before anything is done.

A bad argument is a :class:`~baton.errors.ValidationError` naming the argument and what
was expected (or, for what makes an ``Engine``, a :class:`~baton.errors.ConfigError`), not
a ``TypeError`` or a database error from deep inside. The services check what only they
can, such as whether an id names anything. Each check is one plain function: the methods
of the hot path (``create_record``, ``start``) call none of them beyond the actor's.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard

from baton.definitions.checks import describe
from baton.engine.attention import VALUES as ATTENTION_VALUES
from baton.engine.status import RunStatus
from baton.errors import ConfigError, ValidationError
from baton.settings import Settings
from baton.store.sql import SqlStore

__all__ = [
    "RUN_FILTERS",
    "check_clock",
    "check_concurrency",
    "check_expected_version",
    "check_reason",
    "check_signal_name",
    "check_window",
    "check_work_names",
    "check_yaml_texts",
    "checked_database",
    "checked_id",
    "checked_paths",
    "checked_run_filters",
    "checked_settings",
    "checked_statuses",
    "optional_name",
]

RUN_FILTERS = ("orchestration", "version", "status", "current_stage", "record_id",
               "attention")
_RUN_STATUSES = tuple(s.value for s in RunStatus)


def _whole(value: object) -> TypeGuard[int]:
    """A whole number (``True`` is not one, though Python counts it as an int)."""
    return isinstance(value, int) and not isinstance(value, bool)


# ---- making an Engine (ConfigError: the program is set up wrong) -------------------------
def checked_settings(settings: object) -> Settings | None:
    """``Engine(settings=...)``: a :class:`~baton.settings.Settings`, or None."""
    if settings is None or isinstance(settings, Settings):
        return settings
    raise ConfigError("Engine(settings=...) takes a baton.settings.Settings "
                      f"(Settings.from_environment()), got {describe(settings)}")


def checked_database(db: object, settings: Settings) -> str | SqlStore:
    """``Engine(db)``: a database URL, a path (text or ``os.PathLike``) or a store; None is
    the settings' database, else ``sqlite:///baton.db``."""
    if db is None:
        db = settings.database or "sqlite:///baton.db"
    if isinstance(db, os.PathLike):
        db = os.fspath(db)
    if isinstance(db, str | SqlStore):
        return db
    raise ConfigError("Engine(db) takes a database URL (sqlite:///PATH, "
                      f"postgresql://USER@HOST/DB) or a path, got {describe(db)}")


def check_clock(clock: object) -> None:
    """The engine keeps time in UTC: a clock must say what time it is, with its zone."""
    now = getattr(clock, "now", None)
    at = now() if callable(now) else None
    if not isinstance(at, datetime) or at.utcoffset() is None:
        raise ConfigError("Engine(clock=...) takes a clock whose now() is a datetime with a "
                          f"time zone (baton.clock.SystemClock, VirtualClock(start) with a "
                          f"zone), got {type(clock).__name__} saying {at!r}"[:300])


def check_concurrency(concurrency: object) -> None:
    """``start_workers(concurrency)``: how many workers, 1 or more."""
    if not _whole(concurrency) or concurrency < 1:
        raise ValidationError("start_workers", {"concurrency": (
            f"expected a number of workers (1 or more), got {concurrency!r}")})


# ---- ids and names ----------------------------------------------------------------------
def checked_id(value: object, kind: str) -> str:
    """An id argument: text (one that names nothing is the service's NotFound)."""
    if isinstance(value, str):
        return value
    raise ValidationError(f"{kind} id", {"id": f"expected the {kind}'s id (text), got "
                                               f"{describe(value)}"})


def optional_name(value: object, field: str, what: str) -> str | None:
    """A name that narrows a list (``object_type``): text, or None for all."""
    if value is None or isinstance(value, str):
        return value
    raise ValidationError(what, {field: f"expected a name (text) or None, got {describe(value)}"})


def check_work_names(**given: object) -> None:
    """A work list's filters that name someone or something: text, or None."""
    bad = {k: f"expected a name or an id (text) or None, got {describe(v)}"
           for k, v in given.items() if v is not None and not isinstance(v, str)}
    if bad:
        raise ValidationError("work list", bad)


def check_signal_name(name: object) -> None:
    """A signal's name: non-blank text."""
    if not isinstance(name, str) or not name.strip():
        got = repr(name) if isinstance(name, str) else describe(name)
        raise ValidationError("signal", {"name": f"expected the signal's name, got {got}"})


# ---- what a change says of itself ---------------------------------------------------------
def check_expected_version(record_id: str, expected: object) -> None:
    """``expected_version``: the record's version as read (a whole number), or None."""
    if expected is not None and not _whole(expected):
        raise ValidationError(f"record {record_id}", {"expected_version": (
            f"expected the version read (a whole number) or None, got {expected!r}"[:200])})


def check_reason(reason: object, action: str, run_id: str) -> None:
    """Why an operator acts on a run (audited): non-blank text."""
    if not isinstance(reason, str) or not reason.strip():
        got = describe(reason) if not isinstance(reason, str) else "blank text"
        raise ValidationError(f"{action} of run {run_id}", {
            "reason": f"say why (it is audited): got {got}"})


# ---- lists: pages and filters -------------------------------------------------------------
def check_window(limit: object, offset: object, what: str, after: object = None) -> None:
    """A page's size (at least 1), the rows it skips (none or more), its cursor (text)."""
    problems: dict[str, str] = {}
    if not _whole(limit) or limit < 1:
        problems["limit"] = f"expected a page size of at least 1, got {limit!r}"[:200]
    if not _whole(offset) or offset < 0:
        problems["offset"] = f"expected a number of rows to skip (0 or more), got {offset!r}"[:200]
    if after is not None and not isinstance(after, str):
        problems["after"] = (f"expected the `next` cursor of the previous page (text), got "
                             f"{describe(after)}")
    if problems:
        raise ValidationError(what, problems)


def _run_filter_problem(key: str, value: object) -> str | None:
    if key not in RUN_FILTERS:
        return f"unknown filter (filters: {', '.join(RUN_FILTERS)})"
    if value is None:
        return None
    if key == "status":
        return None if value in _RUN_STATUSES else \
            f"expected one of {', '.join(_RUN_STATUSES)}, got {value!r}"[:200]
    if key == "version":
        return None if _whole(value) else f"expected a version number, got {value!r}"[:200]
    if key == "attention":
        return None if isinstance(value, bool) else \
            f"expected True or False, got {describe(value)}"
    return None if isinstance(value, str) else f"expected text, got {describe(value)}"


def checked_run_filters(filters: dict[str, Any], *, listing: bool = False) -> dict[str, Any]:
    """The filters of a runs list, checked; ``listing``: for ``list_runs``/``count_runs``,
    whose ``attention`` is the set of values a run's column may hold."""
    problems = {key: problem for key, value in filters.items()
                if (problem := _run_filter_problem(key, value)) is not None}
    if problems:
        raise ValidationError("run filter", problems)
    if listing and "attention" in filters:
        filters = {**filters, "attention": ATTENTION_VALUES if filters["attention"] else None}
    return filters


def checked_statuses(statuses: object) -> list[str] | None:
    """An incident list's statuses: a list of them (a lone string is not one: ``"open"``
    would be read as its letters), or None for all."""
    if not statuses:
        return None
    if isinstance(statuses, str | bytes) or not isinstance(statuses, Collection):
        raise ValidationError("incident filter", {"statuses": (
            f"expected a list of statuses (or None for all), got {statuses!r}"[:200])})
    return list(statuses)


# ---- definitions ----------------------------------------------------------------------------
def checked_paths(paths: object, what: str) -> Sequence[str | Path]:
    """Definition files or folders: one path, or several (a list, a glob's generator)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if isinstance(paths, Iterable) and not isinstance(paths, bytes | Mapping):
        given = list(paths)
        if all(isinstance(p, str | os.PathLike) for p in given):
            return [p if isinstance(p, str | Path) else os.fspath(p) for p in given]
        shown = repr(given)[:200]
    else:
        shown = describe(paths)
    raise ValidationError(what, {"paths": (
        f"expected definition files or folders (a path or a list of paths), got {shown}")})


def check_yaml_texts(texts: object, what: str) -> None:
    """Definitions given as texts: a mapping of file name -> YAML text."""
    if not isinstance(texts, Mapping):
        raise ValidationError(what, {"texts": (
            f"expected a mapping of file name -> YAML text, got {describe(texts)}")})
    bad = {f"texts[{k!r}]": f"expected YAML text under a file name, got {describe(v)}"
           for k, v in texts.items() if not isinstance(k, str) or not isinstance(v, str)}
    if bad:
        raise ValidationError(what, bad)
