"""Process pictures (issue 16 point 3): the SVG of an orchestration, with and without a
run's live state."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from pathlib import Path

from baton.definitions.loader import load_definitions, load_text
from baton.definitions.model import OrchestrationDefinition
from baton.engine.state import Run, StepRun
from baton.engine.status import RunStatus, StepStatus
from baton.web.diagram import orchestration_svg

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "case_triage" / "definitions"
NS = {"s": "http://www.w3.org/2000/svg"}


def triage() -> OrchestrationDefinition:
    docs = load_definitions([EXAMPLE])
    (defn,) = [d.definition for d in docs if d.kind == "orchestration"]
    assert isinstance(defn, OrchestrationDefinition)
    return defn


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # well-formed, or this raises


def test_every_stage_step_and_decision_is_drawn() -> None:
    defn = triage()
    root = parse(orchestration_svg(defn))
    stages = {g.get("data-stage") for g in root.iterfind(".//s:g[@data-stage]", NS)}
    assert stages == {sd.name for sd in defn.stages}
    steps = {g.get("data-step") for g in root.iterfind(".//s:g[@data-step]", NS)}
    assert steps == {s.name for sd in defn.stages for s in sd.steps}
    decisions = root.findall(".//s:g[@class]", NS)
    n_rules = sum(len(sd.next) if sd.next is not None else 1 for sd in defn.stages)
    assert sum("dg-decision" in (g.get("class") or "") for g in decisions) == n_rules
    texts = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for sd in defn.stages:  # each decision's condition is written on its arrow
        for rule in sd.next or ():
            if rule.when is not None and rule.when.expression:
                assert rule.when.expression.lstrip("=")[:20] in texts


def test_live_state_colours_steps_and_marks_the_path_taken() -> None:
    defn = triage()
    first = defn.stages[0]
    run = Run(id="run_1", orchestration=defn.name, version=1, record_id=None, vars={}, input={},
              created_at="2026-01-05T09:00:00.000Z", status=RunStatus.IN_PROGRESS,
              current_stage=defn.stages[1].name)
    for s in first.steps:
        run.steps[s.name] = StepRun(name=s.name, stage=first.name, iteration=1,
                                    status=StepStatus.COMPLETED)
    fallout = defn.stages[1].steps[0]
    run.steps[fallout.name] = StepRun(name=fallout.name, stage=defn.stages[1].name, iteration=1,
                                      status=StepStatus.FALLOUT, attempts=3)
    run.decisions.append({"stage": first.name, "iteration": 1, "goto": defn.stages[1].name,
                          "rule": None, "at": "2026-01-05T09:00:01.000Z"})
    root = parse(orchestration_svg(defn, run))
    status = {g.get("data-step"): g.get("data-status") for g in root.iterfind(".//s:g[@data-step]", NS)}
    assert all(status[s.name] == "completed" for s in first.steps)
    assert status[fallout.name] == "fallout"
    assert "st-fallout" in root.find(f".//s:g[@data-step='{fallout.name}']", NS).get("class")  # type: ignore[union-attr]
    current = root.find(f".//s:g[@data-stage='{defn.stages[1].name}']", NS)
    assert current is not None and "dg-current" in (current.get("class") or "")
    assert any("dg-taken" in (g.get("class") or "") for g in root.iterfind(".//s:g", NS))


def test_thirty_stages_with_loops_stay_readable() -> None:
    stages = []
    for i in range(30):
        nxt = ""
        if i % 7 == 6:  # every seventh stage may loop back three stages
            nxt = (f"    next:\n      - {{when: '=vars.again', goto: s{i - 3}}}\n"
                   f"      - {{goto: {'s' + str(i + 1) if i < 29 else 'end'}}}\n")
        stages.append(f"  - name: s{i}\n    steps:\n"
                      f"      - {{name: a{i}, type: background, flow: f}}\n"
                      f"      - {{name: b{i}, type: background, flow: f, after: [a{i}]}}\n"
                      f"      - {{name: c{i}, type: background, flow: f}}\n" + nxt)
    text = ("kind: orchestration\nname: long\ntrigger: {type: autolaunched}\n"
            "variables: {again: false}\nstages:\n" + "".join(stages))
    (doc,) = load_text(text, "long.yaml")
    defn = doc.definition
    assert isinstance(defn, OrchestrationDefinition)
    root = parse(orchestration_svg(defn, heat={"s3": 12, "s20": 1}))
    boxes = []
    for g in root.iterfind(".//s:g[@data-stage]", NS):
        rect = g.find("s:rect", NS)
        assert rect is not None
        boxes.append((float(rect.get("y", 0)), float(rect.get("height", 0))))
    assert len(boxes) == 30
    for (y1, h1), (y2, _) in itertools.pairwise(boxes):
        assert y2 > y1 + h1, "stages do not overlap"
    assert float(root.get("width", 0)) < 1400, "concurrent steps side by side, stages stacked"
    loops = [g for g in root.iterfind(".//s:g", NS) if "dg-loop" in (g.get("class") or "")]
    assert len(loops) == 4
    texts = [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "12 runs here" in texts and "1 run here" in texts


def test_text_is_escaped() -> None:
    text = ("kind: orchestration\nname: esc\nlabel: 'A <b>&</b>'\ntrigger: {type: autolaunched}\n"
            "stages:\n  - name: one\n    steps:\n      - {name: x, label: '<script>', type: background, flow: f}\n")
    (doc,) = load_text(text, "esc.yaml")
    svg = orchestration_svg(doc.definition)  # type: ignore[arg-type]
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    parse(svg)
