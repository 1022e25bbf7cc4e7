"""The YAML reference's catalog and fulfillment examples are valid definitions, and plan
what the page says: the docs are checked like the README's quickstart."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

from baton.definitions.loader import load_text
from baton.plans.decompose import OrderLine, decompose
from baton.plans.generate import generate

ROOT = Path(__file__).parents[2]
REFERENCE = ROOT / "docs" / "yaml-reference.md"
EXAMPLE = ROOT / "examples" / "order_fulfillment" / "definitions"


def _block(section: str) -> str:
    text = REFERENCE.read_text()
    start = text.index(f"\n## kind: {section}\n")
    m = re.compile(r"```yaml\n(.*?)```", re.DOTALL).search(text, start)
    assert m is not None, section
    return m.group(1)


def test_the_reference_catalog_and_fulfillment_validate_and_plan() -> None:
    support = "\n---\n".join((EXAMPLE / f).read_text() for f in ("objects.yaml", "carrier.yaml"))
    loaded = load_text("\n---\n".join((support, _block("catalog"), _block("fulfillment"))),
                       "yaml-reference.md", known_flows=None)
    defs = {d.kind: d.definition for d in loaded}
    lines = [OrderLine("b", "LAPTOP-BUNDLE"),
             OrderLine("n1", "BROADBAND", attributes={"site": "PARIS", "speed": "1G"}),
             OrderLine("n2", "BROADBAND", action="cancel",
                       attributes={"site": "LYON", "speed": "1G"})]
    flines = decompose(defs["catalog"], lines, {})
    assert [(ln.key, ln.product.code) for ln in flines] == [
        ("L1.1.1", "DEVICE"), ("L1.1.2", "SHIPMENT"), ("L1.2.1", "SHIPMENT"),
        ("L2.1", "BB-ACCESS"), ("L3.1", "BB-ACCESS")]
    assert [ln.attributes["region"] for ln in flines[3:]] == ["north", "south"]  # the lookup
    graph = generate(defs["fulfillment"], flines, {}, "Order", "plan:o",
                     datetime(2026, 6, 1, tzinfo=UTC))
    names = [s["name"] for s in graph["definition"]["stages"][0]["steps"]]
    assert sorted(names) == sorted(["credit_check", "billing", "reserve[L1.1.1]",
                                    "ship[L1.1.1]", "install[PARIS]", "cease[L3.1]"])
