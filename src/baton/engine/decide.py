"""The engine: ``decide(definition, run, event, now, record) -> Decision``.

Pure: no I/O, no clock, no ids. Everything it needs comes in as arguments and
everything it wants done goes out as commands. The store applies the new run
state and the commands in one transaction.

Semantics (DESIGN §2.1): one stage in progress; steps start at stage start or
when all their ``after`` steps are complete; ``when`` waits until true; a stage
completes when all its steps are complete or ``exit_when`` holds (open steps are
then canceled); ``next`` is evaluated in order, the first match wins; re-entering
a stage starts a fresh iteration; ``max_iterations`` fails the run.

Time and failure (DESIGN §2.3): a failed background attempt is retried per its policy
(``engine/policy.py``) with a job that is not due before the backoff; then ``on_failure``
applies. Operators retry, complete or skip a step in fallout, and resume a failed run.
An SLA is two instants kept on the step (``engine/sla.py``); a step type's own timers are
``StartTimer`` commands (durable jobs). Both come back as ``TimerFired`` events.

Step types (``baton.steps``): what starting a step does, what it re-checks on each pass,
and the timers and signals of its own belong to its type, looked up in the registry; this
module names none of them.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from baton.calendars import add_business_time
from baton.clock import iso
from baton.definitions.model import (
    Condition,
    OrchestrationDefinition,
    StageDefinition,
    StepDefinition,
)
from baton.engine.events import (
    Audit,
    CancelRequested,
    CancelTimers,
    CancelWorkItem,
    ChildRunFinished,
    Command,
    ConditionEvaluated,
    EvaluateCondition,
    Event,
    FalloutAction,
    NotifyParent,
    PlanAmended,
    ReassignWorkItem,
    RecordChanged,
    ResumeRequested,
    RunFlow,
    RunStarted,
    ScheduleStep,
    SendEmail,
    SignalReceived,
    StepCompleted,
    StepFailed,
    TimerFired,
)
from baton.engine.inputs import evaluate_input
from baton.engine.policy import RetryPolicy, duration
from baton.engine.sla import KINDS as SLA_KINDS
from baton.engine.state import LEGACY_ANSWER, Run, StageRun, StepRun, copy_json
from baton.engine.status import (
    RUN_CANCELED,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_IN_PROGRESS,
    RUN_TRANSITIONS,
    STAGE_CANCELED,
    STAGE_COMPLETED,
    STAGE_FAILED,
    STAGE_IN_PROGRESS,
    STAGE_TRANSITIONS,
    STEP_CANCELED,
    STEP_COMPLETED,
    STEP_DONE,
    STEP_FAILED,
    STEP_FALLOUT,
    STEP_NOT_STARTED,
    STEP_OPEN,
    STEP_RUNNING,
    STEP_SKIPPED,
    STEP_TRANSITIONS,
    STEP_WAITING,
    STEP_WAITING_FOR_PERSON,
    RunStatus,
    StageStatus,
    StepStatus,
    check_transition,
)
from baton.errors import ExpressionError
from baton.expressions import evaluate_condition
from baton.records.fields import decimal_forms, typed_values
from baton.steps import registry as _registry
from baton.steps.base import StepTypeBase
from baton.steps.base import expression_error as _expr_error
from baton.steps.registry import TYPES as _STEP_TYPES
from baton.steps.registry import load_builtins

# An Audit made without its generated ``__new__``'s Python frame (the same tuple; audit()
# gives every field, in order).
_new_audit = _new_tuple = tuple.__new__
assert Audit._fields == ("type", "data", "actor"), "audit() builds an Audit field by field"
assert ScheduleStep._fields == ("step", "iteration", "flow", "kind", "attempt", "not_before",
                                "timeout_ms", "input"), "schedule_attempt() builds it so"

# Statuses in which a step may have timers pending; leaving them for good cancels those.
_TIMED = frozenset({STEP_RUNNING, STEP_WAITING_FOR_PERSON, STEP_FALLOUT})

_RECHECKING: tuple[int, frozenset[str]] = (-1, frozenset())


def _rechecking() -> frozenset[str]:
    """The step types whose ``recheck`` does something (not StepTypeBase's no-op): the
    only steps recheck_steps() needs to look at. Worked out again whenever the registry
    changed since (a test registers a type of its own): one integer compared per call."""
    global _RECHECKING
    seen, names = _RECHECKING
    if seen != _registry.GENERATION:
        generation = _registry.GENERATION
        names = frozenset(n for n, t in _STEP_TYPES.items()
                          if getattr(t.recheck, "__func__", None) is not StepTypeBase.recheck)
        _RECHECKING = (generation, names)
    return names


# The timers of an SLA; any other timer kind belongs to the step's type.
_SLA_TIMERS = SLA_KINDS

# A safety net against a definition whose stages route in a loop without any step
# (each pass is bounded by max_iterations anyway; this bounds one decide() call).
_MAX_PASSES = 10_000
# A stage of more steps than this (a plan's) is looked at through its readiness: only the
# steps whose readiness may have changed (start_ready_steps_of). Smaller ones whole.
_LOOK_AT_ALL = 64


@dataclass
class Decision:
    run: Run
    commands: list[Command] = field(default_factory=list)
    stale: bool = False  # the event referred to a step iteration that is no longer current


class _Decider:
    def __init__(
        self, defn: OrchestrationDefinition, run: Run, now: datetime, record: Mapping[str, Any] | None
    ) -> None:
        self.defn = defn
        self.run = run
        self.now_dt = now
        self.now = iso(now)
        self.record = record  # (copied when an expression first needs it: scope())
        self._scope: _Scope | None = None
        self.commands: list[Command] = []
        # Conditions naming an evaluation flow that were consulted, by site: asked again.
        self.consulted_flows: dict[str, Condition] = {}
        self.firing_timer: tuple[str, int] | None = None  # a step's own timer is firing
        # The steps whose status changed since start_ready_steps last looked (None: steps
        # were made or replaced, so every one is looked at): a plan-sized stage looks only
        # at those, the steps waiting for them and the steps with a ``when``.
        self.changed: list[str] | None = []

    # ---- helpers ------------------------------------------------------------------------
    def answer(self, ev: ConditionEvaluated) -> None:
        """Keep an evaluation flow's answer for its site (None: it gave none)."""
        if ev.site is not None:
            sites = [ev.site]
        else:  # a job queued before answers were per site: every site of the flow here
            sd = self.defn.stage(self.run.current_stage or "")
            sites = [_site(c) for c in (sd.conditions_with_flows if sd else ()) if c.flow == ev.flow]
        for site in sites:
            if ev.value is None:  # and no older answer kept per flow name either
                self.run.flow_conditions.pop(site, None)
                self.run.flow_conditions.pop(LEGACY_ANSWER + ev.flow, None)
            else:
                self.run.flow_conditions[site] = ev.value

    def ask(self, site: str, cond: Condition) -> EvaluateCondition:
        """The command asking the workers for the condition's answer, with its input."""
        assert cond.flow is not None
        try:
            values = evaluate_input(cond.input, self.scope()) if cond.input else None
        except ExpressionError as exc:
            return EvaluateCondition(cond.flow, site, None,
                                     f"input {exc.reason} (in {exc.source!r})")
        return EvaluateCondition(cond.flow, site, values)

    def audit(self, type_: str, actor: str = "system", **data: Any) -> None:
        self.commands.append(_new_audit(Audit, (type_, data, actor)))

    def scope(self) -> Mapping[str, Any]:
        """What expressions see: one view per call, made on first use (it reads the run
        and the record as they are at each read, so one serves every expression)."""
        if self._scope is None:
            record = dict(self.record) if self.record is not None else {}
            self._scope = _Scope(record, self.run, self.now, self.defn)
        return self._scope

    def holds(self, cond: Condition | None) -> bool:
        """Evaluate a condition; missing values are false for now. May raise ExpressionError."""
        if cond is None:
            return True
        if cond.flow is not None:
            # Evaluation flows run on the workers; the engine uses their latest answer
            # for this site and asks for a fresh one after every record or step change.
            self.consulted_flows[_site(cond)] = cond
            return _answer(self.run, cond) or False
        return evaluate_condition(cond.expression or "=false", self.scope())

    def set_step(self, sr: StepRun, status: StepStatus) -> None:
        # (check_transition's message is made only for a move the table may refuse)
        if type(status) is not type(sr.status) or status not in STEP_TRANSITIONS[sr.status]:
            check_transition(f"step {sr.name!r}", sr.status, status)
        if sr.status in _TIMED and status not in STEP_OPEN and self.has_timers(sr):
            self.commands.append(CancelTimers(sr.name, sr.iteration))
        sr.status = status
        if self.changed is not None:
            self.changed.append(sr.name)

    def has_timers(self, sr: StepRun) -> bool:
        """May the step iteration have pending timer jobs (one of its type's own)? Its SLA
        has none: a closed step's SLA instants stop counting (engine/sla.py)."""
        if self.firing_timer == (sr.name, sr.iteration):
            return False  # its only timer is the one firing now (claimed, not pending)
        found = self.defn.find_step(sr.name)
        return found is not None and _STEP_TYPES[found[1].type].has_timers(found[1])

    def set_stage(self, st: StageRun, status: StageStatus) -> None:
        if type(status) is not type(st.status) or status not in STAGE_TRANSITIONS[st.status]:
            check_transition(f"stage {st.name!r}", st.status, status)
        st.status = status

    def set_run(self, status: RunStatus) -> None:
        if type(status) is not type(self.run.status) \
                or status not in RUN_TRANSITIONS[self.run.status]:
            check_transition(f"run {self.run.id}", self.run.status, status)
        self.run.status = status

    def stage_def(self) -> StageDefinition:
        assert self.run.current_stage is not None
        sd = self.defn.stage(self.run.current_stage)
        assert sd is not None, f"stage {self.run.current_stage!r} not in definition"
        return sd

    def is_done(self, sr: StepRun, sd: StepDefinition) -> bool:
        return sr.status in STEP_DONE or (
            sr.status is STEP_FAILED and sd.on_failure == "continue"
        )

    # ---- run level ----------------------------------------------------------------------
    def fail_run(self, reason: str, **data: Any) -> None:
        self.cancel_open_steps(f"run failed: {reason}")
        st = self.run.stages.get(self.run.current_stage or "")
        if st is not None and st.status is STAGE_IN_PROGRESS:
            self.set_stage(st, STAGE_FAILED)
        self.set_run(RUN_FAILED)
        self.run.error = {"message": reason, **data}
        self.run.completed_at = self.now
        self.audit("run_failed", reason=reason, **data)

    def cancel_open_steps(self, reason: str) -> int:
        canceled = 0
        for sr in self.run.steps.values():
            if sr.stage == self.run.current_stage and sr.status in STEP_OPEN:
                canceled += 1
                if sr.status is STEP_WAITING_FOR_PERSON:
                    self.commands.append(CancelWorkItem(sr.name, sr.iteration, reason))
                found = self.defn.find_step(sr.name)
                if found is not None:
                    _STEP_TYPES[found[1].type].on_cancel(self, sr, found[1], reason)
                self.set_step(sr, STEP_CANCELED)
                sr.completed_at = self.now
                self.audit("step_canceled", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                           reason=reason)
        return canceled

    def amend_plan(self, ev: PlanAmended) -> None:
        """A plan's new revision (the definition decide() was given): removed steps
        leave the run, open ones canceled first; added ones join the current stage."""
        stage = self.run.current_stage
        st = self.run.stages[stage or ""]
        was: dict[str, int] = {}  # the iterations of the removed steps
        for name in ev.removed:
            sr = self.run.steps.get(name)
            if sr is None:
                continue
            was[name] = sr.iteration
            if sr.status in STEP_OPEN:
                if sr.status is STEP_WAITING_FOR_PERSON:
                    self.commands.append(CancelWorkItem(sr.name, sr.iteration, "plan amended"))
                self.set_step(sr, STEP_CANCELED)
                self.audit("step_canceled", step=name, stage=sr.stage, iteration=sr.iteration,
                           reason="plan amended")
            del self.run.steps[name]
        for name in ev.added:
            # A step removed and added again (a changed one) is its next iteration: its
            # jobs, timers, work items, callbacks and callout idempotency key are not the
            # old one's, and a late result of the old one is stale.
            self.run.steps[name] = StepRun(name, stage or "",
                                           max(st.iteration, was.get(name, 0) + 1))
        self.changed = None  # steps added and rewired: every one is looked at
        self.run.version = ev.revision
        self.audit("plan_amended", ev.actor, revision=ev.revision, removed=list(ev.removed),
                   added=list(ev.added))

    def enter_stage(self, name: str) -> None:
        sd = self.defn.stage(name)
        assert sd is not None
        st = self.run.stages.get(name)
        if st is None:  # (setdefault would make a StageRun at every entry, kept or not)
            st = self.run.stages[name] = StageRun(name)
        if st.iteration >= sd.max_iterations:
            self.fail_run(
                f"stage {name!r} would start iteration {st.iteration + 1}, "
                f"over its max_iterations of {sd.max_iterations}",
                stage=name,
            )
            return
        self.set_stage(st, STAGE_IN_PROGRESS)
        st.iteration += 1
        st.started_at, st.completed_at = self.now, None
        self.run.current_stage = name
        # Answers of evaluation flows belong to the moment they were asked for: a fresh
        # iteration must not exit (or route) at once on the answer that ended the last one,
        # so its flows are false until asked again. Only this stage's flows matter now.
        for cond in sd.conditions_with_flows:
            self.run.flow_conditions.pop(_site(cond), None)
            self.run.flow_conditions.pop(LEGACY_ANSWER + (cond.flow or ""), None)
        self.consulted_flows.clear()
        for step in sd.steps:
            self.run.steps[step.name] = StepRun(step.name, name, st.iteration)
        self.changed = None
        self.audit("stage_started", stage=name, iteration=st.iteration)

    # ---- steps --------------------------------------------------------------------------
    def start_ready_steps(self, sd: StageDefinition) -> bool:
        if len(sd.steps) > _LOOK_AT_ALL and self.changed is not None:
            return self.start_ready_steps_of(sd, self.changed)
        if len(sd.steps) > _LOOK_AT_ALL:
            self.changed = []  # (what this pass changes: the next pass looks at it)
        changed = False
        steps = self.run.steps
        not_started, waiting = STEP_NOT_STARTED, STEP_WAITING
        for step in sd.steps:
            sr = steps[step.name]
            if sr.status is not_started or sr.status is waiting:
                changed = self.start_if_ready(sd, step, sr) or changed
        return changed

    def start_ready_steps_of(self, sd: StageDefinition, since: list[str]) -> bool:
        """:meth:`start_ready_steps` of a plan-sized stage, looking only at the steps whose
        readiness may have changed: those whose status changed since the last look (a
        retried one may start again), the steps waiting for them, and the steps with a
        ``when`` (it reads the record, variables, outputs). Any other step not started
        was blocked by a dependency at the last look, which has not changed since (the
        last pass of every decide() changed nothing, so looked at all it had to). In the
        stage's order, a step a change in this pass unblocks further on is looked at in
        this pass: the same steps start, in the same order, as looking at every step."""
        ready = sd.readiness
        index, dependents = ready.index, ready.dependents
        queued = set(ready.conditional)
        for name in since:
            i = index.get(name)
            if i is not None:
                queued.add(i)
            queued.update(dependents.get(name, ()))
        changes: list[str] = []
        self.changed = changes
        heap = sorted(queued)
        seen = 0
        changed = False
        steps = self.run.steps
        not_started, waiting = STEP_NOT_STARTED, STEP_WAITING
        while heap:
            i = heapq.heappop(heap)
            step = sd.steps[i]
            sr = steps[step.name]
            if sr.status is not not_started and sr.status is not waiting:
                continue
            if not self.start_if_ready(sd, step, sr):
                continue
            changed = True
            for name in changes[seen:]:  # further on in the stage: looked at in this pass
                seen += 1
                j = index.get(name)
                for k in ((j,) if j is not None else ()) + dependents.get(name, ()):
                    if k > i and k not in queued:
                        queued.add(k)
                        heapq.heappush(heap, k)
        return changed

    def start_if_ready(self, sd: StageDefinition, step: StepDefinition, sr: StepRun) -> bool:
        """Start a step not started (or waiting) whose dependencies are done and whose
        ``when`` holds; True if its status changed."""
        # A plan's stage has thousands of steps: the statuses are compared by identity and
        # is_done() is written out inline (a StrEnum's hash, for `in STEP_DONE`, is a
        # Python call).
        steps = self.run.steps
        completed, skipped, failed = STEP_COMPLETED, STEP_SKIPPED, STEP_FAILED
        after = step.after
        if len(after) > _LOOK_AT_ALL:
            # A plan's step after every line's (an invoice after each shipment) is looked at
            # whenever one of them changes, and they finish roughly in order: looking from
            # the first walked past those done so far. From where the last look found one
            # not done instead (then round to it), the answer is the same, mostly at once.
            hints = sd.readiness.after_hint
            n = len(after)
            start = hints.get(step.name, 0)
            for k in range(start, start + n):
                a = after[k % n]
                dep = steps[a].status
                if dep is completed or dep is skipped or (
                        dep is failed and sd.step(a).on_failure == "continue"):  # type: ignore[union-attr]
                    continue
                hints[step.name] = k % n
                return False
        else:
            for a in after:
                dep = steps[a].status
                if dep is completed or dep is skipped or (
                        dep is failed and sd.step(a).on_failure == "continue"):  # type: ignore[union-attr]
                    continue
                return False
        try:
            ready = self.holds(step.when)
        except ExpressionError as exc:
            self.fail_step(sr, step, _expr_error("when", exc))
            return True
        if not ready:
            if sr.status is STEP_NOT_STARTED:
                self.set_step(sr, STEP_WAITING)
                return True
            return False
        self.start_step(sr, step)
        return True

    def start_step(self, sr: StepRun, step: StepDefinition) -> None:
        sr.started_at = self.now
        self.start_sla(sr, step)
        _STEP_TYPES[step.type].start(self, sr, step)

    def schedule_attempt(self, sr: StepRun, step: StepDefinition, not_before: str | None) -> None:
        """Ask the workers for the step's next attempt (now, or after a retry's backoff):
        a job of the kind its type enqueues, with the step's ``input`` evaluated now (an
        input that cannot be evaluated fails the step)."""
        options = step.options
        spec = options.get("input")
        try:
            values = evaluate_input(spec, self.scope()) if spec else None
        except ExpressionError as exc:
            self.fail_step(sr, step, _expr_error("input", exc))
            return
        sr.attempts += 1
        kind = _STEP_TYPES[step.type].job_kind
        assert kind is not None, f"step type {step.type!r} enqueues no jobs"
        timeout = options.get("timeout")
        # (every field, in order: as audit() makes an Audit)
        self.commands.append(_new_tuple(ScheduleStep, (
            sr.name, sr.iteration, step.flow, kind, sr.attempts, not_before,
            int(duration(timeout).total_seconds() * 1000) if timeout else None, values)))

    # ---- retries ------------------------------------------------------------------------
    def attempt_failed(self, sr: StepRun, step: StepDefinition, error: dict[str, Any]) -> None:
        """A background attempt failed: retry it after its backoff, or fail the step."""
        policy = RetryPolicy.from_options(step.options.get("retry"), self.defn.retry)
        retries_used = sr.attempts - sr.attempt_base - 1
        retry = error.get("retryable", True) is not False and retries_used < policy.max
        next_at: str | None = None
        if retry:
            delay = policy.delay(retries_used + 1, f"{self.run.id}:{sr.name}:{sr.iteration}")
            if error.get("retry_after"):  # the flow knows better (e.g. a rate limit's reset)
                delay = max(delay, timedelta(seconds=float(error["retry_after"])))
            next_at = iso(self.now_dt + delay)
        self.audit("step_attempt_failed", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                   attempt=sr.attempts, error=error, next_retry_at=next_at)
        if next_at is None:
            self.fail_step(sr, step, {**error, "attempts": sr.attempts})
            return
        sr.error = error
        self.schedule_attempt(sr, step, next_at)

    # ---- SLA ----------------------------------------------------------------------------
    def start_sla(self, sr: StepRun, step: StepDefinition) -> None:
        """Start the step's SLA clock: timers at due - jeopardy and at due."""
        spec = step.options.get("sla")
        if not spec:
            return
        total = duration(spec["duration"])
        warn = duration(spec["jeopardy"]) if spec.get("jeopardy") else None
        due = self.sla_instant(sr, spec, total)
        sr.sla = {"status": "on_track", "due_at": iso(due), "jeopardy_at": None}
        if warn is not None:
            sr.sla["jeopardy_at"] = iso(self.sla_instant(sr, spec, total - warn))
        # No timer job: the instants live in sr.sla, and the run row's sla_at column
        # (engine/sla.py) brings the run back to a worker when the next one comes.

    def sla_instant(self, sr: StepRun, spec: Mapping[str, Any], span: timedelta) -> datetime:
        """``span`` after now: in the calendar's business time when the SLA names one."""
        name = spec.get("calendar")
        if not name:
            return self.now_dt + span
        cal = self.defn.calendars.get(name)
        if cal is None:
            self.audit("sla_calendar_missing", step=sr.name, calendar=name,
                       note="calendar not deployed: wall-clock time is counted")
            return self.now_dt + span
        return add_business_time(cal, self.now_dt, span)

    def sla_timer(self, sr: StepRun, step: StepDefinition, ev: TimerFired) -> bool:
        """An SLA instant came: on_track -> in_jeopardy -> overdue, with the mapping's actions.

        A timer of an earlier SLA clock of this step (restarted by an operator retry or a
        resume) names another due time and changes nothing.
        """
        kind = ev.kind
        if sr.sla is None or sr.status not in STEP_OPEN \
                or ev.data.get("due_at", sr.sla["due_at"]) != sr.sla["due_at"]:
            return False
        new, key = ("in_jeopardy", "on_jeopardy") if kind == "sla_jeopardy" else (
            "overdue", "on_overdue")
        if sr.sla["status"] == new or sr.sla["status"] == "overdue":
            return False
        sr.sla["status"] = new
        sr.touch()  # (changed in place: a split run writes the steps marked changed)
        self.audit(f"sla_{new}", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                   due_at=sr.sla["due_at"])
        action = (step.options.get("sla") or {}).get(key) or {}
        if action.get("reassign") and sr.status is STEP_WAITING_FOR_PERSON:
            self.sla_reassign(sr, str(action["reassign"]), new)
        if action.get("routing") and sr.status is STEP_WAITING_FOR_PERSON:
            self.sla_routing(sr, step, key, action, new)
        if action.get("flow"):
            self.commands.append(RunFlow(action["flow"], sr.name, sr.iteration, f"sla {new}"))
        if action.get("notify"):
            who = action["notify"]
            names = [who] if isinstance(who, str) else list(who)
            self.audit("notification_requested", step=sr.name, reason=f"sla {new}",
                       recipients=names)
            subject = (f"[baton] {self.run.orchestration}: step {sr.name} is "
                       f"{new.replace('_', ' ')}")
            self.commands.append(SendEmail(tuple(names), subject, sr.name, sr.iteration, new,
                                           sr.sla["due_at"], self.run.record_id, self.run.id))
        return True

    def sla_reassign(self, sr: StepRun, to: str, new: str) -> None:
        """``on_jeopardy: {reassign: queue:NAME}``: to a queue that has a routing rule of its
        own (``for_queue``), the item is routed by that rule, as work assigned there at a
        step's start is; a rule whose skills cannot be evaluated now is said in the audit
        log and the item stays where it is. Anything else is a plain reassignment."""
        from baton.steps.interactive import kept_rule  # (steps import the engine)

        bound = self.defn.routings.get(to) if to.startswith("queue:") else None
        if bound is None:
            self.commands.append(ReassignWorkItem(sr.name, sr.iteration, to, f"sla {new}"))
            return
        kept, error = kept_rule(self, bound, bound.name, f"routing rule {bound.name}")
        if kept is None:
            self.audit("sla_routing_failed", step=sr.name, iteration=sr.iteration,
                       rule=bound.name, error=error)
            return
        self.commands.append(ReassignWorkItem(sr.name, sr.iteration, to, f"sla {new}",
                                              routing=kept))

    def sla_routing(self, sr: StepRun, step: StepDefinition, key: str,
                    action: Mapping[str, Any], new: str) -> None:
        """``on_jeopardy: {routing: RULE}``: the step's item is routed again with RULE (its
        skills evaluated now); a rule not deployed, or a skill that cannot be evaluated, is
        said in the audit log and the item stays where it is."""
        from baton.steps.interactive import kept_rule  # (steps import the engine)

        name = str(action["routing"])
        rule = self.defn.routings.get(name)
        error: dict[str, Any] | None = None
        kept: dict[str, Any] | None = None
        if rule is None:
            error = {"type": "AssignmentError",
                     "message": f"routing rule '{name}' is not deployed"}
        else:
            kept, error = kept_rule(self, rule, name, f"sla.{key}.routing")
        if kept is None or rule is None:
            self.audit("sla_routing_failed", step=sr.name, iteration=sr.iteration, rule=name,
                       error=error)
            return
        self.commands.append(ReassignWorkItem(
            sr.name, sr.iteration, f"{rule.pool_kind}:{rule.pool}",
            "jeopardy" if new == "in_jeopardy" else "overdue", routing=kept,
            exclude_assignee=bool(action.get("exclude_assignee"))))

    # ---- operators ----------------------------------------------------------------------
    def fallout_action(self, sr: StepRun, step: StepDefinition, ev: FalloutAction) -> None:
        extra = {"step": sr.name, "stage": sr.stage, "iteration": sr.iteration,
                 "reason": ev.reason}
        if ev.action == "retry":
            self.audit("fallout_retried", ev.actor, **extra)
            # (and what the failed attempt held: a callout's response while it waited for
            # its callback, so the retried request waits afresh, its timeout armed again)
            sr.error, sr.completed_at, sr.output = None, None, None
            sr.attempt_base = sr.attempts  # a fresh series: the retry policy applies again
            self.start_step(sr, step)
        elif ev.action == "complete":
            self.complete_step(sr, dict(ev.output or {}), ev.actor, via="operator",
                               reason=ev.reason)
        else:
            self.set_step(sr, STEP_SKIPPED)
            sr.completed_at = self.now
            self.audit("step_skipped", ev.actor, **extra)

    def resume(self, ev: ResumeRequested) -> None:
        """A failed run goes on: its failed and canceled steps of the current stage start
        afresh (same iteration), and routing is tried again if that is what failed."""
        self.set_run(RUN_IN_PROGRESS)
        self.run.error, self.run.completed_at = None, None
        self.audit("run_resumed", ev.actor, reason=ev.reason)
        st = self.run.stages.get(self.run.current_stage or "")
        if st is None:
            return
        if st.status is STAGE_FAILED:
            self.set_stage(st, STAGE_IN_PROGRESS)
            st.completed_at = None
        sd = self.stage_def()
        for step in sd.steps:
            old = self.run.steps[step.name]
            if old.status is STEP_CANCELED or (
                    old.status is STEP_FAILED and step.on_failure != "continue"):
                self.run.steps[step.name] = StepRun(step.name, old.stage, old.iteration,
                                                    attempts=old.attempts,
                                                    attempt_base=old.attempts)
        self.changed = None
        if st.status is STAGE_COMPLETED:  # the stage was done; its routing failed
            self.follow(self.route(sd))

    def signal(self, ev: SignalReceived) -> bool:
        """Hand the signal to every step of the current stage; True when one took it
        (a pause step waiting for this signal completes)."""
        hit = False
        for sr in list(self.run.steps.values()):
            found = self.defn.find_step(sr.name)
            if found is None or sr.stage != self.run.current_stage:
                continue
            hit = _STEP_TYPES[found[1].type].on_signal(self, sr, found[1], ev) or hit
        return hit

    def fail_step(self, sr: StepRun, step: StepDefinition, error: dict[str, Any]) -> None:
        sr.error, sr.completed_at = error, self.now
        if step.on_failure == "fallout":
            self.set_step(sr, STEP_FALLOUT)
            self.audit("step_fallout", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                       error=error)
            return
        self.set_step(sr, STEP_FAILED)
        self.audit("step_failed", step=sr.name, stage=sr.stage, iteration=sr.iteration, error=error)
        if step.on_failure == "fail_run":
            self.fail_run(f"step {sr.name!r} failed: {error.get('message', '')}", step=sr.name)

    def recheck_steps(self, sd: StageDefinition) -> bool:
        """Let each step's type look again at what it waits for (``until``,
        ``complete_when``): the record, the variables or another step may have changed."""
        changed = False
        for step in sd.steps_of(_rechecking()):
            changed = _STEP_TYPES[step.type].recheck(self, self.run.steps[step.name], step) \
                or changed
        return changed

    def complete_step(self, sr: StepRun, output: dict[str, Any], actor: str, **extra: Any) -> None:
        self.set_step(sr, STEP_COMPLETED)
        sr.output, sr.completed_at, sr.error = output, self.now, None
        self.audit("step_completed", actor, step=sr.name, stage=sr.stage, iteration=sr.iteration,
                   output=output, **extra)

    # ---- stage completion and routing ----------------------------------------------------
    def try_finish_stage(self, sd: StageDefinition) -> bool:
        st = self.run.stages[sd.name]
        if sd.exit_when is not None:
            try:
                exit_now = self.holds(sd.exit_when)
            except ExpressionError as exc:
                self.fail_run(f"stage {sd.name!r} exit_when: {exc}", stage=sd.name)
                return True
            if exit_now:
                canceled = self.cancel_open_steps(f"stage {sd.name!r} exit_when holds")
                if self.awaiting_routing_answers(sd):
                    return canceled > 0
                return self.finish_stage(sd, st, "exit_when")
        if sd.exit == "when_condition":
            return False  # only exit_when ends this stage, even with every step done
        if self.all_steps_done(sd):
            if self.awaiting_routing_answers(sd):
                return False
            return self.finish_stage(sd, st, "all_steps_complete")
        return False

    def all_steps_done(self, sd: StageDefinition) -> bool:
        steps = self.run.steps
        if len(sd.steps) <= _LOOK_AT_ALL:
            for s in sd.steps:  # (is_done() written out: this runs on every pass)
                status = steps[s.name].status
                if status not in STEP_DONE and (
                        status is not STEP_FAILED or s.on_failure != "continue"):
                    return False
            return True
        # A plan's steps finish roughly in their order: looking from the first, every
        # pass walked past the steps done so far. From where the last look found a step
        # not done instead (then round to it), the answer is the same and mostly at once.
        ready = sd.readiness
        n, start = len(sd.steps), ready.open_hint
        for i in range(start, start + n):
            s = sd.steps[i % n]
            if not self.is_done(steps[s.name], s):
                ready.open_hint = i % n
                return False
        return True

    def awaiting_routing_answers(self, sd: StageDefinition) -> bool:
        """True while an evaluation flow named by ``next`` has not answered for this iteration.

        ``next`` is only looked at once the stage is done, so such a flow has never been
        asked before that moment; routing on "no answer" would always take the false branch.
        The stage stays in progress until the workers answer (``ConditionEvaluated``).
        """
        waiting = False
        for rule in sd.next or ():
            if rule.when is not None and rule.when.flow is not None \
                    and _answer(self.run, rule.when) is None:
                self.consulted_flows[_site(rule.when)] = rule.when
                waiting = True
        return waiting

    def finish_stage(self, sd: StageDefinition, st: StageRun, why: str) -> bool:
        self.set_stage(st, STAGE_COMPLETED)
        st.completed_at = self.now
        self.audit("stage_completed", stage=sd.name, iteration=st.iteration, reason=why)
        self.follow(self.route(sd))
        return True

    def follow(self, target: str | None) -> None:
        """Go where routing said: the next stage, or the end of the run (None: it failed)."""
        if target is None:
            return
        if target == "end":
            self.set_run(RUN_COMPLETED)
            self.run.completed_at = self.now
            self.run.current_stage = None
            self.audit("run_completed")
        else:
            self.enter_stage(target)

    def route(self, sd: StageDefinition) -> str | None:
        """Where to go after ``sd``; ``None`` when routing failed the run."""
        if sd.next is None:
            idx = [s.name for s in self.defn.stages].index(sd.name)
            target = self.defn.stages[idx + 1].name if idx + 1 < len(self.defn.stages) else "end"
            self.record_decision(sd, target, None)
            return target
        for i, rule in enumerate(sd.next):
            try:
                matched = self.holds(rule.when)
            except ExpressionError as exc:
                self.fail_run(f"stage {sd.name!r} next[{i}].when: {exc}", stage=sd.name)
                return None
            if matched:
                self.record_decision(sd, rule.goto, i, rule.label)
                return rule.goto
        self.fail_run(f"stage {sd.name!r}: no next rule matched", stage=sd.name)
        return None

    def record_decision(self, sd: StageDefinition, goto: str, rule: int | None,
                        label: str | None = None) -> None:
        entry: dict[str, Any] = {"stage": sd.name, "iteration": self.run.stages[sd.name].iteration,
                                 "goto": goto, "rule": rule, "at": self.now}
        if label is not None:
            entry["label"] = label
        self.run.decisions.append(entry)
        self.audit("decision_taken", **{k: v for k, v in entry.items() if k != "at"})

    # ---- the loop -----------------------------------------------------------------------
    def advance(self) -> None:
        run = self.run  # (its fields are read after every part of a pass: bound once)
        for _ in range(_MAX_PASSES):
            if run.status is not RUN_IN_PROGRESS or run.current_stage is None:
                return
            sd = self.defn.stage(run.current_stage)
            assert sd is not None, f"stage {run.current_stage!r} not in definition"
            changed = self.recheck_steps(sd)
            if run.status is not RUN_IN_PROGRESS:
                return
            changed = self.start_ready_steps(sd) or changed
            if run.status is not RUN_IN_PROGRESS:
                return
            changed = self.try_finish_stage(sd) or changed
            if not changed:
                return
        self.fail_run("routing did not settle (stages loop without any step)")


def decide(
    defn: OrchestrationDefinition,
    run: Run,
    event: Event,
    now: datetime,
    record: Mapping[str, Any] | None = None,
    *,
    consume: bool = False,
) -> Decision:
    """Apply ``event`` to ``run`` and return the new state plus the commands to carry out.

    ``record`` is the run's record as it is now (after any updates the event carries).
    The input ``run`` is not modified, unless the caller hands it over with ``consume``
    (it was loaded for this call alone): then the copy is skipped.
    """
    if not _registry._loaded:
        load_builtins()  # (once: the step types are imported on first use)
    d = _Decider(defn, run if consume else run.copy(), now, record)
    r = d.run
    status_before = r.status
    before = _progress(r) if isinstance(event, ConditionEvaluated) else None
    if isinstance(event, RunStarted):
        r.created_at = r.created_at or d.now
        d.audit("run_started", event.actor, orchestration=defn.name, version=r.version)
        d.enter_stage(defn.stages[0].name)
    elif isinstance(event, _STEP_RESULTS):
        sr = r.steps.get(event.step)
        # A step in fallout may still be completed (an operator gives the output by hand),
        # but a failure reported for it again is a redelivery: FALLOUT -> FALLOUT is no move.
        open_for = _OPEN_FOR_RESULT if isinstance(event, StepCompleted) else _OPEN_FOR_FAILURE
        if (r.status is not RUN_IN_PROGRESS or sr is None or sr.iteration != event.iteration
                or sr.status not in open_for
                or (event.attempt is not None and event.attempt != sr.attempts)):
            return Decision(run, [], stale=True)
        found = defn.find_step(event.step)
        assert found is not None
        if isinstance(event, StepCompleted):
            if event.vars:
                r.vars.update(event.vars)  # only what this flow changed: concurrent steps merge
            step_type = _STEP_TYPES[found[1].type]
            if not step_type.on_completed(d, sr, found[1], event):
                extra = {"ran_at": event.ran_at} if event.ran_at else {}
                output = step_type.completed(d, sr, found[1], dict(event.output), event.actor)
                d.complete_step(sr, output, event.actor, **extra)
        elif _STEP_TYPES[found[1].type].job_kind is not None and sr.status is STEP_RUNNING:
            d.attempt_failed(sr, found[1], event.error)  # a worker's attempt: maybe retried
        else:
            d.fail_step(sr, found[1], event.error)
    elif isinstance(event, FalloutAction):
        sr = r.steps.get(event.step)
        found = defn.find_step(event.step)
        if r.status is not RUN_IN_PROGRESS or sr is None or found is None \
                or sr.status is not STEP_FALLOUT:
            return Decision(run, [], stale=True)
        d.fallout_action(sr, found[1], event)
    elif isinstance(event, ResumeRequested):
        if r.status is not RUN_FAILED:
            return Decision(run, [], stale=True)
        d.resume(event)
    elif isinstance(event, TimerFired):
        sr = r.steps.get(event.step)
        found = defn.find_step(event.step)
        if r.status is not RUN_IN_PROGRESS or sr is None or found is None \
                or sr.iteration != event.iteration:
            return Decision(run, [], stale=True)
        if event.kind in _SLA_TIMERS:
            if not d.sla_timer(sr, found[1], event):
                return Decision(run, [], stale=True)
        elif not _STEP_TYPES[found[1].type].on_timer(d, sr, found[1], event):
            return Decision(run, [], stale=True)  # e.g. the timer of an earlier pause
    elif isinstance(event, SignalReceived):
        if r.status is not RUN_IN_PROGRESS or not d.signal(event):
            return Decision(run, [], stale=True)
    elif isinstance(event, ChildRunFinished):
        sr = r.steps.get(event.step)
        found = defn.find_step(event.step)
        if r.status is not RUN_IN_PROGRESS or sr is None or found is None \
                or sr.iteration != event.iteration \
                or not _STEP_TYPES[found[1].type].on_child(d, sr, found[1], event):
            return Decision(run, [], stale=True)  # e.g. a child of an earlier retry
    elif isinstance(event, RecordChanged):
        if r.status is not RUN_IN_PROGRESS:
            return Decision(run, [], stale=True)
    elif isinstance(event, ConditionEvaluated):
        if r.status is not RUN_IN_PROGRESS:
            return Decision(run, [], stale=True)
        d.answer(event)
    elif isinstance(event, PlanAmended):
        if r.status is not RUN_IN_PROGRESS or r.current_stage is None:
            return Decision(run, [], stale=True)
        d.amend_plan(event)
    elif isinstance(event, CancelRequested):
        if r.status not in (RUN_IN_PROGRESS, RUN_FAILED):
            return Decision(run, [], stale=True)
        d.cancel_open_steps(f"run canceled: {event.reason}")
        st = r.stages.get(r.current_stage or "")
        if st is not None and st.status is STAGE_IN_PROGRESS:
            d.set_stage(st, STAGE_CANCELED)
        d.set_run(RUN_CANCELED)
        r.completed_at = d.now
        d.audit("run_canceled", event.actor, reason=event.reason)
        _notify_parent(d, status_before)
        return Decision(r, d.commands)
    d.advance()
    # Evaluation flows are asked again whenever the record or a step changed. An answer
    # alone changes neither, so it asks again only if it moved the run on (a step started,
    # a stage was entered): otherwise answering would loop forever.
    moved = before is None or _progress(r) != before
    if moved and d.consulted_flows and r.status is RUN_IN_PROGRESS:
        for site in sorted(d.consulted_flows):
            d.commands.append(d.ask(site, d.consulted_flows[site]))
    if r.parent is not None:  # (a child run: most runs have no parent to tell)
        _notify_parent(d, status_before)
    return Decision(r, d.commands)


_STEP_RESULTS = (StepCompleted, StepFailed)  # (a tuple: ``A | B`` made a union per call)
_OPEN_FOR_FAILURE = (STEP_RUNNING, STEP_WAITING_FOR_PERSON)
_OPEN_FOR_RESULT = (*_OPEN_FOR_FAILURE, STEP_FALLOUT)
_ENDED = frozenset({RUN_COMPLETED, RUN_FAILED, RUN_CANCELED})


def _notify_parent(d: _Decider, before: RunStatus) -> None:
    """A child run that has just ended tells its parent's step (with its variables as its
    output when it completed), in the transaction of its own end."""
    r = d.run
    if r.parent is None or r.status is before or r.status not in _ENDED:
        return
    p = r.parent
    output = {"vars": copy_json(r.vars)} if r.status is RUN_COMPLETED else None
    error = None
    if r.status is RUN_FAILED:
        error = copy_json(r.error) or {"message": "the child run failed"}
    elif r.status is RUN_CANCELED:
        error = {"message": "the child run was canceled"}
    d.commands.append(NotifyParent(p.run_id, p.step, p.iteration, p.index, r.status.value,
                                   output, error))


def _progress(run: Run) -> tuple[Any, ...]:
    """Where a run stands: its stage and the status of every step iteration."""
    stages = tuple((st.name, st.status, st.iteration) for st in run.stages.values())
    steps = tuple((sr.name, sr.iteration, sr.status) for sr in run.steps.values())
    return run.current_stage, stages, steps


def _site(cond: Condition) -> str:
    """The key of a condition's answer: its site (a condition made in code has none: its
    flow's name)."""
    return cond.site or LEGACY_ANSWER + (cond.flow or "")


def _answer(run: Run, cond: Condition) -> bool | None:
    """The latest answer of the condition's evaluation flow at its site; None: none yet."""
    answers = run.flow_conditions
    value = answers.get(_site(cond))
    if value is None:
        value = answers.get(LEGACY_ANSWER + (cond.flow or ""))
    return value


def expression_scope(record: dict[str, Any], run: Run, now: str,
                     defn: OrchestrationDefinition) -> Mapping[str, Any]:
    """What a step's expressions see outside ``decide()`` (a worker evaluating a step's
    options when it runs the attempt): the same view as conditions."""
    return _Scope(record, run, now, defn)


class _Scope(Mapping[str, Any]):
    """What expressions see (DESIGN §2). ``steps`` is built on first use, and only for the
    steps asked for: an expression reads one or two of them, a run may have many."""

    __slots__ = ("_defn", "_now", "_record", "_run")
    _NAMES = ("record", "vars", "input", "steps", "now")

    def __init__(self, record: dict[str, Any], run: Run, now: str,
                 defn: OrchestrationDefinition) -> None:
        self._record, self._run, self._now, self._defn = record, run, now, defn

    def __getitem__(self, name: str) -> Any:
        if name == "record":
            return self._record
        if name == "vars":
            return self._run.vars
        if name == "input":  # decimals are stored as exact strings: typed back to Decimal
            return typed_values(self._defn.trigger.input, self._run.input)
        if name == "steps":
            return _StepsView(self._run, self._defn)
        if name == "now":
            return self._now
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._NAMES)

    def __len__(self) -> int:
        return len(self._NAMES)


class _StepsView(Mapping[str, Any]):
    """``steps.NAME``: status, iteration, and output or error, made when read."""

    __slots__ = ("_defn", "_steps")

    def __init__(self, run: Run, defn: OrchestrationDefinition) -> None:
        self._steps, self._defn = run.steps, defn

    def __getitem__(self, name: str) -> dict[str, Any]:
        sr = self._steps[name]
        # (``_value_``: the member's string, without the ``value`` property's call)
        view: dict[str, Any] = {"status": sr.status._value_, "iteration": sr.iteration}
        if sr.output is not None:
            # A form's decimals are stored as exact strings: typed back to Decimal.
            form = decimal_forms(self._defn).get(name)
            view["output"] = typed_values(form, sr.output) \
                if form and isinstance(sr.output, dict) else sr.output
        if sr.error is not None:
            view["error"] = sr.error
        return view

    def __iter__(self) -> Iterator[str]:
        return iter(self._steps)

    def __len__(self) -> int:
        return len(self._steps)
