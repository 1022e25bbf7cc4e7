"""Weak spots of the runtime, closed: the definitions cache never puts an older index back
(a refresh that read the rows before a deploy or activation, or before another refresh,
stores nothing), sees every change another process commits (the definitions generation, a
number every write raises, not a sum two states can share), and never holds what a bundle's
import has not committed; and a service taken from an Engine before ``close()`` refuses
after it, as the Engine does, without opening the database again.

The races are held open at the one moment that matters, between a refresh's read of the
definitions and its store (or inside an import's transaction, after its lookups): the
definitions are read through the real store and the real transaction, and the thread waits
there until the test lets it go on. The refresh window is made an hour long, so that an
older index put back would still be in use when looked at.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from baton import ConfigError, Engine
from baton.runtime import definitions as definitions_module
from baton.runtime.bundle import apply_import, plan_import
from baton.runtime.definitions import DefinitionRepo
from baton.store.base import DefinitionRow
from tests.integration.test_python_api_lifecycle import CLOSED, _open_files

FLOW = """
kind: orchestration
name: lo_flow
trigger: {{type: autolaunched}}
stages:
  - name: s
    steps:
      - {{name: wait, type: pause, signal: {signal}}}
"""
V1, V2, V3 = (FLOW.format(signal=s) for s in ("go", "go_two", "go_three"))
HELD = "held-refresh"  # the thread whose refresh waits between its read and its store


@pytest.fixture(autouse=True)
def _an_hour_between_looks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(definitions_module, "REFRESH_INTERVAL_S", 3600.0)


class _HeldRead:
    """A transaction of the real store whose definition rows, once read by the thread
    named ``HELD``, are handed over only when ``go`` is set (``read`` says they were read)."""

    def __init__(self, tx: Any, read: threading.Event, go: threading.Event) -> None:
        self._tx, self._read, self._go = tx, read, go

    def list_definitions_txn(self, kind: str | None = None) -> list[DefinitionRow]:
        rows: list[DefinitionRow] = self._tx.list_definitions_txn(kind)
        if threading.current_thread().name == HELD:
            self._read.set()
            assert self._go.wait(120), "the test never let the refresh go on"
        return rows

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class _HoldingStore:
    """The Engine's own store, its read transactions handed out as :class:`_HeldRead`."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.read_done, self.go = threading.Event(), threading.Event()

    @contextmanager
    def read(self) -> Iterator[_HeldRead]:
        with self._store.read() as tx:
            yield _HeldRead(tx, self.read_done, self.go)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


class _Held:
    """``call`` in a thread of its own whose refresh stops after reading the definitions."""

    def __init__(self, repo: DefinitionRepo, monkeypatch: pytest.MonkeyPatch) -> None:
        self.store = _HoldingStore(repo.store)
        monkeypatch.setattr(repo, "store", self.store)
        self.errors: list[BaseException] = []
        self._thread: threading.Thread | None = None

    def start(self, call: Any, *args: Any, **kwargs: Any) -> None:
        def run() -> None:
            try:
                call(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - reported by finish()
                self.errors.append(exc)

        self.store.read_done.clear()
        self.store.go.clear()
        self._thread = threading.Thread(target=run, name=HELD, daemon=True)
        self._thread.start()
        assert self.store.read_done.wait(120), "the refresh never read the definitions"

    def finish(self) -> None:
        assert self._thread is not None
        self.store.go.set()
        self._thread.join(120)
        assert not self._thread.is_alive() and self.errors == []


def _active_version(eng: Engine) -> int:
    return eng.definitions.orchestration("lo_flow")[1]


# ---- the definitions cache --------------------------------------------------------------
def test_a_refresh_that_read_before_a_deploy_does_not_put_the_old_index_back(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with Engine(db_url) as eng:
        eng.deploy(texts={"lo.yaml": V1})  # (the index dropped: the next lookup reads it)
        held = _Held(eng.definitions, monkeypatch)
        held.start(eng.definitions.orchestration, "lo_flow")  # reads v1 as active, waits
        assert [r.version for r in eng.deploy(texts={"lo.yaml": V2})] == [2]
        held.finish()  # (it stores now, or would: what it read is older than the deploy)
        # the Engine that deployed uses the new version at its next call
        assert _active_version(eng) == 2
        assert eng.start("lo_flow").version == 2


def test_an_older_snapshot_does_not_undo_a_deploy_seen_since(tmp_path: Path) -> None:
    """A lookup in a caller's transaction (a worker's snapshot) that began before a deploy
    this Engine made reads the definitions as they were: it does not store them. (SQLite:
    a transaction reads one snapshot; PostgreSQL's statements each read the newest.)"""
    with Engine(f"sqlite:///{tmp_path / 'snap.db'}") as eng:
        eng.deploy(texts={"lo.yaml": V1})
        assert _active_version(eng) == 1
        with eng.store.read() as tx:
            assert tx.get_definition_txn("orchestration", "lo_flow", None).version == 1
            eng.deploy(texts={"lo.yaml": V2})  # (the snapshot above is older)
            eng.definitions.refresh(tx, now=True)
        assert _active_version(eng) == 2
        assert eng.start("lo_flow").version == 2


def test_another_engines_changes_are_never_undone_by_a_slower_refresh(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another Engine on the database (as another process): a refresh held after reading
    never replaces a newer index another refresh stored, or found current, meanwhile; and
    the index ends on the newest deploy."""
    with Engine(db_url) as one, Engine(db_url) as two:
        one.deploy(texts={"lo.yaml": V1})
        assert _active_version(one) == 1
        held = _Held(one.definitions, monkeypatch)

        # a deploy elsewhere: a refresh that read before it, and one that read after it
        two.deploy(texts={"lo.yaml": V2})
        held.start(one.definitions.refresh, now=True)  # (reads v2)
        two.deploy(texts={"lo.yaml": V3})
        one.definitions.refresh(now=True)  # reads v3, stores it
        held.finish()
        assert _active_version(one) == 3

        # activated elsewhere and back: the index is as it was, which a look finds current
        two.definitions.set_active("orchestration", "lo_flow", 1, "test")
        held.start(one.definitions.refresh, now=True)  # (reads v1 as active)
        two.definitions.set_active("orchestration", "lo_flow", 3, "test")
        one.definitions.refresh(now=True)  # nothing changed since it stored v3
        held.finish()
        assert _active_version(one) == 3

        # and a change it has not looked at yet is read at its next look
        two.deploy(texts={"lo.yaml": V1})
        one.definitions.refresh(now=True)
        assert _active_version(one) == 4
        assert one.start("lo_flow").version == 4


def test_two_activations_elsewhere_are_seen_though_the_old_sum_of_ids_is_the_same(
        db_url: str) -> None:
    """Rows A1, B1, A2, B2: "A@1, B@2" and "A@2, B@1" have the same highest row id and the
    same sum of active row ids (what the cache compared before). Another Engine (as another
    process) makes both activations between two looks: the second look sees them."""
    a1, b1 = (FLOW.replace("lo_flow", name).format(signal="one") for name in ("lo_a", "lo_b"))
    a2, b2 = (FLOW.replace("lo_flow", name).format(signal="two") for name in ("lo_a", "lo_b"))
    with Engine(db_url) as one, Engine(db_url) as two:
        for name, text in (("a", a1), ("b", b1), ("a", a2), ("b", b2)):
            one.deploy(texts={f"{name}.yaml": text})
        one.definitions.set_active("orchestration", "lo_a", 1, "test")  # A@1, B@2
        assert [one.definitions.orchestration(n)[1] for n in ("lo_a", "lo_b")] == [1, 2]
        ids = {(r.name, r.version): r.id for r in one.definitions.list_versions("orchestration")}
        assert max(ids.values()) == ids["lo_b", 2]
        # (the premise: the state below sums to the same, so the sum could not tell them apart)
        assert ids["lo_a", 1] + ids["lo_b", 2] == ids["lo_a", 2] + ids["lo_b", 1]

        two.definitions.set_active("orchestration", "lo_a", 2, "test")
        two.definitions.set_active("orchestration", "lo_b", 1, "test")  # A@2, B@1
        one.definitions.refresh(now=True)  # (the next look, a second later)
        assert [one.definitions.orchestration(n)[1] for n in ("lo_a", "lo_b")] == [2, 1]
        assert one.start("lo_a").version == 2 and one.start("lo_b").version == 1


def test_an_older_snapshot_does_not_undo_an_activation_seen_since(tmp_path: Path) -> None:
    """As for a deploy (above), for an activation, which adds no row: a lookup in a
    transaction whose snapshot predates it does not put the index before it back."""
    with Engine(f"sqlite:///{tmp_path / 'snap.db'}") as eng:
        eng.deploy(texts={"lo.yaml": V1})
        eng.deploy(texts={"lo.yaml": V2})
        assert _active_version(eng) == 2
        with eng.store.read() as tx:
            assert tx.get_definition_txn("orchestration", "lo_flow", None).active
            eng.definitions.set_active("orchestration", "lo_flow", 1, "test")
            eng.definitions.refresh(tx, now=True)  # (reads v2 as active: older)
        assert _active_version(eng) == 1
        assert eng.start("lo_flow").version == 1


CRON = V2.replace("{type: autolaunched}", '{type: schedule, cron: "0 2 * * *"}')
BUNDLE = {"manifest.json": {"format": 1}, "definitions.json": [
    {"kind": "orchestration", "name": "lo_flow", "version": 1, "active": True,
     "file": "lo.yaml", "source": CRON}]}


class _ImportFails(Exception):
    """What the held import raises once let go, when told to (its transaction rolls back)."""


class _HeldWrite:
    """The Engine's store, its write transactions held, in the thread named ``HELD``, at
    their audit event: an import has written and looked its definitions up by then."""

    def __init__(self, eng: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
        self._store = eng.store
        monkeypatch.setattr(eng, "store", self)
        self.reached, self.go = threading.Event(), threading.Event()
        self.fail = False

    @contextmanager
    def write(self) -> Iterator[Any]:
        held = self

        class Tx:
            def __init__(self, tx: Any) -> None:
                self._tx = tx

            def append_events_txn(self, rows: Any) -> None:
                self._tx.append_events_txn(rows)
                if threading.current_thread().name == HELD:
                    held.reached.set()
                    assert held.go.wait(120), "the test never let the import go on"
                    if held.fail:
                        raise _ImportFails

            def __getattr__(self, name: str) -> Any:
                return getattr(self._tx, name)

        with self._store.write() as tx:
            yield Tx(tx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_an_imports_definitions_are_used_by_no_other_thread_before_they_are_committed(
        db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import parses the versions it activates from its own transaction (it arms their
    schedules): the Engine's index, every thread's, holds none of them before the import
    commits, nor after it rolls back; once it commits, they are used."""
    with Engine(db_url) as eng:
        eng.deploy(texts={"lo.yaml": V1})
        assert _active_version(eng) == 1
        plan = plan_import(eng, BUNDLE)
        assert [c.action for c in plan.changes] == ["new version 2", "activate v2"]
        held = _HeldWrite(eng, monkeypatch)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                apply_import(eng, plan, "test")
            except BaseException as exc:  # noqa: BLE001 - looked at below
                errors.append(exc)

        held.fail = True
        thread = threading.Thread(target=run, name=HELD, daemon=True)
        thread.start()
        try:
            assert held.reached.wait(120), "the import never reached its audit event"
            # written, active and parsed in the import's transaction; here, not yet
            assert _active_version(eng) == 1
            assert eng.definitions.orchestration("lo_flow", 1)[0].trigger.type == "autolaunched"
        finally:
            held.go.set()
            thread.join(120)
        assert not thread.is_alive() and [type(e) for e in errors] == [_ImportFails]
        # rolled back: never used, and the Engine still starts what is committed
        assert _active_version(eng) == 1
        assert eng.start("lo_flow").version == 1
        assert "lo_flow" not in eng.definitions.schedules()

        apply_import(eng, plan_import(eng, BUNDLE), "test")  # (not held: committed)
        assert _active_version(eng) == 2
        assert eng.definitions.orchestration("lo_flow")[0].trigger.type == "schedule"
        armed = eng.definitions.schedules()["lo_flow"]
        assert armed["version"] == 2 and armed["next_at"] is not None


def test_a_database_without_its_definitions_generation_says_so_and_deploys_nothing(
        db_url: str) -> None:
    with Engine(db_url) as eng:
        eng.deploy(texts={"lo.yaml": V1})
        with eng.store.write() as tx:
            tx.conn.exec_driver_sql("DELETE FROM baton_definitions_generation")
        with pytest.raises(ConfigError, match=r"no definitions generation \(the row of id 1 "
                           r"in baton_definitions_generation"):
            eng.deploy(texts={"lo.yaml": V2})
        with pytest.raises(ConfigError, match="baton_definitions_generation"):
            eng.definitions.refresh(now=True)
        assert [r.version for r in eng.definitions.list_versions("orchestration")] == [1]


# ---- a closed Engine's services -----------------------------------------------------------
def _connections(db_url: str, db: Path | None) -> int:
    """The connections open on the test's database: this process's descriptors on the
    SQLite file, or PostgreSQL's sessions on the database."""
    if db is not None:
        return _open_files(db)
    from sqlalchemy.engine import make_url

    from tests.conftest import _pg_admin

    name = make_url(db_url).database
    with _pg_admin() as admin:  # type: ignore[attr-defined]
        return int(admin.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                                 "AND pid <> pg_backend_pid()", (name,)).fetchone()[0])


SERVICES = ("records", "runs", "work", "definitions", "incidents", "team", "router",
            "directory", "idempotency", "applier", "store", "intake", "connections",
            "callbacks", "plans")


def test_services_taken_before_close_refuse_after_it_and_open_nothing(db_url: str) -> None:
    db = Path(db_url.removeprefix("sqlite:///")) if db_url.startswith("sqlite") else None
    eng = Engine(db_url)
    eng.deploy(texts={"lo.yaml": V1})
    eng.start("lo_flow")
    taken = {name: getattr(eng, name) for name in SERVICES}  # (as a program may hold them)
    assert _connections(db_url, db) > 0
    eng.close()
    assert _connections(db_url, db) == 0
    records = taken["records"]
    with pytest.raises(ConfigError) as refused:
        records.create("Anything", [{"subject": "after"}], "test")
    assert str(refused.value) == ("this Engine is closed; make a new one "
                                  "(Engine.records.create was used after close())")
    # every public method and property of each, refused before its arguments are looked at
    for label, service in taken.items():
        kept = {"close", "interrupt_waits", "is_transient", "refuses_data", "iter_tables"}
        names = [n for n, _ in inspect.getmembers(type(service).__mro__[1])
                 if not n.startswith("_") and n not in kept
                 and (callable(inspect.getattr_static(service, n))
                      or isinstance(inspect.getattr_static(service, n), property))]
        assert names, label
        for name in names:
            with pytest.raises(ConfigError) as refused:
                member = getattr(service, name)
                if callable(member):
                    member()
            assert CLOSED in str(refused.value), (label, name)
            assert f"Engine.{label}.{name} was used" in str(refused.value), (label, name)
    # each of the Engine's attributes that reaches the database is one of them
    store = taken["store"]
    reaching = [name for name, value in vars(eng).items()
                if value is store or getattr(value, "store", None) is store]
    assert reaching and set(reaching) <= set(SERVICES), reaching
    # what a service holds is the same objects, refusing too (nothing reaches the database)
    with pytest.raises(ConfigError, match=CLOSED):
        records.definitions.orchestration("lo_flow")  # (cached: no query needed, refused)
    with pytest.raises(ConfigError, match=CLOSED), records.store.read():
        pass
    with pytest.raises(ConfigError, match=CLOSED):
        taken["connections"].client  # noqa: B018 - the HTTP client's pool is not made again
    assert _connections(db_url, db) == 0  # none of them opened the database again
    taken["connections"].close()  # closing again: harmless
    with Engine(db_url) as again:  # a new one on the same database works
        assert again.count_runs() == 1 and again.count_records() == 0
        assert _active_version(again) == 1
