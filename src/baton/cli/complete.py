"""Shell completion of the names and ids a user types that come from the project.

``baton --install-completion`` (Typer's) installs a script that asks ``baton`` itself for
the candidates on each TAB (``_BATON_COMPLETE=complete_bash`` and the words so far in the
environment). For definition names, run, record and work item ids and user names, the
functions here read the project's database: a SQLite file opened read-only with the
stdlib's ``sqlite3`` (no Engine, no migration, a short busy timeout), or a PostgreSQL
server through psycopg, given :data:`DEADLINE_S` in all (connecting included); a few dozen
rows by an index. A shell waits on them, so they never say anything: no project, no
database yet, a server that does not answer in time, a locked file or an older schema
complete nothing, and the shell goes on as it would without them.

bash splits the words it hands over at the characters of ``COMP_WORDBREAKS``, ``:`` and
``=`` among them: ``fallout retry run_01J...:ch`` arrives as ``run_01J...``, ``:``, ``ch``.
:class:`BashComplete` (put in place of Typer's when this module is imported: the scripts
already installed keep working) joins such pieces back into the word typed before the
command line is parsed, and offers each candidate relative to the piece bash replaces (the
text after the last ``:``), as bash-completion's ``__ltrim_colon_completions`` does.

zsh hands ``--option=VALUE`` over as one word, and Click completes its VALUE alone:
:class:`ZshComplete` (in place of Typer's likewise) offers each candidate with the
``--option=`` in front, the word zsh matches them against.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

LIMIT = 50  # candidates offered at most (the newest ids first)
BUSY_TIMEOUT_S = 0.2  # a database a writer holds: complete nothing rather than wait
DEADLINE_S = 1.0  # a PostgreSQL server: connected and answered by then, or nothing offered
TOP = "\U0010ffff"  # above every character: ``id >= prefix AND id < prefix + TOP``
BREAKS = (":", "=")  # the characters of bash's COMP_WORDBREAKS a word of ours may hold

Candidates = list[str]


def _database(ctx: Any) -> tuple[str, str] | None:
    """``("sqlite", FILE)`` or ``("postgresql", URL)``: the database the command line's
    ``--project``/``--db`` (or the folder, or ``BATON_DB``) names, a SQLite file only when it
    exists; None otherwise."""
    from baton.cli.context import State
    from baton.store.lean import sqlite_path

    params = ctx.find_root().params if ctx is not None else {}
    state = State()
    state.project_dir, state.db = params.get("project"), params.get("db")
    if state.find_project() is None:
        return None
    url = state.database_url()
    scheme = url.partition("://")[0]
    if scheme in ("postgres", "postgresql") or scheme.startswith("postgresql+"):
        return "postgresql", "postgresql://" + url.partition("://")[2]  # (libpq's form)
    path = sqlite_path(url)
    return ("sqlite", path) if path is not None and os.path.isfile(path) else None


def _query(ctx: Any, sql: str, params: Sequence[Any],
           postgres: tuple[str, Sequence[Any]] | None = None) -> Candidates:
    """The first column of ``sql``'s rows (on PostgreSQL: of ``postgres``'s, else of
    ``sql`` with ``%s`` for each ``?``), or nothing at all on any error."""
    try:
        found = _database(ctx)
        if found is None:
            return []
        kind, where = found
        if kind == "postgresql":
            pg_sql, pg_params = postgres or (sql.replace("?", "%s"), params)
            rows = _postgres_rows(where, pg_sql, pg_params)
        else:
            rows = _sqlite_rows(where, sql, params)
        return [str(r[0]) for r in rows if r[0] is not None]
    except Exception:  # noqa: BLE001 - a shell is waiting: complete nothing, say nothing
        return []


def _sqlite_rows(path: str, sql: str, params: Sequence[Any]) -> list[Any]:
    import sqlite3  # (here: every command imports this module, few complete)
    from urllib.parse import quote

    conn = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True,
                           timeout=BUSY_TIMEOUT_S)
    try:
        return list(conn.execute(sql, tuple(params)))
    finally:
        conn.close()


def _postgres_rows(url: str, sql: str, params: Sequence[Any]) -> list[Any]:
    """The rows, read in a thread of their own that is given :data:`DEADLINE_S`: libpq's
    ``connect_timeout`` is 2 s at least and a server may accept and then say nothing, so the
    shell is not kept waiting on either. A server too slow is left behind (the thread is a
    daemon: the process exits without it, its statement ends at ``statement_timeout``)."""
    import threading

    got: list[Any] = []

    def read() -> None:
        try:
            import psycopg

            with psycopg.connect(url, connect_timeout=2,
                                 application_name="baton-complete") as conn:
                conn.execute(f"SET LOCAL statement_timeout = {int(DEADLINE_S * 1000)}")
                got.append(conn.execute(sql, tuple(params)).fetchall())
        except Exception:  # noqa: BLE001, S110 - nothing said (a thread's error is printed)
            pass

    reader = threading.Thread(target=read, name="baton-complete", daemon=True)
    reader.start()
    reader.join(DEADLINE_S)
    return got[0] if got else []  # (not read in time, or failed: nothing)


def _ids(table: str, prefix: str, where: str = "", params: Sequence[Any] = ()) -> Callable[
        [Any, str], Candidates]:
    """Completion of ids of ``table`` (``run_...``) that start with what is typed, newest
    first (ids sort by time): a range on the primary key, never a scan. (PostgreSQL: a
    ``LIKE`` on the prefix, which a database of any collation answers alike; the index
    gives the range in one of collation C, the order and the LIMIT in any other.)"""
    def complete(ctx: Any, incomplete: str) -> Candidates:
        typed = incomplete or prefix
        extra = f" AND {where}" if where else ""
        like = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        order = f" ORDER BY id DESC LIMIT {LIMIT}"
        return _query(ctx, f"SELECT id FROM {table} WHERE id >= ? AND id < ?{extra}{order}",
                      (typed, typed + TOP, *params),
                      postgres=(f"SELECT id FROM {table} WHERE id LIKE %s{extra}{order}",
                                (like, *params)))
    return complete


def _names(sql: str, *params: Any) -> Callable[[Any, str], Candidates]:
    def complete(ctx: Any, incomplete: str) -> Candidates:
        return [n for n in _query(ctx, sql, params) if n.startswith(incomplete)]
    return complete


# (Typer passes a completion function ``ctx`` and ``incomplete`` by these names.)
def run_ids(ctx: Any, incomplete: str) -> Candidates:
    """Run ids."""
    return _ids("baton_runs", "run_")(ctx, incomplete)


def record_ids(ctx: Any, incomplete: str) -> Candidates:
    """Record ids."""
    return _ids("baton_records", "rec_")(ctx, incomplete)


def work_item_ids(ctx: Any, incomplete: str) -> Candidates:
    """Work item ids (any status: ``work show`` of a completed one too)."""
    return _ids("baton_work_items", "wi_")(ctx, incomplete)


def open_work_item_ids(ctx: Any, incomplete: str) -> Candidates:
    """Work item ids of the items still open or claimed (those a person acts on)."""
    return _ids("baton_work_items", "wi_", "status IN ('open', 'claimed')")(ctx, incomplete)


def fallout_ids(ctx: Any, incomplete: str) -> Candidates:
    """``RUN_ID:STEP`` of the steps in fallout, newest run first: the runs needing attention
    for a fallout (the partial index of migration 13: few rows), their steps read from the
    run's document or, for a split run, its step rows."""
    found = _query(ctx, f"""
        SELECT id FROM (
          SELECT r.id || ':' || s.key AS id FROM baton_runs r, json_each(r.state, '$.steps') s
           WHERE r.attention IN (1, 3) AND json_extract(s.value, '$.status') = 'fallout'
          UNION ALL
          SELECT r.id || ':' || w.step FROM baton_runs r
            JOIN baton_run_steps w ON w.run_id = r.id
           WHERE r.attention IN (1, 3) AND json_extract(w.doc, '$.status') = 'fallout')
        ORDER BY id DESC LIMIT {LIMIT * 4}""", (), postgres=(f"""
        SELECT id FROM (
          SELECT r.id || ':' || s.key AS id
            FROM baton_runs r, json_each((r.state -> 'steps')::json) s
           WHERE r.attention IN (1, 3) AND s.value ->> 'status' = 'fallout'
          UNION ALL
          SELECT r.id || ':' || w.step FROM baton_runs r
            JOIN baton_run_steps w ON w.run_id = r.id
           WHERE r.attention IN (1, 3) AND w.doc ->> 'status' = 'fallout') f
        ORDER BY id DESC LIMIT {LIMIT * 4}""", ()))
    return [f for f in found if f.startswith(incomplete)][:LIMIT]


def open_incident_ids(ctx: Any, incomplete: str) -> Candidates:
    """Ids of the open incidents (those a retry or dismissal acts on)."""
    return _ids("baton_incidents", "inc_", "status = 'open'")(ctx, incomplete)


def orchestrations(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed orchestrations."""
    return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? ORDER BY name",
                  "orchestration")(ctx, incomplete)


def object_types(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed object types."""
    return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? ORDER BY name",
                  "object")(ctx, incomplete)


def definitions(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed definitions of the kind ``--kind`` names (any kind without)."""
    kind = ctx.params.get("kind") if ctx is not None else None
    if kind:
        return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? "
                      "ORDER BY name", kind)(ctx, incomplete)
    return _names("SELECT DISTINCT name FROM baton_definitions ORDER BY name")(ctx, incomplete)


def connections(ctx: Any, incomplete: str) -> Candidates:
    """Names of the deployed connections."""
    return _names("SELECT DISTINCT name FROM baton_definitions WHERE kind = ? ORDER BY name",
                  "connection")(ctx, incomplete)


def users(ctx: Any, incomplete: str) -> Candidates:
    """User names."""
    return _names("SELECT name FROM baton_users ORDER BY name")(ctx, incomplete)


# ---- bash: the words as typed ------------------------------------------------------------
def _joined(words: list[str], cword: int) -> tuple[list[str], str, str]:
    """The words before the one completed, that word, and the part of it bash replaces:
    bash's ``words[:cword + 1]`` with each piece that is a run of ``:`` or ``=`` (bash's
    word breaks) joined to the words either side (as bash-completion's
    ``_get_comp_words_by_ref -n =:``). (bash hands ``a:b`` and ``a : b`` over alike; the
    latter never means anything to ``baton``.)"""
    words = (words + [""] * (cword + 1 - len(words)))[:cword + 1]
    out: list[str] = []
    glue = False  # the last piece was a break: the next one belongs to the same word
    replaced = ""
    for w in words:
        brk = w != "" and w.strip("".join(BREAKS)) == ""
        if len(out) > 1 and (brk or glue):  # (never onto the command's own name)
            out[-1] += w
            replaced = "" if brk else w
        else:
            out.append(w)
            replaced = w
        glue = brk
    return out[:-1], out[-1], replaced


def _relative(word: str, replaced: str, value: str) -> str:
    """What bash is to put in place of ``replaced`` (the end of ``word``) so the word reads
    as ``value`` completes it: Click completes an ``--option=VALUE`` word's VALUE alone."""
    kept = word[:len(word) - len(replaced)]
    return _whole(word, value).removeprefix(kept)


def _whole(word: str, value: str) -> str:
    """The word ``value`` completes ``word`` to: Click completes the VALUE of an
    ``--option=VALUE`` word alone, and a shell matches candidates against the whole word,
    ``--option=`` included."""
    if word.startswith("-") and "=" in word:
        return word[:word.index("=") + 1] + value
    return value


def _bash_words() -> None:
    """Put :class:`BashComplete` in place of Typer's for ``_BATON_COMPLETE=complete_bash``.
    Typer registers its classes (``completion_init``) each time the app is called, from its
    module's names: the name is replaced there. A Typer without it keeps its own."""
    try:
        from typer import _completion_classes as typer_classes
    except ImportError:  # pragma: no cover - another Typer: its bash completion as it is
        return
    base: Any = getattr(typer_classes, "BashComplete", None)
    split: Any = getattr(typer_classes, "click_split_arg_string", None)  # (Click's, as Typer's)
    if base is None or split is None or getattr(base, "baton", False):
        return

    class BashComplete(base):  # type: ignore[misc]
        """Typer's, with the words bash split at ``:`` and ``=`` joined back."""

        baton = True
        word = replaced = ""

        def get_completion_args(self) -> tuple[list[str], str]:
            words = list(split(os.environ["COMP_WORDS"]))
            args, self.word, self.replaced = _joined(words, int(os.environ["COMP_CWORD"]))
            return args[1:], self.word

        def format_completion(self, item: Any) -> str:
            return _relative(self.word, self.replaced, str(item.value))

    typer_classes.BashComplete = BashComplete  # type: ignore[misc]


# ---- zsh: the candidates for the whole word ----------------------------------------------
def _zsh_words() -> None:
    """Put :class:`ZshComplete` in place of Typer's for ``_BATON_COMPLETE=complete_zsh``
    (as :func:`_bash_words` does for bash). zsh hands ``--option=VALUE`` over as one word
    and offers the candidates that start with all of it, while Click completes VALUE alone:
    each candidate is given ``--option=`` in front, so ``--orchestration=fu`` completes to
    ``--orchestration=fulfil`` (Typer's own offers ``fulfil``, which zsh drops)."""
    try:
        from typer import _completion_classes as typer_classes
    except ImportError:  # pragma: no cover - another Typer: its zsh completion as it is
        return
    base: Any = getattr(typer_classes, "ZshComplete", None)
    if base is None or getattr(base, "baton", False) \
            or not callable(getattr(base, "get_completion_args", None)):
        return

    class ZshComplete(base):  # type: ignore[misc]
        """Typer's, each candidate for an ``--option=VALUE`` word given ``--option=``."""

        baton = True
        word = ""

        def get_completion_args(self) -> tuple[list[str], str]:
            args, self.word = super().get_completion_args()
            return list(args), self.word

        def format_completion(self, item: Any) -> str:
            value = str(item.value)
            whole = _whole(self.word, value)
            if whole != value:
                from click.shell_completion import CompletionItem

                item = CompletionItem(whole, type=item.type, help=item.help)
            return str(super().format_completion(item))

    typer_classes.ZshComplete = ZshComplete  # type: ignore[misc]


_bash_words()
_zsh_words()
