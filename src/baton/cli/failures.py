"""What ``baton`` prints when a command ends in an error no code translated.

Two kinds, told apart here (the entry point, :func:`baton.cli.commands.main`, prints them):

* a database error the user can act on (the database is read-only, locked, full, damaged,
  not a database, without Baton's tables; PostgreSQL away, refusing the login, out of
  resources, a standby): one line naming the database and saying what to do, exit 1;
* anything else is a bug in Baton (an ``IntegrityError``, a ``ProgrammingError``, a
  ``KeyError``...): the traceback, then one line saying it is an internal error to report,
  exit :data:`EXIT_INTERNAL`. The traceback is cut for a public report: a database error's
  message keeps its first line only, without SQLAlchemy's ``[SQL: ...]`` and
  ``[parameters: ...]`` or PostgreSQL's ``DETAIL`` (they hold field values: personal data).

``--debug`` (or ``BATON_DEBUG=1``) prints the full traceback, parameters included, for any
error, before the line.
"""

from __future__ import annotations

import re
import sqlite3
import sys
import traceback
from dataclasses import dataclass

EXIT_INTERNAL = 70
"""The exit status of an internal error (sysexits' ``EX_SOFTWARE``); 1 is an error the user
can act on, 2 a usage error, 130 Ctrl-C."""

REPORT = ("this is a bug in Baton: please report it with the traceback above (which leaves "
          "out SQL statements and field values; --debug shows them)")


@dataclass(frozen=True)
class Failure:
    """How an error that ended a command is told: ``line`` (after ``error: ``), and whether
    it is a bug (``internal``: the traceback goes with it, exit :data:`EXIT_INTERNAL`)."""

    line: str
    internal: bool


def explain(exc: BaseException, url: str | None) -> Failure:
    """``exc`` (not a :class:`~baton.errors.BatonError`) as the CLI tells it."""
    said = user_failure(exc, url)
    if said is not None:
        return Failure(said, internal=False)
    said = safe_message(exc)
    return Failure(f"internal error: {_name(type(exc))}{': ' + said if said else ''}; {REPORT}",
                   internal=True)


# ---- errors the user can act on -----------------------------------------------------------
# SQLite's primary result codes (the low byte of ``sqlite_errorcode``) -> what the line says
# of the database. Older drivers give no code: their message is matched instead.
_READ_ONLY = ("is read-only: Baton cannot write to it (the file or its folder is not writable "
              "for this user, or its disk is mounted read-only)")
_LOCKED = "is locked: another process held its write lock too long; try again"
_CANNOT_OPEN = ("cannot be opened for writing (its folder must be writable too, for the -wal "
                "and -shm files)")
_FULL = "cannot grow: the disk is full; free some space and try again"
_IO = "cannot be read or written: disk I/O error (check the disk and the file's permissions)"
_DAMAGED = "is damaged (database disk image is malformed): restore it from a backup"
_NOT_A_DB = "is not a SQLite database (check --db, BATON_DB or baton.toml's database)"
_NO_SCHEMA = ("has no Baton tables ({said}): run `baton db upgrade` (or start without "
              "--no-migrate), or check that --db names the right database")
_SQLITE_CODES = {5: _LOCKED, 6: _LOCKED, 8: _READ_ONLY, 10: _IO, 11: _DAMAGED, 13: _FULL,
                 14: _CANNOT_OPEN, 26: _NOT_A_DB}
_SQLITE_SAYS = (
    ("readonly database", _READ_ONLY),
    ("database is locked", _LOCKED),
    ("database table is locked", _LOCKED),
    ("unable to open database file", _CANNOT_OPEN),
    ("database or disk is full", _FULL),
    ("disk i/o error", _IO),
    ("malformed", _DAMAGED),
    ("file is not a database", _NOT_A_DB),
    ("no such table: baton_", _NO_SCHEMA),
)
# PostgreSQL's SQLSTATE (exact, or its class: the first two characters) -> the line.
_AWAY = "{said} (the server is away, or the connection was lost): check it runs, then try again"
_PG_STATES = {
    "08": _AWAY,
    "57P01": "{said}: the server is shutting down; try again once it is back",
    "57P02": "{said}: the server crashed; try again once it is back",
    "57P03": "{said}: the server is starting or recovering; try again in a moment",
    "57014": "{said}: a statement was canceled (statement_timeout, or an operator); try again",
    "28": "{said}: check the user and password in the database URL",
    "3D000": "{said}: create it, or check the database URL",
    "42P01": _NO_SCHEMA,
    "42501": "{said}: the database user lacks a privilege Baton needs; grant it, or use "
             "another user",
    "25006": "is read-only ({said}): a standby, or default_transaction_read_only; point the "
             "database URL at the primary",
    "53100": "{said}: the server's disk is full; free some space and try again",
    "53": "{said}: the server is out of resources; try again later",
    "55P03": "is busy ({said}): another transaction holds a lock; try again",
    "40001": "is busy ({said}): try again",
    "40P01": "is busy ({said}): try again",
    "58": "{said}: the server cannot read or write its files; see its log",
}


def user_failure(exc: BaseException, url: str | None) -> str | None:
    """A database error the user can act on, in one line that names the database and says
    what to do (``database /srv/baton.db is read-only: ...``); None for anything else (a
    bug). Never SQLAlchemy's statement, its parameters or a password: the driver's first
    line at most."""
    from sqlalchemy.exc import DBAPIError, DisconnectionError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    where = _where(url)
    if isinstance(exc, PoolTimeout):
        return (f"database {where}: no connection free in time (every pooled connection was "
                "busy); try again, or give the database more connections")
    if isinstance(exc, DisconnectionError):
        return f"database {where}: {_AWAY.format(said='the connection was lost')}"
    orig = getattr(exc, "orig", None) or exc
    postgres = _module(type(orig)) == "psycopg"
    if not (isinstance(exc, DBAPIError) or isinstance(orig, sqlite3.Error) or postgres):
        return None
    if url is not None:
        from baton.store.sql.dialects import open_failure

        failure = open_failure(exc, url)
        if failure is not None:
            return str(failure)
    said = safe_message(orig)
    what: str | None = None
    if isinstance(orig, sqlite3.Error):
        code = (getattr(orig, "sqlite_errorcode", None) or 0) & 0xFF
        what = _SQLITE_CODES.get(code) or next(
            (w for needle, w in _SQLITE_SAYS if needle in said.lower()), None)
    elif postgres:
        state = str(getattr(orig, "sqlstate", None) or "")
        what = _PG_STATES.get(state) or _PG_STATES.get(state[:2])
        if what is None and not state and type(orig).__name__ == "OperationalError":
            what = _AWAY  # (libpq's own errors have no SQLSTATE: a connection that broke)
    if what is None and isinstance(exc, DBAPIError) and exc.connection_invalidated:
        what = _AWAY
    if what is None:
        return None
    what = what.format(said=said)
    return f"database {where}{'' if what.startswith(('is ', 'has ', 'cannot ')) else ':'} {what}"


def database_name(url: str | None) -> str:
    """The database as an error line names it (:func:`_where`)."""
    return _where(url)


def _where(url: str | None) -> str:
    """The database as the line names it: a SQLite file's path, PostgreSQL's host, port and
    database (never the user or password)."""
    if url is None:
        return "(unknown)"
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot read: say nothing of it
        return "(unknown)"
    if u.get_backend_name() == "sqlite":
        return u.database or ":memory:"
    return f"PostgreSQL at {u.host or 'the local socket'}:{u.port or 5432}/{u.database or ''}"


# ---- bugs: a traceback fit for a public report --------------------------------------------
def safe_message(exc: BaseException) -> str:
    """``exc``'s message as a report may show it. A database error (SQLAlchemy's or its
    driver's) keeps its first line only: SQLAlchemy puts the statement and its parameters on
    the lines after it, PostgreSQL the ``DETAIL`` (``Key (email)=(...) already exists``);
    a PostgreSQL data error (SQLSTATE class 22) quotes the value it refused on that line,
    so the quoted text is dropped too. Any other error's message is kept whole."""
    text = str(exc)
    if not _is_database_error(exc):
        return text
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    orig = getattr(exc, "orig", None) or exc
    if str(getattr(orig, "sqlstate", None) or "").startswith("22"):
        first = re.sub(r'"[^"]*"', '"..."', first)
    return first


def safe_traceback(exc: BaseException) -> str:
    """The traceback Python would print for ``exc`` (its causes first), each database
    error's message cut by :func:`safe_message`."""
    parts: list[str] = []
    seen: set[int] = set()
    chain: list[tuple[BaseException, str]] = []
    link: BaseException | None = exc
    join = ""
    while link is not None and id(link) not in seen:  # from the last raised to the first
        seen.add(id(link))
        chain.append((link, join))
        if link.__cause__ is not None:
            link, join = link.__cause__, "The above exception was the direct cause of the following exception:"
        elif link.__context__ is not None and not link.__suppress_context__:
            link, join = link.__context__, "During handling of the above exception, another exception occurred:"
        else:
            link = None
    for i, (e, _) in enumerate(reversed(chain)):
        if i:
            parts.append(f"\n{chain[len(chain) - i][1]}\n\n")
        if e.__traceback__ is not None:
            parts.append("Traceback (most recent call last):\n")
            parts += traceback.format_tb(e.__traceback__)
        if _is_database_error(e):
            parts.append(f"{_name(type(e))}: {safe_message(e)}\n")
        else:
            parts += traceback.format_exception_only(e)
    return "".join(parts)


def traceback_text(exc: BaseException, *, full: bool) -> str:
    """``exc``'s traceback: as Python prints it (``full``), or cut for a report."""
    return "".join(traceback.format_exception(exc)) if full else safe_traceback(exc)


def print_traceback(exc: BaseException, *, full: bool) -> None:
    """``exc``'s traceback on stderr: as Python prints it (``full``), or cut for a report."""
    sys.stderr.flush()
    text = traceback_text(exc, full=full)
    sys.stderr.write(text)
    sys.stderr.flush()


def _is_database_error(exc: BaseException) -> bool:
    return _module(type(exc)) in ("sqlalchemy", "psycopg", "psycopg2") or isinstance(
        exc, sqlite3.Error)


def _module(cls: type) -> str:
    return cls.__module__.split(".")[0]


def _name(cls: type) -> str:
    """``sqlalchemy.exc.IntegrityError``; a builtin's bare name (``KeyError``)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
