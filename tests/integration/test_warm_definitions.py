"""A process that serves from now on (``baton worker``, ``baton serve``) parses the active
definitions when it starts (``Engine.warm``), not in its first jobs' or requests' time; one
that cannot be parsed does not keep it from starting."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from baton.runtime.worker import Worker

DEFS = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: work
    steps:
      - {name: answer, type: interactive, assign: {queue: support}, form: [{name: reply, type: text}]}
---
kind: orchestration
name: other
trigger: {type: autolaunched}
stages:
  - name: work
    steps:
      - {name: wait, type: interactive, assign: {queue: support}, form: [{name: ok, type: text}]}
"""


def test_warm_parses_every_active_definition(harness: Any) -> None:
    harness.deploy_text(DEFS)
    e = harness.engine
    e.definitions.forget()
    assert e.definitions._parsed == {}
    assert e.warm() == 3
    assert {k[:2] for k in e.definitions._parsed} == {
        ("object", "Ticket"), ("orchestration", "handle"), ("orchestration", "other")}
    parsed = dict(e.definitions._parsed)
    assert e.warm() == 3 and e.definitions._parsed == parsed  # (kept: parsed once)


def test_one_that_cannot_be_parsed_is_left_for_its_first_use(
        harness: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    from baton.definitions import loader

    harness.deploy_text(DEFS)
    e = harness.engine
    e.definitions.forget()
    real = loader.load_stored  # (how the runtime reads a stored definition back)

    def broken(source: str, *args: Any, **kwargs: Any) -> Any:
        if "name: other" in source:
            raise ValueError("a definition this version cannot read")
        return real(source, *args, **kwargs)

    monkeypatch.setattr(loader, "load_stored", broken)
    with caplog.at_level(logging.WARNING, logger="baton.runtime.definitions"):
        assert e.warm() == 2
    assert "orchestration other v1 could not be parsed at start (a definition this version " \
           "cannot read)" in caplog.text
    assert ("orchestration", "handle", 1) in e.definitions._parsed


def test_a_worker_that_serves_warms_before_its_first_job(harness: Any) -> None:
    harness.deploy_text(DEFS)
    e = harness.engine
    e.definitions.forget()
    worker = Worker(e, batch=8)
    seen: list[int] = []

    def first_batch() -> int:  # the first thing the serving loop does after starting
        seen.append(len(e.definitions._parsed))
        worker.stop()
        return 0

    worker.run_once = first_batch  # type: ignore[method-assign]
    worker.run()
    assert seen == [3]
