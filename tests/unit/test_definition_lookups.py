"""``find_step`` and ``stage`` answer from an index built once per definition: the same
answers a walk of the stages in order gives (the first stage that has the name)."""

from __future__ import annotations

import textwrap
from dataclasses import replace

from baton.definitions.loader import load_text
from baton.definitions.model import OrchestrationDefinition

TEXT = """
kind: orchestration
name: t_lookups
trigger: {type: autolaunched}
stages:
  - name: first
    steps:
      - {name: a, type: background, flow: f.a}
      - {name: b, type: background, flow: f.b, after: [a]}
    next: [{goto: second}]
  - name: second
    steps:
      - {name: c, type: background, flow: f.c}
      - {name: a2, type: background, flow: f.a}
"""


def _walk(defn: OrchestrationDefinition, name: str) -> tuple[str, str] | None:
    for st in defn.stages:
        for sd in st.steps:
            if sd.name == name:
                return st.name, sd.name
    return None


def test_lookups_give_what_a_walk_gives() -> None:
    (doc,) = load_text(textwrap.dedent(TEXT), known_flows=None)
    defn = doc.definition
    assert isinstance(defn, OrchestrationDefinition)
    for name in ("a", "b", "c", "a2", "nope", ""):
        found = defn.find_step(name)
        assert (None if found is None else (found[0].name, found[1].name)) == _walk(defn, name)
        if found is not None:
            assert found[1] is defn.stages[[s.name for s in defn.stages].index(found[0].name)] \
                .step(name)
    assert defn.stage("second") is defn.stages[1] and defn.stage("first") is defn.stages[0]
    assert defn.stage("third") is None


def test_a_replaced_definition_indexes_its_own_stages() -> None:
    (doc,) = load_text(textwrap.dedent(TEXT), known_flows=None)
    defn = doc.definition
    assert isinstance(defn, OrchestrationDefinition)
    assert defn.find_step("c") is not None  # (the index of this one is built)
    shorter = replace(defn, stages=defn.stages[:1])
    assert shorter.find_step("c") is None and shorter.stage("second") is None
    found = shorter.find_step("a")
    assert found is not None and found[0] is defn.stages[0]
