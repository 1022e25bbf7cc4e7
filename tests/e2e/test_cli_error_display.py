"""How ``baton`` tells an error nobody translated, end to end (real ``baton`` subprocesses on
real SQLite files and a real PostgreSQL server).

A database error the user can act on (read-only, without Baton's tables) is one line that
names the database and says what to do, exit 1, no traceback. Anything else is a bug in
Baton: here an ``IntegrityError``, provoked honestly with a unique index the test adds to
the records table, so a second record with the same subject collides. It prints the
traceback without SQLAlchemy's ``[SQL: ...]``/``[parameters: ...]`` or PostgreSQL's
``DETAIL`` (they hold field values), then one line asking for a report, exit 70.
``--debug`` (or ``BATON_DEBUG=1``) prints the full traceback of any error.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.api.test_db_errors import read_only
from tests.e2e.test_cli import WIDE, _env, baton, ok, ok_json, one_line_error

SECRET = "alice.secret@example.com"  # a field value: personal data
INTERNAL = 70
UNIQUE_SUBJECT_SQLITE = ("CREATE UNIQUE INDEX one_subject ON baton_records "
                         "(json_extract(data, '$.subject'))")
UNIQUE_SUBJECT_PG = "CREATE UNIQUE INDEX one_subject ON baton_records ((data->>'subject'))"


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    """The quickstart project (``baton init``), deployed on its own SQLite file."""
    ok(baton("init", "proj", cwd=tmp_path))
    ok(baton("deploy", cwd=tmp_path / "proj"))
    return tmp_path / "proj"


def create(proj: Path, *root: str | Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``baton [ROOT...] records create Ticket`` with SECRET as its subject; ``env`` added to
    the environment the tests give ``baton``."""
    args = [*root, "records", "create", "Ticket", "--data", f'{{"subject": "{SECRET}"}}']
    if not env:
        return baton(*args, cwd=proj)
    return subprocess.run([sys.executable, "-m", "baton.cli.main", *map(str, args)], cwd=proj,
                          env={**_env(WIDE), **env}, capture_output=True, text=True,
                          timeout=180, check=False)


def internal_error(p: subprocess.CompletedProcess[str], *needles: str) -> list[str]:
    """Exit 70, nothing on stdout; stderr: a traceback, then one line ``error: internal
    error: ...`` asking for a report."""
    assert p.returncode == INTERNAL, f"{p.args} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert p.stdout == "", p.stdout
    lines = p.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):", p.stderr
    assert lines[-1].startswith("error: internal error: "), p.stderr
    assert "this is a bug in Baton: please report it with the traceback above" in lines[-1]
    assert sum(line.startswith("error: ") for line in lines) == 1, p.stderr
    for n in needles:
        assert n in lines[-1], (n, lines[-1])
    return lines


def no_values(text: str) -> None:
    for leak in (SECRET, "[SQL", "[parameters", "INSERT INTO", "DETAIL", "Key ("):
        assert leak not in text, (leak, text)


def run_ids(proj: Path) -> list[str]:
    return [r["id"] for r in ok_json(baton("runs", "list", "--json", cwd=proj))]


def records(db: Path) -> list[str]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT json_extract(data, '$.subject') "
                                          "FROM baton_records")]
    finally:
        con.close()


# ---- a bug: the traceback without values, a line asking for a report, exit 70 ------------------
def test_an_integrity_error_is_an_internal_error_whose_traceback_has_no_values(
        proj: Path) -> None:
    db = proj / "baton.db"
    con = sqlite3.connect(db)
    con.execute(UNIQUE_SUBJECT_SQLITE)
    con.commit()
    con.close()
    ok(create(proj))
    runs_before = run_ids(proj)

    p = create(proj)
    lines = internal_error(p, "sqlalchemy.exc.IntegrityError: (sqlite3.IntegrityError) "
                              "UNIQUE constraint failed: index 'one_subject'")
    no_values(p.stderr)
    # The traceback is Python's, causes first, and reaches the write that collided.
    assert "sqlite3.IntegrityError: UNIQUE constraint failed: index 'one_subject'" in lines
    assert "The above exception was the direct cause of the following exception:" in lines
    assert any("insert_record_txn" in line for line in lines), p.stderr
    # Nothing half-written: one record, and no run started for the one refused.
    assert records(db) == [SECRET]
    assert run_ids(proj) == runs_before and len(runs_before) == 1


def test_debug_shows_the_full_traceback_of_any_error(proj: Path) -> None:
    con = sqlite3.connect(proj / "baton.db")
    con.execute(UNIQUE_SUBJECT_SQLITE)
    con.commit()
    con.close()
    ok(create(proj))
    for p in (create(proj, "--debug"), create(proj, BATON_DEBUG="1")):
        lines = internal_error(p, "UNIQUE constraint failed")
        assert "[parameters: (" in p.stderr and SECRET in p.stderr, p.stderr  # asked for
        assert lines[-1].count(SECRET) == 0  # (the line itself never shows values)

    # An error Baton says in its own words: the traceback first, then the same line, exit 1.
    p = baton("--debug", "records", "show", "rec_nope", cwd=proj)
    assert p.returncode == 1, p.stderr
    lines = p.stderr.splitlines()
    assert lines[0] == "Traceback (most recent call last):", p.stderr
    assert lines[-2] == "baton.errors.NotFound: record 'rec_nope' not found"
    assert lines[-1] == "error: record 'rec_nope' not found"
    # Without --debug: the one line.
    one_line_error(baton("records", "show", "rec_nope", cwd=proj),
                   "record 'rec_nope' not found")


def test_an_integrity_error_on_postgresql_shows_no_detail(tmp_path: Path, pg_url: str) -> None:
    ok(baton("init", "proj", cwd=tmp_path))
    proj = tmp_path / "proj"
    ok(baton("--db", pg_url, "deploy", cwd=proj))
    with psycopg.connect(pg_url, autocommit=True) as con:
        con.execute(UNIQUE_SUBJECT_PG)
    ok(create(proj, "--db", pg_url))
    p = create(proj, "--db", pg_url)
    lines = internal_error(p, "sqlalchemy.exc.IntegrityError: (psycopg.errors.UniqueViolation) "
                              'duplicate key value violates unique constraint "one_subject"')
    no_values(p.stderr)
    assert ('psycopg.errors.UniqueViolation: duplicate key value violates unique constraint '
            '"one_subject"') in lines
    with psycopg.connect(pg_url) as con:
        assert con.execute("SELECT count(*) FROM baton_records").fetchone() == (1,)


# ---- errors the user can act on: one line, exit 1 ------------------------------------------------
def test_a_read_only_database_is_one_line_and_debug_adds_the_traceback(proj: Path) -> None:
    db = proj / "baton.db"
    with read_only(db):
        line = one_line_error(create(proj), f"database {db} is read-only: Baton cannot write")
        no_values(line)
        p = create(proj, "--debug")
        assert p.returncode == 1, p.stderr
        lines = p.stderr.splitlines()
        assert lines[0] == "Traceback (most recent call last):" and lines[-1] == line, p.stderr
        assert SECRET in p.stderr  # --debug: the statement's values, as asked
    assert records(db) == []


def test_a_database_without_baton_tables_is_one_line(tmp_path: Path) -> None:
    """``worker --no-migrate`` on a database nobody migrated: the worker thread's error ends
    the command (before, a thread's traceback, "0 jobs" and exit status 0)."""
    ok(baton("init", "proj", cwd=tmp_path))
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    for concurrency in ("1", "2"):
        one_line_error(baton("--db", f"sqlite:///{empty}", "worker", "--no-migrate",
                             "--until-idle", "--concurrency", concurrency, cwd=tmp_path / "proj"),
                       f"database {empty} has no Baton tables", "run `baton db upgrade`")
    ok(baton("--db", f"sqlite:///{empty}", "db", "upgrade", cwd=tmp_path / "proj"))
    ok(baton("--db", f"sqlite:///{empty}", "worker", "--no-migrate", "--until-idle",
             cwd=tmp_path / "proj"))


def test_a_read_only_postgresql_database_is_one_line(tmp_path: Path, pg_url: str) -> None:
    ok(baton("init", "proj", cwd=tmp_path))
    proj = tmp_path / "proj"
    ok(baton("--db", pg_url, "deploy", cwd=proj))
    url = make_url(pg_url)
    admin = url.set(database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(admin, autocommit=True) as con:
        con.execute(f"ALTER DATABASE {url.database} SET default_transaction_read_only = on")
    where = f"{url.host}:{url.port or 5432}/{url.database}"
    line = one_line_error(create(proj, "--db", pg_url),
                          f"database PostgreSQL at {where} is read-only "
                          "(cannot execute INSERT in a read-only transaction)",
                          "point the database URL at the primary")
    no_values(line)


def test_the_help_tells_how_to_see_the_traceback_and_what_the_exit_statuses_mean(
        tmp_path: Path) -> None:
    page = " ".join(ok(baton("--help", cwd=tmp_path)).stdout.split())
    assert "--debug On any error, print the full traceback" in page, page  # (a flag: no <bool>)
    assert "70 an internal error (a bug: please report it)" in page, page
