"""The labels of a process diagram's decisions are all readable: no two overlap, none sits on
a stage, the start or the end, and each lies inside the picture — with two, three or four
rules of one stage going on to the following stage, mixed with jumps, loops back and rules
to the end.

A label's box is worked out from the SVG as a browser draws 12 px text (Chromium's box:
11-12 px above the baseline, 3 below) with every character as wide as a "W" (12 px), so
the check holds whatever font the browser picks."""

from __future__ import annotations

import itertools
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition
from baton.web.diagram import orchestration_svg

SVG = "{http://www.w3.org/2000/svg}"
WIDEST = 1.0  # em: a "W" at 12 px is about 11.9 px wide
TYPICAL = 0.55  # em: an expression's characters at 12 px, on average about 6.5 px


@dataclass(frozen=True)
class Box:
    what: str
    x0: float
    y0: float
    x1: float
    y1: float

    def meets(self, other: Box) -> bool:
        return (self.x0 < other.x1 and other.x0 < self.x1
                and self.y0 < other.y1 and other.y0 < self.y1)


def text_box(t: ET.Element, size: float, em: float) -> Box:
    text = t.text or ""
    x, y, w = float(t.get("x", 0)), float(t.get("y", 0)), len(text) * size * em
    if t.get("text-anchor") == "end":
        x -= w
    elif t.get("text-anchor") == "middle":
        x -= w / 2
    return Box(text, x, y - size, x + w, y + size / 4)


def rect_box(r: ET.Element, what: str) -> Box:
    x, y = float(r.get("x", 0)), float(r.get("y", 0))
    return Box(what, x, y, x + float(r.get("width", 0)), y + float(r.get("height", 0)))


def circle_box(c: ET.Element, what: str) -> Box:
    x, y, r = float(c.get("cx", 0)), float(c.get("cy", 0)), float(c.get("r", 0))
    return Box(what, x - r, y - r, x + r, y + r)


def definition(stages: str) -> OrchestrationDefinition:
    text = ("kind: orchestration\nname: labels\ntrigger: {type: autolaunched}\n"
            "variables: {a: 0, b: false, again: false}\nstages:\n" + stages)
    (doc,) = load_text(text, "labels.yaml")
    assert isinstance(doc.definition, OrchestrationDefinition), doc
    return doc.definition


def stage(name: str, *rules: str, steps: int = 1) -> str:
    out = f"  - name: {name}\n    steps:\n"
    for i in range(steps):
        after = f", after: [{name}_{i - 1}]" if i else ""
        out += f"      - {{name: {name}_{i}, type: background, flow: f{after}}}\n"
    if rules:
        out += "    next:\n" + "".join(f"      - {r}\n" for r in rules)
    return out


W = "when: '=vars.a == {n}'"

CASES = {
    "two rules to the following stage": (
        stage("intake", f"{{{W.format(n=1)}, goto: review}}", "{goto: review}")
        + stage("review")),
    "three to the following stage, a jump and a loop back": (
        stage("intake")
        + stage("check", f"{{{W.format(n=1)}, goto: decide}}", "{when: '=vars.b', goto: close}",
                f"{{{W.format(n=2)}, goto: decide}}", "{when: '=vars.again', goto: intake}",
                "{goto: decide}")
        + stage("decide") + stage("close")),
    "four to the following stage among jumps, loops and rules to the end": (
        stage("open", "{when: '=vars.a > 100 && vars.b', goto: end}",
              f"{{{W.format(n=1)}, goto: triage}}", f"{{{W.format(n=2)}, goto: triage}}",
              "{when: '=vars.again', goto: open}", f"{{{W.format(n=3)}, goto: triage}}",
              "{goto: triage}", steps=2)
        + stage("triage", "{when: '=vars.again', goto: open}", "{goto: work}")
        + stage("work", f"{{{W.format(n=4)}, goto: done}}", f"{{{W.format(n=5)}, goto: done}}",
                f"{{{W.format(n=6)}, goto: done}}", "{goto: done}")
        + stage("done", "{when: '=vars.again', goto: triage}",
                "{when: '=vars.a == 7 && vars.b == false && vars.again == false', goto: end}",
                f"{{{W.format(n=8)}, goto: end}}", "{goto: end}")),
    "a stage with many jumps, next to one with many rules to the following stage": (
        stage("first", *[f"{{{W.format(n=i)}, goto: {'third' if i % 2 else 'first'}}}"
                         for i in range(7)], "{goto: second}")
        + stage("second", *[f"{{{W.format(n=i)}, goto: third}}" for i in range(10, 14)],
                "{goto: third}")
        + stage("third", "{when: '=vars.b', goto: first}", "{goto: end}")),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_no_two_decision_labels_overlap(case: str) -> None:
    defn = definition(CASES[case])
    root = ET.fromstring(orchestration_svg(defn))
    labels: list[tuple[Box, Box]] = []  # (widest, typical)
    for g in root.iter(f"{SVG}g"):
        if "dg-decision" in (g.get("class") or ""):
            for t in g.iter(f"{SVG}text"):
                labels.append((text_box(t, 12, WIDEST), text_box(t, 12, TYPICAL)))
    written = [rule for sd in defn.stages for k, rule in enumerate(sd.next or ())
               if rule.when is not None or k]
    assert len(labels) >= len(written) > 0, "every condition and 'otherwise' is written"
    assert {b.what for b, _ in labels} >= {"otherwise"}

    for (a, _), (b, _) in itertools.combinations(labels, 2):
        assert not a.meets(b), f"{a.what!r} overlaps {b.what!r}: {a} {b}"
    others = [rect_box(g.find(f"{SVG}rect"), "stage " + (g.get("data-stage") or ""))  # type: ignore[arg-type]
              for g in root.iter(f"{SVG}g") if g.get("data-stage")]
    for cls in ("dg-start", "dg-end"):
        g = root.find(f".//{SVG}g[@class='{cls}']")
        assert g is not None
        others.append(circle_box(g.find(f"{SVG}circle"), cls))  # type: ignore[arg-type]
        others.append(text_box(g.find(f"{SVG}text"), 13, WIDEST))  # type: ignore[arg-type]
    for (label, _), other in itertools.product(labels, others):
        assert not label.meets(other), f"{label.what!r} lies on {other.what!r}"
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    for _, typical in labels:
        assert 0 <= typical.x0 and typical.x1 <= width and 0 <= typical.y0 \
            and typical.y1 <= height, f"{typical.what!r} is cut off: {typical} in {width}x{height}"


def test_the_rules_to_the_following_stage_read_in_their_order() -> None:
    """Stacked one per line, top to bottom in the order they are written (which one is
    "otherwise" is then plain)."""
    defn = definition(CASES["four to the following stage among jumps, loops and rules to the end"])
    root = ET.fromstring(orchestration_svg(defn))
    work = [g for g in root.iter(f"{SVG}g") if "dg-decision" in (g.get("class") or "")
            and (g.findtext(f"{SVG}title") or "").startswith("after work ")]
    texts = [(float(t.get("y", 0)), t.text) for g in work for t in g.iter(f"{SVG}text")]
    assert [text for _, text in texts] == ["vars.a == 4", "vars.a == 5", "vars.a == 6",
                                          "otherwise"]
    ys = [y for y, _ in texts]
    assert ys == sorted(ys) and len(set(ys)) == 4
    xs = {t.get("x") for g in work for t in g.iter(f"{SVG}text")}
    assert len(xs) == 1, "one column beside the arrow"
