"""The pure parts of callouts: status classes, Retry-After, redaction and body excerpts."""

from __future__ import annotations

import json

from baton.connections.calls import (
    EXCERPT_BYTES,
    CallSummary,
    HttpResponse,
    excerpt,
    redact_fields,
    redact_url,
    scrub,
)
from baton.steps.callout import accepted, callback_signal, idempotency_key, retry_after


def _response(headers: dict[str, str]) -> HttpResponse:
    return HttpResponse(503, headers, None, CallSummary("c", "GET", "http://h/", "k"))


def test_success_classes() -> None:
    assert accepted(204, None) and not accepted(302, None) and not accepted(404, None)
    assert accepted(404, [200, 404]) and not accepted(201, [200, 404])
    assert accepted(302, ["2xx", "3xx"]) and not accepted(500, ["2xx", "3xx"])


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after(_response({"retry-after": "120"})) == 120.0
    assert retry_after(_response({
        "retry-after": "Wed, 02 Dec 2026 10:00:30 GMT",
        "date": "Wed, 02 Dec 2026 10:00:00 GMT"})) == 30.0
    assert retry_after(_response({"retry-after": "soon"})) is None
    assert retry_after(_response({})) is None


def test_keys_and_signals() -> None:
    assert idempotency_key("run_1", "send", 2) == "run_1:send:2"
    assert callback_signal("send", 2) == "callback:send:2"  # not an identifier: no one sends it


def test_redaction() -> None:
    url = "https://u:p@bank.example:8443/a?x=1&api_key=K&token=T&mine=M"
    assert redact_url(url, ["mine"]) == "https://bank.example:8443/a?x=1&api_key=***&token=***&mine=***"
    assert redact_fields({"a": {"iban": "DE1", "b": [{"iban": "DE2"}]}, "iban": 3}, {"iban"}) == {
        "a": {"iban": "***", "b": [{"iban": "***"}]}, "iban": "***"}
    assert scrub("Bearer abc and abcdef", ["abc", "abcdef"]) == "Bearer *** and ***"


def test_excerpts_are_pretty_redacted_and_capped() -> None:
    body = {"iban": "DE00", "name": "Ann", "note": "secret-xyz"}
    raw = json.dumps(body).encode()
    text = excerpt(raw, body, {"iban"}, ["secret-xyz"])
    assert text == json.dumps({"iban": "***", "name": "Ann", "note": "***"}, indent=2)
    big = b"x" * (EXCERPT_BYTES * 3)
    cut = excerpt(big, big.decode(), ())
    assert cut is not None and cut.startswith("x" * EXCERPT_BYTES)
    assert cut.endswith(f"({len(big):,} bytes in all)")
    assert excerpt(b"", None, ()) is None
