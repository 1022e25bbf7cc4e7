"""A callout's request reads a value that is not there yet (an optional input not given)
as a step's ``input:`` does: null. A query parameter or header that is null is left out, a
body field is sent as null; the method and the path cannot do without it and fail naming
the part. Any error left is named by its part of the request (``query.n``,
``body.items[0].sku``). Against a real HTTP server on loopback (tests/bank.py), on both
databases."""

from __future__ import annotations

import textwrap
from typing import Any

from tests.bank import bank_server


def connection(url: str) -> str:
    return textwrap.dedent(f"""\
        kind: connection
        name: bank
        type: http
        base_url: {url}/api
        timeout: {{connect: 2s, read: 2s}}
        """)


def orchestration(step: str) -> str:
    return textwrap.dedent("""\
        kind: orchestration
        name: send
        trigger:
          type: autolaunched
          input:
            n: {type: int}
            who: {type: string}
            extra: {type: json}
        stages:
          - name: only
            steps:
        """) + textwrap.indent(textwrap.dedent(step), " " * 6)


SEND = """\
- name: send
  type: callout
  connection: bank
  method: POST
  path: /items
  query: {n: '=input.n', plus: '=input.n + 1', fixed: 1}
  headers: {X-N: '=string(input.n)', X-Who: '=input.who'}
  body: {n: '=input.n', who: '=input.who', items: ['=input.n', 7], nested: {m: '=input.n * 2'}}
"""


def deploy(harness: Any, url: str, step: str = SEND) -> None:
    harness.deploy_text(connection(url) + "---\n" + orchestration(step))


def test_an_optional_input_not_given_is_left_out_or_null(harness: Any) -> None:
    with bank_server() as bank:
        deploy(harness, bank.url)
        run = harness.engine.start("send", {"who": "ann"})
        harness.work()
        sr = harness.engine.get_run(run.id).steps["send"]
        assert sr.status.value == "completed", sr.error
        (seen,) = bank.requests
        assert (seen.method, seen.path) == ("POST", "/api/items")
        assert seen.query == {"fixed": "1"}  # n and n + 1 left out
        assert "x-n" not in seen.headers and seen.headers["x-who"] == "ann"
        assert seen.json() == {"n": None, "who": "ann", "items": [None, 7],
                               "nested": {"m": None}}


def test_the_same_request_with_the_input_given(harness: Any) -> None:
    with bank_server() as bank:
        deploy(harness, bank.url)
        run = harness.engine.start("send", {"n": 4})
        harness.work()
        assert harness.engine.get_run(run.id).steps["send"].status.value == "completed"
        (seen,) = bank.requests
        assert seen.query == {"n": "4", "plus": "5", "fixed": "1"}
        assert seen.headers["x-n"] == "4" and "x-who" not in seen.headers
        assert seen.json() == {"n": 4, "who": None, "items": [4, 7], "nested": {"m": 8}}


def test_a_query_map_computed_whole_is_left_out_and_its_values_are_not_evaluated(
        harness: Any) -> None:
    step = """\
    - name: send
      type: callout
      connection: bank
      path: /items
      query: =input.extra
    """
    with bank_server() as bank:
        deploy(harness, bank.url, step)
        first = harness.engine.start("send", {"extra": {"q": "=input.n", "who": "ann"},
                                              "n": 3})
        second = harness.engine.start("send", {"who": "bob"})
        harness.work()
        for run in (first, second):
            sr = harness.engine.get_run(run.id).steps["send"]
            assert sr.status.value == "completed", sr.error
        # A value the map gives is sent as it is, even one that starts with '=' (data is
        # never evaluated as an expression); a map not there yet leaves the query empty.
        assert sorted((r.query for r in bank.requests), key=len) == [
            {}, {"q": "=input.n", "who": "ann"}]


def fallout_message(harness: Any, run_id: str) -> str:
    sr = harness.engine.get_run(run_id).steps["send"]
    assert sr.status.value == "fallout", sr.status
    assert sr.error["retryable"] is False
    return str(sr.error["message"])


def test_an_error_left_names_the_part_of_the_request(harness: Any) -> None:
    step = """\
    - name: send
      type: callout
      connection: bank
      method: POST
      path: /items
      query: {n: '=input.n / 0'}
      body: {items: [{sku: '=input.who + 1'}]}
    """
    with bank_server() as bank:
        deploy(harness, bank.url, step)
        run = harness.engine.start("send", {"n": 1, "who": "ann"})
        harness.work()
        message = fallout_message(harness, run.id)
        assert message.startswith("query.n: input.n / 0: "), message
        assert "divide by zero" in message
        deploy(harness, bank.url, step.replace("/ 0", "/ 1"))
        run = harness.engine.start("send", {"n": 1, "who": "ann"})
        harness.work()
        message = fallout_message(harness, run.id)
        assert message.startswith("body.items[0].sku: input.who + 1: "), message
        assert bank.requests == []  # nothing was sent


def test_a_path_or_method_cannot_do_without_a_value_not_there_yet(harness: Any) -> None:
    step = """\
    - name: send
      type: callout
      connection: bank
      method: METHOD
      path: PATH
    """
    with bank_server() as bank:
        deploy(harness, bank.url, step.replace("METHOD", "POST")
               .replace("PATH", "'=\"/items/\" + input.who'"))
        run = harness.engine.start("send", {"n": 1})
        harness.work()
        message = fallout_message(harness, run.id)
        assert message.startswith('path: "/items/" + input.who: '), message
        assert "the request's path cannot do without it" in message
        deploy(harness, bank.url, step.replace("METHOD", "=input.who").replace("PATH", "/x"))
        run = harness.engine.start("send", {"n": 1})
        harness.work()
        message = fallout_message(harness, run.id)
        assert message.startswith("method: input.who: "), message
        assert "the request's method cannot do without it" in message
        assert bank.requests == []
