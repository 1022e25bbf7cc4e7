"""``wait: callback``: a callout step sends its request to a real server on loopback, then
waits durably for ``POST /api/callbacks/{token}`` (through the real app), on both
databases: in order, early (before the request's commit), late, repeated (the same body:
answered again as the first, with ``Idempotent-Replayed``, changing nothing; another body:
409), a forged token, a wrong or replayed signature, and the wait's timeout."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from baton.clock import VirtualClock
from baton.runtime.callbacks import same_json, sign
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings
from baton.web.app import create_app
from tests.bank import Bank, Seen, bank_server

HMAC = "hmac-secret-5"


def definitions(url: str, signed: bool) -> str:
    callback = "callback: {hmac_secret: env:BANK_HMAC, replay_window: 5m}\n" if signed else ""
    return textwrap.dedent(f"""\
        kind: object
        name: Address
        fields:
          customer: {{type: string, required: true}}
        ---
        kind: connection
        name: bank
        type: http
        base_url: {url}
        """) + callback + textwrap.dedent("""\
        ---
        kind: orchestration
        name: send
        trigger: {type: record, object: Address}
        stages:
          - name: only
            steps:
              - name: send
                type: callout
                connection: bank
                method: POST
                path: /addresses
                body: {customer: =record.customer, reply_to: =callback.url}
                wait: callback
                timeout: 1h
                output:
                  ack: =response.body.ackId
                  confirmed: =callback.body.status
                  reference: =callback.body.reference
              - {name: after, type: milestone, after: [send]}
        """)


class World:
    """The app over an Engine, a worker, a bank on loopback that keeps each callback URL."""

    def __init__(self, db_url: str, bank: Bank, signed: bool) -> None:
        self.clock = VirtualClock()
        settings = Settings.from_environment({"BATON_PUBLIC_URL": "http://testserver"})
        settings = replace(settings, secrets_env={"BANK_HMAC": HMAC})
        self.engine = Engine(db_url, clock=self.clock, settings=settings)
        self.worker = Worker(self.engine)
        self.client = TestClient(create_app(self.engine))
        self.bank = bank
        self.engine.deploy(texts={"d.yaml": definitions(bank.url, signed)}, known_flows=None)

    def start(self, customer: str = "c1") -> Any:
        rec = self.engine.create_record("Address", {"customer": customer})
        (run,) = self.engine.list_runs(record_id=rec["id"])
        return run

    def work(self) -> None:
        self.worker.run(until_idle=True)

    def reply_to(self, index: int = -1) -> str:
        calls = self.bank.calls("/addresses")
        return str(calls[index].json()["reply_to"])

    def post(self, url: str, body: Any, headers: dict[str, str] | None = None) -> Any:
        path = url.removeprefix("http://testserver")
        return self.client.post(path, content=json.dumps(body).encode(),
                                headers={"Content-Type": "application/json", **(headers or {})})

    def signed(self, body: Any, *, at: float | None = None, secret: str = HMAC) -> tuple[
            bytes, dict[str, str]]:
        raw = json.dumps(body).encode()
        stamp = str(int(at if at is not None else self.clock.now().timestamp()))
        return raw, {"X-Timestamp": stamp, "X-Signature": sign(secret, stamp, raw),
                     "Content-Type": "application/json"}

    def step(self, run_id: str, name: str = "send") -> Any:
        return self.engine.get_run(run_id).steps[name]

    def events(self, run_id: str) -> list[dict[str, Any]]:
        with self.engine.store.read() as tx:
            return tx.events_txn(run_id=run_id)


@pytest.fixture
def world(request: pytest.FixtureRequest, db_url: str) -> Iterator[World]:
    signed = getattr(request, "param", False)
    with bank_server() as bank:
        w = World(db_url, bank, signed)
        yield w
        w.engine.close()


def test_callback_completes_the_waiting_step(world: World) -> None:
    run = world.start()
    world.work()
    sr = world.step(run.id)
    assert sr.status.value == "running"  # the request succeeded; it waits
    url = world.reply_to()
    assert url.startswith("http://testserver/api/callbacks/")
    token = url.rsplit("/", 1)[1]
    with world.engine.store.read() as tx:
        (call,) = [e for e in tx.events_txn(run_id=run.id) if e["type"] == "http_call"]
    assert token not in str(call)  # a reader of the audit cannot call back
    assert "/api/callbacks/***" in call["data"]["request_body"]
    r = world.post(url, {"status": "confirmed", "reference": "R-9"})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "delivered", "step": "send", "iteration": 1}
    sr = world.step(run.id)
    assert sr.status.value == "completed"
    assert sr.output == {"ack": "ack-1", "confirmed": "confirmed", "reference": "R-9"}
    world.work()
    assert world.engine.get_run(run.id).status.value == "completed"
    assert "idempotent-replayed" not in r.headers
    # a repeat (the sender lost our answer): the same JSON, here encoded again with another
    # key order and spacing, is answered as the first was and changes nothing
    events = world.events(run.id)
    path = url.removeprefix("http://testserver")
    for raw in (b'{"status": "confirmed", "reference": "R-9"}',
                b'{ "reference":"R-9",\n  "status":"confirmed" }'):
        again = world.client.post(path, content=raw,
                                  headers={"Content-Type": "application/json"})
        assert again.status_code == 200, again.text
        assert again.json() == r.json()
        assert again.headers["idempotent-replayed"] == "true"
    assert world.events(run.id) == events
    # single use: another body is a conflict, and changes nothing
    for other in ({"status": "rejected"}, {"status": "confirmed", "reference": "R-9",
                                            "extra": 1}, {}):
        conflict = world.post(url, other)
        assert conflict.status_code == 409, conflict.text
        assert "idempotent-replayed" not in conflict.headers
        assert "another callback was received first" in conflict.json()["detail"]
        assert "different body" in conflict.json()["detail"]
    assert world.step(run.id).output["confirmed"] == "confirmed"
    assert world.events(run.id) == events


def test_a_callback_before_the_request_commit_is_matched(world: World) -> None:
    """The other system answers while the worker still holds the call's result: the
    callback is kept and delivered by the commit of the request's result."""
    answered: list[Any] = []

    def answer_at_once(seen: Seen) -> None:
        if seen.path == "/addresses":
            url = json.loads(seen.body)["reply_to"]
            answered.append(world.post(url, {"status": "early bird", "reference": "E-1"}))

        # the sender's retry before the request's commit: answered as the first, kept once
        answered.append(world.post(url, {"reference": "E-1", "status": "early bird"}))
        answered.append(world.post(url, {"status": "late bird", "reference": "E-1"}))

    world.bank.on_request = answer_at_once
    run = world.start()
    world.work()
    first, repeat, other = answered
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "early"
    assert "idempotent-replayed" not in first.headers
    assert repeat.status_code == 202 and repeat.json() == first.json(), repeat.text
    assert repeat.headers["idempotent-replayed"] == "true"
    assert other.status_code == 409 and "different body" in other.json()["detail"]
    sr = world.step(run.id)
    assert sr.status.value == "completed", (sr.status, sr.output)
    assert sr.output == {"ack": "ack-1", "confirmed": "early bird", "reference": "E-1"}
    events = world.events(run.id)
    assert [e["type"] for e in events].count("callback_received_early") == 1
    # delivered since: a repeat is still answered what the first one was (202, early)
    url = world.reply_to()
    again = world.post(url, {"status": "early bird", "reference": "E-1"})
    assert again.status_code == 202 and again.json() == first.json(), again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert world.events(run.id) == events
    assert world.step(run.id).output["confirmed"] == "early bird"


def test_late_forged_and_timed_out_callbacks(world: World) -> None:
    run = world.start()
    world.work()
    url = world.reply_to()
    token = url.rsplit("/", 1)[1]
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert world.post(url.replace(token, forged), {}).status_code == 404
    assert world.post(url.replace(token, "nonsense"), {}).status_code == 404
    # the wait's timeout sends the step to fallout
    world.clock.advance(timedelta(hours=1, seconds=1))
    world.work()
    sr = world.step(run.id)
    assert sr.status.value == "fallout"
    assert sr.error["type"] == "CallbackTimeout"
    late = world.post(url, {"status": "confirmed"})
    assert late.status_code == 410, late.text
    assert world.step(run.id).status.value == "fallout"
    assert late.headers["content-type"].startswith("application/problem+json")


def test_a_retried_step_waits_for_its_callback_again(world: World) -> None:
    """An operator's retry from fallout sends the request again and waits afresh: after a
    timeout, the timeout is armed again (the step went back to fallout, not running for
    good); after a callback whose body the output could not map, the next callback to the
    same URL is taken, not refused as already received."""
    run = world.start()
    world.work()
    world.clock.advance(timedelta(hours=1, seconds=1))
    world.work()
    assert world.step(run.id).status.value == "fallout"
    world.engine.resolve_fallout(f"{run.id}:send", "retry", reason="ask again", actor="olga")
    world.work()
    assert len(world.bank.calls("/addresses")) == 2 and world.step(run.id).status.value == "running"
    world.clock.advance(timedelta(hours=1, seconds=1))
    world.work()
    sr = world.step(run.id)
    assert sr.status.value == "fallout" and sr.error["type"] == "CallbackTimeout", sr
    with world.engine.store.read() as tx:
        waits = [e for e in tx.events_txn(run_id=run.id) if e["type"] == "callback_waiting"]
    assert len(waits) == 2  # each wait audited

    # a callback the output cannot map: fallout; a retry takes the next one
    world.engine.resolve_fallout(f"{run.id}:send", "retry", reason="once more", actor="olga")
    world.work()
    url = world.reply_to()
    bad = world.post(url, ["not", "a", "mapping"])
    assert bad.status_code == 200, bad.text
    assert world.step(run.id).status.value == "fallout"
    world.engine.resolve_fallout(f"{run.id}:send", "retry", reason="fixed on their side",
                                 actor="olga")
    world.work()
    again = world.post(world.reply_to(), {"status": "confirmed", "reference": "R-2"})
    assert again.status_code == 200, again.text
    sr = world.step(run.id)
    assert sr.status.value == "completed" and sr.output["reference"] == "R-2", sr
    with world.engine.store.read() as tx:
        assert any(e["type"] == "callback_forgotten" for e in tx.events_txn(run_id=run.id))


def test_a_body_that_is_not_json_is_refused(world: World) -> None:
    run = world.start()
    world.work()
    url = world.reply_to().removeprefix("http://testserver")
    r = world.client.post(url, content=b"not json", headers={"Content-Type": "text/plain"})
    assert r.status_code == 400
    deep = world.client.post(url, content=b"[" * 100_000 + b"]" * 100_000,
                             headers={"Content-Type": "application/json"})
    assert deep.status_code == 400 and "must be JSON" in deep.json()["detail"], deep.text
    assert world.step(run.id).status.value == "running"


@pytest.mark.parametrize("world", [True], indirect=True)
def test_signed_callbacks(world: World) -> None:
    run = world.start()
    world.work()
    url = world.reply_to().removeprefix("http://testserver")
    body = {"status": "confirmed", "reference": "S-1"}
    # unsigned, wrong secret, stale timestamp: refused, nothing changes
    assert world.post(url, body).status_code == 401
    raw, headers = world.signed(body, secret="wrong")
    assert world.client.post(url, content=raw, headers=headers).status_code == 401
    raw, headers = world.signed(body, at=world.clock.now().timestamp() - 600)
    r = world.client.post(url, content=raw, headers=headers)
    assert r.status_code == 401 and "replay window" in r.json()["detail"]
    raw, headers = world.signed(body)
    tampered = raw.replace(b"S-1", b"S-2")
    assert world.client.post(url, content=tampered, headers=headers).status_code == 401
    assert world.step(run.id).status.value == "running"
    # signed right: delivered
    r = world.client.post(url, content=raw, headers=headers)
    assert r.status_code == 200, r.text
    assert world.step(run.id).output["reference"] == "S-1"
    assert HMAC not in r.text
    events = world.events(run.id)
    # a repeat is checked like any callback first: the same request again (in its window)
    # and one signed afresh later are answered as the first; unsigned, badly signed or
    # outside the window, refused as before
    world.clock.advance(timedelta(minutes=1))
    fresh, fresh_headers = world.signed(body)
    for sent, h in ((raw, headers), (fresh, fresh_headers)):
        again = world.client.post(url, content=sent, headers=h)
        assert again.status_code == 200 and again.json() == r.json(), again.text
        assert again.headers["idempotent-replayed"] == "true"
    assert world.post(url, body).status_code == 401
    _, wrong = world.signed(body, secret="wrong")
    refused = world.client.post(url, content=fresh, headers=wrong)
    assert refused.status_code == 401 and "idempotent-replayed" not in refused.headers
    world.clock.advance(timedelta(minutes=5))  # the first request's stamp: 6 minutes old
    stale = world.client.post(url, content=raw, headers=headers)
    assert stale.status_code == 401 and "replay window" in stale.json()["detail"]
    other, other_headers = world.signed({"status": "confirmed", "reference": "S-2"})
    assert world.client.post(url, content=other, headers=other_headers).status_code == 409
    assert world.step(run.id).output["reference"] == "S-1"
    assert world.events(run.id) == events


def test_the_openapi_document_lists_the_callback_endpoint(world: World) -> None:
    doc = world.client.get("/openapi.json").json()
    op = doc["paths"]["/api/callbacks/{token}"]["post"]
    assert op["tags"] == ["Callbacks"] and op["security"] == []
    assert {"200", "202", "401", "404", "409", "410"} <= set(op["responses"])
    for status in ("200", "202"):
        assert "Idempotent-Replayed" in op["responses"][status]["headers"]
    assert "Idempotent-Replayed" in op["description"]


@pytest.mark.parametrize(("a", "b", "same"), [
    ({"a": 1, "b": [1, {"c": None}]}, {"b": [1, {"c": None}], "a": 1}, True),
    ({"n": 1}, {"n": 1.0}, True),  # one JSON number (JSONB may give back either)
    ({"n": 1.5e300}, {"n": int("15" + "0" * 299)}, True),  # JSONB's 1.5e300
    ({"n": True}, {"n": 1}, False),  # Python's True == 1, not JSON's
    ({"n": 0}, {"n": False}, False),
    ({"n": None}, {"n": 0}, False),
    ({"s": "1"}, {"s": 1}, False),
    ({"l": [1, 2]}, {"l": [2, 1]}, False),
    ({"l": [1]}, {"l": [1, 1]}, False),
    ({"a": {}}, {"a": []}, False),
    ({"a": 1}, {"a": 1, "b": 1}, False),
    ({"n": 2 ** 2000}, {"n": 1.0}, False),  # an integer beyond any float
])
def test_a_repeat_is_the_same_json(a: Any, b: Any, same: bool) -> None:
    assert same_json(a, b) is same and same_json(b, a) is same


def test_a_deep_body_is_compared_without_recursing() -> None:
    deep: Any = 1
    for _ in range(50_000):  # nested deeper than Python recurses
        deep = [deep]
    assert same_json(deep, deep)
    assert not same_json(deep, [deep])
