"""The definitions generation (migration 28) each process's index of active versions is
kept at, when it goes back: a database restored from a backup (or another put in its
place) under running processes. A process that looks at it in a transaction begun after
it saw the higher one knows it went back (no read racing a write can see that): it reads
the index again, and every parse, at its next look, and says so once. (The guarantee the
other way, that a read older than what was seen never puts an older index back, is
tests/integration/test_runtime_leftovers.py's.)

And the definitions' writers at once: an import planned before another write committed
is refused whole, saying what moved; on PostgreSQL, deploys, activations and imports made
together by several Engines neither deadlock nor lose a write.
"""

from __future__ import annotations

import logging
import random
import threading
from typing import Any

import pytest

from baton import Engine
from baton.errors import DefinitionError, NotFound, TransitionConflict
from baton.runtime import definitions as definitions_module
from baton.runtime.bundle import apply_import, plan_import

FLOW = """
kind: orchestration
name: gen_flow
trigger: {{type: autolaunched}}
stages:
  - name: s
    steps:
      - {{name: {step}, type: pause, signal: go}}
"""
WENT_BACK = "the definitions generation went back from"


def _flow(step: str) -> dict[str, str]:
    return {"gen.yaml": FLOW.format(step=step)}


def _generation(eng: Engine) -> int:
    with eng.store.read() as tx:
        return tx.definitions_generation_txn()


def _active(eng: Engine) -> tuple[int, str]:
    """The active version of gen_flow as ``eng`` uses it, and its step's name (which
    tells the texts apart)."""
    defn, version = eng.definitions.orchestration("gen_flow")
    return version, defn.stages[0].steps[0].name


def _restore(eng: Engine, *, drop_above: int, active: int, generation: int) -> None:
    """As a restore from a backup does, through a connection of another Engine: the rows
    of gen_flow's versions above ``drop_above`` gone, ``active`` the active one, the
    generation stored back at ``generation``."""
    with eng.store.write() as tx:
        tx.conn.exec_driver_sql(
            "DELETE FROM baton_definitions WHERE kind = 'orchestration' AND name = 'gen_flow' "
            f"AND version > {drop_above}")
        tx.conn.exec_driver_sql(
            f"UPDATE baton_definitions SET active = (version = {active}) "
            "WHERE kind = 'orchestration' AND name = 'gen_flow'")
        tx.conn.exec_driver_sql(f"UPDATE baton_definitions_generation SET n = {generation}")


def _went_back(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if WENT_BACK in r.getMessage()]


def test_a_generation_that_went_back_is_seen_at_the_next_look(
        db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Every lookup is a look (the once-a-second check made due at each): the index must be
    # right at the first look after the change, not some looks later.
    monkeypatch.setattr(definitions_module, "REFRESH_INTERVAL_S", 0.0)
    caplog.set_level(logging.WARNING, logger="baton.runtime.definitions")
    with Engine(db_url) as one, Engine(db_url) as two:
        one.deploy(texts=_flow("one"))
        one.deploy(texts=_flow("two"))
        assert _active(one) == (2, "two")  # (the index and v2's parse, kept)
        high = _generation(one)
        assert high >= 4 and one.definitions._seen == high

        # 1. The counter set lower by another connection; another process deploys a version,
        # which raises it, still below what ``one`` saw. ``one``'s next look, in the
        # transaction of a run's start (a caller's), uses the new version.
        with two.store.write() as tx:
            tx.conn.exec_driver_sql("UPDATE baton_definitions_generation SET n = 1")
        assert [r.version for r in two.deploy(texts=_flow("three"))] == [3]
        low = _generation(two)
        assert low < high
        assert one.start("gen_flow").version == 3
        assert _active(one) == (3, "three")
        assert _went_back(caplog) == [(f"{WENT_BACK} {high} to {low} (the database was "
                                       "probably restored from a backup, or replaced): the "
                                       "active definitions are read again from it")]
        # said once: the looks after it find the index current
        for _ in range(3):
            one.definitions.refresh(now=True)
            assert _active(one) == (3, "three")
        assert len(_went_back(caplog)) == 1
        # and a deploy of its own goes on from the generation as stored now
        assert [r.version for r in one.deploy(texts=_flow("four"))] == [4]
        assert _active(one) == (4, "four") and one.definitions._seen == _generation(one) > low
        assert len(_went_back(caplog)) == 1

        # 2. Restored from a backup taken at v2: v3 and v4 are gone, and the next deploy
        # elsewhere is another text under the number v3 had. Both Engines had seen the
        # higher generation (two the one of its deploy above): each says so once, and ``one`` uses the
        # new text, not the parse of the old v3 it kept.
        one.deploy(texts=_flow("three"))  # (v3 again in use: its parse kept by ``one``)
        assert one.definitions.orchestration("gen_flow", 3)[0].stages[0].steps[0].name == "three"
        high, two_seen = _generation(one), two.definitions._seen
        caplog.clear()
        _restore(two, drop_above=2, active=2, generation=2)
        assert [r.version for r in two.deploy(texts=_flow("five"))] == [3]
        low = _generation(two)
        assert _active(one) == (3, "five")  # (its own read: a lookup without a transaction)
        assert one.definitions.orchestration("gen_flow", 3)[0].stages[0].steps[0].name == "five"
        run = one.start("gen_flow")
        assert run.version == 3 and set(run.steps) == {"five"}
        assert [m.split(" (")[0] for m in _went_back(caplog)] == [
            f"{WENT_BACK} {two_seen} to 2", f"{WENT_BACK} {high} to {low}"]  # (two's, one's)
        assert [r.version for r in one.definitions.list_versions("orchestration")] == [1, 2, 3]


def test_a_read_in_a_transaction_begun_before_a_deploy_seen_is_no_proof(
        db_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A caller's transaction whose snapshot is older than a deploy this Engine made reads a
    lower generation, as one that went back would: that alone is no proof (the index stays,
    nothing is said), a read of the Engine's own settles it."""
    monkeypatch.setattr(definitions_module, "REFRESH_INTERVAL_S", 3600.0)
    caplog.set_level(logging.WARNING, logger="baton.runtime.definitions")
    with Engine(db_url) as eng:
        eng.deploy(texts=_flow("one"))
        assert _active(eng) == (1, "one")
        with eng.store.read() as tx:
            # (SQLite: the snapshot is taken here; PostgreSQL: each statement reads the newest)
            assert tx.definitions_generation_txn() == _generation(eng)
            eng.deploy(texts=_flow("two"))
            eng.definitions.refresh(tx, now=True)
            assert eng.definitions.orchestration("gen_flow", tx=tx)[1] == 2
        assert _active(eng) == (2, "two") and eng.start("gen_flow").version == 2
        assert _went_back(caplog) == []



def test_an_import_planned_before_another_write_is_refused_whole_and_says_why(
        db_url: str) -> None:
    """``baton import`` plans (version numbers, activations) and then applies: a deploy or
    an activation committed between the two may make the plan wrong (its new version 2 is
    another text now; a definition it leaves alone, as the bundle has it, is active at
    another version). Applied, it is refused, naming what moved, and writes nothing;
    planned again, it imports. A change the plan makes anyway refuses nothing."""
    other = FLOW.format(step="other").replace("gen_flow", "gen_other")
    bundle = {"manifest.json": {"format": 1}, "definitions.json": [
        {"kind": "orchestration", "name": "gen_flow", "version": 1, "active": True,
         "file": "gen.yaml", "source": FLOW.format(step="bundled")},
        {"kind": "orchestration", "name": "gen_other", "version": 1, "active": True,
         "file": "other.yaml", "source": other}]}
    with Engine(db_url) as one, Engine(db_url) as two:
        one.deploy(texts={**_flow("one"), "other.yaml": other})
        plan = plan_import(one, bundle)
        assert [c.action for c in plan.changes] == [
            "new version 2", "activate v2", "unchanged (v1)"]
        two.deploy(texts=_flow("two"))  # (v2, elsewhere)
        before = _generation(one)
        with pytest.raises(TransitionConflict) as refused:
            apply_import(one, plan, "test")
        assert str(refused.value) == (
            "the definitions changed since this import was planned (orchestration "
            "'gen_flow': v2 is its latest version now, v1 was): nothing was imported; import "
            "the bundle again to plan it against them")
        assert _generation(one) == before
        assert [r.version for r in one.definitions.list_versions("orchestration", "gen_flow")] == [
            1, 2]

        plan = plan_import(one, bundle)  # (the bundled text as v3, made active)
        two.definitions.set_active("orchestration", "gen_other", None, "test")
        with pytest.raises(TransitionConflict, match=r"\(orchestration 'gen_other': none is "
                           r"active now, v1 was\): nothing was imported"):
            apply_import(one, plan, "test")
        plan = plan_import(one, bundle)
        two.definitions.set_active("orchestration", "gen_flow", 1, "test")  # (made v3 anyway)
        apply_import(one, plan, "test")
        assert _active(one) == (3, "bundled") and _active(two) == (3, "bundled")
        assert one.definitions.orchestration("gen_other")[1] == 1

# ---- the definitions' writers under load (PostgreSQL) -------------------------------------
# Deploys, activations and imports each take the definitions lock first: an object type's
# activation writes its records before it raises the generation (its row locked until it
# commits), a deploy after; taken in opposite orders, two of them would deadlock. Here
# several Engines (as processes) do all of them at once, on one PostgreSQL database.
TICKET = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
"""
OBJECTS = (TICKET, TICKET + "  note: {type: string}\n",
           TICKET + "  priority: {type: int, required: true, default: 1}\n")
LOAD_FLOW = """
kind: orchestration
name: {name}
trigger: {{type: autolaunched}}
stages:
  - name: s
    steps:
      - {{name: {step}, type: pause, signal: go}}
"""
ROUNDS, THREADS = 8, 4
REFUSALS = (DefinitionError, TransitionConflict, NotFound)


class _Writer:
    """One Engine (as one process), its writes in a seeded order; what each did."""

    def __init__(self, url: str, seed: int) -> None:
        self.eng = Engine(url)
        self.rnd = random.Random(seed)
        self.seed, self.texts = seed, 0
        self.done: list[tuple[str, int, Any]] = []  # (what, generation bumps, detail)
        self.refused: list[tuple[str, BaseException]] = []
        self.retried: list[BaseException] = []  # (imports refused, then made again)
        self.failed: list[BaseException] = []

    def text(self, name: str) -> str:
        """A text of ``name``: mostly one no one deployed yet (a new version), else one of
        a few every writer may have (unchanged, or a version made again by an import)."""
        self.texts += 1
        fresh = self.rnd.random() < 0.7
        if name == "Ticket":
            extra = f"  x_{self.seed}_{self.texts}: {{type: string}}\n" if fresh else ""
            return self.rnd.choice(OBJECTS) + extra
        step = f"s_{self.seed}_{self.texts}" if fresh else self.rnd.choice(("one", "two"))
        return LOAD_FLOW.format(name=name, step=step)

    def one(self) -> None:
        ops = {"deploy": self.deploy, "activate_object": self.activate_object,
               "activate_flow": self.activate_flow, "import": self.import_}
        what = self.rnd.choice(("deploy", "deploy", "activate_object", "activate_flow",
                                "import", "import"))
        try:
            bumps, detail = ops[what]()
        except REFUSALS as exc:
            self.refused.append((what, exc))
        else:
            self.done.append((what, bumps, detail))

    def deploy(self) -> tuple[int, Any]:
        names = self.rnd.sample(("Ticket", "ld_a", "ld_b"), self.rnd.randint(1, 3))
        by_name = {name: self.text(name) for name in names}
        results = self.eng.deploy(texts={f"{n}.yaml": t for n, t in by_name.items()})
        done = [(r.kind, r.name, r.version, by_name[r.name].strip())
                for r in results if r.changed]
        return 2 * len(done), done  # (a version stored, then made the active one)

    def activate_object(self) -> tuple[int, Any]:
        versions = [r.version for r in self.eng.definitions.list_versions("object", "Ticket")]
        version = self.rnd.choice(versions)
        self.eng.definitions.set_active("object", "Ticket", version, "load")
        return 1, ("object", "Ticket", version)

    def activate_flow(self) -> tuple[int, Any]:
        name = self.rnd.choice(("ld_a", "ld_b"))
        versions = [r.version for r in self.eng.definitions.list_versions("orchestration", name)]
        version = self.rnd.choice([*versions, None])
        self.eng.definitions.set_active("orchestration", name, version, "load")
        return 1, ("orchestration", name, version)

    def import_(self) -> tuple[int, Any]:
        """A bundle of the object type and one orchestration, imported as ``baton import``
        does (planned, then applied); refused as planned against definitions that changed
        since, it is imported again (as told), three times at most."""
        name = self.rnd.choice(("ld_a", "ld_b"))
        bundle = {"manifest.json": {"format": 1}, "definitions.json": [
            {"kind": "object", "name": "Ticket", "version": 1, "active": True,
             "file": "t.yaml", "source": self.text("Ticket")},
            {"kind": "orchestration", "name": name, "version": 1,
             "active": self.rnd.random() < 0.7, "file": "f.yaml", "source": self.text(name)}]}
        for again in (True, True, False):
            plan = plan_import(self.eng, bundle)
            try:
                apply_import(self.eng, plan, "load")
            except TransitionConflict as exc:
                if not again:
                    raise
                self.retried.append(exc)
                continue
            return (len(plan.definitions) + len(plan.activate) if plan.writes else 0,
                    [(d["kind"], d["name"], d["source"].strip()) for d in plan.definitions])
        raise AssertionError("not reached")

    def run(self, start: threading.Barrier) -> None:
        start.wait(60)
        for _ in range(ROUNDS):
            try:
                self.one()
            except BaseException as exc:  # noqa: BLE001 - the test fails with it, below
                self.failed.append(exc)


def _stored(eng: Engine) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, int], str]]:
    """The active versions; each version's text."""
    rows = eng.definitions.list_versions()
    return ({(r.kind, r.name): r.version for r in rows if r.active},
            {(r.kind, r.name, r.version): r.source.strip() for r in rows})


def test_deploys_activations_and_imports_at_once_neither_deadlock_nor_lose_a_write(
        pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    with Engine(pg_url) as base:
        base.deploy(texts={"t.yaml": OBJECTS[0], **{
            f"{n}.yaml": LOAD_FLOW.format(name=n, step="one") for n in ("ld_a", "ld_b")}})
        records = [base.create_record("Ticket", {"subject": f"t{i}"})["id"] for i in range(5)]
        before = _generation(base)
        events_before = _events(base)
    writers = [_Writer(pg_url, seed) for seed in range(THREADS)]
    start = threading.Barrier(THREADS)
    threads = [threading.Thread(target=w.run, args=(start,), name=f"writer-{i}")
               for i, w in enumerate(writers)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not any(t.is_alive() for t in threads), "a writer never finished"
        # No write failed for another reason than a clear refusal (a deadlock is an error),
        # and none was tried again (Engine.deploy retries once on a deadlock, and says so).
        assert [exc for w in writers for exc in w.failed] == []
        assert [r.getMessage() for r in caplog.records
                if "transient database error" in r.getMessage()] == []
        done = [d for w in writers for d in w.done]
        refused = [r for w in writers for r in w.refused]
        assert len(done) + len(refused) == ROUNDS * THREADS
        assert len(done) >= ROUNDS * THREADS // 2, refused
        # The one refusal a write may meet here: an import planned against definitions
        # that changed before it was applied (its version numbers taken, or its
        # activations no longer what it saw), said in so many words.
        stale = [exc for what, exc in refused] + [exc for w in writers for exc in w.retried]
        assert {what for what, _ in refused} <= {"import"}
        for exc in stale:
            assert isinstance(exc, TransitionConflict), exc
            assert str(exc).startswith("the definitions changed since this import was "
                                       "planned ("), exc
        assert {what for what, _, _ in done} == {"deploy", "activate_object",
                                                 "activate_flow", "import"}

        # Every write that returned is stored whole; those refused stored nothing: the
        # generation moved by exactly the bumps of the writes done, each event is there.
        active, stored = _stored(writers[0].eng)
        assert _generation(writers[0].eng) == before + sum(b for _, b, _ in done)
        for what, _, detail in done:
            if what == "deploy":
                assert all(stored[k, n, v] == text for k, n, v, text in detail)
            elif what == "import":
                assert all(text in {t for (k2, n2, _), t in stored.items() if (k2, n2) == (k, n)}
                           for k, n, text in detail)
        activations = [d for what, _, d in done if what.startswith("activate")]
        imports = sum(1 for what, bumps, _ in done if what == "import" and bumps)
        assert _events(writers[0].eng) - events_before == len(activations) + imports

        # Each Engine's index, at its next look, is the database's active rows, at the
        # generation stored; and what its lookups give is that.
        ticket = stored["object", "Ticket", active["object", "Ticket"]]
        fields = {line.split(":")[0].strip() for line in ticket.splitlines()
                  if line.startswith("  ")}
        for w in writers:
            w.eng.definitions.refresh(now=True)
            assert w.eng.definitions._active == active
            assert w.eng.definitions._generation == _generation(w.eng)
            assert {f.name for f in w.eng.definitions.object_type("Ticket").fields} == fields
            for name in ("ld_a", "ld_b"):
                if ("orchestration", name) in active:
                    assert w.eng.definitions.orchestration(name)[1] == active[
                        "orchestration", name]
        # the records are all there, as the active object type reads them
        assert all(writers[0].eng.get_record(rid)["subject"] for rid in records)
    finally:
        for w in writers:
            w.eng.close()


def _events(eng: Engine) -> int:
    with eng.store.read() as tx:
        return len(tx.events_txn(types=["definition_activated", "definition_deactivated",
                                        "bundle_imported"]))
