"""``type: callout``: call an external system over an HTTP connection (DESIGN §2.6).

The request (``method``, ``path``, ``query``, ``headers``, ``body``: literals or
``=expressions`` over ``record``, ``vars``, ``input``, ``steps`` and ``callback``) is made by
the worker outside any transaction, with the connection's auth and an idempotency key
derived from run, step and iteration: the same on every retry and after a crash, so the
other system can make the call effective once (a rollback a canceled plan's compensation
run takes over sends the key the plan's run sent: :data:`CARRIED_KEY`). The response is
classified:

- a status in ``success`` (default: any 2xx) completes the step; ``output:`` maps
  ``response.status``, ``response.body``, ``response.headers`` into its output (default:
  ``{status, body}``);
- no response (refused, timeout), 5xx and 429 are retryable per the step's ``retry``, the
  retry not before the response's ``Retry-After``;
- any other status fails the step at once, unless listed in ``retry_on``;
- a plan rollback told that its step's effect is uncertain (``input.plan.undo.uncertain``:
  baton.plans.compensation) takes a status of its ``success`` outside 2xx ("nothing to
  undo") only on the last try its ``retry`` allows: before, that answer is retried
  (:func:`_nothing_yet`);
- a response body larger than the connection's ``max_response`` (default 5 MB) is not read
  further. A 2xx answer (or any the step accepts) then fails the step at once
  (``ResponseTooLarge``, not retried); any other is classified by its status as above, its
  body cut to its first bytes (it is only kept for the record: a 503 is still retried);
- the output (what the step writes into the run's data: ``output:``'s mapping, kept in the
  run's state and in its ``step_completed`` event) may take at most ``max_output`` bytes as
  JSON (default: the connection's ``max_response``), so a mapping that copies a large
  answer several times fails the step (``OutputTooLarge``, not retried) rather than
  growing the run's row.

A failed attempt's error carries the call's summary (``error.call``), so fallout shows what
was sent and answered; every call is an audit event ``callout`` (secrets redacted).

With ``wait: callback`` the step, once its request succeeded, waits durably for the other
system to ``POST /api/callbacks/{token}`` (``=callback.url`` in the request); the callback's
body is ``callback.body`` in ``output:``. ``timeout:`` bounds that wait (then: fallout).
"""

from __future__ import annotations

import email.utils
import operator
import weakref
from collections import ChainMap
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from baton.clock import iso
from baton.connections.calls import (
    CallFailed,
    HttpRequest,
    HttpResponse,
    OutputTooLarge,
    ResponseTooLarge,
    check_output,
    output_limit,
    too_large_message,
)
from baton.definitions.checks import (
    Checker,
    Scope,
    check_expression,
    check_input,
    describe,
    expect_list,
    expect_mapping,
    expect_str,
    join,
    suggest,
    unknown,
    with_own_input,
)
from baton.definitions.connection import check_size
from baton.definitions.credentials import literal_credential
from baton.definitions.model import StepDefinition
from baton.engine.events import SignalReceived, StartTimer, StepCompleted, TimerFired
from baton.engine.policy import RetryPolicy, duration
from baton.engine.state import Run, StepRun
from baton.engine.status import STEP_RUNNING
from baton.errors import ExpressionError, StepFailure
from baton.expressions import Missing, evaluate, is_expression
from baton.records.fields import typed_values
from baton.rows import CALL_EVENT
from baton.steps.base import (
    DecideContext,
    JobStepType,
    StepOutput,
    StepWork,
    expression_error,
)
from baton.steps.flowrun import StepSnapshot

METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
WAITS = ("callback",)
TIMER = "callback"  # the kind of the timer bounding a callback wait
SIGNAL_PREFIX = "callback:"  # the signal a matched callback is delivered as (not an identifier)
WAITING = "waiting_for_callback"  # key of the output a step waiting for its callback keeps
OUTPUT_LIMIT = "max_output"  # ...and the bound of its output once the callback comes (bytes)
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# The option holding the key a callout sends instead of its own: set by Baton alone, on a
# rollback a canceled plan's compensation run takes over from the plan's run, which began
# it (baton.plans.compensation.carry_key); a definition cannot set it.
CARRIED_KEY = "idempotency_key"
MAX_KEY = 1000  # characters (a run id, a plan step's name and an iteration fit in far fewer)


def callback_signal(step: str, iteration: int) -> str:
    """The name of the signal a callback for ``step``'s ``iteration`` is delivered as."""
    return f"{SIGNAL_PREFIX}{step}:{iteration}"


def idempotency_key(run_id: str, step: str, iteration: int) -> str:
    """The key of every attempt of one step iteration: stable across retries and crashes."""
    return f"{run_id}:{step}:{iteration}"


def step_key(work: StepWork) -> str:
    """The key one attempt of ``work``'s step sends: its own (:func:`idempotency_key`),
    or the one its compensation carried over from the canceled plan's run."""
    carried = work.step.options.get(CARRIED_KEY)
    if carried is None:
        return idempotency_key(work.run.id, work.step.name, work.iteration)
    if not isinstance(carried, str) or not carried or len(carried) > MAX_KEY \
            or not carried.isprintable() or not carried.isascii():
        what = repr(carried[:60]) if isinstance(carried, str) else describe(carried)
        raise StepFailure(f"step {work.step.name!r}: its {CARRIED_KEY} (the key its plan's "
                          f"run sent) must be printable ASCII text of 1 to {MAX_KEY} "
                          f"characters, not {what}", retryable=False)
    return carried


class CalloutFailed(StepFailure):
    """A call that was answered with a status the step does not accept; ``details`` go
    into the step's error (the call's summary), ``audit`` into the audit log."""

    def __init__(self, message: str, *, retryable: bool, retry_after: float | None,
                 audit: tuple[Mapping[str, Any], ...], details: dict[str, Any]) -> None:
        super().__init__(message, retryable=retryable, retry_after=retry_after)
        self.audit = audit
        self.details = details


class Callout(JobStepType):
    name = "callout"
    keys = ("connection", "method", "path", "query", "headers", "body", "success", "retry_on",
            "wait", "max_output", "timeout", "input", CARRIED_KEY)
    job_kind = "callout"

    # ---- validation ----------------------------------------------------------------------
    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        self._check_connection(ck, path, step, scope)
        run_scope, scope = scope, with_own_input(scope, step.get("input"))
        if "method" in step:
            method = expect_str(ck, join(path, "method"), step["method"])
            if method is not None and is_expression(method):
                check_expression(ck, join(path, "method"), method, scope)
            elif method is not None and method.upper() not in METHODS:
                ck.add(join(path, "method"), unknown("HTTP method", method, METHODS))
        waits = step.get("wait") == "callback"
        if "wait" in step and step["wait"] not in WAITS:
            ck.add(join(path, "wait"), unknown("wait", step["wait"], WAITS))
        request = _with_roots(scope, {"callback"} if waits else set())
        if "path" in step:
            _check_value(ck, join(path, "path"), step["path"], request, scalar=True)
        for key in ("query", "headers"):
            if key in step:
                _check_pairs(ck, join(path, key), step[key], request, headers=key == "headers")
        if "body" in step:
            _check_value(ck, join(path, "body"), step["body"], request, scalar=False)
        if "output" in step:
            roots = {"response", "callback"} if waits else {"response"}
            out = step["output"]
            if is_expression(out):
                check_expression(ck, join(path, "output"), out, _with_roots(scope, roots))
            else:
                for name, value in (expect_mapping(ck, join(path, "output"), out) or {}).items():
                    _check_value(ck, join(join(path, "output"), name), value,
                                 _with_roots(scope, roots), scalar=False)
        if "success" in step:
            _check_codes(ck, join(path, "success"), step["success"], ranges=True)
        if "retry_on" in step:
            _check_codes(ck, join(path, "retry_on"), step["retry_on"], ranges=False)
        if "max_output" in step:
            check_size(ck, join(path, "max_output"), step["max_output"])
        if "input" in step:
            check_input(ck, join(path, "input"), step["input"], run_scope)
        if CARRIED_KEY in step:
            ck.add(join(path, CARRIED_KEY), "a callout's idempotency key is RUN_ID:STEP:ITERATION, "
                   "set by Baton (a compensation run keeps the one a canceled plan's rollback "
                   "sent); a definition cannot set it")
        if "timeout" in step and not waits:
            ck.add(join(path, "timeout"), "timeout on a callout bounds its wait: callback (the "
                                          "call's own timeouts are the connection's timeout:)")

    @staticmethod
    def _check_connection(ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        where = join(path, "connection")
        if "connection" not in step:
            ck.add(where, "required key 'connection' is missing (a callout calls a connection)")
            return
        name = expect_str(ck, where, step["connection"])
        if name is None:
            return
        if is_expression(name):
            ck.add(where, "connection names a deployed connection; it cannot be an expression")
        elif scope.connections is not None and name not in scope.connections:
            ck.add(where, f"unknown connection '{name}'{suggest(name, scope.connections)}")
        elif scope.connections is not None and scope.connections[name] != "http":
            ck.add(where, f"connection '{name}' is of type {scope.connections[name]}; a callout "
                          "needs an http connection")

    # ---- decide() ------------------------------------------------------------------------
    def on_completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                     ev: StepCompleted) -> bool:
        """The request succeeded: with ``wait: callback`` the step keeps running, holding the
        response, until its callback comes (or its ``timeout`` passes)."""
        if step.options.get("wait") != "callback" or ev.attempt is None \
                or sr.status is not STEP_RUNNING:
            return False  # (an operator completing it from fallout gives the output)
        if waiting(sr):
            return True  # the same attempt's result again (a job run twice): it waits already
        sr.output = {WAITING: True, "response": ev.output.get("response")}
        if ev.output.get(OUTPUT_LIMIT):
            sr.output[OUTPUT_LIMIT] = ev.output[OUTPUT_LIMIT]
        d.audit("callback_waiting", step=sr.name, stage=sr.stage, iteration=sr.iteration)
        if "timeout" in step.options:
            at = iso(d.now_dt + duration(step.options["timeout"]))
            d.commands.append(StartTimer(TIMER, sr.name, sr.iteration, at,
                                         {"started_at": sr.started_at}))
        return True

    def on_signal(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  ev: SignalReceived) -> bool:
        if ev.name != callback_signal(sr.name, sr.iteration) or not waiting(sr):
            return False
        held = sr.output or {}
        try:
            output = map_output(step, d.scope(), held.get("response") or {},
                                {"body": ev.data})
        except ExpressionError as exc:
            d.fail_step(sr, step, expression_error("output", exc))
            return True
        # (a step that began waiting before its bound was kept has none, unless it sets one)
        limit = output_limit(step.options, held.get(OUTPUT_LIMIT))
        if limit is not None:
            try:
                check_output(output, *limit)
            except OutputTooLarge as exc:
                d.fail_step(sr, step, {"type": type(exc).__name__, "message": str(exc),
                                       "retryable": False, **(exc.details or {})})
                return True
        d.complete_step(sr, output, ev.actor, via="callback")
        return True

    def on_timer(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: TimerFired) -> bool:
        if ev.kind != TIMER or not waiting(sr) \
                or ev.data.get("started_at", sr.started_at) != sr.started_at:
            return False
        d.firing_timer = (sr.name, sr.iteration)
        limit = step.options.get("timeout")
        d.fail_step(sr, step, {"type": "CallbackTimeout", "retryable": False,
                               "message": f"no callback came within {limit}"})
        return True

    def has_timers(self, step: StepDefinition) -> bool:
        return step.options.get("wait") == "callback" and "timeout" in step.options

    # ---- the worker's side ---------------------------------------------------------------
    def run_job(self, work: StepWork) -> StepOutput:
        return self.begin_job(work)()

    def begin_job(self, work: StepWork) -> Callable[[], StepOutput]:
        """Build the request and start it; the returned function waits for the answer."""
        services = work.services
        if services is None:
            raise StepFailure("this worker has no connections configured", retryable=False)
        opts = work.step.options
        conn = services.connection(opts["connection"])
        # The scope reads the run's steps when an expression reads them (a plan's run has
        # hundreds or thousands; a request reads one or two): nothing changes the run
        # between here and the end of _finish (the worker begins every job of a batch, then
        # finishes each, and decides only after), and the scope is frozen before that if
        # anything else still holds it (_release).
        data = request_scope(work, live=True)
        try:
            if opts.get("wait") == "callback":
                token, url = services.callback(work.run.id, work.step.name, work.iteration)
                data["callback"] = {"url": url, "token": token}
            try:
                request = build_request(opts, data, step_key(work))
            except ExpressionError as exc:
                raise StepFailure(request_error(exc), retryable=False) from None
            if "callback" in data:  # whoever reads the audit must not be able to call back
                request = replace(request, hide=(data["callback"]["token"],))
            future = services.http.submit(conn, request)
        except BaseException:
            _release(data)
            raise
        # (getattr: a stand-in for a connection, in a test, may have no bound)
        limit = output_limit(opts, getattr(conn, "max_response", None))
        return lambda: self._finish(work, future, data, limit)

    def _finish(self, work: StepWork, future: Future[HttpResponse],
                data: dict[str, Any], limit: tuple[int, str] | None) -> StepOutput:
        try:
            return self._answer(work, future, data, limit)
        finally:
            _release(data)

    def _answer(self, work: StepWork, future: Future[HttpResponse],
                data: dict[str, Any], limit: tuple[int, str] | None) -> StepOutput:
        try:
            response = future.result()
        except CallFailed as exc:
            exc.audit = (_audit(work, exc.summary.to_json()),)
            raise
        opts = work.step.options
        ok = accepted(response.status, opts.get("success"))
        cut = response.cut
        if cut is not None and ok:  # an answer the step takes must be whole
            message = too_large_message(response.summary, response.status, cut.reason)
            failed = ResponseTooLarge(message, replace(response.summary, error=message),
                                      cut.size, cut.limit)
            failed.audit = (_audit(work, failed.summary.to_json()),)
            raise failed
        summary = response.summary.to_json()
        audit: tuple[Mapping[str, Any], ...] = (_audit(work, summary),)
        if ok and response.status >= 300:  # taken, outside 2xx: a "nothing to do" answer
            audit = _nothing_yet(work, response, summary, audit)
        if not ok:
            retryable = response.status == 429 or response.status >= 500 \
                or response.status in (opts.get("retry_on") or ())
            raise CalloutFailed(
                f"{response.summary.method} {response.summary.url} answered "
                f"{response.status}" + ("" if retryable else " (not retried)")
                + ("" if cut is None else f"; its body was cut: {cut.reason}"),
                retryable=retryable, retry_after=retry_after(response), audit=audit,
                details={"call": summary})
        answer = {"status": response.status, "body": response.body,
                  "headers": dict(response.headers)}
        if opts.get("wait") == "callback":
            held = {"response": answer} if limit is None \
                else {"response": answer, OUTPUT_LIMIT: limit[0]}
            return StepOutput(held, audit=audit)
        try:
            output = map_output(work.step, data, answer, None)
            if limit is not None:
                check_output(output, *limit)
        except ExpressionError as exc:
            failure = StepFailure(f"output: {exc.source}: {exc.reason}", retryable=False)
            failure.audit, failure.details = audit, {"call": summary}
            raise failure from None
        except OutputTooLarge as exc:
            exc.audit, exc.details = audit, {**(exc.details or {}), "call": summary}
            raise
        return StepOutput(output, audit=audit)


CALLOUT = Callout()


# The event of a plan rollback that took "nothing to undo" on its last try, its step's effect
# uncertain (:func:`_nothing_yet`; an mcp rollback's ``nothing_to_undo``: baton.steps.mcp).
NOTHING_TO_UNDO = "rollback_nothing_to_undo"


def uncertain_undo(work: StepWork) -> Mapping[str, Any] | None:
    """The ``plan.undo`` of a plan rollback told that the effect of the step it undoes is
    uncertain (its input's ``plan.undo.uncertain``: the step's call in flight, timed out or
    answered 5xx, so the other system may still be processing it:
    baton.plans.compensation); None for any other step."""
    own = work.payload.get("input")
    plan = own.get("plan") if isinstance(own, Mapping) else None
    undo = plan.get("undo") if isinstance(plan, Mapping) else None
    if not isinstance(undo, Mapping) or undo.get("uncertain") is not True:
        return None
    return undo


def undo_tries(work: StepWork) -> tuple[int, int]:
    """This attempt's try in the step's retry series (1: the first) and how many tries its
    ``retry`` (its own, else its orchestration's) allows."""
    sr = work.run.steps.get(work.step.name)
    orch = work.orchestration
    policy = RetryPolicy.from_options(work.step.options.get("retry"),
                                      orch.retry if orch is not None else None)
    tries = (work.attempt or 0) - (sr.attempt_base if sr is not None else 0)
    return tries, policy.max + 1


def nothing_yet(work: StepWork) -> tuple[Mapping[str, Any], int, int] | None:
    """A plan rollback answered "nothing to undo": whether to take that answer. None: take
    it (any step not told its step's effect is uncertain). Else ``(undo, try, tries)``
    (:func:`uncertain_undo`, :func:`undo_tries`): the booking may be still to come, so
    before the last try its ``retry`` allows the answer is to be tried again (``try <
    tries``, and the attempt is the worker's: an operator's completion has none); on the
    last it is taken and :func:`nothing_to_undo_event` says so."""
    undo = uncertain_undo(work)
    if undo is None:
        return None
    tries, allowed = undo_tries(work)
    return undo, tries, allowed


def nothing_to_undo_event(work: StepWork, undo: Mapping[str, Any], tries: int,
                          **answer: Any) -> dict[str, Any]:
    """The :data:`NOTHING_TO_UNDO` audit event of a rollback that took "nothing to undo"
    on try ``tries``; ``answer``: what said so (a callout's ``status``, an mcp ``tool``)."""
    return {"type": NOTHING_TO_UNDO, "step": work.step.name, "iteration": work.iteration,
            "attempt": work.attempt, **answer, "tries": tries, "undone": undo.get("step"),
            "idempotency_key": undo.get("idempotency_key")}


def _nothing_yet(work: StepWork, response: HttpResponse, summary: dict[str, Any],
                 audit: tuple[Mapping[str, Any], ...]) -> tuple[Mapping[str, Any], ...]:
    """A callout answered with a status its ``success`` takes outside 2xx ("nothing to
    undo"). A plan rollback told that the effect of the step it undoes is uncertain
    (:func:`nothing_yet`): before the last try its ``retry`` allows, that answer is a
    retryable failure (tried again after the backoff); on the last it is taken, and an
    event (:data:`NOTHING_TO_UNDO`) says so. Any other step: the answer is taken. Returns
    the audit to keep. (A rollback told uncertain without a ``retry`` of its own is given
    one when it is made: baton.plans.compensation.UNCERTAIN_RETRY.)"""
    found = nothing_yet(work)
    if found is None:
        return audit
    undo, tries, allowed = found
    if work.attempt is not None and tries < allowed:
        raise CalloutFailed(
            f"{response.summary.method} {response.summary.url} answered {response.status}: "
            f"nothing to undo yet, but {undo.get('step')}'s call may still be processed "
            f"(plan.undo.uncertain): tried again (try {tries} of {allowed})",
            retryable=True, retry_after=retry_after(response), audit=audit,
            details={"call": summary, "nothing_to_undo": True})
    return (*audit, nothing_to_undo_event(work, undo, tries, status=response.status))


# --- helpers (pure) -----------------------------------------------------------------------------


def waiting(sr: StepRun) -> bool:
    """Is the step running, its request done, waiting for its callback?"""
    return sr.status is STEP_RUNNING and bool((sr.output or {}).get(WAITING))


def request_scope(work: StepWork, *, live: bool = False) -> dict[str, Any]:
    """What the request's expressions see: the run's snapshot, as ``decide()`` shows it.
    ``live``: its ``steps`` read the run's steps when an expression reads them, until
    :func:`_release` (the caller makes sure nothing changes the run before)."""
    run: Run = work.run
    orch = work.orchestration
    inputs = typed_values(orch.trigger.input, run.input) if orch is not None else run.input
    own = work.payload.get("input")
    if own:  # the step's own input over the run's, as a flow's ctx.input (a plan step's
        # ``plan``; a plan rollback's ``plan.undo``: baton.plans.compensation)
        inputs = {**inputs, **own}
    return {"record": dict(work.record or {}), "vars": run.vars, "input": inputs,
            "steps": _StepsSeen(run, live=live)}


def _release(data: dict[str, Any]) -> None:
    """The request is made and answered: a live ``steps`` of its scope that something still
    holds (an exception's traceback, a value an expression returned) takes its snapshot
    now, before the run moves on; otherwise it is dropped (~free: no step is read)."""
    steps = data.pop("steps", None)
    if not isinstance(steps, _StepsSeen):
        return
    kept = weakref.ref(steps)
    del steps
    left = kept()
    if left is not None:
        left.freeze()


_SEEN = operator.attrgetter("status", "iteration", "output", "error")


class _StepsSeen(StepSnapshot[dict[str, Any]]):
    """``steps`` of a request's scope: each step as it was when the scope was made (the
    run moves on while the call is made), its view made when an expression reads it (see
    :class:`~baton.steps.flowrun.StepSnapshot`). ``live``: read from the run's steps until
    :meth:`freeze` takes them all (O(steps): only when the scope outlives the call)."""

    __slots__ = ()
    _take = _SEEN

    def __getitem__(self, name: str) -> dict[str, Any]:
        status, iteration, output, error = self._read(name)
        view: dict[str, Any] = {"status": status.value, "iteration": iteration}
        if output is not None:
            view["output"] = output
        if error is not None:
            view["error"] = error
        return view


class RequestExpressionError(ExpressionError):
    """An expression of a callout's request that could not be evaluated; ``where``: the
    part of the request it is in (``method``, ``path``, ``query.n``, ``headers.X-Trace``,
    ``body.items[0].sku``)."""

    def __init__(self, where: str, exc: ExpressionError, reason: str | None = None) -> None:
        super().__init__(exc.source, exc.reason if reason is None else reason, exc.position)
        self.where = where


def request_error(exc: ExpressionError) -> str:
    """A step failure's message for an expression of the request: the part it is in, the
    expression, the reason (``query.n: input.n + 1: no matching overload...``)."""
    where = getattr(exc, "where", "")
    return f"{where}: {exc.source}: {exc.reason}" if where else f"{exc.source}: {exc.reason}"


def _at(where: str, exc: ExpressionError) -> RequestExpressionError:
    """``exc`` (raised in ``where``, a part of the request) named by its whole place: an
    error raised further in (``.sku``) keeps its own place after ``where``."""
    return RequestExpressionError(where + getattr(exc, "where", ""), exc)


# Said of a request's method or path that reads a value not there yet: unlike a query
# parameter, a header or a body field, they cannot leave it out (a request to another URL
# than the one written, or with another method, would act on something else).
_NEEDED = "it reads a value that is not there yet, and the request's {part} cannot do without it"


def build_request(opts: Mapping[str, Any], data: Mapping[str, Any], key: str) -> HttpRequest:
    """The request a step's options give over ``data``. As a step's ``input:``, an
    expression that reads a value not there yet (an optional input not given, a step's
    output before it completed) gives null: a query parameter or a header that is null is
    left out, a body field is sent as null (a whole body as none); the method and the path
    cannot be, and fail. Raises :class:`RequestExpressionError` (naming the part of the
    request) for that and for any other error."""
    method = str(_needed(opts.get("method", "GET"), data, "method")).upper()
    if method not in METHODS:
        raise RequestExpressionError("method", ExpressionError(
            str(opts.get("method")), f"{method!r} is not an HTTP method"))
    path = _needed(opts.get("path", ""), data, "path")
    query = _pairs(opts.get("query"), data, "query")
    headers = _pairs(opts.get("headers"), data, "headers")
    try:
        body = _request_value(opts["body"], data) if "body" in opts else None
    except ExpressionError as exc:
        raise _at("body", exc) from None
    return HttpRequest(method, "" if path is None else str(path), key, query, headers, body)


def _needed(value: Any, data: Mapping[str, Any], part: str) -> Any:
    """The method or the path: a value not there yet is an error, as any other."""
    if not is_expression(value):
        return value
    try:
        return evaluate(value, data)
    except Missing as exc:
        raise RequestExpressionError(part, exc, f"{exc.reason} ({_NEEDED.format(part=part)})"
                                     ) from None
    except ExpressionError as exc:
        raise _at(part, exc) from None


def _request_value(value: Any, data: Mapping[str, Any]) -> Any:
    """A literal of the request with its ``=expressions`` evaluated, nested ones too; an
    expression reading a value not there yet gives None. An error raised within is named
    by its place in ``value`` (``.items[0].sku``)."""
    if isinstance(value, str):
        if not is_expression(value):
            return value
        try:
            return evaluate(value, data)
        except Missing:
            return None
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            try:
                out[k] = _request_value(v, data)
            except ExpressionError as exc:
                raise _at(f".{k}", exc) from None
        return out
    if isinstance(value, list):
        items = []
        for i, v in enumerate(value):
            try:
                items.append(_request_value(v, data))
            except ExpressionError as exc:
                raise _at(f"[{i}]", exc) from None
        return items
    return value


def map_output(step: StepDefinition, scope: Mapping[str, Any], response: Mapping[str, Any],
               callback: Mapping[str, Any] | None) -> dict[str, Any]:
    """The step's output: ``output:`` over the response (and callback), else the default."""
    extra: dict[str, Any] = {"response": dict(response)}
    if callback is not None:
        extra["callback"] = dict(callback)
    data = ChainMap(extra, scope)  # type: ignore[arg-type]
    spec = step.options.get("output")
    if spec is None:
        out = {"status": response.get("status"), "body": response.get("body")}
        if callback is not None:
            out["callback"] = callback.get("body")
        return out
    if isinstance(spec, str):
        value = evaluate(spec, data)
        return dict(value) if isinstance(value, Mapping) else {"value": value}
    return {name: _resolve_deep(value, data) for name, value in spec.items()}


def accepted(status: int, success: Any) -> bool:
    if not success:
        return 200 <= status < 300
    for code in success:
        if isinstance(code, str) and code.lower().endswith("xx"):
            if status // 100 == int(code[0]):
                return True
        elif status == code:
            return True
    return False


def retry_after(response: HttpResponse) -> float | None:
    """Seconds the response asks to wait (``Retry-After``: seconds, or an HTTP date read
    against the response's own ``Date``)."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        at = email.utils.parsedate_to_datetime(value)
        sent = email.utils.parsedate_to_datetime(response.headers.get("date", ""))
    except (TypeError, ValueError):
        return None
    return max(0.0, (at - sent).total_seconds())


def _audit(work: StepWork, summary: dict[str, Any]) -> dict[str, Any]:
    return {"type": CALL_EVENT, "step": work.step.name, "iteration": work.iteration,
            "attempt": work.attempt, **summary}


def _resolve(value: Any, data: Mapping[str, Any]) -> Any:
    return evaluate(value, data) if is_expression(value) else value


def _resolve_deep(value: Any, data: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping):
        return {k: _resolve_deep(v, data) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_deep(v, data) for v in value]
    return _resolve(value, data)


def _pairs(spec: Any, data: Mapping[str, Any], part: str) -> dict[str, str]:
    """``query`` or ``headers``: a mapping of literals and ``=expressions``, or one
    ``=expression`` giving a map (its values taken as they are: never evaluated in turn).
    A null value, or one not there yet, leaves its parameter or header out; a whole map
    not there yet, all of them."""
    if spec is None:
        return {}
    computed = is_expression(spec)
    if computed:
        try:
            value = evaluate(spec, data)
        except Missing:
            return {}
        except ExpressionError as exc:
            raise _at(part, exc) from None
        if value is None:
            return {}
    else:
        value = spec
    if not isinstance(value, Mapping):
        raise RequestExpressionError(part, ExpressionError(
            str(spec), f"expected a map, got {describe(value)}"))
    out = {}
    for k, v in value.items():
        if not computed and is_expression(v):
            try:
                v = evaluate(v, data)
            except Missing:
                continue
            except ExpressionError as exc:
                raise _at(f"{part}.{k}", exc) from None
        if v is None:
            continue  # an absent value leaves the parameter or header out
        out[str(k)] = ("true" if v else "false") if isinstance(v, bool) else str(v)
    return out


def _with_roots(scope: Scope, roots: set[str]) -> Scope:
    return replace(scope, extra_roots=scope.extra_roots | frozenset(roots))


def _check_value(ck: Checker, path: str, value: Any, scope: Scope, *, scalar: bool) -> None:
    if isinstance(value, str):
        if is_expression(value):
            check_expression(ck, path, value, scope)
    elif isinstance(value, dict) and not scalar:
        for k, v in value.items():
            _check_value(ck, join(path, str(k)), v, scope, scalar=False)
    elif isinstance(value, list) and not scalar:
        for i, v in enumerate(value):
            _check_value(ck, f"{path}[{i}]", v, scope, scalar=False)
    elif scalar and (isinstance(value, bool) or not isinstance(value, int | float)):
        ck.add(path, f"expected a string or an '=expression', got {describe(value)}")


def _check_pairs(ck: Checker, path: str, value: Any, scope: Scope, *, headers: bool) -> None:
    if is_expression(value):
        check_expression(ck, path, value, scope)
        return
    for k, v in (expect_mapping(ck, path, value) or {}).items():
        where = join(path, str(k))
        if headers and str(k).lower() in CREDENTIAL_HEADERS:
            ck.add(where, f"{k} carries credentials: set them with the connection's auth "
                          "(secret references), not in a step")
        elif headers and not isinstance(v, dict | list | bool) and not is_expression(v) \
                and (why := literal_credential(str(k), v)) is not None:
            ck.add(where, f"{why}: a secret cannot be written in a step; set it with the "
                          f"connection's auth: {{type: api_key, in: header, name: {k}, "
                          "secret: env:NAME}, whose secret is a reference")
        elif isinstance(v, dict | list):
            ck.add(where, f"expected a value or an '=expression', got {describe(v)}")
        else:
            _check_value(ck, where, v, scope, scalar=False)


def _check_codes(ck: Checker, path: str, value: Any, *, ranges: bool) -> None:
    for i, code in enumerate(expect_list(ck, path, value) or []):
        ok = isinstance(code, int) and not isinstance(code, bool) and 100 <= code <= 599
        if ranges and isinstance(code, str) and len(code) == 3 and code[0] in "12345" \
                and code[1:].lower() == "xx":
            ok = True
        if not ok:
            what = "an HTTP status (100-599) or a class like 2xx" if ranges \
                else "an HTTP status (100-599)"
            ck.add(f"{path}[{i}]", f"expected {what}, got {describe(code)}"
                   if not isinstance(code, int | str) else f"expected {what}, got {code!r}")
    if value == [] and ranges:
        ck.add(path, "success needs at least one status")
