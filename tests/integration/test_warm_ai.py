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
        assert thread is not None
        thread.join(30)
        assert not thread.is_alive() and runner.is_alive()
        assert harness.engine.warm_ai(None, worker.stopping) is None  # once per engine
    finally:
        worker.stop()
        runner.join(30)
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
