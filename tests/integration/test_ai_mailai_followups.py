"""A model's extraction answer against the loopback model server (tests/llm_server.py), on
both databases: a ``decimal`` value with more digits than any decimal field holds
(``"1e20000000"``: 20,000,001 digits once written out) is an answer that does not fit (asked
again once, then InvalidAnswer), never a 20 MB step output; a value given without its
``source`` is located in the text only where it stands as a whole token."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.test_ai_providers import (  # noqa: F401 - llm_process: a fixture
    ANTHROPIC,
    EXTRACT,
    OPENAI,
    Llm,
    deploy,
    events,
    llm,
    llm_process,
    start,
)


def _fields(order: Any = None, amount: Any = None, placed: Any = None,
            source: str | None = None) -> dict[str, Any]:
    return {"content": {"fields": {"order": {"value": order, "source": None},
                                   "amount": {"value": amount, "source": source},
                                   "placed": {"value": placed, "source": None}}}}


@pytest.mark.parametrize("provider", [OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
def test_a_decimal_of_twenty_million_digits_is_asked_again(harness: Any, llm: Llm,  # noqa: F811
                                                           provider: str) -> None:
    deploy(harness, llm, provider, EXTRACT)
    llm.script(_fields("ORD-1234", "1e20000000"), _fields("ORD-1234", "12.50"))
    _rec, run = start(harness, "x", "order ORD-1234, I paid EUR 12.50")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["fields"]
    assert sr.status.value == "completed", sr.error
    assert sr.output["fields"]["amount"] == "12.50" and sr.output["ai"]["attempts"] == 2
    said = json.dumps(llm.requests()[1]["body"]["messages"][-1])
    assert "amount: expected a decimal number, got '1e20000000': more digits than a decimal " \
           "field holds (at most 38 before the point and 38 after)" in said


def test_two_oversized_decimals_are_an_invalid_answer(harness: Any, llm: Llm) -> None:  # noqa: F811
    deploy(harness, llm, OPENAI, EXTRACT)
    llm.script(_fields("ORD-1234", "1e20000000"), _fields("ORD-1234", 1e300))
    _rec, run = start(harness, "x", "order ORD-1234")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["fields"]
    assert sr.status.value == "fallout"
    assert sr.error["type"] == "InvalidAnswer" and sr.error["retryable"] is False
    assert "more digits than a decimal field holds" in sr.error["message"]
    assert len(llm.requests()) == 2
    stored = json.dumps(events(harness, run.id), default=str)
    assert len(stored) < 100_000  # (the digits were never written out: 20 MB if they were)


def test_a_value_without_source_is_located_only_as_a_whole_token(
        harness: Any, llm: Llm) -> None:  # noqa: F811
    deploy(harness, llm, OPENAI, EXTRACT)
    body = "order ORD-1234 placed on 2024-01-05, nothing paid"
    llm.script(_fields("ORD-1234", "-0"))
    _rec, run = start(harness, "x", body)
    harness.work()
    sr = harness.engine.get_run(run.id).steps["fields"]
    assert sr.status.value == "completed", sr.error
    lines = sr.output["rationale"]
    text = "\n".join(lines) if isinstance(lines, list) else str(lines)
    # "-0" stands inside the date "2024-01-05": not where the value was found
    assert "amount: '-0' (openai model)" in text
    assert f"order: 'ORD-1234' at {body.index('ORD-1234')} (openai model)" in text
    llm.script(_fields("ORD-1234", "12", source=None))
    _rec, run = start(harness, "x", "order ORD-1234: 123 items, 12.5 kg, 12 boxes")
    harness.work()
    lines = harness.engine.get_run(run.id).steps["fields"].output["rationale"]
    text = "\n".join(lines) if isinstance(lines, list) else str(lines)
    where = "order ORD-1234: 123 items, 12.5 kg, 12 boxes".index("12 boxes")
    assert f"amount: '12' at {where} (openai model)" in text  # (not in 123, nor 12.5)
