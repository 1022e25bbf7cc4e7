"""``ai`` steps on the model providers (``openai``: any OpenAI-compatible endpoint, and
``anthropic``) against a real HTTP server process on loopback (tests/llm_server.py), on both
databases: a valid answer, an invalid answer then a valid one, two invalid answers (fallout),
a timeout and a 429 with Retry-After (retried per the step's policy), a refused key; the audit
of every call on the record; the key never in the audit, the step's error or the logs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.clock import iso, parse_iso
from baton.errors import DefinitionError

KEY = "sk-test-5ecret-0f-the-llm"
SERVER = Path(__file__).resolve().parents[1] / "llm_server.py"


class Llm:
    def __init__(self, url: str) -> None:
        self.url = url

    def _post(self, path: str, body: Any) -> Any:
        req = urllib.request.Request(self.url + path, json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def script(self, *answers: dict[str, Any]) -> None:
        self._post("/_script", {"answers": list(answers)})

    def reset(self) -> None:
        self._post("/_reset", {})

    def requests(self) -> list[dict[str, Any]]:
        with urllib.request.urlopen(self.url + "/_requests", timeout=10) as r:
            seen: list[dict[str, Any]] = json.loads(r.read())
            return seen


@pytest.fixture(scope="module")
def llm_process() -> Iterator[Llm]:
    proc = subprocess.Popen([sys.executable, str(SERVER), "--key", KEY],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "PORT n" once it listens
        assert line.startswith("PORT "), line
        yield Llm(f"http://127.0.0.1:{int(line.split()[1])}")
    finally:
        proc.kill()
        proc.wait(10)


@pytest.fixture
def llm(llm_process: Llm) -> Llm:
    llm_process.reset()
    return llm_process


EMAIL = """\
kind: object
name: Email
fields:
  subject: {type: string, required: true}
  body:    {type: text}
"""

CONNECTIONS = """\
kind: connection
name: llm
type: http
base_url: {url}/v1
auth: {{type: bearer, secret: env:LLM_KEY}}
timeout: {{connect: 2s, read: 1s}}
---
kind: connection
name: claude
type: http
base_url: {url}
auth: {{type: api_key, in: header, name: x-api-key, secret: env:LLM_KEY}}
timeout: {{connect: 2s, read: 1s}}
"""

CLASSIFY = """\
kind: orchestration
name: t_llm
trigger: {{type: record, object: Email}}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
{provider}
        text: '=record.subject + " " + record.body'
        min_confidence: 0.5
        retry: {{max: 3, initial: 1s}}
        categories:
          - {{name: billing, description: invoices and payments}}
          - {{name: technical, description: something does not work}}
          - {{name: cancellation, description: the customer wants to end the contract}}
    next:
      - {{when: '=steps.intent.output.outcome == "review"', goto: review}}
      - {{goto: end}}
  - name: review
    steps: [{{name: check, type: interactive, assign: {{queue: triage}}}}]
"""

OPENAI = "        provider: openai\n        connection: llm\n        model: gpt-test-mini"
ANTHROPIC = "        provider: anthropic\n        connection: claude\n        model: claude-test"


def deploy(harness: Any, llm: Llm, provider: str = OPENAI, orchestration: str = CLASSIFY) -> None:
    harness.setenv(LLM_KEY=KEY)
    harness.deploy_text(EMAIL + "---\n" + CONNECTIONS.format(url=llm.url) + "---\n"
                        + orchestration.format(provider=provider))


def start(harness: Any, subject: str = "Cancel", body: str = "please end my cancellation") -> Any:
    rec = harness.engine.create_record("Email", {"subject": subject, "body": body})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return rec, run


def events(harness: Any, run_id: str, type_: str | None = None) -> list[dict[str, Any]]:
    with harness.engine.store.read() as tx:
        return [e for e in tx.events_txn(run_id=run_id) if type_ is None or e["type"] == type_]


def retry_due(harness: Any, run_id: str) -> None:
    (last, *_) = events(harness, run_id, "step_attempt_failed")[::-1]
    harness.clock.set(max(harness.clock.now(), parse_iso(last["data"]["next_retry_at"])))
    harness.work()


def no_key_anywhere(harness: Any, run_id: str, caplog: Any) -> None:
    everything = json.dumps(events(harness, run_id), default=str)
    everything += json.dumps(harness.engine.get_run(run_id).to_json(), default=str)
    assert KEY not in everything
    assert KEY not in caplog.text


def test_openai_valid_answer_is_the_output_and_audited(harness: Any, llm: Llm,
                                                       caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    deploy(harness, llm)
    llm.script({"content": {"category": "cancellation", "confidence": 0.93,
                            "rationale": "asks to 'end my contract'"},
                "usage": {"in": 211, "out": 17, "cost": 0.00042}})
    rec, run = start(harness)
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "completed", sr.error
    out = sr.output
    assert (out["category"], out["confidence"], out["outcome"]) == ("cancellation", 0.93,
                                                                   "classified")
    assert out["rationale"] == ["asks to 'end my contract'"]
    ai = out["ai"]
    assert (ai["provider"], ai["model"], ai["input_tokens"], ai["output_tokens"],
            ai["cost"]) == ("openai", "gpt-test-mini", 211, 17, 0.00042)
    assert len(ai["prompt_version"]) == 12 and len(ai["input_sha256"]) == 16
    assert ai["latency_ms"] >= 0 and "attempts" not in ai
    # what was sent: the model, the schema as response format, the key as a bearer token
    (sent,) = llm.requests()
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    body = sent["body"]
    assert body["model"] == "gpt-test-mini" and body["temperature"] == 0
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["category"]["enum"] == ["billing", "technical", "cancellation"]
    assert "the customer wants to end the contract" in body["messages"][0]["content"]
    assert body["messages"][1] == {"role": "user", "content": "Cancel please end my cancellation"}
    # on the record: the AI decision with its reasons, and the HTTP call (redacted)
    timeline = harness.engine.timeline(rec["id"])
    (call,) = [e for e in timeline if e["type"] == "ai_call"]
    data = call["data"]
    assert (data["provider"], data["model"], data["step"], data["outcome"]) == (
        "openai", "gpt-test-mini", "intent", "classified")
    assert data["output"] == {"category": "cancellation"} and data["confidence"] == 0.93
    assert data["rationale"] == ["asks to 'end my contract'"]
    assert data["prompt_version"] == ai["prompt_version"]
    assert data["input_sha256"] == ai["input_sha256"]
    assert (data["input_tokens"], data["output_tokens"], data["cost"]) == (211, 17, 0.00042)
    from baton.cli.main import describe_event
    from baton.web.ui.events import describe_event as page_line

    for line in (describe_event(call), page_line(call)):  # baton records timeline, record page
        assert line.startswith("intent: openai gpt-test-mini → cancellation (0.93, classified)"
                               " — because: asks to 'end my contract' [prompt "), line
        assert "211+17 tokens, $0.00042" in line
    (http,) = [e for e in timeline if e["type"] == "http_call"]
    assert http["data"]["connection"] == "llm" and http["data"]["status"] == 200
    no_key_anywhere(harness, run.id, caplog)


def test_openai_invalid_answer_is_asked_again_with_the_problem(harness: Any, llm: Llm) -> None:
    deploy(harness, llm)
    llm.script({"content": {"category": "refund", "confidence": 1.7}},
               {"content": {"category": "billing", "confidence": 0.8, "rationale": "invoice"}})
    _rec, run = start(harness, "invoice", "my invoice is wrong")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "completed", sr.error
    assert sr.output["category"] == "billing" and sr.output["ai"]["attempts"] == 2
    assert sr.output["ai"]["input_tokens"] == 240  # both asks counted
    first, second = llm.requests()
    correction = second["body"]["messages"]
    assert correction[:2] == first["body"]["messages"]
    assert correction[2]["role"] == "assistant" and "refund" in correction[2]["content"]
    assert correction[3]["role"] == "user"
    said = correction[3]["content"]
    assert "category 'refund' is not one of billing, technical, cancellation" in said
    assert "confidence 1.7 is not a number from 0 to 1" in said and "rationale" in said
    assert len(events(harness, run.id, "http_call")) == 2


def test_two_invalid_answers_fail_the_step_to_fallout(harness: Any, llm: Llm) -> None:
    deploy(harness, llm)
    llm.script({"content": "I think it is about billing."},
               {"content": {"category": "billing"}})
    _rec, run = start(harness)
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "fallout"
    assert sr.error["type"] == "InvalidAnswer" and sr.error["retryable"] is False
    assert "did not fit the schema after a retry" in sr.error["message"]
    assert "confidence None" in sr.error["message"]
    assert len(llm.requests()) == 2  # not retried by the policy: a third ask would not help
    (call,) = events(harness, run.id, "ai_call")
    assert call["data"]["error"]["type"] == "InvalidAnswer"
    assert call["data"]["provider"] == "openai" and call["data"]["model"] == "gpt-test-mini"


def test_a_timeout_is_retried_by_the_step_policy(harness: Any, llm: Llm, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    deploy(harness, llm)
    llm.script({"delay": 1.6, "content": {"category": "billing", "confidence": 0.9,
                                          "rationale": "slow"}})
    _rec, run = start(harness)
    harness.work()
    (failed,) = events(harness, run.id, "step_attempt_failed")
    err = failed["data"]["error"]
    assert err["type"] == "CallFailed" and err["retryable"] is True
    assert "timed out (read timeout 1000 ms)" in err["message"]
    (call,) = events(harness, run.id, "ai_call")
    assert call["data"]["error"]["type"] == "CallFailed"
    assert events(harness, run.id, "http_call")[0]["data"]["error"].startswith("timed out")
    retry_due(harness, run.id)  # unscripted now: the server's small model answers
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "completed" and sr.output["category"] == "cancellation"
    no_key_anywhere(harness, run.id, caplog)


def test_429_waits_for_retry_after(harness: Any, llm: Llm) -> None:
    deploy(harness, llm)
    llm.script({"status": 429, "headers": {"Retry-After": "120"}, "error": "rate limited"})
    _rec, run = start(harness)
    t0 = harness.clock.now()
    harness.work()
    (failed,) = events(harness, run.id, "step_attempt_failed")
    err = failed["data"]["error"]
    assert err["retry_after"] == 120.0 and err["retryable"] is True
    assert "answered 429, a body of" in err["message"] and "rate limited" not in err["message"]
    assert err["provider_error"]["message"] == "rate limited"  # on the record, not logged
    assert failed["data"]["next_retry_at"] >= iso(t0 + timedelta(seconds=120))
    harness.clock.advance(timedelta(seconds=60))  # the policy's 1s has passed, not 120s
    harness.work()
    assert len(llm.requests()) == 1
    retry_due(harness, run.id)
    assert harness.engine.get_run(run.id).steps["intent"].status.value == "completed"
    assert len(llm.requests()) == 2


def test_a_refused_key_goes_to_fallout_without_showing_it(harness: Any, llm: Llm,
                                                          caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    deploy(harness, llm)
    harness.setenv(LLM_KEY="sk-wrong-" + KEY)
    _rec, run = start(harness)
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "fallout" and sr.error["retryable"] is False
    assert "answered 401 (error type authentication_error), a body of" in sr.error["message"]
    assert sr.error["message"].endswith(" (not retried)")
    assert sr.error["provider_error"]["message"] == "invalid api key"
    assert len(llm.requests()) == 1
    everything = json.dumps(events(harness, run.id), default=str) + caplog.text
    assert "sk-wrong-" not in everything


def test_low_confidence_answer_becomes_a_review_item(harness: Any, llm: Llm) -> None:
    deploy(harness, llm)
    llm.script({"content": {"category": "billing", "confidence": 0.3, "rationale": "unsure"}})
    _rec, run = start(harness, "hello", "a question")
    harness.work()
    got = harness.engine.get_run(run.id)
    assert got.steps["intent"].output["outcome"] == "review"
    assert got.current_stage == "review"
    items = harness.engine.list_work(run_id=run.id)
    assert [(w["step"], w["assignee_kind"], w["assignee"], w["status"]) for w in items] == [
        ("check", "queue", "triage", "open")]


def test_anthropic_forced_tool_answer_and_its_correction(harness: Any, llm: Llm,
                                                         caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    deploy(harness, llm, ANTHROPIC)
    llm.script({"content": {"category": "technical", "confidence": "high", "rationale": "x"}},
               {"content": {"category": "technical", "confidence": 0.77,
                            "rationale": "the app 'crashes'"}, "model": "claude-test-0101"})
    rec, run = start(harness, "crash", "the app crashes")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "completed", sr.error
    assert (sr.output["category"], sr.output["confidence"]) == ("technical", 0.77)
    ai = sr.output["ai"]
    assert (ai["provider"], ai["model"], ai["attempts"]) == ("anthropic", "claude-test-0101", 2)
    assert (ai["input_tokens"], ai["output_tokens"]) == (240, 60) and "cost" not in ai
    first, second = llm.requests()
    assert first["path"] == "/v1/messages"
    assert first["headers"]["x-api-key"] == KEY
    assert first["headers"]["anthropic-version"] == "2023-06-01"
    body = first["body"]
    assert body["tool_choice"] == {"type": "tool", "name": "answer"}
    assert body["tools"][0]["input_schema"]["required"] == ["category", "confidence", "rationale"]
    assert "something does not work" in body["system"]
    tool_use = second["body"]["messages"][1]["content"][0]
    assert tool_use["type"] == "tool_use"
    (result,) = second["body"]["messages"][2]["content"]
    assert result["type"] == "tool_result" and result["tool_use_id"] == tool_use["id"]
    assert result["is_error"] is True and "confidence 'high'" in result["content"]
    (call,) = [e for e in harness.engine.timeline(rec["id"]) if e["type"] == "ai_call"]
    assert call["data"]["rationale"] == ["the app 'crashes'"]
    no_key_anywhere(harness, run.id, caplog)


EXTRACT = """\
kind: orchestration
name: t_llm_extract
trigger: {{type: record, object: Email}}
stages:
  - name: read
    steps:
      - name: fields
        type: ai
        task: extract
{provider}
        text: '=record.body'
        patterns: {{order: 'ORD-\\d{{4}}'}}
        fields:
          order: {{required: true, pattern: order}}
          amount: {{type: decimal}}
          placed: {{type: date}}
"""


def test_extract_through_a_model_checks_types_and_patterns(harness: Any, llm: Llm) -> None:
    deploy(harness, llm, OPENAI, EXTRACT)
    llm.script({"content": {"fields": {"order": {"value": "ORD-12", "source": "ORD-12"},
                                       "amount": {"value": "12,50", "source": None},
                                       "placed": {"value": None, "source": None}}}},
               {"content": {"fields": {"order": {"value": "ORD-1234", "source": "order ORD-1234"},
                                       "amount": {"value": "12.50", "source": "EUR 12.50"},
                                       "placed": {"value": None, "source": None}}}})
    _rec, run = start(harness, "x", "about order ORD-1234, I paid EUR 12.50")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["fields"]
    assert sr.status.value == "completed", sr.error
    assert sr.output["fields"] == {"order": "ORD-1234", "amount": "12.50", "placed": None}
    assert sr.output["outcome"] == "extracted" and sr.output["ai"]["attempts"] == 2
    assert "order: 'order ORD-1234' at 6 (openai model)" in sr.output["rationale"]
    said = llm.requests()[1]["body"]["messages"][-1]["content"]
    assert "order: 'ORD-12' does not match 'ORD-\\\\d{4}'" in said
    assert "amount: expected a decimal number, got '12,50'" in said
    # a required field the model did not find: missing_information, for the next rules
    llm.script({"content": {"fields": {"order": {"value": None, "source": None},
                                       "amount": {"value": None, "source": None},
                                       "placed": {"value": "2026-01-31", "source": "31.1."}}}})
    _rec, run = start(harness, "x", "no order number here")
    harness.work()
    out = harness.engine.get_run(run.id).steps["fields"].output
    assert out["outcome"] == "missing_information" and out["missing"] == ["order"]


def test_baton_toml_chooses_the_provider_connection_and_model(harness: Any, llm: Llm) -> None:
    deploy(harness, llm, "")
    harness.setenv(LLM_KEY=KEY, BATON_AI_PROVIDER="openai", BATON_AI_CONNECTION="llm",
                   BATON_AI_MODEL="gpt-from-settings")
    _rec, run = start(harness, "billing", "about billing")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "completed", sr.error
    assert sr.output["category"] == "billing" and sr.output["confidence"] == 0.9
    assert (sr.output["ai"]["provider"], sr.output["ai"]["model"]) == ("openai",
                                                                      "gpt-from-settings")
    assert llm.requests()[0]["body"]["model"] == "gpt-from-settings"


def test_a_model_provider_without_a_connection_fails_clearly(harness: Any, llm: Llm) -> None:
    deploy(harness, llm, "        provider: openai")
    _rec, run = start(harness)
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "fallout"
    assert "ai provider openai needs a connection" in sr.error["message"]


@pytest.mark.parametrize(("provider", "message"), [
    ("        provider: openai\n        connection: nowhere",
     "unknown connection 'nowhere' (http connections: claude, llm)"),
    ("        provider: offline\n        model: gpt-4o",
     "'model' is for the providers that call a model"),
    ("        provider: openai\n        model: ''", "expected a model name"),
    ("        provider: gemini", "unknown ai provider 'gemini'"),
])
def test_bad_model_options_are_located(harness: Any, llm: Llm, provider: str,
                                       message: str) -> None:
    with pytest.raises(DefinitionError) as exc:
        deploy(harness, llm, provider)
    assert message in str(exc.value) and "steps[0]" in str(exc.value), str(exc.value)

