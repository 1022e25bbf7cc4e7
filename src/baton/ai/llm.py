"""Providers that ask a language model: any OpenAI-compatible endpoint and Anthropic.

Both are reached through a ``kind: connection`` (``type: http``), so a model call gets what
every other call to an external system gets: the connection's timeouts, rate limit and
in-flight bound, its auth with the key read from a secret reference at call time (never
logged: summaries are scrubbed), and an ``http_call`` audit event per request. For
OpenAI-compatible endpoints the connection's ``base_url`` ends where the OpenAI SDK's does
(``https://api.openai.com/v1``; the call is ``POST {base_url}/chat/completions``, auth
``bearer``); for Anthropic it is ``https://api.anthropic.com`` (``POST /v1/messages``, auth
``api_key`` in the ``x-api-key`` header).

Why plain HTTP and not the official ``openai`` / ``anthropic`` SDKs: each SDK brings its own
HTTP client (``httpx``, not the ``httpx2`` client of connections), its own retries and its
own timeouts. Pointing them at a connection would mean either bypassing the connection's
rate limit, in-flight bound, secret scrubbing and call audit, or writing a transport that
bridges them to the connection's event loop, for two JSON requests whose shape is stable
and documented. Retries belong to the step's ``retry`` policy (a 429's ``Retry-After`` is
honoured there, as for callouts), not to a client library retrying behind its back.

The answer is structured: OpenAI-compatible endpoints are asked for a ``json_schema``
response format, Anthropic for a forced tool call whose ``input_schema`` is the task's
schema. :func:`baton.ai.provider.structured` checks it, asks once more with the
validation error, and fails the step (fallout) when the second answer does not fit. An
answer the model did not finish — it refused (OpenAI's ``refusal``, Anthropic's
``stop_reason: refusal``), the provider's content filter stopped it (``finish_reason:
content_filter``), or it reached its output limit (``length``, ``max_tokens``) — is not asked
again (the same text meets the same refusal): the step fails at once (:class:`ModelStopped`,
fallout) with what the model said and why it stopped.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from baton.ai.provider import (
    Category,
    Classification,
    Extraction,
    FieldSpec,
    Found,
    ProviderContext,
    Usage,
    check_classification,
    check_extraction,
    classification_schema,
    extraction_schema,
    normal_value,
    structured,
)
from baton.connections.calls import CallFailed, HttpRequest, HttpResponse
from baton.errors import StepFailure
from baton.rows import CALL_EVENT

CLASSIFY_PROMPT = """\
You classify a message into exactly one of the categories below. Answer with JSON only:
{"category": <one of the category names>, "confidence": <0 to 1, how sure you are>,
"rationale": <one or two sentences quoting the words of the message that decided>}.

Categories:
"""
EXTRACT_PROMPT = """\
You extract fields from a message. Answer with JSON only: {"fields": {<name>: {"value": <the
value, or null when the message does not give it>, "source": <the passage of the message it
was found in, or null>}}} for every field below. Never invent a value that is not in the
message. Dates as YYYY-MM-DD, decimal numbers as text with a dot ("12.50").

Fields:
"""
ANTHROPIC_VERSION = "2023-06-01"
STOPPED = {"content_filter": "the provider's content filter stopped the answer",
           "refusal": "the model refused to answer",
           "length": "the answer reached the model's output limit and was cut",
           "max_tokens": "the answer reached the model's output limit and was cut"}
"""Why a model's answer ended (``finish_reason`` / ``stop_reason``), for the ends that make it
no answer: asking again meets the same end."""


class ModelStopped(StepFailure):
    """The model did not finish its answer: it refused, a content filter stopped it, or it
    reached its output limit. Not retried, not asked again: fallout with the reason. What
    the model said (a refusal's words, the cut answer) is in ``details["said"]``, on the
    record, not in the message (which is logged: it may quote the customer's text)."""

    def __init__(self, provider: str, reason: str, said: str | None) -> None:
        said = " ".join((said or "").split())
        super().__init__(f"ai provider {provider}: {STOPPED.get(reason, reason)} "
                         f"({'finish_reason' if provider == 'openai' else 'stop_reason'} "
                         f"{reason})", retryable=False)
        self.reason = reason
        self.details = {"stop_reason": reason, "said": said[:1000] if said else None}
MAX_TOKENS = 1024
TOOL = "answer"


class ProviderError(StepFailure):
    """The provider answered an error status (retried per the step's policy when
    ``retryable``). Its message, which the worker logs, says the status, the provider's
    error type and code when its JSON body has them (identifiers such as
    ``rate_limit_error``: :func:`error_fields`) and the body's size, never the body's text:
    a provider's error may quote the request, the customer's words. What the provider said
    (the first :data:`SAID_CHARS` characters of its error message: what the step's error
    held before) is in ``details["provider_error"]``, on the record with the step's error
    (fallout), not in the message; the call's ``http_call`` audit event keeps the body's
    first KB, redacted, as every call's does."""

    def __init__(self, provider: str, response: HttpResponse, *, retryable: bool,
                 retry_after: float | None = None) -> None:
        kind, code, said = error_fields(response.body)
        size = response.summary.response_bytes
        named = ", ".join(part for part in (f"error type {kind}" if kind else "",
                                            f"code {code}" if code is not None else "")
                          if part)
        super().__init__(f"ai provider {provider}: {response.summary.url} answered "
                         f"{response.status}{f' ({named})' if named else ''}"
                         f"{f', a body of {size:,} bytes' if size else ''}"
                         + ("" if retryable else " (not retried)"),
                         retryable=retryable, retry_after=retry_after)
        self.status = response.status
        self.details = {"provider_error": {
            "status": response.status, "type": kind, "code": code,
            "message": said[:SAID_CHARS] if said else None, "body_bytes": size}}


SAID_CHARS = 300
"""How much of a provider's error message the step's error keeps (not its message)."""
_IDENTIFIER = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")


def error_fields(body: Any) -> tuple[str | None, str | int | None, str]:
    """The error type, code and message of a provider's error answer: OpenAI's
    ``{"error": {"message", "type", "code"}}``, Anthropic's ``{"type": "error", "error":
    {"type", "message"}}``, an OpenAI-compatible server's ``{"error": "..."}`` or
    ``{"object": "error", "message", "type", "code"}``. A type or code is kept only when
    it is an identifier (or a whole number): what the provider's documentation names,
    never a text that could quote the request. The message ("" when there is none in
    ``error``) is for the record, never for the log."""
    if not isinstance(body, Mapping):
        return None, None, ""
    err = body.get("error")
    where = err if isinstance(err, Mapping) else body
    kind = where.get("type")
    kind = kind if isinstance(kind, str) and _IDENTIFIER.fullmatch(kind) else None
    code = where.get("code")
    if isinstance(code, bool) or not (isinstance(code, int) or (
            isinstance(code, str) and _IDENTIFIER.fullmatch(code))):
        code = None
    if isinstance(err, Mapping):
        said = err.get("message") or err.get("type") or ""
    else:
        said = err if isinstance(err, str) else ""
    return (kind if kind != "error" else None), code, str(said)


def templates() -> str:
    """The prompt templates, as the prompt version hashes them."""
    return CLASSIFY_PROMPT + EXTRACT_PROMPT + ANTHROPIC_VERSION


def category_list(categories: Sequence[Category]) -> str:
    lines = []
    for c in categories:
        line = f"- {c.name}: {c.description}".rstrip(": ")
        if c.examples:
            line += "\n  examples: " + " | ".join(c.examples[:5])
        lines.append(line)
    return "\n".join(lines)


def field_list(fields: Sequence[FieldSpec]) -> str:
    lines = []
    for f in fields:
        line = f"- {f.name} ({f.type}{', required' if f.required else ''})"
        if f.description:
            line += f": {f.description}"
        if f.labels:
            line += f" (may be called: {', '.join(f.labels)})"
        if f.choices:
            line += f" one of: {', '.join(f.choices)}"
        lines.append(line)
    return "\n".join(lines)


@dataclass
class _Reply:
    answer: Any  # the parsed structured answer (or what could be read of it)
    message: Any  # what to put back into the conversation as the assistant's turn
    usage: dict[str, Any]
    model: str


@dataclass
class ChatProvider:
    """What both wire formats share: the conversation, the retry on a bad answer, usage,
    and the calls made (:attr:`calls`, audit events for the step)."""

    ctx: ProviderContext
    kind: str = ""
    calls: list[dict[str, Any]] = field(default_factory=list)
    _asks: int = 0

    @property
    def name(self) -> str:
        return self.kind

    # ---- tasks ------------------------------------------------------------------------
    def classify(self, text: str, categories: Sequence[Category]) -> Classification:
        schema = classification_schema(categories)
        system = CLASSIFY_PROMPT + category_list(categories)
        answer, usage = self._structured(system, text, schema, "classification",
                                         lambda a: check_classification(a, categories))
        confidence = round(float(answer["confidence"]), 4)
        return Classification(str(answer["category"]), confidence,
                              ((str(answer["category"]), confidence),),
                              (str(answer["rationale"]),), usage)

    def extract(self, text: str, fields: Sequence[FieldSpec],
                patterns: Mapping[str, str]) -> Extraction:
        resolved = [_with_pattern(f, patterns) for f in fields]
        schema = extraction_schema(resolved)
        system = EXTRACT_PROMPT + field_list(resolved)
        answer, usage = self._structured(system, text, schema, "extraction",
                                         lambda a: check_extraction(a, resolved))
        found: dict[str, Found] = {}
        for f in resolved:
            entry = answer["fields"].get(f.name)
            value = entry.get("value") if isinstance(entry, Mapping) else entry
            if value is None:
                continue
            source = entry.get("source") if isinstance(entry, Mapping) else None
            if isinstance(source, str) and source:
                start = text.find(source)
            else:  # no source: the value itself, where it stands as a whole token only
                source = str(value)
                start = token_at(text, source)
            found[f.name] = Found(normal_value(f, value), source, start, f"{self.kind} model")
        wanted = [f for f in resolved if f.required] or list(resolved)
        confidence = sum(f.name in found for f in wanted) / len(wanted) if wanted else 1.0
        return Extraction(found, round(confidence, 4), usage)

    # ---- the conversation ---------------------------------------------------------------
    def _structured(self, system: str, text: str, schema: dict[str, Any], title: str,
                    check: Any) -> tuple[Any, Usage]:
        messages: list[dict[str, Any]] = [{"role": "user", "content": text}]
        replies: list[_Reply] = []

        def ask(correction: str | None) -> Any:
            if correction is not None:
                messages.extend(self._correction(replies[-1], correction))
            reply = self._ask(system, messages, schema, title)
            replies.append(reply)
            return reply.answer

        answer, asks = structured(ask, check)
        tokens_in = _total(r.usage.get("input_tokens") for r in replies)
        tokens_out = _total(r.usage.get("output_tokens") for r in replies)
        cost = _total(r.usage.get("cost") for r in replies)
        return answer, Usage(replies[-1].model, tokens_in, tokens_out,
                             None if cost is None else float(cost), asks)

    def _ask(self, system: str, messages: list[dict[str, Any]], schema: dict[str, Any],
             title: str) -> _Reply:
        raise NotImplementedError

    def _correction(self, reply: _Reply, correction: str) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _post(self, path: str, body: dict[str, Any], headers: Mapping[str, str] | None = None
              ) -> HttpResponse:
        services = self.ctx.services
        if services is None:
            raise StepFailure(f"ai provider {self.kind}: this process has no connections "
                              "configured", retryable=False)
        if not self.ctx.connection:
            raise StepFailure(f"ai provider {self.kind} needs a connection (the step's "
                              "connection: or [ai] connection in baton.toml)", retryable=False)
        conn = services.connection(self.ctx.connection)
        if conn.type != "http":
            raise StepFailure(f"ai provider {self.kind}: connection {conn.name!r} is of type "
                              f"{conn.type}, not http", retryable=False)
        self._asks += 1
        request = HttpRequest("POST", path, f"{self.ctx.call_key}:ask{self._asks}",
                              headers=dict(headers or {}), body=body)
        try:
            response: HttpResponse = services.http.call(conn, request)
        except CallFailed as exc:
            self.calls.append({"type": CALL_EVENT, **exc.summary.to_json()})
            raise
        self.calls.append({"type": CALL_EVENT, **response.summary.to_json()})
        if not 200 <= response.status < 300:
            from baton.steps.callout import retry_after

            retryable = response.status in (408, 409, 429) or response.status >= 500
            raise ProviderError(self.kind, response, retryable=retryable,
                                retry_after=retry_after(response))
        if not isinstance(response.body, Mapping):
            raise StepFailure(f"ai provider {self.kind}: {response.summary.url} answered "
                              "something that is not a JSON object", retryable=True)
        return response

    def _model(self) -> str:
        """The model to ask (first: is there a connection to ask it over?)."""
        if not self.ctx.connection:
            raise StepFailure(f"ai provider {self.kind} needs a connection (the step's "
                              "connection: or [ai] connection in baton.toml)", retryable=False)
        if not self.ctx.model:
            raise StepFailure(f"ai provider {self.kind} needs a model (the step's model: or "
                              "[ai] model in baton.toml)", retryable=False)
        return self.ctx.model


class OpenAIProvider(ChatProvider):
    """``POST {base_url}/chat/completions`` with a ``json_schema`` response format."""

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx, "openai")

    def _ask(self, system: str, messages: list[dict[str, Any]], schema: dict[str, Any],
             title: str) -> _Reply:
        body = {"model": self._model(), "temperature": 0,
                "messages": [{"role": "system", "content": system}, *messages],
                "response_format": {"type": "json_schema", "json_schema": {
                    "name": title, "schema": schema, "strict": False}}}
        data = self._post("chat/completions", body).body
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            raise StepFailure("ai provider openai: the answer has no choices[0].message",
                              retryable=True) from None
        content = message.get("content") if isinstance(message, Mapping) else None
        finish = data["choices"][0].get("finish_reason") \
            if isinstance(data["choices"][0], Mapping) else None
        refusal = message.get("refusal") if isinstance(message, Mapping) else None
        if refusal:
            raise ModelStopped(self.kind, "refusal", str(refusal))
        if finish in STOPPED:
            raise ModelStopped(self.kind, str(finish), content if isinstance(content, str)
                               else None)
        usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
        return _Reply(_json_or_text(content, message), {"role": "assistant",
                                                        "content": content or ""},
                      {"input_tokens": usage.get("prompt_tokens"),
                       "output_tokens": usage.get("completion_tokens"),
                       "cost": usage.get("cost")},
                      str(data.get("model") or body["model"]))

    def _correction(self, reply: _Reply, correction: str) -> list[dict[str, Any]]:
        return [reply.message, {"role": "user", "content": correction}]


class AnthropicProvider(ChatProvider):
    """``POST /v1/messages`` with a forced tool call whose input schema is the answer's."""

    def __init__(self, ctx: ProviderContext) -> None:
        super().__init__(ctx, "anthropic")

    def _ask(self, system: str, messages: list[dict[str, Any]], schema: dict[str, Any],
             title: str) -> _Reply:
        body = {"model": self._model(), "max_tokens": MAX_TOKENS, "temperature": 0,
                "system": system, "messages": messages,
                "tools": [{"name": TOOL, "description": f"Give the {title}.",
                           "input_schema": schema}],
                "tool_choice": {"type": "tool", "name": TOOL}}
        data = self._post("v1/messages", body, {"anthropic-version": ANTHROPIC_VERSION}).body
        blocks = data.get("content")
        if not isinstance(blocks, list):
            raise StepFailure("ai provider anthropic: the answer has no content",
                              retryable=True)
        if data.get("stop_reason") in STOPPED:
            said = " ".join(str(b.get("text", "")) for b in blocks
                            if isinstance(b, Mapping) and b.get("type") == "text")
            raise ModelStopped(self.kind, str(data["stop_reason"]), said)
        answer: Any = None
        for block in blocks:
            if isinstance(block, Mapping) and block.get("type") == "tool_use":
                answer = block.get("input")
                break
        else:
            texts = [b.get("text", "") for b in blocks if isinstance(b, Mapping)
                     and b.get("type") == "text"]
            answer = _json_or_text("".join(texts), None)
        usage = data.get("usage") if isinstance(data.get("usage"), Mapping) else {}
        return _Reply(answer, {"role": "assistant", "content": blocks},
                      {"input_tokens": usage.get("input_tokens"),
                       "output_tokens": usage.get("output_tokens"), "cost": usage.get("cost")},
                      str(data.get("model") or body["model"]))

    def _correction(self, reply: _Reply, correction: str) -> list[dict[str, Any]]:
        uses = [b for b in reply.message["content"] if isinstance(b, Mapping)
                and b.get("type") == "tool_use"]
        if uses:  # a tool use must be answered by its result
            return [reply.message, {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": uses[0].get("id", ""),
                 "is_error": True, "content": correction}]}]
        return [reply.message, {"role": "user", "content": correction}]


_BEFORE = r"(?<![\w.,+/-])"  # (not inside a word, a number, a date: "2024-01-05")
_AFTER = r"(?!\w|[.,/-]\d)"  # ("12" is not in "123", "12.5" nor "12/05")


def token_at(text: str, value: str) -> int:
    """Where ``value`` stands in ``text`` as a whole token, or -1: a value a model gave
    without its source is located only where it is plainly written, never inside another
    word or number (``-0`` is not in ``2024-01-05``, ``12`` not in ``123`` nor ``12.5``)."""
    if not value.strip():
        return -1
    m = re.search(_BEFORE + re.escape(value) + _AFTER, text)
    return m.start() if m else -1


def _with_pattern(f: FieldSpec, patterns: Mapping[str, str]) -> FieldSpec:
    """A field whose ``pattern`` names one of the step's ``patterns``: that regex (the
    model's value is checked against it); a field named like a pattern: that one too."""
    from dataclasses import replace

    if f.pattern and f.pattern in patterns:
        return replace(f, pattern=patterns[f.pattern])
    if f.pattern is None and f.name in patterns:
        return replace(f, pattern=patterns[f.name])
    return f


def _json_or_text(content: Any, message: Any) -> Any:
    """The JSON in a model's text (``json`` fences allowed), else the text itself (which
    then fails the schema check with a message saying what came)."""
    if not isinstance(content, str):  # (a refusal is ModelStopped before this)
        return content
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[4:] if text.lower().startswith("json") else text
    try:
        return json.loads(text)
    except ValueError:
        return content




def _total(values: Any) -> Any:
    got = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return sum(got) if got else None
