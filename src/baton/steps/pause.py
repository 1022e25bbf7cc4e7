"""``type: pause``: wait for a duration (``for``), a condition (``until``) or a named
signal (``signal``), whichever comes first; then the step completes.

``for`` is a durable timer of the step's own (a ``StartTimer`` job that comes back as
``TimerFired``); ``until`` is re-checked on every change of the run or its record; a
signal is sent with ``baton runs signal RUN NAME`` and its data becomes the output.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.clock import iso
from baton.definitions.checks import (
    MAX_DURATION_DAYS,
    MAX_DURATION_MS,
    Checker,
    Scope,
    check_condition,
    check_duration,
    expect_identifier,
    join,
)
from baton.definitions.model import Condition, StepDefinition
from baton.engine.events import SignalReceived, StartTimer, TimerFired
from baton.engine.policy import duration, duration_ms
from baton.engine.state import StepRun
from baton.engine.status import STEP_RUNNING
from baton.errors import ExpressionError
from baton.steps.base import DecideContext, StepTypeBase, expression_error

TIMER = "pause"  # the kind of the step's own timer (stored in the timer job's payload)


class Pause(StepTypeBase):
    name = "pause"
    keys = ("for", "until", "signal")

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if not any(k in step for k in self.keys):
            ck.add(path, "a pause step needs at least one of: for, until, signal")
        if "for" in step:
            check_duration(ck, join(path, "for"), step["for"])
        if "until" in step:
            check_condition(ck, join(path, "until"), step["until"], scope)
            if isinstance(step["until"], dict):
                ck.add(join(path, "until"), "until takes an '=expression' (not an evaluation flow)")
        if "signal" in step:
            expect_identifier(ck, join(path, "signal"), step["signal"], "signal name")

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        d.set_step(sr, STEP_RUNNING)
        d.audit("step_started", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                type=self.name)
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
        d.complete_step(sr, {}, "system", via="for")
        return True

    def on_signal(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  ev: SignalReceived) -> bool:
        if sr.status is not STEP_RUNNING or step.options.get("signal") != ev.name:
            return False
        d.complete_step(sr, dict(ev.data), ev.actor, via=f"signal:{ev.name}")
        return True

    def has_timers(self, step: StepDefinition) -> bool:
        return "for" in step.options


def _timer_at(d: DecideContext, text: str) -> str | None:
    """When a pause ``for: text`` started now ends; None when that is past what validation
    allows or past the last date there is (then the step fails, rather than the worker)."""
    if duration_ms(text) > MAX_DURATION_MS:
        return None
    try:
        return iso(d.now_dt + duration(text))
    except OverflowError:
        return None


PAUSE = Pause()
