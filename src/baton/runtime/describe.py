"""An audit event as one line of a timeline: the one description the CLI
(``baton records timeline``, the demos' "why" sections) and the web pages (a record's, a
run's, a work item's timeline) both print.

Never cut: a terminal table wraps the line, a page wraps it too (and folds a huge one
behind "show all"); ``--json`` and the API have the event's data as it is. A failure
says its error's type and message. The two faces differ in notation only (:class:`Notation`:
``intake.read #1`` and ``assignee=ann`` in a terminal's narrow columns, ``intake / read
(iteration 1)`` and ``assignee: ann`` on a page), never in what a line says.

Light imports only (the CLI's lean read path prints timelines): what a line needs of the
AI, intake and routing modules is imported where it is used.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any


@dataclass(frozen=True)
class Notation:
    """How a face writes a step's place, a stage's, a named value and a changed value."""

    step: Callable[[str, Any], str]  # (``stage.step`` or ``stage / step``, iteration)
    stage: Callable[[Any, Any], str]  # (stage, iteration)
    pair: str  # between a name and its value (``reason=x``, ``reason: x``)
    after: str  # a decision's stage (``after triage #1``, ``after stage triage (...)``)
    value: Callable[[Any], str]  # a record's field value (``'x'``, ``x``)
    place_join: str  # between a stage's and a step's name


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)


TERMINAL = Notation(step=lambda where, it: f"{where} #{it}",
                    stage=lambda stage, it: f"{stage} #{it}", pair="=", after="after ",
                    value=repr, place_join=".")
PAGE = Notation(step=lambda where, it: f"{where} (iteration {it})",
                stage=lambda stage, it: f"{stage} (iteration {it})", pair=": ",
                after="after stage ", value=_value, place_join=" / ")

_WORK_ITEM_KEYS = ("assignee", "from", "to", "reason", "on_behalf_of", "expression", "value",
                   "used")


def describe_event(e: Mapping[str, Any], notation: Notation = TERMINAL) -> str:
    """``e`` (an audit event: ``type``, ``data``, ``actor``) as one line of text."""
    from baton.ai.describe import describe_answer, is_ai_answer
    from baton.ai.views import describe_ai_call, describe_child_link
    from baton.intake.views import describe_message
    from baton.runtime.views import approval_history_line

    d = e.get("data") or {}
    t = str(e.get("type") or "")
    n = notation
    if t == "ai_call":
        return describe_ai_call(d)
    link = describe_child_link(t, d)
    if link is not None and t == "child_runs_started":
        return link
    if t == "message_received":
        return describe_message(d)
    if t in ("routed", "offered", "waiting_for_routing"):
        from baton.work.routing import describe_decision

        return describe_decision(d, t)
    if t in ("offer_accepted", "offer_declined", "offer_expired"):
        from baton.work.routing import describe_offer

        return describe_offer(t, d)
    if t == "record_updated":
        return ", ".join(f"{k}: {n.value(v[0])} → {n.value(v[1])}"
                         for k, v in (d.get("changes") or {}).items())
    approval = approval_history_line(t, str(e.get("actor") or ""), d)
    if approval is not None:
        return _one_line(approval)
    if t == "decision_taken":
        label = f" ({d['label']})" if d.get("label") else ""
        return f"{n.after}{n.stage(d.get('stage'), d.get('iteration'))} → {d.get('goto')}{label}"
    if t == "step_completed" and is_ai_answer(d.get("output")):  # what the AI decided, and why
        return f"{_at_step(d, n)} {describe_answer(d['output'])}"
    described = _DESCRIBED.get(t)
    if described is not None:
        return _one_line(described(d, n))
    if t.startswith(("step_", "sla_")) or t == "milestone_reached":
        return _one_line(_step_event(t, d, n))
    if t.startswith("stage_"):
        return n.stage(d.get("stage"), d.get("iteration"))
    if t.startswith("work_item_"):
        return _one_line(_work_item(d, n))
    if t == "record_created":
        fields = ", ".join(f"{k}={n.value(v)}" for k, v in (d.get("fields") or {}).items()
                           if v is not None)
        return f"{fields}; {link}" if link else fields
    if t == "run_started":
        return f"{d.get('orchestration')} v{d.get('version')}"
    if t == "mcp_called":  # a tool call of an mcp step (arguments already redacted)
        args = json.dumps(d.get("arguments"), ensure_ascii=False)
        text = (f"{_step_only(d, n)}: {d.get('connection')}.{d.get('tool')}"
                f" {args} → {d.get('outcome')} in {d.get('duration_ms')} ms")
        return _one_line(f"{text}: {d['error']}" if d.get("error") else text)
    return _one_line(_pairs(d))


def _one_line(text: str) -> str:
    """``text`` on one line: a message of several lines (a flow's error) joined."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip()) \
        if "\n" in text or "\r" in text else text


def error_text(error: Any) -> str:
    """A failure's error as its type and message (``StepFailure: no agent free``), without
    its traceback; an error kept as text as it is."""
    if isinstance(error, Mapping):
        kind, message = error.get("type"), error.get("message")
        if kind and message is not None:
            return f"{kind}: {message}"
        return str(message if message is not None else kind or _pairs(error))
    return "" if error is None else str(error)


def _pairs(d: Mapping[str, Any]) -> str:
    """An event no line below describes: each of its keys with its value, whole."""
    return ", ".join(f"{k}: {_value(v)}" for k, v in d.items())


def _listed(names: Any) -> str:
    return ", ".join(str(n) for n in names) if isinstance(names, list | tuple) else str(names)


def _at_step(d: Mapping[str, Any], n: Notation) -> str:
    """The step's place (``stage.step #iteration``) as far as the event says it."""
    where = n.place_join.join(str(d[k]) for k in ("stage", "step") if d.get(k) is not None)
    return n.step(where, d["iteration"]) if d.get("iteration") is not None else where


def _step_only(d: Mapping[str, Any], n: Notation) -> str:
    """The step's name and iteration (an event of a call, which does not say its stage)."""
    return _at_step({"step": d.get("step"), "iteration": d.get("iteration")}, n)


def _work_item(d: Mapping[str, Any], n: Notation) -> str:
    bits = [d.get("work_item", ""), d.get("step", "")]
    bits += [f"{k}{n.pair}{d[k]}" for k in _WORK_ITEM_KEYS if k in d]
    if "error" in d:
        bits.append(f"error: {error_text(d['error'])}")
    if "data" in d:
        bits.append(json.dumps(d["data"], ensure_ascii=False, default=str))
    return " ".join(str(b) for b in bits if b)


def _step_event(t: str, d: Mapping[str, Any], n: Notation) -> str:
    """The events of a step (``step_*``, ``sla_*``, ``milestone_reached``)."""
    at = _at_step(d, n)
    if t == "sla_in_jeopardy":
        return f"{at} in jeopardy: due {d.get('due_at')}"
    if t == "sla_overdue":
        return f"{at} overdue: was due {d.get('due_at')}"
    if t == "sla_calendar_missing":
        return (f"{at}: calendar {d.get('calendar')} is not deployed: "
                f"{d.get('note') or 'wall-clock time is counted'}")
    if t == "sla_routing_failed":
        return f"{at}: not routed again by rule {d.get('rule')}: {error_text(d.get('error'))}"
    if t == "step_result_stale":
        return (f"{at}: the {d.get('result')} result of attempt {d.get('attempt')} came after "
                f"the step moved on (step {d.get('step_status') or 'gone'} #"
                f"{d.get('step_iteration')}, run {d.get('run_status')}): dropped")
    bits = [at]
    if "error" in d:
        bits.append(error_text(d["error"]))
    if d.get("next_retry_at"):
        bits.append(f"(retry at {d['next_retry_at']})")
    if d.get("reason"):
        bits.append(f"reason: {d['reason']}")
    return " ".join(b for b in bits if b)


def _escalation(d: Mapping[str, Any], n: Notation) -> str:
    head = f"{d.get('step')}: escalation flow {d.get('flow')} ({d.get('reason')})"
    if "error" in d:
        return f"{head} failed: {error_text(d['error'])}"
    out = d.get("output")
    return f"{head} ran" + (f", returned {_value(out)}" if out else "")


def _email(d: Mapping[str, Any], n: Notation, what: str) -> str:
    subject = f"{d['subject']!r} " if d.get("subject") else ""
    to = f"to {_listed(d['recipients'])}" if d.get("recipients") else ""
    item = f" (work item {d['work_item']})" if d.get("work_item") else ""
    step = f"{d['step']}: " if d.get("step") else ""
    text = f"{step}e-mail {subject}{to}{item} {what}".replace("  ", " ")
    if d.get("attempt"):
        text += f" (attempt {d['attempt']})"
    if d.get("unresolved"):
        text += f"; no address for {_listed(d['unresolved'])}"
    if d.get("refused"):
        text += f"; refused by the server for {_listed(sorted(d['refused']))}"
    if d.get("reason"):
        text += f": {d['reason']}"
    if d.get("error"):
        text += f": {error_text(d['error'])}"
    if d.get("retry_at"):
        text += f"; retry at {d['retry_at']}"
    return text


def _incident(d: Mapping[str, Any], n: Notation, what: str) -> str:
    outcome = f" → {d['outcome']}" if d.get("outcome") else ""
    error = f": {error_text(d['error'])}" if d.get("error") else ""
    return (f"incident {d.get('incident')} ({d.get('kind')}, {d.get('orchestration')} "
            f"v{d.get('version')}) {what}{outcome}{error}, reason: {d.get('reason')}")


def _http_call(d: Mapping[str, Any], n: Notation) -> str:
    answer = d.get("status") if d.get("status") is not None else f"no answer: {d.get('error')}"
    return (f"{_step_only(d, n)}: {d.get('method')} {d.get('url')} → {answer} in "
            f"{d.get('duration_ms')} ms ({d.get('request_bytes')} B sent, "
            f"{d.get('response_bytes')} B received)")


def _child_event(d: Mapping[str, Any], n: Notation, t: str) -> str:
    step = f"step {d.get('step')}"
    if t == "child_run_finished":
        return f"{step}: child #{d.get('index')} {d.get('run_id')} {d.get('status')}"
    if t == "child_runs_canceled":
        return f"{step}: child runs canceled: {_listed(d.get('run_ids') or [])}"
    if t == "child_run_not_started":
        return f"{step}: child #{d.get('index')} not started: {error_text(d.get('error'))}"
    return f"{step}: child runs started again for elements {_listed(d.get('indexes') or [])}"


def _run_failed(d: Mapping[str, Any], n: Notation) -> str:
    if "reason" not in d:
        return _pairs(d)
    return " ".join([str(d["reason"])] + [f"{k}: {_value(v)}" for k, v in d.items()
                                          if k != "reason"])


_DESCRIBED: dict[str, Callable[[Mapping[str, Any], Notation], str]] = {
    "escalation_flow_ran": _escalation,
    "escalation_flow_failed": _escalation,
    "notification_requested": lambda d, n: (f"{d.get('step')}: notify "
                                            f"{_listed(d.get('recipients'))} ({d.get('reason')})"),
    "email_queued": partial(_email, what="queued"),
    "email_skipped": partial(_email, what="not sent: nobody to send it to"),
    "email_withdrawn": partial(_email, what="not sent"),
    "email_sent": partial(_email, what="sent"),
    "email_failed": partial(_email, what="failed"),
    "email_dropped": partial(_email, what="dropped after its last attempt"),
    "incident_retried": partial(_incident, what="retried"),
    "incident_dismissed": partial(_incident, what="dismissed"),
    "trigger_failed": lambda d, n: (f"{d.get('orchestration')} v{d.get('version')}: trigger "
                                    f"{d.get('expression')} could not be evaluated: "
                                    f"{error_text(d.get('error'))} (incident {d.get('incident')})"),
    "condition_flow_failed": lambda d, n: (f"evaluation flow {d.get('flow')} at "
                                           f"{d.get('site') or 'every site'} failed: "
                                           f"{error_text(d.get('error'))} "
                                           f"(incident {d.get('incident')})"),
    "job_failed": lambda d, n: (f"{d.get('job')} job" + (f" of step {d['step']}"
                                                         if d.get("step") else "")
                                + f" failed: {error_text(d.get('error'))} "
                                  f"(incident {d.get('incident')})"),
    "http_call": _http_call,
    "callback_waiting": lambda d, n: f"{_at_step(d, n)} waits for its callback",
    "callback_received_early": lambda d, n: (f"{_at_step(d, n)}: its callback came before its "
                                             "request's result: kept until it is recorded"),
    "callback_followed": lambda d, n: (f"{_at_step(d, n)}: callback for run {d.get('for_run')} "
                                       f"#{d.get('for_iteration')} {d.get('status')}"),
    "callback_forgotten": lambda d, n: f"{_at_step(d, n)}: callback forgotten: {d.get('reason')}",
    "fallout_retried": lambda d, n: f"{_at_step(d, n)} retried: {d.get('reason')}",
    "run_failed": _run_failed,
    "run_canceled": lambda d, n: f"reason: {d.get('reason')}",
    "run_resumed": lambda d, n: f"reason: {d.get('reason')}",
    "rollback_nothing_to_undo": lambda d, n: (
        f"{_step_only(d, n)}: nothing to undo for {d.get('undone')} (answered "
        f"{d.get('status', d.get('tool'))}), taken on try {d.get('tries')}"),
    "plan_generated": lambda d, n: (f"plan revision {d.get('revision')}: {d.get('steps')} steps "
                                    f"for {d.get('lines')} lines ({d.get('fulfillment')} "
                                    f"v{d.get('fulfillment_version')})"),
    "plan_canceled": lambda d, n: (f"plan revision {d.get('revision')} canceled: "
                                   f"{d.get('reason')}; compensation run "
                                   f"{d.get('compensation_run')} "
                                   f"(rollbacks: {_listed(d.get('rollbacks') or []) or 'none'})"),
    "record_deleted": lambda d, n: f"{d.get('object_type')} v{d.get('version')} deleted",
}


def _delegation(d: Mapping[str, Any], n: Notation) -> str:
    """A change of a user's delegation (no run, no record: the directory's audit trail;
    ``baton users show``). The directory says it, imported here only when one is said."""
    from baton.auth.directory import describe_delegation_change

    return describe_delegation_change(d)


_DESCRIBED["delegation_changed"] = _delegation
_DESCRIBED.update({t: partial(_child_event, t=t) for t in (
    "child_run_finished", "child_runs_canceled", "child_run_not_started",
    "child_runs_restarted")})
