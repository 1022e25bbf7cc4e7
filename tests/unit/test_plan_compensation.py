"""Compensation graphs, pure: an amendment's rollback steps join the amended plan in reverse
dependency order, a changed step waits for its own rollback, a rollback not done yet is
kept (and a settled one made afresh); a cancel's compensation also runs the rollbacks an
amendment left pending, after those of the steps downstream of theirs."""

from __future__ import annotations

from typing import Any

from baton.plans.compensation import amended_graph, compensation_graph

UNDO = {"type": "background", "flow": "x.undo"}


def _graph(*steps: tuple[str, list[str], bool], lines: str = "red") -> dict[str, Any]:
    """A one-line plan: (name, after, has a rollback) per step, line L1 of ``lines``."""
    defs, facts = [], []
    for name, after, undo in steps:
        d: dict[str, Any] = {"name": name, "type": "background", "flow": "x.do",
                             "input": {"plan": {"scope": "line_item", "instance": "L1",
                                                "lines": ["L1"]}}}
        if after:
            d["after"] = after
        defs.append(d)
        f: dict[str, Any] = {"name": name, "template": name, "scope": "line_item",
                             "instance": "L1", "lane": None, "lines": ["L1"]}
        if undo:
            f["rollback"] = UNDO
        facts.append(f)
    return {"format": 2, "definition": {"name": "plan:o", "stages": [{"name": "plan",
                                                                       "steps": defs}]},
            "steps": facts, "lanes": [], "lines": [{"key": "L1", "color": lines}],
            "pinned": {}}


def _steps(graph: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for s in graph["definition"]["stages"][0]["steps"]}


PLAN = (("check", [], False), ("reserve", ["check"], True), ("ship", ["reserve"], True),
        ("bill", ["ship"], False))


def test_an_amended_plan_undoes_changed_steps_before_doing_them_again() -> None:
    old, new = _graph(*PLAN), _graph(*PLAN, lines="blue")
    done = dict.fromkeys(("check", "reserve", "ship"), "completed")
    graph, added = amended_graph(old, new, ["reserve", "ship"], done)
    assert added == ["rollback_reserve", "rollback_ship"]
    steps = _steps(graph)
    assert steps["rollback_reserve"]["after"] == ["rollback_ship"]
    assert "after" not in steps["rollback_ship"]
    assert steps["reserve"]["after"] == ["check", "rollback_reserve"]
    assert steps["ship"]["after"] == ["reserve", "rollback_ship"]
    assert steps["bill"]["after"] == ["ship"]
    # the rollback sees the line as its step saw it; the plan the line as it is now
    assert steps["rollback_reserve"]["input"]["plan"]["lines"] == [{"key": "L1",
                                                                     "color": "red"}]
    assert graph["lines"] == [{"key": "L1", "color": "blue"}]
    facts = {f["name"]: f for f in graph["steps"]}
    assert facts["rollback_ship"]["compensates"] == "ship"

    # amended again while rollback_reserve is in fallout (ship undone): both are kept,
    # as they are; nothing new to undo (reserve and ship have not been done again)
    again, added = amended_graph(graph, _graph(*PLAN, lines="green"), [],
                                 {**done, "rollback_ship": "completed",
                                  "rollback_reserve": "fallout", "reserve": "not_started"})
    assert added == []
    assert _steps(again)["rollback_reserve"] == steps["rollback_reserve"]
    assert _steps(again)["reserve"]["after"] == ["check", "rollback_reserve"]

    # once done again and changed again: the settled rollbacks are made afresh
    third, added = amended_graph(graph, _graph(*PLAN, lines="green"), ["reserve", "ship"],
                                 {**done, "rollback_ship": "completed",
                                  "rollback_reserve": "completed"})
    assert added == ["rollback_reserve", "rollback_ship"]
    assert _steps(third)["rollback_reserve"]["input"]["plan"]["lines"] == [
        {"key": "L1", "color": "blue"}]
    assert len(third["steps"]) == len(graph["steps"])  # (no second rollback of a step)


def test_a_cancel_runs_the_rollbacks_an_amendment_left_pending() -> None:
    old = _graph(*PLAN)
    done = dict.fromkeys(("check", "reserve", "ship"), "completed")
    graph, _ = amended_graph(old, _graph(*PLAN, lines="blue"), ["reserve"], done)
    # (only reserve changed, say: ship kept its state, completed; rollback_reserve pending)
    comp = compensation_graph(graph, {**done, "rollback_reserve": "fallout",
                                      "reserve": "not_started"}, "plan:o")
    steps = _steps(comp)
    assert list(steps) == ["rollback_ship", "rollback_reserve"]
    assert steps["rollback_reserve"]["after"] == ["rollback_ship"]  # ship depended on it
    assert steps["rollback_reserve"]["input"]["plan"]["lines"][0]["color"] == "red"
    # a settled rollback (done, or skipped by an operator) is not run again
    comp = compensation_graph(graph, {**done, "rollback_reserve": "skipped",
                                      "reserve": "not_started"}, "plan:o")
    assert list(_steps(comp)) == ["rollback_ship"]
