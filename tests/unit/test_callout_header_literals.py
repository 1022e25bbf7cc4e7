"""A callout step's own ``headers:`` refuse a literal credential as a connection's do
(``X-Api-Key: sk_live_...``): a step is stored, shown and exported as written. The message
says where the secret goes and never repeats it; an expression or a harmless header passes."""

from __future__ import annotations

import pytest

from baton.definitions.loader import check_texts

FLOW = """
kind: orchestration
name: pay
trigger: {{type: autolaunched}}
stages:
  - name: s
    steps:
      - name: call
        type: callout
        connection: bank
        method: GET
        path: /x
        headers: {{{header}}}
"""
SECRET = "sk_live_51Habcdefghijklmnopqrstuv"


def _issues(header: str) -> list[str]:
    _docs, issues = check_texts({"pay.yaml": FLOW.format(header=header)},
                                deployed_connections={"bank": "http"})
    return [f"{i.path}: {i.message}" for i in issues if i.level == "error"]


def test_a_literal_api_key_in_a_step_header_is_refused_without_its_value() -> None:
    (msg,) = _issues(f"X-Api-Key: {SECRET}")
    assert "X-Api-Key" in msg and "auth: {type: api_key" in msg
    assert SECRET not in msg and "sk_live" not in msg


@pytest.mark.parametrize("header", ["X-Idempotency-Key: abc-123", "X-Api-Key: '=\"k-\" + \"1\"'",
                                    "Accept: application/json"])
def test_expressions_and_harmless_headers_pass(header: str) -> None:
    assert _issues(header) == []
