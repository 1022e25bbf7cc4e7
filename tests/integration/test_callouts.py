"""Callout steps against a real HTTP server on loopback (tests/bank.py), on both databases:
success, retries of 5xx and 429 (Retry-After), 4xx to fallout, timeouts, refused
connections, every auth type, and the audit of each call."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from typing import Any

import pytest

from baton.clock import iso
from tests.bank import Bank, Seen, bank_server
from tests.net import free_port

ADDRESS = """\
kind: object
name: Address
fields:
  customer: {type: string, required: true}
  street: {type: string}
"""


def connection(url: str, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        kind: connection
        name: bank
        type: http
        base_url: {url}/api
        headers: {{X-Client: baton}}
        timeout: {{connect: 2s, read: 2s}}
        """) + textwrap.dedent(extra)


def orchestration(step: str) -> str:
    return textwrap.dedent("""\
        kind: orchestration
        name: send
        trigger: {type: record, object: Address}
        stages:
          - name: only
            steps:
        """) + textwrap.indent(textwrap.dedent(step), " " * 6)


SEND = """\
- name: send
  type: callout
  connection: bank
  method: POST
  path: =record.customer + "/addresses"
  query: {source: baton, customer: =record.customer}
  body: {customer: =record.customer, street: =record.street, fixed: 7}
  output: {ack: =response.body.ackId, header: '=response.headers["x-ack"]', status: =response.status}
  retry: {max: 3, initial: 1s}
"""


def deploy(harness: Any, conn: str, step: str = SEND) -> None:
    harness.deploy_text(ADDRESS + "---\n" + conn + "---\n" + orchestration(step))


def start(harness: Any, customer: str = "c1", street: str = "1 Main St") -> Any:
    rec = harness.engine.create_record("Address", {"customer": customer, "street": street})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return run


def events(harness: Any, run_id: str, type_: str) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [e for e in tx.events_txn(run_id=run_id) if e["type"] == type_]


def step(harness: Any, run_id: str, name: str = "send") -> Any:
    return harness.engine.get_run(run_id).steps[name]


def retry_due(harness: Any, run_id: str) -> None:
    """Move the virtual clock to the last failed attempt's retry and work."""
    (last, *_) = events(harness, run_id, "step_attempt_failed")[::-1]
    due = last["data"]["next_retry_at"]
    assert due is not None
    harness.clock.set(max(harness.clock.now(), _parse(due)))
    harness.work()


def _parse(text: str) -> Any:
    from baton.clock import parse_iso
    return parse_iso(text)


def test_success_sends_the_request_and_maps_the_response(harness: Any) -> None:
    with bank_server() as bank:
        harness.setenv(BANK_TOKEN="tok-secret-1")
        bank.check_auth = lambda s: s.headers.get("authorization") == "Bearer tok-secret-1"
        deploy(harness, connection(bank.url, "auth: {type: bearer, secret: env:BANK_TOKEN}\n"))
        run = start(harness)
        harness.work()
        sr = step(harness, run.id)
        assert sr.status.value == "completed", sr.error
        assert sr.output == {"ack": "ack-1", "header": "ack-1", "status": 200}
        (seen,) = bank.requests
        assert (seen.method, seen.path) == ("POST", "/api/c1/addresses")
        assert seen.query == {"source": "baton", "customer": "c1"}
        assert seen.json() == {"customer": "c1", "street": "1 Main St", "fixed": 7}
        assert seen.headers["x-client"] == "baton"
        assert seen.headers["content-type"] == "application/json"
        assert seen.headers["idempotency-key"] == f"{run.id}:send:1"
        (call,) = events(harness, run.id, "http_call")
        data = call["data"]
        assert (data["connection"], data["method"], data["status"], data["step"]) == (
            "bank", "POST", 200, "send")
        assert data["url"] == f"{bank.url}/api/c1/addresses?source=baton&customer=c1"
        assert data["idempotency_key"] == f"{run.id}:send:1"
        assert data["request_bytes"] == len(seen.body) and data["response_bytes"] > 0
        assert '"customer": "c1"' in data["request_body"]  # pretty-printed JSON
        assert '"ackId": "ack-1"' in data["response_body"]
        assert "tok-secret-1" not in str(call)


def test_5xx_is_retried_with_the_same_key_and_takes_effect_once(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/api/c1/addresses"] = [(503, {}, {"error": "down"}),
                                            (502, {}, {"error": "gateway"})]
        deploy(harness, connection(bank.url))
        run = start(harness)
        harness.work()
        assert step(harness, run.id).status.value == "running"  # retry not due yet
        failed = events(harness, run.id, "step_attempt_failed")
        assert failed[0]["data"]["error"]["retryable"] is True
        assert failed[0]["data"]["error"]["call"]["status"] == 503
        retry_due(harness, run.id)
        retry_due(harness, run.id)
        sr = step(harness, run.id)
        assert sr.status.value == "completed" and sr.output["ack"] == "ack-1"
        keys = {r.headers["idempotency-key"] for r in bank.requests}
        assert keys == {f"{run.id}:send:1"} and len(bank.requests) == 3
        assert len(bank.effective) == 1
        assert [e["data"]["status"] for e in events(harness, run.id, "http_call")] == [
            503, 502, 200]


def test_429_waits_for_retry_after(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/api/c1/addresses"] = [(429, {"Retry-After": "120"}, {"error": "slow down"})]
        deploy(harness, connection(bank.url))
        run = start(harness)
        t0 = harness.clock.now()
        harness.work()
        (failed,) = events(harness, run.id, "step_attempt_failed")
        assert failed["data"]["error"]["retry_after"] == 120.0
        assert failed["data"]["next_retry_at"] >= iso(t0 + timedelta(seconds=120))
        harness.clock.advance(timedelta(seconds=60))  # the policy's 1s has passed, not 120s
        harness.work()
        assert len(bank.requests) == 1
        retry_due(harness, run.id)
        assert step(harness, run.id).status.value == "completed"
        assert len(bank.requests) == 2


def test_4xx_goes_to_fallout_with_the_call_attached(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/api/c1/addresses"] = [(422, {}, {"error": "street unknown"})]
        deploy(harness, connection(bank.url))
        run = start(harness)
        harness.work()
        sr = step(harness, run.id)
        assert sr.status.value == "fallout"
        assert len(bank.requests) == 1  # not retried
        err = sr.error
        assert err["retryable"] is False and "answered 422" in err["message"]
        assert err["call"]["status"] == 422
        assert "street unknown" in err["call"]["response_body"]
        assert '"street": "1 Main St"' in err["call"]["request_body"]
        (item,) = harness.engine.list_fallout()
        assert item["error"]["call"]["status"] == 422


def test_retry_on_makes_a_4xx_retryable(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/api/c1/addresses"] = [(409, {}, {"error": "busy"})]
        deploy(harness, connection(bank.url), SEND.replace("retry: {", "retry_on: [409]\n  retry: {"))
        run = start(harness)
        harness.work()
        retry_due(harness, run.id)
        assert step(harness, run.id).status.value == "completed"


def test_a_read_timeout_is_retried(harness: Any) -> None:
    with bank_server() as bank:
        bank.delay = 1.5
        deploy(harness, connection(bank.url).replace("read: 2s", "read: 1s"))
        run = start(harness)
        harness.work()
        (failed,) = events(harness, run.id, "step_attempt_failed")
        err = failed["data"]["error"]
        assert err["type"] == "CallFailed" and err["retryable"] is True
        assert "timed out (read timeout 1000 ms)" in err["message"]
        assert err["call"]["status"] is None and err["call"]["error"]
        bank.delay = 0
        retry_due(harness, run.id)
        assert step(harness, run.id).status.value == "completed"


def test_a_call_without_an_answer_is_redacted_as_an_answered_one(harness: Any) -> None:
    """The connection's redact fields are hidden in the audited request of a call that
    timed out or could not connect, as in one that got an answer (they were stored in
    clear, in the step's error and the http_call and step_attempt_failed events)."""
    port = free_port()  # nothing listens there
    deploy(harness, connection(f"http://127.0.0.1:{port}", "redact: [street]\n"),
           SEND.replace("retry: {max: 3, initial: 1s}", "retry: {max: 1, initial: 1s}"))
    run = start(harness, street="42 Secret Lane")
    harness.work()
    retry_due(harness, run.id)
    sr = step(harness, run.id)
    assert sr.status.value == "fallout"
    assert "***" in str(sr.error["call"]["request_body"]), sr.error["call"]
    with harness.engine.store.read() as tx:
        stored = [e for e in tx.events_txn(run_id=run.id)]
    assert "42 Secret Lane" not in str(stored) and "42 Secret Lane" not in str(sr.error)


def test_a_refused_connection_is_retried_then_fallout(harness: Any) -> None:
    port = free_port()  # nothing listens there
    deploy(harness, connection(f"http://127.0.0.1:{port}"),
           SEND.replace("retry: {max: 3, initial: 1s}", "retry: {max: 1, initial: 1s}"))
    run = start(harness)
    harness.work()
    retry_due(harness, run.id)
    sr = step(harness, run.id)
    assert sr.status.value == "fallout"
    assert "could not reach" in sr.error["message"] and sr.error["retryable"] is True
    assert [e["data"]["status"] for e in events(harness, run.id, "http_call")] == [None, None]


def test_iterations_get_their_own_key(harness: Any) -> None:
    with bank_server() as bank:
        looping = textwrap.dedent("""\
            kind: orchestration
            name: send
            trigger: {type: record, object: Address}
            stages:
              - name: only
                max_iterations: 3
                steps:
                  - {name: send, type: callout, connection: bank, method: PUT, path: /ping,
                     body: =vars}
                next:
                  - {goto: only, when: '=steps.send.iteration < 2'}
                  - {goto: end}
            """)
        harness.deploy_text(ADDRESS + "---\n" + connection(bank.url) + "---\n" + looping)
        run = start(harness)
        harness.work()
        assert harness.engine.get_run(run.id).status.value == "completed"
        keys = [r.headers["idempotency-key"] for r in bank.requests]
        assert keys == [f"{run.id}:send:1", f"{run.id}:send:2"]


@pytest.mark.parametrize("auth, check", [
    ("{type: basic, username: baton, password_secret: env:BANK_PW}",
     lambda s: s.headers.get("authorization") == "Basic YmF0b246cHctc2VjcmV0LTI="),
    ("{type: api_key, secret: env:BANK_KEY}",
     lambda s: s.headers.get("x-api-key") == "key-secret-3"),
    ("{type: api_key, secret: env:BANK_KEY, in: query, name: api_key}",
     lambda s: s.query.get("api_key") == "key-secret-3"),
])
def test_auth_types(harness: Any, auth: str, check: Any) -> None:
    with bank_server() as bank:
        harness.setenv(BANK_PW="pw-secret-2", BANK_KEY="key-secret-3")
        bank.check_auth = check
        deploy(harness, connection(bank.url, f"auth: {auth}\n"))
        run = start(harness)
        harness.work()
        sr = step(harness, run.id)
        assert sr.status.value == "completed", sr.error
        (call,) = events(harness, run.id, "http_call")
        assert "key-secret-3" not in str(call) and "pw-secret-2" not in str(call)
        if "query" in auth:
            assert "api_key=%2A%2A%2A" in call["data"]["url"] or "api_key=***" in call["data"]["url"]


def test_a_missing_secret_fails_without_retry(harness: Any) -> None:
    with bank_server() as bank:
        deploy(harness, connection(bank.url, "auth: {type: bearer, secret: env:NOT_SET}\n"))
        run = start(harness)
        harness.work()
        sr = step(harness, run.id)
        assert sr.status.value == "fallout" and bank.requests == []
        assert "env:NOT_SET" in sr.error["message"] and sr.error["retryable"] is False


def _seen_auth(bank: Bank) -> list[str]:
    return [r.headers.get("authorization", "") for r in bank.requests if r.path != "/token"]


def test_oauth2_token_is_cached_refreshed_before_expiry_and_refetched_on_401(
        harness: Any) -> None:
    with bank_server() as bank:
        bank.client_secret = "client-secret-4"
        bank.token_life = 3600
        harness.setenv(BANK_CLIENT_SECRET="client-secret-4")
        bank.check_auth = bank.valid_bearer
        deploy(harness, connection(bank.url, f"""\
            auth:
              type: oauth2_client_credentials
              token_url: {bank.url}/token
              client_id: baton
              client_secret: env:BANK_CLIENT_SECRET
              scope: addresses
            """))
        runs = [start(harness, f"c{i}") for i in range(3)]
        harness.work()
        assert all(step(harness, r.id).status.value == "completed" for r in runs)
        assert bank.token_requests == 1  # one token for the three calls
        (token_call,) = bank.calls("/token")
        assert "scope=addresses" in token_call.body.decode()
        # the server revokes its tokens: a 401 fetches a new token, once, and succeeds
        bank.tokens.clear()
        run = start(harness, "c9")
        harness.work()
        assert step(harness, run.id).status.value == "completed"
        assert bank.token_requests == 2
        # a token about to expire is refreshed before it is used
        client = harness.engine.connections.client
        conn = client._conns["bank"]
        assert conn.token is not None
        conn.token.refresh_at = 0.0  # as if its life were almost over
        run = start(harness, "c10")
        harness.work()
        assert step(harness, run.id).status.value == "completed"
        assert bank.token_requests == 3
        assert "client-secret-4" not in str(events(harness, run.id, "http_call"))


def test_max_in_flight_bounds_concurrent_calls(harness: Any) -> None:
    import threading

    active = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()

    def count(seen: Seen) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        gate.wait(0.3)
        with lock:
            active -= 1

    with bank_server() as bank:
        bank.on_request = count
        deploy(harness, connection(bank.url, "max_in_flight: 3\n"))
        runs = [start(harness, f"c{i}") for i in range(8)]
        harness.work()
        assert all(step(harness, r.id).status.value == "completed" for r in runs)
        assert 1 < peak <= 3
