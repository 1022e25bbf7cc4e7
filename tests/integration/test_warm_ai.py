"""A worker that starts serving trains the offline models of the active ``classify`` steps
in the background (``Engine.warm_ai``), so that the first such step does not wait seconds
for the training; a model being trained is trained once, whoever asks for it meanwhile
(``ModelCache``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from baton.ai import offline
from baton.ai.offline import ModelCache, OfflineClassifier
from baton.ai.trained import read_csv, train
from baton.runtime import engine as engine_mod
from baton.runtime.worker import Worker
from tests.integration.test_ai_train import ROWS, write_csv

DEFS = """
kind: object
name: Message
fields:
  body: {type: text}
---
kind: orchestration
name: t_warm
trigger: {type: record, object: Message}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        classifier: TAG_banking
        text: '=record.body'
      - name: mood
        type: ai
        task: classify
        text: '=record.body'
        categories:
          - {name: happy_TAG, examples: ["thanks, all good now", "great service"]}
          - {name: angry_TAG, examples: ["this is unacceptable", "worst bank ever"]}
      - name: later
        type: ai
        task: classify
        classifier: TAG_not_trained
        text: '=record.body'
"""


def test_a_serving_worker_trains_its_classify_steps_before_their_first_attempt(
        harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tag = f"w{time.monotonic_ns() % 10**9}"  # a fresh model: not in this process's cache
    harness.deploy_text(DEFS.replace("TAG", tag))
    # (a text of its own: a model of the same texts may be in this process's cache)
    texts, labels = read_csv(write_csv(tmp_path / "v1.csv",
                                       [*ROWS, (f"card {tag} not here", "card_arrival")]))
    train(harness.engine.store, f"{tag}_banking", texts, labels, source="v1.csv",
          actor="test", now="2026-01-01T00:00:00Z")
    trained: list[int] = []
    real = OfflineClassifier.train.__func__  # type: ignore[attr-defined]

    def counting(cls: Any, texts: Any, labels: Any, **kw: Any) -> Any:
        trained.append(len(texts))
        return real(cls, texts, labels, **kw)

    monkeypatch.setattr(OfflineClassifier, "train", classmethod(counting))
    worker = Worker(harness.engine, batch=8)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while len(trained) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        # both trained without a record: the step's 4 examples and its 2 category names, and
        # the classifier's 9 texts with what its labels add (the untrained one skipped)
        assert len(trained) == 2 and 6 in trained and max(trained) > 9, trained
        thread = harness.engine._ai_warm
        assert thread is not None and thread.is_alive() and runner.is_alive()
        assert harness.engine.warm_ai(None, worker.stopping) is None  # once per engine
    finally:
        worker.stop()
        runner.join(30)
    thread.join(30)
    assert not thread.is_alive()  # it ends with the worker
    rec = harness.engine.create_record("Message", {"body": "my card has not arrived yet"})
    harness.work()
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    steps = harness.engine.get_run(run.id).steps
    assert steps["intent"].output["category"] == "card_arrival"
    assert steps["mood"].status.value == "completed"
    assert "not found" in steps["later"].error["message"]  # it says so when it runs
    assert len(trained) == 2, trained  # the steps used the models trained at start


def test_a_model_being_trained_is_trained_once(monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ModelCache()
    calls: list[str] = []
    real = OfflineClassifier.train.__func__  # type: ignore[attr-defined]
    started = threading.Event()
    fail_first = [True]

    def slow(cls: Any, texts: Any, labels: Any, **kw: Any) -> Any:
        calls.append(threading.current_thread().name)
        started.set()
        time.sleep(0.3)
        if fail_first[0]:
            fail_first[0] = False
            raise RuntimeError("the first training failed")
        return real(cls, texts, labels, **kw)

    monkeypatch.setattr(OfflineClassifier, "train", classmethod(slow))
    texts = [t for t, _ in ROWS]
    labels = [c for _, c in ROWS]
    got: dict[str, Any] = {}

    def ask(name: str) -> None:
        try:
            got[name] = cache.get(texts, labels)
        except RuntimeError as exc:
            got[name] = exc

    one = threading.Thread(target=ask, args=("one",), name="one")
    one.start()
    assert started.wait(10)
    two = threading.Thread(target=ask, args=("two",), name="two")
    three = threading.Thread(target=ask, args=("three",), name="three")
    two.start()
    three.start()
    for t in (one, two, three):
        t.join(30)
    # the first failed (its caller sees why); one of the two waiting tried again, and the
    # other waited for that try: two trainings, not three
    assert isinstance(got["one"], RuntimeError)
    assert calls[0] == "one" and len(calls) == 2, calls
    assert got["two"] is got["three"] and isinstance(got["two"], OfflineClassifier)
    assert cache.trainings == 1
    assert cache.get(texts, labels) is got["two"] and len(calls) == 2  # cached
    assert offline.MODELS is not cache


def test_a_classifier_trained_again_is_trained_in_the_background_and_replaces_the_old(
        harness: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """While a worker serves, ``baton ai train`` makes v2: the worker's background look
    trains v2's model before any step asks, and v1's model leaves the cache."""
    monkeypatch.setattr(engine_mod, "AI_WARM_EVERY_S", 0.2)
    tag = f"r{time.monotonic_ns() % 10**9}"
    harness.deploy_text(DEFS.replace("TAG", tag))
    rows = [*ROWS, (f"card {tag} not here", "card_arrival")]
    texts, labels = read_csv(write_csv(tmp_path / "v1.csv", rows))
    train(harness.engine.store, f"{tag}_banking", texts, labels, source="v1.csv",
          actor="test", now="2026-01-01T00:00:00Z")
    owners = offline.MODELS._owners

    def versions() -> list[int]:
        return sorted(v for name, v in list(owners.values()) if name == f"{tag}_banking")

    worker = Worker(harness.engine, batch=8)
    runner = threading.Thread(target=worker.run, daemon=True)
    runner.start()
    try:
        deadline = time.monotonic() + 60
        while versions() != [1] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert versions() == [1]
        more = [*rows, ("please close my account", "terminate_account"),
                ("I want to delete my account", "terminate_account")]
        texts, labels = read_csv(write_csv(tmp_path / "v2.csv", more))
        train(harness.engine.store, f"{tag}_banking", texts, labels, source="v2.csv",
              actor="test", now="2026-01-02T00:00:00Z")
        deadline = time.monotonic() + 60
        while versions() != [2] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert versions() == [2]  # v2's model trained, v1's gone, without a step
        trained = offline.MODELS.trainings
        rec = harness.engine.create_record("Message", {"body": "close my account please"})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            (run,) = harness.engine.list_runs(record_id=rec["id"])
            steps = harness.engine.get_run(run.id).steps
            if steps["intent"].status.value in {"completed", "fallout"}:
                break
            time.sleep(0.05)
        assert steps["intent"].output["category"] == "terminate_account", steps["intent"]
        assert steps["intent"].output["ai"]["model"].endswith(f"{tag}_banking v2")
        assert offline.MODELS.trainings == trained  # the step found v2's model ready
    finally:
        worker.stop()
        runner.join(30)


def test_a_newer_version_replaces_the_older_models_only_of_its_classifier(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ModelCache()
    texts = [t for t, _ in ROWS]
    labels = [c for _, c in ROWS]
    v1 = cache.get(texts, labels, owner=("a", 1))
    other = cache.get([*texts, "x card"], [*labels, "card_arrival"], owner=("b", 1))
    plain = cache.get([*texts, "y card"], [*labels, "card_arrival"])
    assert len(cache._models) == 3
    v2 = cache.get([*texts, "z card"], [*labels, "card_arrival"], owner=("a", 2))
    assert v2 is not v1 and len(cache._models) == 3
    assert sorted(cache._owners.values()) == [("a", 2), ("b", 1)]
    assert cache.get([*texts, "x card"], [*labels, "card_arrival"], owner=("b", 1)) is other
    assert cache.get([*texts, "y card"], [*labels, "card_arrival"]) is plain
    trainings = cache.trainings
    # a model of an older version finished after a newer one is answered, not kept
    late = cache.get(texts + ["w card"], [*labels, "card_arrival"], owner=("a", 1))
    assert cache.trainings == trainings + 1 and late not in cache._models.values()
    assert sorted(cache._owners.values()) == [("a", 2), ("b", 1)]
