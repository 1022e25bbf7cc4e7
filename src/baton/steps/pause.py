"""``type: pause``: wait for a duration (``for``), an instant (``at``), a condition
(``until``) or a named signal (``signal``), whichever comes first; then the step completes.

``for`` and ``at`` are durable timers of the step's own (a ``StartTimer`` job that comes
back as ``TimerFired``); ``at`` is an instant with a UTC offset, given or computed when the
step starts (``at: '=record.follow_up_at'``), and one already past ends the pause at once.
``until`` is re-checked on every change of the run or its record, not as time passes (so a
condition on ``now`` alone never comes true by waiting: validation says to use ``at``); a
signal is sent with ``baton runs signal RUN NAME`` and its data becomes the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from baton.clock import iso
from baton.definitions.checks import (
    MAX_DURATION_DAYS,
    MAX_DURATION_MS,
    Checker,
    Scope,
    check_condition,
    check_duration,
    check_expression,
    describe,
    expect_identifier,
    join,
)
from baton.definitions.model import Condition, StepDefinition
from baton.engine.events import SignalReceived, StartTimer, TimerFired
from baton.engine.policy import duration, duration_ms
from baton.engine.state import StepRun
from baton.engine.status import STEP_RUNNING
from baton.errors import ExpressionError
from baton.expressions.cel import Missing, evaluate, is_expression, reads_variables
from baton.steps.base import DecideContext, StepTypeBase, expression_error

TIMER = "pause"  # the kind of the step's own timer (stored in the timer job's payload)


class Pause(StepTypeBase):
    name = "pause"
    keys = ("for", "at", "until", "signal")

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if not any(k in step for k in self.keys):
            ck.add(path, "a pause step needs at least one of: for, at, until, signal")
        if "for" in step:
            check_duration(ck, join(path, "for"), step["for"])
        if "at" in step:
            _check_at(ck, join(path, "at"), step["at"], scope)
        if "until" in step:
            until = step["until"]
            check_condition(ck, join(path, "until"), until, scope)
            if isinstance(until, dict):
                ck.add(join(path, "until"), "until takes an '=expression' (not an evaluation flow)")
            elif isinstance(until, str) and is_expression(until) and _reads_now(until):
                ck.warn(join(path, "until"),
                        "until is checked again when the run or its record changes, not as "
                        "time passes: a condition on now may never come true while nothing "
                        "changes. To wait for an instant, use at: (e.g. at: '=record.due_at')")
        if "signal" in step:
            expect_identifier(ck, join(path, "signal"), step["signal"], "signal name")

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        d.set_step(sr, STEP_RUNNING)
        d.audit("step_started", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                type=self.name)
        if "at" in step.options:
            instant, problem = _instant(d, step.options["at"])
            if problem is not None:
                d.fail_step(sr, step, problem)
                return
            assert instant is not None
            if instant <= d.now_dt:
                d.complete_step(sr, {}, "system", via="at")  # (an instant already past)
                return
            d.commands.append(StartTimer(TIMER, sr.name, sr.iteration, iso(instant),
                                         {"started_at": sr.started_at, "via": "at"}))
        if "for" in step.options:
            at = _timer_at(d, str(step.options["for"]))
            if at is None:
                # (an older stored definition: validation bounds durations since)
                d.fail_step(sr, step, {
                    "type": "DurationError", "retryable": False,
                    "message": f"for: {step.options['for']} is too long: a pause lasts at "
                               f"most {MAX_DURATION_DAYS}d (100 years), and its end must be "
                               "a date"})
                return
            d.commands.append(StartTimer(TIMER, sr.name, sr.iteration, at,
                                         {"started_at": sr.started_at}))
        self.recheck(d, sr, step)

    def recheck(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> bool:
        """``until`` holds now: the pause is over."""
        if "until" not in step.options or sr.status is not STEP_RUNNING:
            return False
        try:
            done = d.holds(Condition(expression=step.options["until"]))
        except ExpressionError as exc:
            d.fail_step(sr, step, expression_error("until", exc))
            return True
        if done:
            d.complete_step(sr, {}, "system", via="until")
        return done

    def on_timer(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: TimerFired) -> bool:
        if ev.kind != TIMER or sr.status is not STEP_RUNNING \
                or ev.data.get("started_at", sr.started_at) != sr.started_at:
            return False  # an earlier pause of this step
        d.firing_timer = (sr.name, sr.iteration)
        d.complete_step(sr, {}, "system", via=str(ev.data.get("via", "for")))
        return True

    def on_signal(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  ev: SignalReceived) -> bool:
        if sr.status is not STEP_RUNNING or step.options.get("signal") != ev.name:
            return False
        d.complete_step(sr, dict(ev.data), ev.actor, via=f"signal:{ev.name}")
        return True

    def has_timers(self, step: StepDefinition) -> bool:
        return "for" in step.options or "at" in step.options


def _timer_at(d: DecideContext, text: str) -> str | None:
    """When a pause ``for: text`` started now ends; None when that is past what validation
    allows or past the last date there is (then the step fails, rather than the worker)."""
    if duration_ms(text) > MAX_DURATION_MS:
        return None
    try:
        return iso(d.now_dt + duration(text))
    except OverflowError:
        return None


def _reads_now(source: str) -> bool:
    try:
        return "now" in reads_variables(source)
    except ExpressionError:
        return False  # (reported by check_condition)


AT_MESSAGE = ("expected an instant with a UTC offset like 2026-03-01T09:00:00Z or "
              "2026-03-01T09:00:00+01:00, or an '=expression' giving one")


def _check_at(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    """``at``: a literal instant with its offset, or an ``=expression`` (checked when the
    step starts: a value that is not an instant with an offset fails the step)."""
    if not isinstance(value, str):
        ck.add(path, f"{AT_MESSAGE}, got {describe(value)}")
    elif is_expression(value):
        check_expression(ck, path, value, scope)
    else:
        problem = _parse_instant(value)
        if problem is not None:
            ck.add(path, problem)


def _parse_instant(text: str) -> str | None:
    """Why ``text`` is not an instant with a UTC offset, or None."""
    try:
        dt = datetime.fromisoformat(text.strip())
    except ValueError:
        return f"{AT_MESSAGE}, got '{text[:60]}'"
    if dt.tzinfo is None or dt.utcoffset() is None:
        return (f"'{text[:60]}' has no UTC offset, so the instant it means depends on where "
                "it is read: add one (Z for UTC, or like +01:00)")
    try:
        dt.astimezone(UTC)
    except OverflowError:
        return f"'{text[:60]}' is past the first or last date there is"
    return None


def _instant(d: DecideContext, value: Any) -> tuple[datetime | None, dict[str, Any] | None]:
    """The instant ``at`` means now, or the step's error (an expression that fails, or a
    value that is not an instant with an offset)."""
    try:
        got = evaluate(value, d.scope()) if isinstance(value, str) and is_expression(value) \
            else value
    except Missing as exc:
        return None, {**expression_error("at", exc), "message": f"at: {value} has no value, so "
                      f"the pause has no instant to end at ({exc.reason})"}
    except ExpressionError as exc:
        return None, expression_error("at", exc)
    text = got if isinstance(got, str) else None
    problem = _parse_instant(text) if text is not None else f"{AT_MESSAGE}, got {describe(got)}"
    if problem is not None:
        error: dict[str, Any] = {"type": "TimeError", "retryable": False, "message": f"at: {problem}"}
        if isinstance(value, str) and is_expression(value):
            error["expression"] = value
        return None, error
    assert text is not None
    return datetime.fromisoformat(text.strip()), None


PAUSE = Pause()
