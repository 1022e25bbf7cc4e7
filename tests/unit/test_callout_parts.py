"""The pure parts of callouts: status classes, Retry-After, redaction and body excerpts."""

from __future__ import annotations

import datetime
import json
import random
import struct
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson

from baton.connections import calls
from baton.connections.calls import (
    EXCERPT_BYTES,
    CallSummary,
    HttpResponse,
    excerpt,
    pretty_json,
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


def test_urls_without_credentials_are_redacted_once_the_others_each_time() -> None:
    calls._redacted.clear()
    plain = "https://bank.example:8443/v1/payments#frag"
    assert redact_url(plain) == "https://bank.example:8443/v1/payments"
    assert calls._redacted == {plain: "https://bank.example:8443/v1/payments"}
    assert redact_url(plain, ["mine"]) == "https://bank.example:8443/v1/payments"
    secret = ["https://bank.example/a?api_key=K", "https://u:p@bank.example/a"]
    assert [redact_url(u) for u in secret] == ["https://bank.example/a?api_key=***",
                                               "https://bank.example/a"]
    assert list(calls._redacted) == [plain], "no URL carrying a credential is kept"
    for i in range(calls.REDACTED_URLS + 5):  # bounded
        redact_url(f"http://h/{i}")
    assert len(calls._redacted) <= calls.REDACTED_URLS


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def test_pretty_json_is_the_text_json_dumps_writes() -> None:
    cases: list[Any] = [
        {"a": 1, "b": [1, 2.5, {"c": None}], "d": {}, "e": [], "f": True, "g": "é\u2028\x7f"},
        [{"x": [[], {}]}], "a\x00b\x1f\n\t\"\\", 2**63, 2**64, -2**63 - 1, 10**30,
        1e-05, 0.0001, 1e16, 1.5e300, float("nan"), float("inf"), -0.0, 0.0,
        {1: "int key"}, (1, 2), {"when": datetime.date(2026, 12, 4)}, Decimal("1.10"),
        {"deep": [[[[[[[[1]]]]]]]]}, "\ud800",
    ]
    rng = random.Random(7)
    for _ in range(3000):  # floats of every magnitude, and amounts
        cases.append(struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0])
        cases.append(round(rng.uniform(-1e6, 1e6), rng.randint(0, 8)))
    for value in cases:
        assert pretty_json(value) == _json(value), value


@dataclass
class _Point:
    x: int
    y: int


def test_pretty_json_uses_orjson_only_where_its_text_is_the_same() -> None:
    assert calls._plain({"a": [1, "x", None, True, 2.5, 0.0001]})
    assert not calls._plain({1: "a"})  # orjson refuses it (json writes "1")
    for odd in (1e-05, float("nan"), _Point(1, 2), datetime.datetime(2026, 1, 1, 9, 30),
                {"a": [float("inf")]}):  # where orjson's own text differs
        assert not calls._plain(odd), odd
        assert orjson.dumps(odd, option=orjson.OPT_INDENT_2, default=str).decode() != _json(odd)
