"""``type: orchestration``: start child runs of another orchestration and wait for them.

One child (``input:`` a mapping of expressions, the child run's typed input, as
``baton runs start --input`` takes it), or one child per element of a list
(``for_each: '=...'``, the element is ``item`` and its position ``index`` in the
``input`` and record field expressions). The child runs on the parent's record
(``record: parent``, the default) or on a new record per child
(``record: {create: OBJECT_TYPE, fields: {...}}``), created in the transaction that starts
the children, which is the one that starts the step.

Pure like every hook here: starting the step emits :class:`StartChildRuns` (the runtime
creates the records and the runs, pinned to the child orchestration's active version, and
writes their ids into the step's ``children``); each child that ends sends
:class:`ChildRunFinished` to this run in the transaction of its own end.

* All children completed: the step completes; ``output.children[i]`` is child ``i``'s
  ``{run_id, record_id, vars}`` (a run's result is its variables), in element order.
* Some failed or were canceled: once none is still running, the step fails (fallout by
  default, with the failed children listed). An operator **retry** starts a *new* run for
  each child that did not complete, with the same input and record as before (its
  earlier runs are kept in ``previous_run_ids``); completed children are kept. **skip** and
  **complete** act as for any step. A failed child resumed by an operator and then
  completing also counts, while the step waits in fallout.
* Canceling the step (the run canceled or failed, its stage exited) cancels the children
  still running or failed, each by a job; they cancel their own children in turn.
* ``wait: false``: the step completes in the transaction that starts the children
  (``output: {count, waited: false}``); they run on their own, their ends are not waited
  for (the step's ``children`` still lists their runs and records).

Case splitting: an ``ai`` step ``task: match`` with ``many: true`` gives the ids of every
record a message names (``output.record_ids``); ``for_each`` over them with
``record: {create: Case, fields: {parent: '=record.id', account: '=item'}}`` makes one child
record per account, linked to the message's record (a ``ref`` field), each with its run.
The parent's timeline shows ``child_runs_started`` (each child's run and record), each
child's the ``record_created`` event naming the parent run and record.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from baton.definitions.checks import (
    Checker,
    ChildTarget,
    Scope,
    check_expression,
    check_input,
    check_keys,
    describe,
    expect_identifier,
    expect_int,
    expect_mapping,
    join,
    suggest,
)
from baton.definitions.model import StepDefinition
from baton.engine.events import CancelChildRuns, ChildRunFinished, ChildStart, StartChildRuns
from baton.engine.state import StepRun
from baton.engine.status import STEP_FALLOUT, STEP_RUNNING
from baton.errors import ExpressionError
from baton.expressions import evaluate, is_expression
from baton.steps.base import DecideContext, StepTypeBase, expression_error

MAX_CHILDREN = 1000
"""Default cap on the children one step starts (``max_children`` changes it per step)."""
MAX_CHILDREN_LIMIT = 10_000
"""The most ``max_children`` may allow: the children live in the step's state."""
RECORD_KEYS = ("create", "fields")
ENDED = ("completed", "failed", "canceled")


class Orchestration(StepTypeBase):
    name = "orchestration"
    keys = ("orchestration", "input", "for_each", "record", "max_children", "wait")

    # ---- validation -------------------------------------------------------------------
    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if "orchestration" not in step:
            ck.add(join(path, "orchestration"),
                   "required key 'orchestration' is missing (the orchestration to start)")
        else:
            name = expect_identifier(ck, join(path, "orchestration"), step["orchestration"],
                                     "orchestration name")
            known = scope.orchestrations
            if name is not None and known is not None:
                if name not in known:
                    ck.add(join(path, "orchestration"),
                           f"unknown orchestration '{name}'{suggest(name, known)}")
                else:
                    _check_target(ck, path, step, name, known[name])
        item_scope = replace(scope, allow_item="for_each" in step)
        if "for_each" in step:
            fe = step["for_each"]
            if isinstance(fe, str) and is_expression(fe):
                check_expression(ck, join(path, "for_each"), fe, scope)
            else:
                ck.add(join(path, "for_each"),
                       f"for_each takes an '=expression' giving a list, got {describe(fe)}")
        if "input" in step:
            check_input(ck, join(path, "input"), step["input"], item_scope)
        if "record" in step:
            _check_record(ck, join(path, "record"), step["record"], item_scope)
        if "wait" in step and not isinstance(step["wait"], bool):
            ck.add(join(path, "wait"), "wait takes true (the default: the step waits for its "
                                       f"children) or false (it starts them and goes on), got "
                                       f"{describe(step['wait'])}")
        if "max_children" in step:
            cap = expect_int(ck, join(path, "max_children"), step["max_children"], 1)
            if cap is not None and cap > MAX_CHILDREN_LIMIT:
                ck.add(join(path, "max_children"),
                       f"max_children is at most {MAX_CHILDREN_LIMIT}, got {cap}")

    # ---- decide -----------------------------------------------------------------------
    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        d.set_step(sr, STEP_RUNNING)
        d.audit("step_started", step=sr.name, stage=sr.stage, iteration=sr.iteration,
                type=self.name)
        if sr.children is not None:  # an operator retry: only the children not completed
            self._restart(d, sr, step)
            return
        try:
            starts = _child_starts(d, step)
        except _StepError as exc:
            d.fail_step(sr, step, exc.error)
            return
        sr.children = [{"index": c.index, "status": "in_progress", "run_id": None,
                        "record_id": c.record_id, "input": c.input,
                        **({"create": c.create, "fields": c.fields} if c.create else {})}
                       for c in starts]
        if not starts:  # an empty list: nothing to wait for
            self._complete(d, sr)
            return
        d.commands.append(StartChildRuns(sr.name, sr.iteration, step.options["orchestration"],
                                         tuple(starts)))
        if step.options.get("wait") is False:  # started (in this transaction): go on
            d.complete_step(sr, {"count": len(starts), "waited": False}, "system",
                            via="children")

    def _restart(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        assert sr.children is not None
        sr.touch()  # (its entries change in place)
        starts = []
        for e in sr.children:
            if e["status"] == "completed":
                continue
            if e.get("run_id"):
                e.setdefault("previous_run_ids", []).append(e["run_id"])
            e.update(status="in_progress", run_id=None)
            e.pop("error", None)
            starts.append(ChildStart(e["index"], e.get("input") or {}, e.get("record_id"),
                                     None if e.get("record_id") else e.get("create"),
                                     None if e.get("record_id") else e.get("fields")))
        d.audit("child_runs_restarted", step=sr.name, iteration=sr.iteration,
                indexes=[c.index for c in starts])
        if not starts:
            self._complete(d, sr)
            return
        d.commands.append(StartChildRuns(sr.name, sr.iteration, step.options["orchestration"],
                                         tuple(starts)))

    def on_child(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                 ev: ChildRunFinished) -> bool:
        children = sr.children
        if sr.status not in (STEP_RUNNING, STEP_FALLOUT) or children is None \
                or not 0 <= ev.index < len(children) or ev.status not in ENDED:
            return False
        e = children[ev.index]
        if e.get("run_id") != ev.run_id or e["status"] in ("completed", ev.status):
            return False  # a run of an earlier retry, or this end already counted
        if sr.status is STEP_FALLOUT and ev.status != "completed":
            return False  # the step waits for an operator anyway
        e["status"] = ev.status
        sr.touch()  # (an entry changed in place)
        if ev.status == "completed":
            e["output"] = dict(ev.output or {})
            e.pop("error", None)
        else:
            e["error"] = dict(ev.error or {})
        d.audit("child_run_finished", step=sr.name, iteration=sr.iteration, index=ev.index,
                run_id=ev.run_id, status=ev.status)
        if any(c["status"] == "in_progress" for c in children):
            return True
        if all(c["status"] == "completed" for c in children):
            self._complete(d, sr)
        elif sr.status is STEP_RUNNING:
            d.fail_step(sr, step, _failure(step, children))
        return True

    def on_cancel(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  reason: str) -> None:
        ids = tuple(c["run_id"] for c in sr.children or ()
                    if c.get("run_id") and c["status"] in ("in_progress", "failed"))
        if ids:
            d.commands.append(CancelChildRuns(sr.name, sr.iteration, ids, reason))

    def _complete(self, d: DecideContext, sr: StepRun) -> None:
        children = sr.children or []
        output = {"count": len(children),
                  "children": [{"run_id": c.get("run_id"), "record_id": c.get("record_id"),
                                **(c.get("output") or {})} for c in children]}
        for c in children:  # the outputs now live in the step's output: not twice
            c.pop("output", None)
        d.complete_step(sr, output, "system", via="children")


class _StepError(Exception):
    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error["message"])
        self.error = error


def _child_starts(d: DecideContext, step: StepDefinition) -> list[ChildStart]:
    """Evaluate the list and, per element, the child's input and record."""
    opts = step.options
    base = d.scope()
    elements: list[Any] = [None]
    if "for_each" in opts:
        try:
            got = evaluate(opts["for_each"], base)
        except ExpressionError as exc:
            raise _StepError(expression_error("for_each", exc)) from None
        if not isinstance(got, list | tuple):
            raise _StepError({"type": "ForEachError", "expression": opts["for_each"],
                              "message": f"for_each gave {describe(got)}, not a list"})
        cap = int(opts.get("max_children", MAX_CHILDREN))
        if len(got) > cap:
            raise _StepError({"type": "LimitExceeded", "expression": opts["for_each"],
                              "message": f"for_each gave {len(got)} elements, more than the "
                                         f"step's max_children of {cap} (raise max_children "
                                         f"up to {MAX_CHILDREN_LIMIT}, or split the list)"})
        elements = list(got)
    record = opts.get("record", "parent")
    out = []
    for i, element in enumerate(elements):
        scope = _ItemScope(base, element, i) if "for_each" in opts else base
        values = _resolve_all(opts.get("input") or {}, scope, "input")
        if isinstance(record, dict):
            fields = _resolve_all(record.get("fields") or {}, scope, "record.fields")
            out.append(ChildStart(i, values, None, record["create"], fields))
        else:
            out.append(ChildStart(i, values, d.run.record_id))
    return out


def _resolve_all(spec: Mapping[str, Any], scope: Mapping[str, Any], where: str
                 ) -> dict[str, Any]:
    out = {}
    for key, value in spec.items():
        if is_expression(value):
            try:
                out[key] = evaluate(value, scope)
            except ExpressionError as exc:
                raise _StepError(expression_error(f"{where}.{key}", exc)) from None
        else:
            out[key] = value
    return out


def _failure(step: StepDefinition, children: list[dict[str, Any]]) -> dict[str, Any]:
    bad = [c for c in children if c["status"] != "completed"]
    first = bad[0]
    why = (first.get("error") or {}).get("message") or first["status"]
    return {"type": "ChildRunsFailed", "retryable": False,
            "message": f"{len(bad)} of {len(children)} child runs of "
                       f"{step.options['orchestration']} did not complete: #{first['index']} "
                       f"({first.get('run_id') or 'not started'}) {first['status']}: {why}",
            "children": [{"index": c["index"], "run_id": c.get("run_id"),
                          "status": c["status"], "error": c.get("error")} for c in bad[:20]]}


class _ItemScope(Mapping[str, Any]):
    """The step's scope with ``item`` and ``index`` bound (one element of ``for_each``)."""

    __slots__ = ("_base", "_index", "_item")

    def __init__(self, base: Mapping[str, Any], item: Any, index: int) -> None:
        self._base, self._item, self._index = base, item, index

    def __getitem__(self, name: str) -> Any:
        if name == "item":
            return self._item
        if name == "index":
            return self._index
        return self._base[name]

    def __iter__(self) -> Iterator[str]:
        return iter((*self._base, "item", "index"))

    def __len__(self) -> int:
        return len(self._base) + 2


def _check_target(ck: Checker, path: str, step: Mapping[str, Any], name: str,
                  target: ChildTarget) -> None:
    """What the child orchestration takes: its trigger, its input names, its record."""
    if target.trigger is not None and target.trigger not in ("autolaunched", "record"):
        ck.add(join(path, "orchestration"),
               f"orchestration '{name}' starts from its {target.trigger} trigger; a child run "
               "needs an autolaunched or record trigger")
    spec = step.get("input")
    given: Mapping[str, Any] = spec if isinstance(spec, dict) else {}
    if target.inputs is not None:
        for key in given:
            if key not in target.inputs:
                hint = suggest(str(key), target.inputs) or (
                    f" (it takes: {', '.join(sorted(target.inputs))})" if target.inputs
                    else " (it takes no input)")
                ck.add(join(join(path, "input"), str(key)),
                       f"orchestration '{name}' has no input '{key}'{hint}")
        for key in sorted(target.required - set(given)):
            ck.add(join(path, "input"),
                   f"input '{key}' of orchestration '{name}' is required")
    record = step.get("record")
    if isinstance(record, dict) and isinstance(record.get("create"), str) \
            and target.object is not None and record["create"] != target.object:
        ck.add(join(join(path, "record"), "create"),
               f"orchestration '{name}' runs on a {target.object} record, not a "
               f"{record['create']}")


def _check_record(ck: Checker, path: str, value: Any, scope: Scope) -> None:
    if value == "parent":
        if not scope.has_record:
            ck.add(path, "record: parent, but this orchestration has no record (its trigger "
                         "names no object)")
        return
    if not isinstance(value, dict):
        ck.add(path, "record is 'parent' (the default) or {create: OBJECT_TYPE, fields: {...}}, "
                     f"got {describe(value)}")
        return
    check_keys(ck, path, value, RECORD_KEYS, ("create",))
    otype = expect_identifier(ck, join(path, "create"), value["create"], "object type") \
        if "create" in value else None
    types = scope.object_types
    if otype is not None and types is not None and otype not in types \
            and not scope.unknown_objects:
        ck.add(join(path, "create"), f"unknown object type '{otype}'{suggest(otype, types)}")
        types = None
    if "fields" not in value:
        return
    fields = expect_mapping(ck, join(path, "fields"), value["fields"])
    known = types.get(otype or "") if types is not None else None
    for key, v in (fields or {}).items():
        fpath = join(join(path, "fields"), str(key))
        if known is not None and key not in known:
            ck.add(fpath, f"unknown field '{key}' of {otype}{suggest(key, known)}")
        if isinstance(v, str) and is_expression(v):
            check_expression(ck, fpath, v, scope)


ORCHESTRATION = Orchestration()
