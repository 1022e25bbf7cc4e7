"""Compensation: the ``rollback`` steps that undo a plan's completed steps (DESIGN §2.4).

Pure: graphs in, graphs out. A rollback runs after the rollbacks of the steps that
depended on its step (reverse dependency order). A cancel runs them in a compensation run
of their own (:func:`compensation_graph`). An amendment puts them into the amended plan
(:func:`amended_graph`), where a changed step's re-execution waits for its own rollback:
the old effect is undone before the new one is made, a rollback in fallout holds the
re-execution, and a later amendment or cancel finds the rollbacks not yet done in the plan.

Which steps are compensated (:func:`may_have_acted`): the completed ones, and those whose
effect may exist although they did not complete — a step the engine handed an attempt to
the workers for (``attempts`` > 0) that did not leave the plan before (running: its call
in flight, or waiting for a retry after a timeout or a 5xx whose effect is unknown; in
fallout or failed, its retries spent; skipped by an operator after its attempts, say
after a timeout: skipping moves the plan on, it does not undo what the attempts did).
``attempts`` grows in the transaction that enqueues the attempt's job
(``schedule_attempt``), and only job steps (callout, mcp, background, ai) have any; a
worker makes the call, or runs the flow, outside any transaction, so from then on nothing
in the run says the other system did not act. A step never attempted (``attempts`` 0:
waiting for its ``after`` or ``when``, a pause, an interactive step's work item, a
milestone, or skipped before any attempt) sent nothing and gets no rollback; nor does one
canceled earlier (an earlier amendment removed it, and compensated it then).

A rollback made here is told what it undoes, in its input's ``plan`` (:func:`undo_facts`):
``plan.undo`` is ``{step, status, attempts, idempotency_key, uncertain}`` — the status the
step had (``completed``; or ``running``/``fallout``/``failed``/``skipped``: its effect
unknown, so the other system may have nothing to undo), and the key all its attempts sent
(``RUN:STEP:ITERATION`` of the plan's run: one key per iteration, the same on every retry),
by which the other system finds the effect to undo, or answers that it has none. The
rollback's own calls send a key of their own: sending the step's key would replay the
step's call.

``uncertain`` (:func:`uncertain`) is true when the step did not complete and its last
answer was no clean refusal: its call in flight, timed out, answered 5xx (or 409, 429...),
so the other system may still be processing it and book it after the rollback found
nothing. A callout rollback whose ``success`` takes an answer outside 2xx (``[2xx, 404]``:
"nothing to undo") then does not take that answer at once: it tries again, with its
``retry``'s backoff, and takes it on its last try, the timeline saying so
(``rollback_nothing_to_undo``; :mod:`baton.steps.callout`). Undoing a completed step (or
one whose call was refused, a 4xx), "nothing to undo" is final. An mcp rollback's
"nothing to undo" answers are those its ``nothing_to_undo`` condition holds for
(:mod:`baton.steps.mcp`), the same rule. A flow rollback reads
``ctx.input.plan.undo.uncertain`` and decides for itself (a retryable error tries again).
A rollback told uncertain that has no ``retry`` of its own (a plan has no orchestration
``retry``) is given :data:`UNCERTAIN_RETRY` when it is made, so that it does not take the
first "nothing to undo" (nor go to fallout at its first retryable failure) while the step's
call may still land; one told certain keeps what it says (no ``retry``: none).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from baton.plans.generate import GRAPH_FORMAT, STAGE, with_line_views
from baton.steps import registry
from baton.steps.callout import CARRIED_KEY, idempotency_key

KEY_IN_USE = 409  # a concurrent repeat of a call whose key is still being processed

ROLLBACK = "rollback_"
# A rollback that is settled is not pending: it completed, or an operator skipped it.
SETTLED = frozenset({"completed", "skipped"})


# The status of a step that was attempted whose effect is not compensated: it left the plan
# before (canceled by an earlier amendment, which compensated it then). A step an operator
# skipped after its attempts is compensated: the skip moved the plan on without it, it did
# not undo what its attempts may have done.
_LEFT = "canceled"
UNDO = "undo"  # the key of a rollback's input ``plan`` that says what it undoes
# Answers to a step's call that say the other system is still busy with it (or with its
# key), not that it refused it: a step whose last attempt got one is uncertain.
_BUSY = frozenset({408, 409, 423, 425, 429})
UNCERTAIN_RETRY: Mapping[str, Any] = {"max": 3, "backoff": "exponential", "initial": "30s",
                                      "max_delay": "10m"}
"""The ``retry`` a rollback told ``uncertain`` is given when it has none (a job step: a
callout, an mcp tool call, a flow): 4 tries over about 3.5 minutes (30 s, 1 min, 2 min
apart) before it takes "nothing to undo" — or, failing, goes to fallout."""


def may_have_acted(status: str, attempts: int) -> bool:
    """Whether a plan step's effect may exist at the other system, so that a cancel, or an
    amendment removing or changing it, runs its ``rollback``: it completed; or it was
    attempted and did not leave the plan before (canceled). ``attempts`` > 0 is the line
    between "may have acted" and "sent nothing": the engine counts an attempt in the
    transaction that enqueues its job, and from then on a worker may claim it and make the
    call (or run the flow) outside any transaction — in flight when the order is canceled
    (``running``), answered with a timeout or a 5xx after the other system acted
    (``running``, waiting for its retry; or ``fallout``/``failed`` once its retries are
    spent; or ``skipped`` by an operator from fallout, which moves the plan on but does not
    undo what the attempts did), or its answer arriving after the cancel (dropped as stale:
    the run never learns it). A job still queued counts too: the plan cannot know whether a
    worker has claimed it. ``status``: the step's status value."""
    if status == "completed":
        return True
    return attempts > 0 and status != _LEFT


def uncertain(status: str, error: Mapping[str, Any] | None) -> bool:
    """Whether a plan step that may have acted (:func:`may_have_acted`) may yet act after
    its rollback looked: it did not complete, and its last attempt got no clean refusal —
    its call in flight, or it timed out, or was answered 5xx or "busy" (408, 409, 423,
    425, 429), so the other system may still be processing it. A step whose last answer
    refused it (any other 4xx, not retried: its ``error.call.status``, the error not
    retryable) is not: the other system answered, and booked nothing. ``error``: the
    step's error (its last attempt's), if any."""
    if status == "completed":
        return False
    if not error or error.get("retryable") is not False:
        return True
    call = error.get("call")
    answered = call.get("status") if isinstance(call, Mapping) else None
    return not (isinstance(answered, int) and 400 <= answered < 500
                and answered not in _BUSY)


def undo_facts(run_id: str, step: str, status: str, iteration: int,
               attempts: int, error: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the rollback of ``step`` (of the plan's run ``run_id``) is told it undoes, as
    its input's ``plan.undo``: the status the step had, its attempts, the idempotency key
    every attempt of its ``iteration`` sent (a callout's or mcp step's call; for a flow the
    same name of its iteration), so the other system can find the effect, or answer that
    there is nothing to undo, and whether that answer may come too early (``uncertain``:
    :func:`uncertain` of the step's status and ``error``)."""
    return {"step": step, "status": status, "attempts": attempts,
            "idempotency_key": idempotency_key(run_id, step, iteration),
            "uncertain": uncertain(status, error)}


def rollback_name(step: str) -> str:
    return ROLLBACK + step


def _stage_steps(graph: Mapping[str, Any]) -> list[dict[str, Any]]:
    return list(graph["definition"]["stages"][0]["steps"])


def pending_rollbacks(graph: Mapping[str, Any], status: Mapping[str, str]) -> dict[str, str]:
    """Compensated step -> its rollback step, for the graph's rollback steps (an
    amendment's) that are not settled by ``status`` (step name -> status value)."""
    return {f["compensates"]: f["name"] for f in graph["steps"]
            if "compensates" in f and status.get(f["name"]) not in SETTLED}


def _dependents(steps: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s["name"]: [] for s in steps}
    for s in steps:
        for d in s.get("after") or ():
            out.setdefault(d, []).append(s["name"])
    return out


def _first_undone(dependents: Mapping[str, list[str]], step: str,
                  undone: Mapping[str, str]) -> list[str]:
    """The rollbacks of the nearest steps downstream of ``step`` (directly or through
    others) that are undone too: they run before ``step``'s."""
    first: list[str] = []
    seen: set[str] = set()
    stack = list(dependents.get(step, ()))
    while stack:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        if d in undone:
            first.append(undone[d])
        else:
            stack.extend(dependents.get(d, ()))
    return first


def rollback_steps(graph: Mapping[str, Any], undo: Sequence[str],
                   pending: Mapping[str, str], *, line_views: bool = False,
                   told: Mapping[str, Mapping[str, Any]] | None = None
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The rollback steps of ``undo`` (steps of ``graph`` that name a ``rollback`` and may
    have acted: :func:`may_have_acted`) and their plan facts, each after the rollbacks of
    the undone or ``pending`` steps downstream of its step. A rollback's input ``plan`` is
    its step's, with ``told``'s entry for its step as ``undo`` (:func:`undo_facts`);
    ``line_views``: with its lines' views (as the step saw them) rather than their keys,
    for a graph whose ``lines`` are other lines (an amended plan's)."""
    if not undo:
        return [], []
    steps = (with_line_views(graph)["stages"][0]["steps"] if line_views
             else _stage_steps(graph))
    plan_input = {s["name"]: (s.get("input") or {}).get("plan") for s in steps}
    dependents = _dependents(steps)
    facts = {f["name"]: f for f in graph["steps"]}
    undone = {**pending, **{n: rollback_name(n) for n in undo}}
    position = {rollback_name(s["name"]): i for i, s in enumerate(steps)}  # (else -1)
    out_steps: list[dict[str, Any]] = []
    out_facts: list[dict[str, Any]] = []
    for n in undo:
        first = _first_undone(dependents, n, undone)
        rb = dict(facts[n]["rollback"])
        plan = plan_input[n]
        said = (told or {}).get(n)
        if said is not None:
            plan = {**(plan or {}), UNDO: dict(said)}
            if said.get("uncertain") is True and "retry" not in rb and _retried(rb):
                rb["retry"] = dict(UNCERTAIN_RETRY)
        rb["input"] = {**(rb.get("input") or {}), "plan": plan}
        rb["name"] = rollback_name(n)
        if first:
            rb["after"] = sorted(dict.fromkeys(first), key=lambda r: position.get(r, -1))
        out_steps.append(rb)
        out_facts.append({"name": rb["name"], "template": facts[n]["template"],
                          "scope": facts[n]["scope"], "instance": facts[n]["instance"],
                          "lane": facts[n].get("lane"), "lines": facts[n]["lines"],
                          "compensates": n})
    return out_steps, out_facts


def _retried(step: Mapping[str, Any]) -> bool:
    """Is ``step`` of a type whose attempts a ``retry`` repeats (one a worker runs)?"""
    kind = step.get("type")
    found = registry.get(kind) if isinstance(kind, str) else None
    return found is not None and found.job_kind is not None


def _undo(graph: Mapping[str, Any], acted: Collection[str]) -> list[str]:
    """The steps among ``acted`` that name a rollback, in the graph's step order."""
    facts = {f["name"]: f for f in graph["steps"]}
    return [s["name"] for s in _stage_steps(graph)
            if s["name"] in acted and "rollback" in facts.get(s["name"], {})]


def compensation_graph(graph: Mapping[str, Any], status: Mapping[str, str], name: str,
                       keys: Mapping[str, str] | None = None,
                       acted: Mapping[str, Mapping[str, Any]] | None = None
                       ) -> dict[str, Any]:
    """A canceled plan's compensation: the rollback steps of its steps that may have
    acted, and its pending rollback steps (an amendment's, not done yet: they are done
    now), in reverse dependency order. ``status``: step name -> status value in the plan's
    run. ``acted``: the steps that may have acted (:func:`may_have_acted`) -> what their
    rollback is told (:func:`undo_facts`); without it, the completed steps of ``status``,
    told nothing. ``keys``: pending rollback step -> the idempotency key its attempts in
    the plan's run sent (:func:`carry_key`: a callout or mcp step among them sends it
    again, not one of its own)."""
    if acted is None:
        undo = _undo(graph, {n for n, s in status.items() if s == "completed"})
    else:
        undo = _undo(graph, acted)
    pending = pending_rollbacks(graph, status)
    out_steps, out_facts = rollback_steps(graph, undo, pending, told=acted)
    # A pending rollback runs as the plan held it, after the rollbacks it waited for there
    # that run here too, and after those of the steps downstream of its step.
    steps = _stage_steps(graph)
    by_name = {s["name"]: s for s in steps}
    dependents = _dependents(steps)
    undone = {**pending, **{n: rollback_name(n) for n in undo}}
    here = set(pending.values())
    for fact in graph["steps"]:
        if fact["name"] not in here:
            continue
        rb = dict(by_name[fact["name"]])
        after = [a for a in rb.get("after") or () if a in here]
        after += _first_undone(dependents, fact["compensates"], undone)
        rb.pop("after", None)
        if after:
            rb["after"] = list(dict.fromkeys(after))
        key = (keys or {}).get(rb["name"])
        if key is not None:
            rb = carry_key(rb, key)
        out_steps.append(rb)
        out_facts.append(dict(fact))
    definition = dict(graph["definition"])
    definition["name"] = name
    definition["label"] = "Compensation of " + str(definition.get("label", name))
    definition["stages"] = [{"name": STAGE, "steps": out_steps}]
    return {"format": GRAPH_FORMAT, "definition": definition, "steps": out_facts,
            "lanes": graph["lanes"], "lines": graph["lines"], "pinned": graph.get("pinned", {}),
            "navigated": graph.get("navigated")}


def carry_key(step: Mapping[str, Any], key: str) -> dict[str, Any]:
    """A pending rollback ``step`` that the canceled plan's run began, as its compensation
    runs it: a callout sends the idempotency ``key`` its attempts in the plan sent (the
    plan's run id, the step, its iteration there), so the other system, which may have
    done the undo already, answers with its first answer instead of doing it twice; and a
    ``409`` (the key still in use by the plan's call, in flight when the order was canceled)
    is retried like a ``503``, per the step's ``retry``. An mcp step's tool call sends it
    likewise (its ``_meta``, its header over http, its ``idempotency_argument``). Other
    step types send no key."""
    if step.get("type") == "mcp":
        return {**step, CARRIED_KEY: key}
    if step.get("type") != "callout":
        return dict(step)
    out = {**step, CARRIED_KEY: key}
    out["retry_on"] = sorted({*(step.get("retry_on") or ()), KEY_IN_USE})
    return out


def real_after(graph: Mapping[str, Any]) -> dict[str, list[str]]:
    """Each plan step's ``after`` without the rollback steps it waits for (an amended
    plan's wiring, not the fulfillment's): what a diff compares."""
    rollbacks = {f["name"] for f in graph["steps"] if "compensates" in f}
    return {s["name"]: [a for a in s.get("after") or () if a not in rollbacks]
            for s in _stage_steps(graph) if s["name"] not in rollbacks}


def amended_graph(old: Mapping[str, Any], new: Mapping[str, Any], compensate: Sequence[str],
                  status: Mapping[str, str],
                  told: Mapping[str, Mapping[str, Any]] | None = None
                  ) -> tuple[dict[str, Any], list[str]]:
    """``new`` (the graph generated for the order's lines now) with rollback steps: the
    old plan's (kept as they are, and so in the state they are in) and those of
    ``compensate`` (the steps the amendment removes or changes that may have acted —
    completed, or attempted and in flight, waiting for a retry, in fallout, skipped:
    :func:`may_have_acted` — a step undone once before gets its rollback afresh), each
    told ``told``'s entry for its step (:func:`undo_facts`). Every step of ``new`` that
    has a rollback step in the plan waits for it: a changed step is done again only once
    its old effect is undone. Returns the graph and the names of the rollback steps it
    adds."""
    old_defs = {s["name"]: s for s in _stage_steps(old)}
    wanted = set(compensate)
    undo = [n for n in old_defs if n in wanted]  # (in the plan's step order)
    fresh_steps, fresh_facts = rollback_steps(old, undo, pending_rollbacks(old, status),
                                              line_views=True, told=told)
    fresh = {f["name"] for f in fresh_facts}
    kept = [f for f in old["steps"] if "compensates" in f and f["name"] not in fresh]
    # (a kept rollback's lines are its own views already: see rollback_steps)
    rb_steps = [old_defs[f["name"]] for f in kept] + fresh_steps
    rb_facts = [dict(f) for f in kept] + fresh_facts
    waits = {f["compensates"]: f["name"] for f in rb_facts}
    steps = []
    for s in _stage_steps(new):
        rb = waits.get(s["name"])
        if rb is not None:
            s = {**s, "after": [*(a for a in s.get("after") or () if a != rb), rb]}
        steps.append(s)
    definition = {**new["definition"],
                  "stages": [{**new["definition"]["stages"][0], "steps": steps + rb_steps}]}
    return {**new, "definition": definition, "steps": [*new["steps"], *rb_facts]}, \
        [f["name"] for f in fresh_facts]
