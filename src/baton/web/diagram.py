"""A picture of an orchestration, drawn on the server as SVG: its stages top to bottom, the
steps of each stage left to right in the order ``after`` gives them (steps side by side in a
column run concurrently), the decisions between stages with their conditions, and loops.

With a run, the picture carries its live state: each step coloured by its status, the
current stage outlined, the decisions the run took drawn bold. With ``heat``, each stage
says how many runs are in it now (the Definitions page).

Everything is laid out here, in Python, so the picture needs no script in the browser;
colours come from classes in ``baton.css`` (the pages' CSP allows no inline style).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

from baton.definitions.model import Condition, OrchestrationDefinition, StageDefinition
from baton.engine.state import Run

STEP_W, STEP_H = 168, 40
GAP_X, GAP_Y = 36, 12
PAD, HEADER = 12, 28
STAGE_GAP = 56  # room for the decision arrows and their labels between two stages
LEFT, TOP = 16, 56
LANE = 16  # horizontal room per jump or loop edge, right of the stages
LABEL_MAX = 48
STEP_CHARS = 22  # what fits in a step's box at the diagram's font size
LINE = 16  # one decision label's line (12 px text: its box is about 15 px high)
LABEL_CHAR_W = 7.2  # the widest a 12 px character usually is (for the picture's width)


@dataclass(frozen=True)
class _Box:
    x: float
    y: float
    w: float
    h: float

    @property
    def cx(self) -> float:
        return self.x + self.w / 2

    @property
    def bottom(self) -> float:
        return self.y + self.h


def _layers(stage: StageDefinition) -> dict[str, int]:
    """Each step's column: 0 without ``after``, else one past the latest step it waits for."""
    names = {s.name for s in stage.steps}
    after = {s.name: [a for a in s.after if a in names] for s in stage.steps}
    out: dict[str, int] = {}

    def layer(name: str, seen: frozenset[str]) -> int:
        if name not in out:
            deps = [d for d in after[name] if d not in seen]  # (a cycle is a validation error)
            out[name] = 1 + max((layer(d, seen | {name}) for d in deps), default=-1)
        return out[name]

    for s in stage.steps:
        layer(s.name, frozenset())
    return out


def _cond(c: Condition | None) -> str:
    if c is None:
        return ""
    text = c.expression or (f"flow {c.flow}" if c.flow else "")
    return text.removeprefix("=")


def _short(text: str, limit: int = LABEL_MAX) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _label_w(label: str) -> float:
    """About how wide a decision label is drawn (at most: for the picture's width)."""
    return len(_short(label)) * LABEL_CHAR_W


def _gap(labels: int) -> int:
    """The room below a stage for the arrow to the following one and its ``labels``."""
    return max(STAGE_GAP, LINE * labels + 24)


def orchestration_svg(defn: OrchestrationDefinition, run: Run | None = None,
                      heat: Mapping[str, int] | None = None) -> Markup:
    """The SVG (safe to put in a page as is: every text in it is escaped).

    Decision labels never overlap: those of the rules that go on to the following stage
    are stacked one per line in the gap below their stage (the gap grows to hold them), and
    those of jumps and loops one per line beside their stage, in their own lanes (the stage
    grows to hold them). Each stage's labels stay in its own band of the picture."""
    order = [sd.name for sd in defn.stages]
    edges: list[tuple[str, str, str]] = []  # (from stage, to stage or "end", label)
    for i, sd in enumerate(defn.stages):
        following = order[i + 1] if i + 1 < len(order) else "end"
        if sd.next is None:
            edges.append((sd.name, following, ""))
        else:
            for k, rule in enumerate(sd.next):
                label = _cond(rule.when) or ("otherwise" if k else "")
                edges.append((sd.name, rule.goto, label))

    def is_adjacent(src: str, dst: str) -> bool:
        return (dst == "end" and src == order[-1]) or (
            dst != "end" and dst in order and order.index(dst) == order.index(src) + 1)

    below: dict[str, int] = {}  # labels stacked in the gap below each stage
    beside: dict[str, int] = {}  # labels of its jumps and loops
    for src, dst, label in edges:
        if is_adjacent(src, dst):
            below[src] = below.get(src, 0) + (1 if label else 0)
        elif dst == "end" or dst in order:
            beside[src] = beside.get(src, 0) + 1

    layers = {sd.name: _layers(sd) for sd in defn.stages}
    columns = max((max(v.values(), default=0) + 1 for v in layers.values()), default=1)
    rows = {sd.name: max((sum(1 for n in layers[sd.name].values() if n == c)
                          for c in range(columns)), default=1) or 1 for sd in defn.stages}
    stage_w = max(2 * PAD + columns * STEP_W + (columns - 1) * GAP_X, 280)

    stages: dict[str, _Box] = {}
    steps: dict[tuple[str, str], _Box] = {}
    y = TOP
    for sd in defn.stages:
        h = HEADER + PAD + rows[sd.name] * STEP_H + (rows[sd.name] - 1) * GAP_Y + PAD
        # the jump labels, from 0.35 of the height down, one a line, end inside the stage
        h = max(h, math.ceil((LINE * (beside.get(sd.name, 0) - 1) + 8) / 0.65))
        stages[sd.name] = _Box(LEFT, y, stage_w, h)
        filled: dict[int, int] = {}
        for s in sd.steps:
            c = layers[sd.name][s.name]
            r = filled.get(c, 0)
            filled[c] = r + 1
            steps[(sd.name, s.name)] = _Box(LEFT + PAD + c * (STEP_W + GAP_X),
                                            y + HEADER + PAD + r * (STEP_H + GAP_Y), STEP_W, STEP_H)
        y += h + _gap(below.get(sd.name, 0))
    if order and not below.get(order[-1]):
        y -= _gap(0) - 24  # (a plain arrow to the end: no label to make room for)
    end = _Box(LEFT + stage_w / 2 - 18, y, 36, 36)

    taken = {(d["stage"], d["goto"]) for d in run.decisions} if run is not None else set()
    jumps = [e for e in edges if not is_adjacent(e[0], e[1]) and (e[1] == "end" or e[1] in order)]
    right: float = LEFT + stage_w + LANE * (len(jumps) + 1) + 260  # (labels may reach further)
    for src, dst, label in edges:
        if label and is_adjacent(src, dst):
            right = max(right, LEFT + stage_w / 2 + 8 + _label_w(label) + 16)
    for lane, (_, _, label) in enumerate(jumps, start=1):
        right = max(right, LEFT + stage_w + LANE * lane + 6 + _label_w(label or "next") + 16)
    width = right
    height = end.bottom + 24

    out: list[str] = []
    add = out.append
    title = f"Process diagram of {defn.label or defn.name}"
    add(f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" role="img" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" width="{width:.0f}" height="{height:.0f}" '
        f'aria-labelledby="dg-title">')
    add(f'<title id="dg-title">{escape(title)}</title>')
    add('<defs><marker id="dg-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="dg-arrowhead"/></marker></defs>')
    trigger = defn.trigger.type + (f" on {defn.trigger.object}" if defn.trigger.object else "")
    add(f'<g class="dg-start"><circle cx="{LEFT + stage_w / 2:.0f}" cy="20" r="12"/>'
        f'<text x="{LEFT + stage_w / 2 + 20:.0f}" y="24">start: {escape(trigger)}</text></g>')
    first = stages[order[0]] if order else end
    add(f'<line class="dg-edge" x1="{first.cx:.0f}" y1="32" x2="{first.cx:.0f}" '
        f'y2="{first.y:.0f}" marker-end="url(#dg-arrow)"/>')

    for sd in defn.stages:
        box = stages[sd.name]
        sr = run.stages.get(sd.name) if run is not None else None
        css = ["dg-stage"]
        if sr is not None:
            css.append("st-" + sr.status.value.replace("_", "-"))
        if run is not None and run.current_stage == sd.name:
            css.append("dg-current")
        add(f'<g class="{" ".join(css)}" data-stage="{escape(sd.name)}">')
        add(f'<title>stage {escape(sd.name)}'
            + (f" ({escape(sr.status.value)}, iteration {sr.iteration})" if sr else "")
            + (f"; exits when {escape(_cond(sd.exit_when))}" if sd.exit_when else "")
            + "</title>")
        add(f'<rect x="{box.x:.0f}" y="{box.y:.0f}" width="{box.w:.0f}" height="{box.h:.0f}" rx="6"/>')
        label = sd.name + (f" · iteration {sr.iteration}" if sr and sr.iteration > 1 else "")
        add(f'<text class="dg-stage-name" x="{box.x + PAD:.0f}" y="{box.y + 19:.0f}">'
            f'{escape(label)}</text>')
        if heat is not None and heat.get(sd.name):
            n = heat[sd.name]
            add(f'<g class="dg-heat"><rect x="{box.x + box.w - 96:.0f}" y="{box.y + 5:.0f}" '
                f'width="88" height="18" rx="9"/><text x="{box.x + box.w - 52:.0f}" '
                f'y="{box.y + 18:.0f}" text-anchor="middle">{n} run{"s" if n != 1 else ""} here'
                f'</text></g>')
        for s in sd.steps:
            sb = steps[(sd.name, s.name)]
            for a in s.after:
                ab = steps.get((sd.name, a))
                if ab is not None:
                    add(f'<path class="dg-edge dg-after" d="M{ab.x + ab.w:.0f},{ab.y + ab.h / 2:.0f} '
                        f'C{ab.x + ab.w + GAP_X / 2:.0f},{ab.y + ab.h / 2:.0f} '
                        f'{sb.x - GAP_X / 2:.0f},{sb.y + sb.h / 2:.0f} {sb.x:.0f},{sb.y + sb.h / 2:.0f}" '
                        'marker-end="url(#dg-arrow)"/>')
        for s in sd.steps:
            sb = steps[(sd.name, s.name)]
            st = run.steps.get(s.name) if run is not None else None
            status = st.status.value if st is not None else ("not_started" if run else "")
            cls = "dg-step" + (f" st-{status.replace('_', '-')}" if status else "")
            tip = f"{s.name} ({s.type})" + (f": {status.replace('_', ' ')}" if status else "")
            if st is not None and st.attempts > 1:
                tip += f", {st.attempts} attempts"
            if s.when is not None:
                tip += f"; runs when {_cond(s.when)}"
            sub = s.type + (" · " + status.replace("_", " ") if status else "")
            add(f'<g class="{cls}" data-step="{escape(s.name)}" data-status="{escape(status)}">'
                f'<title>{escape(tip)}</title>'
                f'<rect x="{sb.x:.0f}" y="{sb.y:.0f}" width="{sb.w:.0f}" height="{sb.h:.0f}" rx="4"/>'
                f'<text x="{sb.x + 8:.0f}" y="{sb.y + 17:.0f}">'
                f'{escape(_short(s.label or s.name, STEP_CHARS))}</text>'
                f'<text class="dg-type" x="{sb.x + 8:.0f}" y="{sb.y + 32:.0f}">'
                f'{escape(_short(sub, STEP_CHARS + 4))}</text></g>')
        add("</g>")

    # ("end" on the left: jumps to the end come in from the right)
    add(f'<g class="dg-end"><circle cx="{end.cx:.0f}" cy="{end.y + 18:.0f}" r="14"/>'
        f'<text x="{end.cx - 22:.0f}" y="{end.y + 23:.0f}" text-anchor="end">end</text></g>')

    lane = 0
    from_same: dict[str, int] = {}  # the labels drawn so far of each stage's jumps and loops
    stacked: dict[str, int] = {}  # of its rules to the following stage
    for src, dst, label in edges:
        a_box = stages[src]
        b_box = end if dst == "end" else stages.get(dst)
        if b_box is None:
            continue
        cls = "dg-edge dg-decision" + (" dg-taken" if (src, dst) in taken else "")
        tip = f"after {src} → {dst}" + (f" when {label}" if label else "")
        if is_adjacent(src, dst):
            add(f'<g class="{cls}"><title>{escape(tip)}</title>'
                f'<line x1="{a_box.cx:.0f}" y1="{a_box.bottom:.0f}" x2="{b_box.cx:.0f}" y2="{b_box.y:.0f}" '
                'marker-end="url(#dg-arrow)"/>')
            if label:  # one line each, in the rules' order, the stack centred in the gap
                n, k = below[src], stacked.get(src, 0)
                stacked[src] = k + 1
                top = a_box.bottom + (b_box.y - a_box.bottom - LINE * n) / 2
                add(f'<text x="{a_box.cx + 8:.0f}" y="{top + 12 + LINE * k:.0f}">'
                    f'{escape(_short(label))}</text>')
            add("</g>")
            continue
        lane += 1
        x = a_box.x + a_box.w + LANE * lane
        y1 = a_box.y + a_box.h * 0.35  # out near the top, in near the bottom: two edges
        y2 = b_box.y + b_box.h * 0.65 if dst != "end" else end.y + 18  # never share a point
        x2 = b_box.x + b_box.w if dst != "end" else end.cx + 14
        kind = " dg-loop" if dst != "end" and order.index(dst) <= order.index(src) else ""
        add(f'<g class="{cls}{kind}"><title>{escape(tip)}</title>'
            f'<path d="M{a_box.x + a_box.w:.0f},{y1:.0f} H{x:.0f} V{y2:.0f} H{x2:.0f}" '
            'marker-end="url(#dg-arrow)"/>')
        k = from_same[src] = from_same.get(src, -1) + 1  # rules of one stage: one line each
        add(f'<text x="{x + 6:.0f}" y="{y1 - 6 + LINE * k:.0f}">'
            f'{escape(_short(label or "next"))}</text></g>')
    add("</svg>")
    return Markup("".join(out))
