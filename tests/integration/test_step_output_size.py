"""What a callout or mcp step writes into the run's data (its output: the default one, or
what ``output:`` maps from the answer) is bounded: at most the step's ``max_output`` bytes
as JSON, by default its connection's ``max_response``. A mapping that copies a large
answer several times fails the step (``OutputTooLarge``, not retried: the same answer maps
to the same output), with the size and the limit, and nothing of it is kept in the run.

Real servers on loopback: tests/bank.py (callouts), the app's callback endpoint (a
callout's ``wait: callback``), and an MCP server process over stdio (a script written here).
Both databases.
"""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from baton.connections.mcp import close_shared_sessions
from baton.definitions.loader import check_texts
from tests.bank import bank_server

KB = 1024

ADDRESS = """\
kind: object
name: Address
fields:
  customer: {type: string, required: true}
"""


def project(url: str, step: str, max_response: str = "64KB") -> str:
    return ADDRESS + "---\n" + textwrap.dedent(f"""\
        kind: connection
        name: bank
        type: http
        base_url: {url}
        timeout: {{connect: 2s, read: 5s}}
        max_response: {max_response}
        ---
        kind: orchestration
        name: send
        trigger: {{type: record, object: Address}}
        stages:
          - name: only
            steps:
        """) + textwrap.indent(textwrap.dedent(step), " " * 6)


COPIES = """\
- name: fetch
  type: callout
  connection: bank
  method: GET
  path: /doc
  output: {a: =response.body, b: =response.body.data, c: =response.body}
  retry: {max: 2, initial: 1s}
"""


def start(harness: Any) -> Any:
    rec = harness.engine.create_record("Address", {"customer": "c1"})
    (run,) = harness.engine.list_runs(record_id=rec["id"])
    return run


def events(harness: Any, run_id: str, kind: str) -> list[dict[str, Any]]:
    return [e for e in harness.engine.run_events(run_id) if e["type"] == kind]


def stored(harness: Any, run_id: str) -> str:
    """The run's state and its events, as stored."""
    return json.dumps(harness.engine.get_run(run_id).to_json()) \
        + json.dumps(harness.engine.run_events(run_id), default=str)


def test_a_mapping_that_copies_the_answer_several_times_goes_to_fallout(harness: Any) -> None:
    with bank_server() as bank:
        doc = {"data": "d" * (40 * KB)}  # 40 KB: under the connection's 64KB
        bank.script["/doc"] = [(200, {}, doc)]
        harness.deploy_text(project(bank.url, COPIES))
        run = start(harness)
        harness.work()
        sr = harness.engine.get_run(run.id).steps["fetch"]
        assert sr.status.value == "fallout" and sr.attempts == 1  # retry: max 2, not retried
        assert sr.output is None
        err = sr.error
        assert err["type"] == "OutputTooLarge" and err["retryable"] is False
        assert err["max_output"] == 64 * KB and err["output_bytes"] > 3 * 40 * KB
        assert f"the step's output is {err['output_bytes']:,} bytes as JSON" in err["message"]
        assert "over its max_output of 65,536 bytes (its connection's max_response)" \
            in err["message"]
        assert err["call"]["status"] == 200  # what was answered, for fallout
        (call,) = events(harness, run.id, "http_call")
        assert call["data"]["status"] == 200
        assert events(harness, run.id, "step_completed") == []
        assert "d" * (2 * KB) not in stored(harness, run.id)  # the answer is kept nowhere


def test_max_output_on_the_step_raises_the_bound(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/doc"] = [(200, {}, {"data": "d" * (40 * KB)})]
        harness.deploy_text(project(bank.url, COPIES + "  max_output: 256KB\n"))
        run = start(harness)
        harness.work()
        sr = harness.engine.get_run(run.id).steps["fetch"]
        assert sr.status.value == "completed", sr.error
        assert sr.output["b"] == "d" * (40 * KB) and sr.output["a"] == sr.output["c"]


def test_max_output_on_the_step_may_lower_it_for_the_default_output(harness: Any) -> None:
    with bank_server() as bank:
        bank.script["/doc"] = [(200, {}, {"data": "d" * (2 * KB)})]
        bank.script["/small"] = [(200, {}, {"data": "ok"})]
        step = ("- {name: fetch, type: callout, connection: bank, path: /doc, max_output: 1KB}\n"
                "- {name: small, type: callout, connection: bank, path: /small, "
                "max_output: 1KB}\n")
        harness.deploy_text(project(bank.url, step))
        run = start(harness)
        harness.work()
        steps = harness.engine.get_run(run.id).steps
        assert steps["small"].status.value == "completed"
        assert steps["small"].output == {"status": 200, "body": {"data": "ok"}}
        sr = steps["fetch"]
        assert sr.status.value == "fallout" and sr.error["type"] == "OutputTooLarge"
        assert sr.error["max_output"] == KB and "(set on the step)" in sr.error["message"]


def test_max_output_is_checked_where_it_is_written() -> None:
    def issues(step: str) -> list[str]:
        _, found = check_texts({"d.yaml": project("http://127.0.0.1:1", step)})
        return [f"{i.path}: {i.message}" for i in found]

    base = "- {name: fetch, type: callout, connection: bank, path: /doc, max_output: %s}\n"
    assert issues(base % "2MB") == []
    for bad, got in (("0", "0"), ("lots", "'lots'"), ("101MB", "'101MB'")):
        (problem,) = issues(base % bad)
        assert problem == (
            "stages[0].steps[0].max_output: expected a size like 5MB, 512KB or a number of "
            f"bytes, from 1 byte to 100MB, got {got}"), problem
    (problem,) = issues("- {name: f, type: background, flow: x.y, max_output: 1MB}\n")
    assert "max_output does not apply to a background step (only to callout or mcp steps)" \
        in problem


# --- wait: callback: the output is mapped when the callback comes --------------------------------


WAITS = """\
- name: fetch
  type: callout
  connection: bank
  method: POST
  path: /addresses
  body: {reply_to: =callback.url}
  wait: callback
  timeout: 1h
  output: {ack: =response.body.ackId, note: =callback.body.note, again: =callback.body.note}
"""


def test_a_callback_mapped_over_the_bound_goes_to_fallout(harness: Any) -> None:
    from baton.web.app import create_app

    harness.setenv(BATON_PUBLIC_URL="http://testserver")
    with bank_server() as bank:
        harness.deploy_text(project(bank.url, WAITS, max_response="8KB"))
        client = TestClient(create_app(harness.engine))
        ok, big = start(harness), start(harness)
        harness.work()
        # each request's idempotency key names its run: RUN:STEP:ITERATION
        replies = {r.headers["idempotency-key"].split(":")[0]: r.json()["reply_to"]
                   for r in bank.calls("/addresses")}
        assert set(replies) == {ok.id, big.id}
        for run in (ok, big):
            assert harness.engine.get_run(run.id).steps["fetch"].status.value == "running"
        notes = {ok.id: "fine", big.id: "n" * (6 * KB)}  # mapped twice: over 8KB
        for run_id, url in replies.items():
            answer = client.post(url.removeprefix("http://testserver"),
                                 json={"note": notes[run_id]})
            assert answer.status_code in (200, 202), answer.text
        harness.work()
        done = harness.engine.get_run(ok.id).steps["fetch"]
        assert done.status.value == "completed", done.error
        assert done.output == {"ack": done.output["ack"], "note": "fine", "again": "fine"}
        sr = harness.engine.get_run(big.id).steps["fetch"]
        assert sr.status.value == "fallout" and sr.error["type"] == "OutputTooLarge"
        assert sr.error["max_output"] == 8 * KB and sr.error["output_bytes"] > 12 * KB
        assert "n" * (2 * KB) not in json.dumps(harness.engine.get_run(big.id).to_json())


# --- mcp steps ----------------------------------------------------------------------------------

MCP_SERVER = '''
from mcp.server.mcpserver import MCPServer

server = MCPServer("blobs", log_level="WARNING")


@server.tool(structured_output=False)
def blob(n: int) -> str:
    """n characters of text."""
    return "b" * n


server.run()
'''


@pytest.fixture(scope="module")
def mcp_script(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("mcp") / "blob_server.py"
    path.write_text(MCP_SERVER)
    yield path
    close_shared_sessions()  # the worker's stdio server stops


def mcp_project(script: Path, extra: str = "") -> str:
    return textwrap.dedent(f"""\
        kind: connection
        name: blobs
        type: mcp
        transport: stdio
        command: {sys.executable}
        args: [{script}]
        max_response: 4KB
        ---
        kind: orchestration
        name: t_blob
        trigger:
          type: autolaunched
          input:
            n: {{type: int, required: true}}
        stages:
          - name: s
            steps:
              - name: fetch
                type: mcp
                connection: blobs
                tool: blob
                arguments: {{n: '=input.n'}}
                output: {{a: '=result.text', b: '=result.text', c: '=result.text'}}
                retry: {{max: 2, initial: 1m}}
        """) + textwrap.indent(extra, " " * 8)


def test_an_mcp_mapping_over_the_bound_goes_to_fallout(harness: Any, mcp_script: Path) -> None:
    harness.deploy_text(mcp_project(mcp_script))
    ok = harness.engine.start("t_blob", {"n": 100})
    run = harness.engine.start("t_blob", {"n": 2000})  # 2 KB, under 4KB; mapped 3 times
    harness.work()
    assert harness.engine.get_run(ok.id).steps["fetch"].output == {
        "a": "b" * 100, "b": "b" * 100, "c": "b" * 100}
    sr = harness.engine.get_run(run.id).steps["fetch"]
    assert sr.status.value == "fallout" and sr.attempts == 1
    err = sr.error
    assert err["type"] == "OutputTooLarge" and err["retryable"] is False
    assert err["max_output"] == 4 * KB and err["output_bytes"] > 6000
    assert err["call"]["outcome"] == "ok" and err["call"]["tool"] == "blob"
    (call,) = events(harness, run.id, "mcp_called")
    assert call["data"]["outcome"] == "ok"
    assert "b" * 2000 not in stored(harness, run.id)


def test_max_output_on_an_mcp_step_raises_the_bound(harness: Any, mcp_script: Path) -> None:
    harness.deploy_text(mcp_project(mcp_script, "max_output: 16KB\n"))
    run = harness.engine.start("t_blob", {"n": 2000})
    harness.work()
    sr = harness.engine.get_run(run.id).steps["fetch"]
    assert sr.status.value == "completed", sr.error
    assert sr.output == {"a": "b" * 2000, "b": "b" * 2000, "c": "b" * 2000}
