"""A step waiting for a worker that has its flow, as an operator sees it.

A worker that claims a background step whose flow it does not have (the flow was added
after the worker imported its project's flow modules) hands the job back to the queue for a
while, for a worker that has the flow (:meth:`baton.runtime.worker.Worker._flow_not_here`).
The step stays ``running`` all along. So that ``baton runs show``, the API's run and the run
page can say why, each hand-back is audited on the run (:data:`HANDED_BACK`), in the commit
that hands the job back: only that path writes it, never a step that runs.

Read back, the run's last hand-back of a step that is still running the same iteration and
attempt is its wait (:func:`waits_from_events`). It tells what the last claim found: a worker
that has the flow may hold the job by now, in which case the step completes once its flow
returns (and is shown as it is then).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any

from baton.engine.state import Run
from baton.engine.status import RUN_IN_PROGRESS, STEP_RUNNING
from baton.rows import audit_event

HANDED_BACK = "step_handed_back"
"""The audit event of a step's job handed back: its worker does not have the step's flow."""


def handed_back_row(run: Run, step: str, iteration: int, attempt: int | None, *, flow: str,
                    claim: int, claims: int, next_at: str, worker: str, message: str,
                    now: str) -> dict[str, Any]:
    """The :data:`HANDED_BACK` event of ``step``'s job, claimed for the ``claim``-th time of
    ``claims`` by ``worker``, which does not have ``flow`` (``message`` says why, as near as
    the worker can tell); it is claimed again from ``next_at``. (``error`` and
    ``next_retry_at``: what a timeline says of any ``step_*`` event.)"""
    stage = run.steps[step].stage if step in run.steps else None
    return dict(audit_event(HANDED_BACK, "system", now, run.record_id, run.id, {
        "step": step, "stage": stage, "iteration": iteration, "attempt": attempt,
        "flow": flow, "claim": claim, "claims": claims, "worker": worker,
        "error": {"type": "FlowNotHere", "message": message},
        "next_retry_at": next_at}))


def waits_from_events(run: Run, events: Iterable[Mapping[str, Any]],
                      steps: Collection[str] | None = None) -> dict[str, dict[str, Any]]:
    """Step name -> its wait (:func:`wait_view`), for each step of ``run`` (of ``steps``, if
    given) that is running the iteration and attempt its last hand-back in ``events`` (the
    run's audit events, in order: others are passed over) was for."""
    if run.status is not RUN_IN_PROGRESS:
        return {}
    found: dict[str, tuple[tuple[Any, Any], str, Mapping[str, Any]]] = {}  # (key, since, e)
    for e in events:
        if e.get("type") != HANDED_BACK:
            continue
        d = e.get("data") or {}
        name = d.get("step")
        if not isinstance(name, str) or (steps is not None and name not in steps):
            continue
        sr = run.steps.get(name)
        if sr is None or sr.status is not STEP_RUNNING or d.get("iteration") != sr.iteration \
                or d.get("attempt") not in (None, sr.attempts):
            found.pop(name, None)  # (an earlier attempt's, or iteration's)
            continue
        key = (d.get("iteration"), d.get("attempt"))
        before = found.get(name)
        since = before[1] if before is not None and before[0] == key else str(e.get("at"))
        found[name] = (key, since, e)
    return {name: wait_view(e, since=since) for name, (_, since, e) in found.items()}


def wait_view(event: Mapping[str, Any], *, since: str | None = None) -> dict[str, Any]:
    """A step's wait as the run view shows it (``waiting`` of a step), from its last
    hand-back: the flow; ``tries``, how many times a worker claimed it without the flow, of
    ``max_tries`` (then the step fails); ``next_try_at``, when it may be claimed again;
    ``last_try_at`` and ``since`` (the first hand-back of this attempt); which ``worker``
    lacked it; and ``message``, why, as that worker told."""
    d = event.get("data") or {}
    return {"reason": "flow_not_in_worker", "flow": d.get("flow"), "tries": d.get("claim"),
            "max_tries": d.get("claims"), "next_try_at": d.get("next_retry_at"),
            "last_try_at": event.get("at"), "since": since or event.get("at"),
            "worker": d.get("worker"), "message": (d.get("error") or {}).get("message")}


def waiting_text(wait: Mapping[str, Any]) -> str:
    """``waiting for a worker that has flow 'x' (2 tries of 9, next at T)``: one line."""
    tries = wait.get("tries")
    count = f"{tries} {'try' if tries == 1 else 'tries'}"
    if wait.get("max_tries"):
        count += f" of {wait['max_tries']}"
    return (f"waiting for a worker that has flow {wait.get('flow')!r} ({count}, next at "
            f"{wait.get('next_try_at')}): {wait.get('message')}")


def running_steps(run: Run, candidates: Iterable[str]) -> list[str]:
    """The steps of ``candidates`` that ``run`` is running (those a wait may be for)."""
    if run.status is not RUN_IN_PROGRESS:
        return []
    return [n for n in candidates
            if (sr := run.steps.get(n)) is not None and sr.status is STEP_RUNNING]


def flow_waits(store: Any, run: Run, candidates: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The waits of the steps of ``candidates`` (background steps) that ``run`` is running,
    read from its hand-back events (one query of the run's events of that type; none when no
    such step is running)."""
    names = running_steps(run, candidates)
    if not names:
        return {}
    with store.read() as tx:
        events = tx.events_txn(run_id=run.id, types=[HANDED_BACK])
    return waits_from_events(run, events, set(names))


def fill_waits(detail: dict[str, Any], store: Any, run: Run) -> dict[str, Any]:
    """``detail`` (:func:`baton.runtime.views.run_detail`'s) with the ``waiting`` of each of
    its running steps a worker handed back for want of its flow filled in (None for every
    other step)."""
    steps = detail.get("steps") or []
    # (every running step: only a background step is handed back, and a type named here
    # would load the step types on the CLI's lean read path)
    waits = flow_waits(store, run, [s["name"] for s in steps
                                    if s.get("status") == STEP_RUNNING.value])
    for s in steps:
        s["waiting"] = waits.get(s["name"])
    return detail
