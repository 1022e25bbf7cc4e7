"""The validator's checks of ``type: mcp`` steps: every problem located, all at once."""

from __future__ import annotations

import pytest

from baton.definitions.loader import load_text
from baton.errors import DefinitionError

CONNECTIONS = """
kind: connection
name: erp
type: mcp
transport: stdio
command: python
args: [server.py]
---
kind: connection
name: bank
type: http
base_url: https://bank.example/api
---
"""


def orchestration(step: str) -> str:
    return CONNECTIONS + f"""
kind: orchestration
name: t
trigger: {{type: autolaunched, input: {{domain: {{type: string}}}}}}
stages:
  - name: s
    steps:
      - {step}
"""


RESULT_HERE = "'result' is only available in the output of an mcp step (what the tool answered)"


def issues(text: str) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as err:
        load_text(text, "mcp.yaml")
    return [(i.path, i.message) for i in err.value.issues]


def test_a_valid_mcp_step_loads_with_its_options() -> None:
    docs = load_text(orchestration(
        "{name: lookup, type: mcp, connection: erp, tool: find_account, "
        "arguments: {domain: '=input.domain', limit: 3, tags: [a, '=input.domain']}, "
        "output: {account: '=result.structured.account_id', text: '=result.text'}}"), "mcp.yaml")
    step = docs[-1].definition.stages[0].steps[0]  # type: ignore[union-attr]
    assert step.type == "mcp"
    assert step.options["tool"] == "find_account"
    assert step.options["arguments"]["domain"] == "=input.domain"


def test_missing_connection_and_tool_are_reported_together() -> None:
    assert sorted(issues(orchestration("{name: lookup, type: mcp}"))) == [
        ("stages[0].steps[0].connection",
         "required key 'connection' is missing (the mcp connection to call)"),
        ("stages[0].steps[0].tool", "required key 'tool' is missing (the tool to call)"),
    ]


def test_unknown_connection_gets_a_suggestion_and_an_http_one_is_refused() -> None:
    assert issues(orchestration("{name: a, type: mcp, connection: erq, tool: t}")) == [
        ("stages[0].steps[0].connection", "unknown connection 'erq' (did you mean 'erp'?)")]
    assert issues(orchestration("{name: a, type: mcp, connection: bank, tool: t}")) == [
        ("stages[0].steps[0].connection",
         "connection 'bank' is of type http; an mcp step calls a connection of type mcp")]


def test_bad_expressions_and_result_outside_output_are_located() -> None:
    found = issues(orchestration(
        "{name: a, type: mcp, connection: erp, tool: t, "
        "arguments: {domain: '=input.nope', x: '=result.text', y: '=1 +'}, "
        "output: {ok: '=result.structured.id', bad: '=steps.zzz.output'}}"))
    assert ("stages[0].steps[0].arguments.domain", "unknown input 'nope'") in found
    assert ("stages[0].steps[0].arguments.x", RESULT_HERE) in found
    assert any(p == "stages[0].steps[0].arguments.y" and m.startswith("bad expression")
               for p, m in found)
    assert any(p == "stages[0].steps[0].output.bad" and "unknown step 'zzz'" in m
               for p, m in found)
    assert not any(p == "stages[0].steps[0].output.ok" for p, _m in found)
    assert len(found) == 4


def test_result_is_refused_in_other_steps_expressions() -> None:
    found = issues(orchestration(
        "{name: a, type: interactive, assign: {queue: q}, when: '=result.structured.ok == true'}"))
    assert found == [("stages[0].steps[0].when", RESULT_HERE)]


def test_mcp_options_do_not_apply_to_other_step_types() -> None:
    found = issues(orchestration("{name: a, type: interactive, assign: {queue: q}, tool: t}"))
    assert found == [("stages[0].steps[0].tool",
                      "tool does not apply to an interactive step (only to mcp steps)")]
