"""A fulfillment plan drawn on the server as SVG swimlanes (issue 13 item 7).

One row per lane; a step's box stands in the column of its dependency depth (0 without
``after``, else one past the deepest step it waits for) and shows its scope instance; arrows
for dependencies, across lanes too; each box coloured by status (the Monitor's ``st-*``
classes), marked by its SLA state (in jeopardy, overdue) and PONR, and linking to its step
on the run page (its work item, call log, fallout). Laid out here so the page needs no
script; colours come from ``baton.css`` (the CSP allows no inline style).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from markupsafe import Markup

from baton.engine.state import Run
from baton.engine.status import STEP_OPEN

BOX_W, BOX_H = 150, 44
GAP_X, GAP_Y = 34, 10
LANE_HEAD = 110
TOP = 10
CHARS = 21


def _short(text: str, n: int = CHARS) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _depths(steps: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    after = {s["name"]: list(s.get("after") or ()) for s in steps}
    out: dict[str, int] = {}
    for s in steps:  # steps come in an order where a step follows what it waits for? not
        _depth(s["name"], after, out)  # always: resolved recursively (a cycle cannot be)
    return out


def _depth(name: str, after: Mapping[str, list[str]], out: dict[str, int]) -> int:
    stack = [name]
    while stack:
        n = stack[-1]
        if n in out:
            stack.pop()
            continue
        todo = [d for d in after.get(n, ()) if d in after and d not in out]
        if todo:
            stack.extend(todo)
            continue
        out[n] = 1 + max((out[d] for d in after.get(n, ()) if d in out), default=-1)
        stack.pop()
    return out[name]


def plan_svg(graph: Mapping[str, Any], run: Run, link: str = "#step-") -> Markup:
    steps = graph["definition"]["stages"][0]["steps"]
    facts = {f["name"]: f for f in graph["steps"]}
    lanes = list(graph.get("lanes") or [])
    for f in graph["steps"]:
        lane = f.get("lane") or "(no lane)"
        if lane not in lanes:
            lanes.append(lane)
    used = [ln for ln in lanes if any((f.get("lane") or "(no lane)") == ln
                                      for f in graph["steps"])]
    depth = _depths(steps)
    # each (lane, column) cell stacks its boxes: a lane is as tall as its fullest column
    cells: dict[tuple[str, int], list[str]] = {}
    for s in steps:
        lane = facts[s["name"]].get("lane") or "(no lane)"
        cells.setdefault((lane, depth[s["name"]]), []).append(s["name"])
    rows = {ln: max((len(v) for (lane, _), v in cells.items() if lane == ln), default=1)
            for ln in used}
    lane_y: dict[str, float] = {}
    y = TOP
    for ln in used:
        lane_y[ln] = y
        y += rows[ln] * (BOX_H + GAP_Y) + GAP_Y
    height = y + TOP
    columns = 1 + max(depth.values(), default=0)
    width = LANE_HEAD + columns * (BOX_W + GAP_X) + GAP_X
    pos: dict[str, tuple[float, float]] = {}
    for (lane, col), names in cells.items():
        for i, n in enumerate(names):
            pos[n] = (LANE_HEAD + GAP_X + col * (BOX_W + GAP_X),
                      lane_y[lane] + GAP_Y + i * (BOX_H + GAP_Y))
    out: list[str] = [
        (f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram plan-diagram" role="img" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'aria-label="plan swimlanes: {len(steps)} steps in {len(used)} lanes">'),
        ('<defs><marker id="pl-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="dg-arrowhead"/></marker></defs>')]
    for ln in used:
        h = rows[ln] * (BOX_H + GAP_Y) + GAP_Y
        out.append(f'<g class="pl-lane" data-lane="{escape(ln)}"><rect x="0" y="{lane_y[ln]:.0f}" '
                   f'width="{width:.0f}" height="{h:.0f}"/><text class="pl-lane-name" x="8" '
                   f'y="{lane_y[ln] + 22:.0f}">{escape(_short(ln, 14))}</text></g>')
    for s in steps:  # arrows under the boxes
        x2, y2 = pos[s["name"]]
        for d in s.get("after") or ():
            if d not in pos:
                continue
            x1, y1 = pos[d]
            sx, sy, ex, ey = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
            mid = (sx + ex) / 2
            out.append(f'<path class="dg-edge" data-from="{escape(d)}" data-to="{escape(s["name"])}" '
                       f'd="M{sx:.0f},{sy:.0f} C{mid:.0f},{sy:.0f} {mid:.0f},{ey:.0f} '
                       f'{ex:.0f},{ey:.0f}" marker-end="url(#pl-arrow)"/>')
    for s in steps:
        name = s["name"]
        f = facts[name]
        x, y0 = pos[name]
        sr = run.steps.get(name)
        status = sr.status.value if sr is not None else "not_started"
        # (an ended step has no live SLA state: its last one is not shown as if it held)
        sla = ((sr.sla or {}).get("status") if sr is not None and sr.status in STEP_OPEN
               else None) or ""
        css = ["dg-step", f"st-{status.replace('_', '-')}"]
        if sla in ("in_jeopardy", "overdue"):
            css.append(f"sla-{sla.replace('_', '-')}")
        if f.get("ponr"):
            css.append("pl-ponr")
        scope = f["scope"] + (f" {f['instance']}" if f.get("instance") else "")
        tip = f"{name} ({s['type']}, {scope}): {status.replace('_', ' ')}"
        if sla:
            tip += f"; SLA {sla.replace('_', ' ')}"
        if f.get("ponr"):
            tip += "; point of no return"
        if s.get("after"):
            tip += "; after " + ", ".join(s["after"])
        badge = ("PONR " if f.get("ponr") else "") + \
            {"in_jeopardy": "⚠ jeopardy", "overdue": "⏰ overdue"}.get(sla, "")
        out.append(
            f'<a href="{escape(link + name)}" class="pl-link">'
            f'<g class="{" ".join(css)}" data-step="{escape(name)}" data-status="{status}"'
            f' data-sla="{sla}"><title>{escape(tip)}</title>'
            f'<rect x="{x:.0f}" y="{y0:.0f}" width="{BOX_W}" height="{BOX_H}" rx="4"/>'
            f'<text x="{x + 6:.0f}" y="{y0 + 16:.0f}">{escape(_short(f["template"]))}</text>'
            f'<text class="dg-type" x="{x + 6:.0f}" y="{y0 + 31:.0f}">'
            f'{escape(_short(scope + " · " + status.replace("_", " "), CHARS + 6))}</text>'
            + (f'<text class="pl-badge" x="{x + BOX_W - 6:.0f}" y="{y0 + 16:.0f}" '
               f'text-anchor="end">{escape(badge)}</text>' if badge else "")
            + "</g></a>")
    out.append("</svg>")
    return Markup("".join(out))
