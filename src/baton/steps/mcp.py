"""``type: mcp``: call a tool of an MCP server (a ``connection`` of type ``mcp``).

```yaml
- name: lookup
  type: mcp
  connection: erp
  tool: find_account
  arguments: {domain: '=record.domain'}           # literals or =expressions, nested too
  output: {account: '=result.structured.account_id'}  # optional; result.structured / .text
  idempotency_argument: request_id   # optional: the key also as this tool argument
```
The call is made in a worker job, outside any transaction (at least once, like a flow).
Without ``output:`` the tool's structured result is the step's output (a mapping as it is;
anything else as ``{"result": ...}``), else its text content joined as ``{"text": ...}``.
A tool error (``isError``), a refused request or a result larger than the connection's
``max_response`` (``ResponseTooLarge``) fails the attempt without a retry (the step goes to
fallout with the call's summary); a server that cannot be reached, died or timed out fails
it retryably (the step's ``retry`` policy applies). The output (what the step writes into
the run's data) may take at most ``max_output`` bytes as JSON (default: the connection's
``max_response``): an ``output:`` that maps more fails the step (``OutputTooLarge``, not
retried). Every call is audited on the run as ``mcp_called``: connection, tool, argument
summary, idempotency key, duration and outcome.

Every call carries an idempotency key derived from run, step and iteration (as a callout's:
the same on every attempt of the step's iteration, after a worker crash too; a rollback a
canceled plan's compensation run takes over sends the key the plan's run sent), in the
request's ``_meta`` (``io.baton/idempotency-key``), over ``transport: http`` also as the
connection's ``idempotency_header``, and, with ``idempotency_argument``, as that argument
of the tool (most servers see only arguments), so the server can act once.

``nothing_to_undo: '=CONDITION'`` (a condition over ``result``: ``result.structured``,
``result.text``, ``result.is_error``, and what the step's other expressions read) names the
tool's "nothing to undo" answers, for a plan ``rollback``: a result it holds for (a tool
error too: a "not found" ``isError``) completes the step, its output made from the result
as any other's. A rollback told that its step's effect is uncertain
(``input.plan.undo.uncertain``: baton.plans.compensation) takes that answer only on the
last try its ``retry`` allows, the timeline saying so (``rollback_nothing_to_undo``); before,
it is a retryable failure, "nothing to undo yet" — a callout rollback's ``success``
statuses outside 2xx, the same rule (:func:`baton.steps.callout.nothing_yet`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from baton.connections.calls import check_output, output_limit
from baton.definitions.checks import (
    Checker,
    Scope,
    check_expression,
    check_input,
    describe,
    expect_identifier,
    expect_mapping,
    expect_str,
    item,
    join,
    suggest,
    with_own_input,
)
from baton.definitions.connection import check_size
from baton.errors import ExpressionError, StepFailure
from baton.expressions import Missing, evaluate, evaluate_condition, is_expression
from baton.steps.base import JobStepType, StepOutput, StepWork
from baton.steps.callout import CARRIED_KEY, nothing_to_undo_event, nothing_yet, step_key

AUDIT_EVENT = "mcp_called"
SUMMARY_CHARS = 1024  # of arguments and results in audit events and fallout details
SENSITIVE = ("password", "secret", "token", "api_key", "apikey", "authorization")
_OUTPUT_SCOPE = frozenset({"result"})
NOTHING_TO_UNDO = "nothing_to_undo"  # the key naming the tool's "nothing to undo" answers


class Mcp(JobStepType):
    name = "mcp"
    keys = ("connection", "tool", "arguments", "max_output", "timeout", "idempotency_argument",
            "input", NOTHING_TO_UNDO, CARRIED_KEY)
    job_kind = "mcp"  # the jobs table's kind for these attempts (a durable format)

    # ---- validation -------------------------------------------------------------------
    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        run_scope, scope = scope, with_own_input(scope, step.get("input"))
        if "connection" not in step:
            ck.add(join(path, "connection"),
                   "required key 'connection' is missing (the mcp connection to call)")
        else:
            _check_connection(ck, join(path, "connection"), step["connection"], scope)
        if "tool" not in step:
            ck.add(join(path, "tool"), "required key 'tool' is missing (the tool to call)")
        else:
            expect_str(ck, join(path, "tool"), step["tool"])
        args = None
        if "arguments" in step:
            args = expect_mapping(ck, join(path, "arguments"), step["arguments"])
            for key, value in (args or {}).items():
                _check_value(ck, join(path, f"arguments.{key}"), value, scope)
        if "idempotency_argument" in step:
            name = expect_str(ck, join(path, "idempotency_argument"), step["idempotency_argument"])
            if name is not None and name in (args or {}):
                ck.add(join(path, f"arguments.{name}"),
                       f"'{name}' is the step's idempotency_argument: Baton sets it to the "
                       "call's idempotency key (RUN_ID:STEP:ITERATION); remove it from "
                       "arguments")
        if CARRIED_KEY in step:
            ck.add(join(path, CARRIED_KEY), "an mcp step's idempotency key is "
                   "RUN_ID:STEP:ITERATION, set by Baton (a compensation run keeps the one a "
                   "canceled plan's rollback sent); a definition cannot set it (to send it "
                   "as a tool argument: idempotency_argument)")
        if "max_output" in step:
            check_size(ck, join(path, "max_output"), step["max_output"])
        if "input" in step:
            check_input(ck, join(path, "input"), step["input"], run_scope)
        with_result = dataclasses.replace(scope, extra_roots=scope.extra_roots | _OUTPUT_SCOPE)
        if "output" in step:
            out = expect_mapping(ck, join(path, "output"), step["output"])
            for key, value in (out or {}).items():
                _check_value(ck, join(path, f"output.{key}"), value, with_result)
        if NOTHING_TO_UNDO in step:
            cond = step[NOTHING_TO_UNDO]
            if isinstance(cond, str) and is_expression(cond):
                check_expression(ck, join(path, NOTHING_TO_UNDO), cond, with_result)
            else:
                ck.add(join(path, NOTHING_TO_UNDO),
                       "expected an '=condition' over the tool's result that holds for its "
                       "\"nothing to undo\" answers, e.g. '=result.is_error && "
                       f"result.text.contains(\"not found\")', got {describe(cond)}")

    # ---- worker -------------------------------------------------------------------------
    def run_job(self, work: StepWork) -> StepOutput:
        return self.begin_job(work)()

    def begin_job(self, work: StepWork) -> Callable[[], StepOutput]:
        """Start the tool call (the worker begins every job of its batch before it finishes
        the first: a batch's calls are in flight together); the returned function waits
        for the answer and makes the step's output."""
        from baton.connections import mcp

        opts = work.step.options
        conn_name, tool = str(opts["connection"]), str(opts["tool"])
        data = _expression_data(work)
        try:
            arguments = _arguments(opts.get("arguments") or {}, data)
        except ExpressionError as exc:
            raise StepFailure(f"{exc.source}: {exc.reason}", retryable=False) from None
        key = step_key(work)
        key_argument = opts.get("idempotency_argument")
        if isinstance(key_argument, str) and key_argument:
            arguments[key_argument] = key
        services = work.services
        if services is None:
            raise StepFailure("this worker has no connections to call", retryable=False)
        conn = services.connection(conn_name)
        endpoint = mcp.endpoint(conn, services.secret, services.project_dir)
        limit = output_limit(opts, conn.max_response)
        timeout_ms = work.payload.get("timeout_ms")
        call = {"step": work.step.name, "iteration": work.iteration, "attempt": work.attempt,
                "connection": conn_name, "tool": tool,
                "arguments": summary(arguments, endpoint.scrub), "idempotency_key": key}
        started = time.perf_counter()
        nothing = opts.get(NOTHING_TO_UNDO)
        pending = mcp.shared_sessions().submit_tool(
            endpoint, tool, arguments, timeout_ms / 1000 if timeout_ms else None, key)

        def finish() -> StepOutput:
            try:
                result = pending()
            except mcp.McpToolError as exc:
                if nothing is None or not _holds(nothing, exc.result, data, call, exc):
                    _failed(exc, call, started)
                    raise
                result = exc.result  # a tool error that says "nothing to undo": an answer
            except mcp.McpError as exc:
                _failed(exc, call, started)
                raise
            done = call | {"outcome": "tool_error" if result.is_error else "ok",
                           "duration_ms": result.duration_ms,
                           "result": summary(result.structured if result.structured is not None
                                             else result.text, endpoint.scrub)}
            held = nothing is not None and (result.is_error or _holds(nothing, result, data,
                                                                      done))
            if held:
                done[NOTHING_TO_UNDO] = True
            audit: tuple[Mapping[str, Any], ...] = ({"type": AUDIT_EVENT, **done},)
            if held:
                audit = _nothing_yet(work, tool, done, audit)
            try:
                output = _output(opts.get("output"), result, data)
                if limit is not None:
                    check_output(output, *limit)
            except StepFailure as exc:  # output: could not be mapped, or maps too much
                exc.audit, exc.details = audit, {**(exc.details or {}), "call": done}
                raise
            return StepOutput(output, audit=audit)

        return finish


def _failed(exc: Any, call: dict[str, Any], started: float) -> None:
    """The summary and audit event of a call that failed, kept with ``exc`` (an McpError):
    its step's error (fallout) shows the call, the audit log has it."""
    from baton.connections import mcp

    outcome = ("tool_error" if isinstance(exc, mcp.McpToolError) else
               "too_large" if isinstance(exc, mcp.ResponseTooLarge) else
               "refused" if isinstance(exc, mcp.McpProtocolError) else
               "transport_error" if isinstance(exc, mcp.McpTransportError)
               else "error")
    took = exc.duration_ms if exc.duration_ms is not None else mcp.elapsed_ms(started)
    failed = call | {"outcome": outcome, "duration_ms": took,
                     "error": str(exc)[:SUMMARY_CHARS]}
    exc.details = {"call": failed}  # kept with the step's error (fallout)
    exc.audit = ({"type": AUDIT_EVENT, **failed},)  # committed with the failure


def _holds(condition: Any, result: Any, data: Mapping[str, Any], call: dict[str, Any],
           raised: BaseException | None = None) -> bool:
    """Whether the step's ``nothing_to_undo`` holds for the tool's ``result``. A condition
    that cannot be evaluated fails the step (not retried: it would fail the same way)."""
    try:
        return evaluate_condition(condition, {**data, "result": _result_view(result)})
    except ExpressionError as exc:
        failure = StepFailure(f"{NOTHING_TO_UNDO}: {exc.source}: {exc.reason}", retryable=False)
        answered = {"outcome": "tool_error" if result.is_error else "ok",
                    "duration_ms": result.duration_ms, **call}
        failure.details = {"call": answered}
        failure.audit = ({"type": AUDIT_EVENT, **answered},)
        raise failure from raised


def _nothing_yet(work: StepWork, tool: str, done: dict[str, Any],
                 audit: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
    """The tool answered "nothing to undo" (its ``nothing_to_undo`` holds): as a callout's
    status outside 2xx that its ``success`` takes (:func:`baton.steps.callout.nothing_yet`),
    a rollback told its step's effect is uncertain tries again, until its last try; any
    other step takes the answer. Returns the audit to keep."""
    found = nothing_yet(work)
    if found is None:
        return audit
    undo, tries, allowed = found
    if work.attempt is not None and tries < allowed:
        failure = StepFailure(
            f"MCP tool {tool!r} of connection {done['connection']!r} answered nothing to "
            f"undo yet, but {undo.get('step')}'s call may still be processed "
            f"(plan.undo.uncertain): tried again (try {tries} of {allowed})", retryable=True)
        failure.audit = audit
        failure.details = {"call": done, NOTHING_TO_UNDO: True}
        raise failure
    return (*audit, nothing_to_undo_event(work, undo, tries, tool=tool))


def _check_connection(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    name = expect_identifier(ck, path, value, "connection name")
    if name is None or scope.connections is None:
        return
    ctype = scope.connections.get(name)
    if ctype is None:
        mcps = [n for n, t in scope.connections.items() if t == "mcp"]
        ck.add(path, f"unknown connection '{name}'{suggest(name, mcps)}"
                     + ("" if mcps else " (no connection of type mcp is defined or deployed)"))
    elif ctype != "mcp":
        ck.add(path, f"connection '{name}' is of type {ctype}; an mcp step calls a connection "
                     "of type mcp")


def _check_value(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    """A literal (any YAML value) or an ``=expression``, at any depth of mappings/lists."""
    if isinstance(value, str):
        if is_expression(value):
            check_expression(ck, path, value, scope)
    elif isinstance(value, dict):
        for key, v in value.items():
            _check_value(ck, join(path, str(key)), v, scope)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_value(ck, item(path, i), v, scope)
    elif value is not None and not isinstance(value, bool | int | float):
        ck.add(path, f"expected a literal or an =expression, got {describe(value)}")


def _expression_data(work: StepWork) -> dict[str, Any]:
    """What the step's expressions see: the run's record, variables, input and steps."""
    steps: dict[str, Any] = {}
    for name, sr in work.run.steps.items():
        view: dict[str, Any] = {"status": sr.status.value, "iteration": sr.iteration}
        if sr.output is not None:
            view["output"] = sr.output
        if sr.error is not None:
            view["error"] = sr.error
        steps[name] = view
    inputs = work.run.input
    own = work.payload.get("input")
    if own:  # the step's own input over the run's, as a flow's ctx.input (a plan step's
        # ``plan``; a plan rollback's ``plan.undo``: baton.plans.compensation)
        inputs = {**inputs, **own}
    return {"record": dict(work.record or {}), "vars": work.run.vars,
            "input": inputs, "steps": steps}


def _arguments(spec: Any, data: Mapping[str, Any]) -> Any:
    """The tool's arguments. As a step's ``input:`` (and a callout's request), an
    expression reading a value not there yet (an optional input not given) gives null: an
    argument that is null that way is left out (a tool's schema seldom takes null for an
    optional argument), a value nested in one is null."""
    if isinstance(spec, Mapping):
        out = {str(k): _resolve(v, data, f"arguments.{k}", missing=True)
               for k, v in spec.items()}
        return {k: v for k, v in out.items() if v is not _NOT_THERE}
    value = _resolve(spec, data, "arguments", missing=True)
    return {} if value is _NOT_THERE else value


_NOT_THERE: Any = object()  # an argument whose expression read a value not there yet


def _resolve(value: Any, data: Mapping[str, Any], path: str, *, missing: bool = False,
             top: bool = True) -> Any:
    """``value`` with its ``=expressions`` evaluated; ``missing``: one reading a value not
    there yet gives None (:data:`_NOT_THERE` for ``value`` itself, when ``top``)."""
    if isinstance(value, str) and is_expression(value):
        try:
            return evaluate(value, data)
        except ExpressionError as exc:
            if missing and isinstance(exc, Missing):
                return _NOT_THERE if top else None
            raise ExpressionError(path, f"{exc.reason} (in {value})") from None
    if isinstance(value, Mapping):
        return {str(k): _resolve(v, data, f"{path}.{k}", missing=missing, top=False)
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_resolve(v, data, f"{path}[{i}]", missing=missing, top=False)
                for i, v in enumerate(value)]
    return value


def _result_view(result: Any) -> dict[str, Any]:
    """``result`` in the step's ``output:`` and ``nothing_to_undo`` expressions."""
    return {"structured": result.structured if result.structured is not None else {},
            "text": result.text, "is_error": result.is_error}


def _output(spec: Any, result: Any, data: Mapping[str, Any]) -> dict[str, Any]:
    view = _result_view(result)
    if isinstance(spec, Mapping) and spec and all(not isinstance(v, Mapping) or "type" not in v
                                                   for v in spec.values()):
        try:
            return {str(k): _resolve(v, {**data, "result": view}, f"output.{k}")
                    for k, v in spec.items()}
        except ExpressionError as exc:
            raise StepFailure(f"{exc.source}: {exc.reason}", retryable=False) from None
    if isinstance(result.structured, dict):
        return dict(result.structured)
    if result.structured is not None:
        return {"result": result.structured}
    return {"text": result.text}


def summary(value: Any, scrub: Callable[[str], str] | None = None) -> Any:
    """A short, redacted form of arguments or a result for audit events: values under
    keys that name credentials are ``***``, and the whole is cut to about 1 KB."""
    def redact(v: Any) -> Any:
        if isinstance(v, Mapping):
            return {str(k): "***" if any(s in str(k).lower() for s in SENSITIVE) else redact(x)
                    for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [redact(x) for x in v]
        if isinstance(v, str) and scrub is not None:
            return scrub(v)
        return v

    out = redact(value)
    text = json.dumps(out, default=str, ensure_ascii=False)
    if len(text) <= SUMMARY_CHARS:
        return out
    return text[:SUMMARY_CHARS] + "…"


MCP = Mcp()

__all__ = ["MCP", "Mcp", "summary"]
