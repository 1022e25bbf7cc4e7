"""How long a deploy that changes an object type holds the write lock, over N records.

A deploy (and an activation) that changes an object type checks every stored record of
that type against the new version, and may give them a new required field's default
(:mod:`baton.records.changes`). On SQLite every writer of every process waits while the
deploy's write transaction is open; this measures that transaction's duration (from
``BEGIN IMMEDIATE`` to the end of its commit: the write lock's hold) for three changes:

- ``check``: a choice added and a max_length raised (the records must be read, none can
  break);
- ``required``: a field every record holds made required (read, none broken);
- ``fill``: a new required field with a default (every record given it, each with a
  ``record_updated`` event).

A database of N records (``Deal``: title, stage, amount, owner, a 200-character note) is
built once per N through ``Engine.create_records`` (2,000 a transaction), and copied for
each change, so each deploy starts from the same file. ``--profile`` also prints where the
deploy's time goes (cProfile, the functions of most own time). Run it with an older tree on
PYTHONPATH for the before figures.

    PYTHONPATH=src python bench/object_type_deploy.py --records 20000,100000
    PYTHONPATH=src python bench/object_type_deploy.py --records 20000 \\
        --db postgresql://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import tempfile
import textwrap
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from baton.runtime.engine import Engine

BASE = textwrap.dedent("""
    kind: object
    name: Deal
    fields:
      title:  {type: string, required: true}
      stage:  {type: choice, choices: [open, won, lost]}
      amount: {type: decimal, precision: 12, scale: 2}
      owner:  {type: string, max_length: 80}
      notes:  {type: text}
    """)

CHANGES = {
    # a choice added, a limit raised: read every record, none can break
    "check": BASE.replace("[open, won, lost]", "[open, won, lost, paused]")
                 .replace("max_length: 80", "max_length: 120"),
    # a field every record holds made required: read every record, none broken
    "required": BASE.replace("owner:  {type: string, max_length: 80}",
                             "owner:  {type: string, max_length: 80, required: true}"),
    # a new required field with a default: every record given it
    "fill": BASE + "  priority: {type: choice, choices: [low, normal, high], required: true, "
                   "default: normal}\n",
}
BATCH = 2_000


class LockClock:
    """The duration of each write transaction of ``engine``'s store (its lock's hold)."""

    def __init__(self, engine: Engine) -> None:
        store = engine.store
        self.spans: list[float] = []
        original = store.write

        @contextmanager
        def write() -> Iterator[Any]:
            t0 = time.perf_counter()
            try:
                with original() as tx:
                    yield tx
            finally:
                self.spans.append(time.perf_counter() - t0)

        store.write = write  # type: ignore[method-assign]


def _records(n: int) -> Iterator[list[dict[str, Any]]]:
    note = ("Customer asked for a revised quote with the new volume discount; follow up "
            "after the call on Thursday and attach the signed order form. ") * 2
    for start in range(0, n, BATCH):
        yield [{"title": f"Deal {i}", "stage": ("open", "won", "lost")[i % 3],
                "amount": f"{(i * 37) % 100000}.{i % 100:02d}", "owner": f"user{i % 50}",
                "notes": note[:200]} for i in range(start, min(n, start + BATCH))]


def _build(url: str, n: int, tmp: Path) -> None:
    engine = Engine(url)
    try:
        engine.deploy(texts={"deal.yaml": BASE}, known_flows=())
        for rows in _records(n):
            engine.create_records("Deal", rows)
    finally:
        engine.close()


def _pg_database(admin: str, name: str, template: str | None = None) -> str:
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        c.execute(text(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")))
    eng.dispose()
    return admin.rsplit("/", 1)[0] + "/" + name


def _pg_drop(admin: str, name: str) -> None:
    eng = create_engine(admin, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    eng.dispose()


def _deploy(url: str, change: str, profile: bool) -> dict[str, Any]:
    engine = Engine(url)
    try:
        engine.definitions.refresh(now=True)
        clock = LockClock(engine)
        prof = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if prof is not None:
            prof.enable()
        (result,) = engine.deploy(texts={"deal.yaml": CHANGES[change]}, known_flows=(),
                                  actor="bench")
        if prof is not None:
            prof.disable()
        total = time.perf_counter() - t0
        assert result.changed, result
        out: dict[str, Any] = {"lock_s": max(clock.spans), "deploy_s": total,
                               "writes": len(clock.spans),
                               "records_changed": dict(result.records_changed)}
        if prof is not None:
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(14)
            out["profile"] = buf.getvalue()
        return out
    finally:
        engine.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--records", default="20000,100000", help="N, comma-separated")
    p.add_argument("--changes", default=",".join(CHANGES))
    p.add_argument("--db", default="", help="a PostgreSQL admin URL (default: SQLite files)")
    p.add_argument("--profile", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for n in (int(x) for x in args.records.split(",")):
            tag = uuid.uuid4().hex[:8]
            if args.db:
                base_name = f"baton_otd_{tag}"
                base = _pg_database(args.db, base_name)
            else:
                base = f"sqlite:///{tmp / f'base-{n}.db'}"
            t0 = time.perf_counter()
            _build(base, n, tmp)
            print(f"{n:,} records built in {time.perf_counter() - t0:.1f} s", flush=True)
            try:
                for change in args.changes.split(","):
                    if args.db:
                        url = _pg_database(args.db, f"{base_name}_{change}", base_name)
                    else:
                        path = tmp / f"{change}-{n}.db"
                        shutil.copyfile(tmp / f"base-{n}.db", path)
                        url = f"sqlite:///{path}"
                    got = _deploy(url, change, args.profile)
                    print(f"N={n:>7,} {change:<9} write lock held {got['lock_s']:7.3f} s  "
                          f"(deploy {got['deploy_s']:6.2f} s, {got['writes']} write "
                          f"transaction(s), records changed {got['records_changed']})",
                          flush=True)
                    if "profile" in got:
                        print(got["profile"])
                    if args.db:
                        _pg_drop(args.db, f"{base_name}_{change}")
                    else:
                        Path(url.removeprefix("sqlite:///")).unlink()
            finally:
                if args.db:
                    _pg_drop(args.db, base_name)


if __name__ == "__main__":
    main()
