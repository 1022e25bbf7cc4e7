"""A step type is one module plus one registration: proven with an ``echo`` type defined here.

The test registers ``echo`` itself (validation of its ``message`` option, its own job kind,
a worker handler that returns the message) and runs it through the real Engine and Worker
on both databases: nothing in Baton names it, so nothing in Baton had to change for it.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from baton.definitions.checks import Checker, Scope, expect_str, join
from baton.definitions.loader import load_text
from baton.engine.status import RunStatus
from baton.errors import DefinitionError, StepFailure
from baton.steps import registry
from baton.steps.base import JobStepType, StepOutput, StepWork
from baton.store import schema


class Echo(JobStepType):
    """``type: echo``: a worker job whose output is the step's ``message``.

    ``flaky: true`` fails the first attempt (retryable), to show a retry keeps the kind."""

    name = "echo"
    keys = ("message", "flaky")
    job_kind = "echo"

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if "message" not in step:
            ck.add(join(path, "message"), "required key 'message' is missing (what to echo)")
        else:
            expect_str(ck, join(path, "message"), step["message"])
        if "flaky" in step and not isinstance(step["flaky"], bool):
            ck.add(join(path, "flaky"), "flaky is true or false")

    def run_job(self, work: StepWork) -> StepOutput:
        if work.step.options.get("flaky") and work.attempt == 1:
            raise StepFailure("echo: the first attempt of a flaky echo fails", retryable=True)
        return StepOutput({"message": work.step.options["message"], "attempt": work.attempt})


@pytest.fixture
def echo() -> Iterator[Echo]:
    step_type = Echo()
    registry.register(step_type)
    try:
        yield step_type
    finally:
        registry.unregister(step_type.name)


ORCHESTRATION = """
kind: orchestration
name: t_echo
trigger: {type: autolaunched}
stages:
  - name: speak
    steps:
      - {name: say, type: echo, message: hello from a plug-in}
      - {name: said, type: milestone, after: [say]}
  - name: check
    exit_when: '=steps.say.output.message == "hello from a plug-in"'
    steps:
      - {name: never, type: interactive, assign: {queue: q}, when: '=false'}
"""


def _jobs(harness: Any) -> list[tuple[str, str]]:
    with harness.engine.store.read() as tx:
        rows = tx.conn.execute(select(schema.jobs).order_by(schema.jobs.c.id))
        return [(r.kind, r.payload["step"]) for r in rows]


def test_echo_step_type_runs_end_to_end(harness: Any, echo: Echo) -> None:
    harness.deploy_text(ORCHESTRATION)
    run = harness.engine.start("t_echo", {})
    assert harness.step_status(run.id) == {"say": "running", "said": "not_started"}
    assert _jobs(harness) == [("echo", "say")]  # its own job kind, enqueued by decide()
    assert harness.work() == 1
    done = harness.engine.get_run(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["say"].output == {"message": "hello from a plug-in", "attempt": 1}
    assert done.steps["said"].status.value == "completed"
    assert done.steps["never"].status.value == "canceled"  # exit_when read the echo's output
    assert _jobs(harness) == []


def test_echo_attempt_failure_is_retried_with_its_own_job_kind(harness: Any, echo: Echo) -> None:
    harness.deploy_text("""
kind: orchestration
name: t_echo_flaky
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: say, type: echo, message: again, flaky: true, retry: {max: 1, initial: 1m}}
""")
    run = harness.engine.start("t_echo_flaky", {})
    assert harness.work() == 1
    assert harness.step_status(run.id) == {"say": "running"}  # waiting for its retry
    assert _jobs(harness) == [("echo", "say")]
    harness.clock.advance(timedelta(minutes=1))
    assert harness.work() == 1
    done = harness.engine.get_run(run.id)
    assert done.status is RunStatus.COMPLETED
    assert done.steps["say"].output == {"message": "again", "attempt": 2}


def _issues(text: str) -> list[tuple[str, int, str]]:
    with pytest.raises(DefinitionError) as err:
        load_text(text, "echo.yaml")
    return [(i.path, i.line, i.message) for i in err.value.issues]


def test_echo_options_are_validated_by_the_echo_type(echo: Echo) -> None:
    bad = ORCHESTRATION.replace("message: hello from a plug-in", "message: 42")
    assert _issues(bad) == [
        ("stages[0].steps[0].message", 8, "expected a non-empty string, got a number"),
    ]
    missing = ORCHESTRATION.replace(", message: hello from a plug-in", "")
    assert _issues(missing) == [
        ("stages[0].steps[0].message", 8, "required key 'message' is missing (what to echo)"),
    ]
    # its key means nothing to another type, and another type's key nothing to it
    misplaced = ORCHESTRATION.replace("type: milestone,", "type: milestone, message: hi,") \
        .replace("message: hello from a plug-in", "message: hi, flow: x.y")
    assert sorted(_issues(misplaced)) == [
        ("stages[0].steps[0].flow", 8, "flow does not apply to an echo step (only to background steps)"),
        ("stages[0].steps[1].message", 9,
         "message does not apply to a milestone step (only to echo steps)"),
    ]


def test_without_its_registration_echo_is_an_unknown_step_type() -> None:
    assert registry.get("echo") is None
    (issue,) = _issues(ORCHESTRATION)
    assert issue[:2] == ("stages[0].steps[0].type", 8)
    assert issue[2].startswith("unknown step type 'echo'")
