"""The plan view's SVG (issue 13 item 7) for a plan of over 200 steps: every step drawn once,
no two boxes on top of each other, every box inside the drawing and in its lane's row,
arrows between boxes that exist, labels cut to what a box holds, SLA and PONR marks.
(The page around it, its refresh and its links: tests/browser/test_plan_view.py.)"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from baton.definitions.loader import load_definitions
from baton.engine.status import StepStatus
from baton.plans.decompose import OrderLine, decompose
from baton.plans.generate import generate
from baton.web.plan_diagram import BOX_H, BOX_W, CHARS, plan_svg

EXAMPLE = Path(__file__).parents[2] / "examples" / "order_fulfillment" / "definitions"
SVG = "{http://www.w3.org/2000/svg}"


def _big_plan() -> dict[str, Any]:
    docs = {d.kind: d.definition for d in load_definitions([EXAMPLE], known_flows=None)}
    lines = [OrderLine("b", "LAPTOP-BUNDLE")]
    lines += [OrderLine(f"p{i}", "LAPTOP-PRO", 1, bundle_id="b", attributes={"color": "grey"})
              for i in range(45)]
    lines += [OrderLine(f"n{i}", "BROADBAND", attributes={"site": f"SITE{i % 25}",
                                                          "speed": "1G"})
              for i in range(50)]
    return generate(docs["fulfillment"], decompose(docs["catalog"], lines, {}), {}, "Order",
                    "plan:o", datetime(2026, 6, 1, tzinfo=UTC))


def _run(graph: dict[str, Any], sla: dict[str, str]) -> Any:
    """The run state the diagram reads: each step's status and SLA state."""
    steps = {}
    for i, s in enumerate(graph["definition"]["stages"][0]["steps"]):
        status = (StepStatus.COMPLETED, StepStatus.RUNNING, StepStatus.NOT_STARTED)[i % 3]
        if s["name"] in sla:  # (an SLA state is drawn on an open step only)
            status = StepStatus.RUNNING
        steps[s["name"]] = SimpleNamespace(status=status, sla={"status": sla[s["name"]]}
                                           if s["name"] in sla else None)
    return SimpleNamespace(steps=steps)


def test_a_plan_of_over_200_steps_is_drawn_whole_and_readable() -> None:
    graph = _big_plan()
    names = [s["name"] for s in graph["definition"]["stages"][0]["steps"]]
    assert len(names) > 200
    late = {"ship[L3.1]": "overdue", "install[SITE3]": "in_jeopardy"}
    root = ET.fromstring(str(plan_svg(graph, _run(graph, late))))
    width, height = float(root.get("width") or 0), float(root.get("height") or 0)
    boxes = {}
    for g in root.iter(f"{SVG}g"):
        if g.get("data-step") is None:
            continue
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        boxes[g.get("data-step")] = (float(rect.get("x") or 0), float(rect.get("y") or 0), g)
        for text in g.findall(f"{SVG}text"):  # cut to what the box holds
            assert len(text.text or "") <= CHARS + 6, text.text
    assert sorted(boxes) == sorted(names)  # every step once
    spots = {(x, y) for x, y, _ in boxes.values()}
    assert len(spots) == len(boxes)  # one box a spot: a column's boxes stack in the lane
    for x, y, _ in boxes.values():
        assert 0 <= x and x + BOX_W <= width and 0 <= y and y + BOX_H <= height
    # a box lies in its lane's row
    lanes = {g.get("data-lane"): g.find(f"{SVG}rect") for g in root.iter(f"{SVG}g")
             if g.get("data-lane") is not None}
    facts = {f["name"]: f for f in graph["steps"]}
    for name, (_, y, _) in boxes.items():
        row = lanes[facts[name].get("lane") or "(no lane)"]
        assert row is not None
        top = float(row.get("y") or 0)
        assert top <= y and y + BOX_H <= top + float(row.get("height") or 0), name
    # arrows join boxes that exist, one per dependency
    edges = [(p.get("data-from"), p.get("data-to")) for p in root.iter(f"{SVG}path")
             if p.get("data-from")]
    deps = [(d, s["name"]) for s in graph["definition"]["stages"][0]["steps"]
            for d in s.get("after") or ()]
    assert sorted(edges) == sorted(deps) and all(a in boxes and b in boxes for a, b in edges)
    # SLA and PONR marks
    assert "sla-overdue" in (boxes["ship[L3.1]"][2].get("class") or "")
    assert "sla-in-jeopardy" in (boxes["install[SITE3]"][2].get("class") or "")
    badges = {n: " ".join(t.text or "" for t in g.findall(f"{SVG}text[@class='pl-badge']"))
              for n, (_, _, g) in boxes.items()}
    assert "overdue" in badges["ship[L3.1]"] and "jeopardy" in badges["install[SITE3]"]
    assert [n for n, b in badges.items() if "PONR" in b] == ["billing"]
