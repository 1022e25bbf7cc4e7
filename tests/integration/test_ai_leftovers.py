"""Two leftovers of ``ai`` steps:

* a rule naming a category (``steps.intent.output.category == "card_arrival"``) that the
  step's trained classifier does not know can never hold: ``baton ai train`` warns of (or
  with ``--strict`` refuses) a version that drops a label a deployed rule names, and a
  deploy or validate of such a rule is an error with file, line and path
  (:mod:`baton.ai.rules`);
* a model provider's error body may echo the customer's text: the step's error message,
  which the worker logs, has the status, the provider's error type and code, and the body's
  size, never its text; what the provider said stays on the record only.

Real SQLite / PostgreSQL projects, and a real model server on loopback (tests/llm_server.py).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from baton.ai.llm import error_fields
from baton.ai.rules import LabelsInUse, named_categories
from baton.ai.trained import read_csv, train
from baton.errors import DefinitionError
from tests.integration import test_ai_providers as providers
from tests.integration.test_ai_providers import Llm, deploy, events, start
from tests.integration.test_ai_train import ROWS, write_csv

llm_process = providers.llm_process  # the server process, once for the module
llm = providers.llm  # reset for each test

ORCH = """
kind: object
name: Message
fields:
  body: {type: text}
---
kind: orchestration
name: t_routed
trigger: {type: record, object: Message}
stages:
  - name: read
    steps:
      - name: intent
        type: ai
        task: classify
        classifier: banking
        text: '=record.body'
        categories:
          - {name: other, description: anything else}
    next:
      - {when: '=steps.intent.output.category == "card_arrival"', goto: post}
      - {when: '=steps.intent.output.category in ["passcode_forgotten", "other"]', goto: end}
      - {goto: end}
  - name: post
    steps: [{name: chase, type: interactive, assign: {queue: post}}]
"""
NO_ARRIVAL = [r for r in ROWS if r[1] != "card_arrival"] + [
    ("my card was delivered broken", "card_damaged"),
    ("the card arrived damaged", "card_damaged")]


def test_expressions_name_the_categories_they_compare() -> None:
    found = list(named_categories(
        '=(steps.intent.output.category == "a" || "b" != steps["intent"].output.category)'
        ' && steps.intent.output.category in ["c", \'d\'] && record.x == "steps.intent"'))
    assert found == [("intent", "a", False), ("intent", "b", True), ("intent", "c", False),
                     ("intent", "d", False)]
    # not a category compared with a string: named nothing
    for source in ('=steps.intent.output.category == "a" + vars.x',
                   '=steps.intent.output.category in vars.list',
                   '=steps.intent.output.category.startsWith("a")',
                   '=steps.intent.output.outcome == "review"',
                   '="steps.intent.output.category == \\"a\\""'):
        assert list(named_categories(source)) == [], source


def test_training_warns_or_refuses_when_a_deployed_rule_names_a_dropped_label(
        harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(ORCH)  # no classifier stored yet: nothing to check against
    texts, labels = read_csv(write_csv(tmp_path / "v1.csv", ROWS))
    v1 = train(harness.engine.store, "banking", texts, labels, source="v1.csv",
               actor="test", now="2026-01-01T00:00:00Z")
    assert v1["version"] == 1 and v1["unknown_categories"] == []

    texts, labels = read_csv(write_csv(tmp_path / "v2.csv", NO_ARRIVAL))
    with pytest.raises(LabelsInUse) as refused:
        train(harness.engine.store, "banking", texts, labels, source="v2.csv",
              actor="test", now="2026-01-02T00:00:00Z", strict=True)
    assert [(u.orchestration, u.rule.path, u.step.name, u.rule.category)
            for u in refused.value.unknown] == [
        ("t_routed", "stages[0].next[0].when", "intent", "card_arrival")]
    assert ("classifier banking v2 not stored: it lacks a category that deployed rules "
            "name") in str(refused.value)
    assert "orchestration 't_routed' v1 (" in str(refused.value)
    assert "defs.yaml), stages[0].next[0].when: names category 'card_arrival' of ai step " \
           "'intent'" in str(refused.value)
    with harness.engine.store.read() as tx:
        assert [r["version"] for r in tx.list_classifiers_txn("banking")] == [1]

    v2 = train(harness.engine.store, "banking", texts, labels, source="v2.csv",
               actor="test", now="2026-01-02T00:00:00Z")  # not strict: stored, and said
    assert v2["version"] == 2
    (unknown,) = v2["unknown_categories"]
    assert unknown.to_json() == {"orchestration": "t_routed", "version": 1,
                                 "file": str(harness.tmp / "defs.yaml"),
                                 "path": "stages[0].next[0].when", "step": "intent",
                                 "category": "card_arrival", "runs_in_progress": 0}


def test_a_deploy_naming_a_category_the_classifier_does_not_know_is_refused(
        harness: Any, tmp_path: Path) -> None:
    texts, labels = read_csv(write_csv(tmp_path / "v1.csv", ROWS))
    train(harness.engine.store, "banking", texts, labels, source="v1.csv", actor="test",
          now="2026-01-01T00:00:00Z")
    typo = ORCH.replace('"card_arrival"', '"card_arival"').replace(
        '"passcode_forgotten", "other"', '"passcode_forgotten", "others"')
    with pytest.raises(DefinitionError) as refused:
        harness.deploy_text(typo)
    first, second = refused.value.issues
    assert (first.file.endswith("defs.yaml"), first.line, first.path) == (
        True, 21, "stages[0].next[0].when")
    assert first.message.startswith(
        "names category 'card_arival' of ai step 'intent', which its classifier 'banking' "
        "(v1, the latest) does not know (did you mean 'card_arrival'?) (its labels: "
        "card_arrival, card_payment_wrong, passcode_forgotten, and the step's own "
        "categories: other): the rule can never hold"), first.message
    assert (second.line, second.path) == (22, "stages[0].next[1].when")
    assert "names category 'others'" in second.message
    assert "t_routed" not in harness.engine.definitions.orchestration_names()  # not deployed
    issues = harness.engine.validate_texts({"typo.yaml": typo})  # validate says the same
    assert [(i.file, i.line, i.path) for i in issues] == [
        ("typo.yaml", 21, "stages[0].next[0].when"), ("typo.yaml", 22, "stages[0].next[1].when")]
    harness.deploy_text(ORCH)  # the labels it knows, and the step's own category: deployed
    # a step without a classifier: its own categories are all it answers
    own = ORCH.replace("        classifier: banking\n", "").replace(
        "{name: other, description: anything else}",
        "{name: card_arrival, examples: [where is my card]}\n"
        "          - {name: passcode_forgotten, examples: [forgot my passcode]}")
    (issue,) = harness.engine.validate_texts({"own.yaml": own})
    assert (issue.line, issue.path) == (22, "stages[0].next[1].when")
    assert issue.message == (
        "names category 'other' of ai step 'intent', which has no such category (its "
        "categories: card_arrival, passcode_forgotten): the rule can never hold")


def test_the_commands_say_where_the_rule_is(tmp_path: Path) -> None:
    """``baton ai train`` (warning; ``--strict``: refused) and ``baton validate`` in this
    process (typer's runner, as tests/integration/test_ai_train.py does)."""
    from typer.testing import CliRunner

    from baton.cli.main import app, state

    proj = tmp_path / "proj"
    (proj / "definitions").mkdir(parents=True)
    (proj / "definitions" / "routed.yaml").write_text(ORCH)
    runner = CliRunner()

    def run(*args: str | Path) -> Any:
        return runner.invoke(app, ["--project", str(proj), "--db",
                                   f"sqlite:///{tmp_path / 'baton.db'}", *map(str, args)])

    try:
        assert run("ai", "train", "banking", "--from",
                   write_csv(tmp_path / "v1.csv", ROWS)).exit_code == 0
        assert run("deploy").exit_code == 0
        dropped = write_csv(tmp_path / "v2.csv", NO_ARRIVAL)
        refused = run("ai", "train", "banking", "--from", dropped, "--strict")
        assert refused.exit_code == 1, refused.output
        assert "classifier banking v2 not stored" in refused.output
        assert ("orchestration 't_routed' v1 (" in refused.output
                and "routed.yaml), stages[0].next[0].when: names category 'card_arrival' "
                    "of ai step 'intent'" in refused.output), refused.output
        warned = run("ai", "train", "banking", "--from", dropped)
        assert warned.exit_code == 0, warned.output
        assert "classifier banking v2:" in warned.output
        assert ("stages[0].next[0].when: names category 'card_arrival' of ai step 'intent', "
                "which classifier banking v2 does not have: the rule can never hold"
                in " ".join(warned.output.split())), warned.output
        checked = run("validate")  # the files now name a label the latest version lacks
        assert checked.exit_code == 1
        assert "routed.yaml:21 stages[0].next[0].when: names category 'card_arrival'" \
               in checked.output, checked.output
    finally:  # the CLI's state (its Engine, settings) is this process's: leave none behind
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None


# ---- a provider's error body stays out of the logs -------------------------------------

def test_error_fields_keep_identifiers_only() -> None:
    said = "the text 'Jane Doe, IBAN DE44...' is too long"
    assert error_fields({"error": {"message": said, "type": "invalid_request_error",
                                   "code": "context_length_exceeded"}}) == (
        "invalid_request_error", "context_length_exceeded", said)
    assert error_fields({"type": "error", "error": {"type": "overloaded_error",
                                                    "message": "Overloaded"}}) == (
        "overloaded_error", None, "Overloaded")
    assert error_fields({"object": "error", "message": said, "type": "BadRequestError",
                         "code": 400}) == ("BadRequestError", 400, "")
    assert error_fields({"error": said}) == (None, None, said)
    assert error_fields({"error": {"type": said, "code": "Jane Doe"}}) == (None, None, said)
    assert error_fields("<html>502 Bad Gateway</html>") == (None, None, "")


def test_a_provider_error_echoing_the_text_is_logged_without_it(
        harness: Any, llm: Llm, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    deploy(harness, llm)
    said = "cannot read 'Jane Doe, jane.doe@example.org, IBAN DE44500105175407324931'"
    llm.script({"status": 400, "error": said})
    _rec, run = start(harness, "IBAN change", "Jane Doe, jane.doe@example.org")
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert sr.status.value == "fallout" and sr.error["type"] == "ProviderError"
    size = len(json.dumps({"error": {"type": "error", "message": said}}).encode())
    assert sr.error["message"].endswith(
        f"/v1/chat/completions answered 400, a body of {size} bytes (not retried)")
    # what the provider said is on the record, as the step's error had it before
    assert sr.error["provider_error"] == {"status": 400, "type": None, "code": None,
                                          "message": said, "body_bytes": size}
    (call,) = events(harness, run.id, "http_call")
    assert "Jane Doe" in call["data"]["response_body"]
    assert "answered 400" in caplog.text  # the failure is logged...
    assert "Jane" not in caplog.text and "DE44" not in caplog.text  # ...without the text
    (ai_call,) = events(harness, run.id, "ai_call")
    assert "Jane" not in ai_call["data"]["error"]["message"]

    harness.setenv(LLM_KEY="sk-wrong")  # the server's 401 has a type: it is named
    _rec, run = start(harness)
    harness.work()
    sr = harness.engine.get_run(run.id).steps["intent"]
    assert "answered 401 (error type authentication_error), a body of" in sr.error["message"]
    assert sr.error["provider_error"]["message"] == "invalid api key"


def test_ai_test_shows_what_the_provider_said(tmp_path: Path, llm: Llm) -> None:
    """``baton ai test`` on a model provider that answers an error: the message as a worker
    logs it, and (on the designer's own terminal) what the provider said."""
    from typer.testing import CliRunner

    from baton.cli.main import app, state

    (tmp_path / "definitions").mkdir()
    (tmp_path / "definitions" / "llm.yaml").write_text(
        providers.EMAIL + "---\n" + providers.CONNECTIONS.format(url=llm.url) + "---\n"
        + providers.CLASSIFY.format(provider=providers.OPENAI))
    runner = CliRunner()
    base = ["--project", str(tmp_path), "--db", f"sqlite:///{tmp_path / 'baton.db'}"]
    try:
        assert runner.invoke(app, [*base, "deploy"]).exit_code == 0
        got = runner.invoke(app, [*base, "ai", "test", "intent", "--text", "cancel it"],
                            env={"LLM_KEY": "sk-wrong"})
        assert got.exit_code == 1, got.output
        out = " ".join(got.output.split())
        assert "answered 401 (error type authentication_error), a body of" in out, out
        assert "the provider said: invalid api key" in out, out
    finally:
        if state._engine is not None:
            state._engine.close()
        state._project = state._settings = state._engine = None


# ---- an older version activated, a fulfillment's step templates -----------------------

ARRIVAL_RULE = '{when: \'=steps.intent.output.category == "card_arrival"\', goto: post}'


def _line_of(source: str, text: str) -> int:
    """The line (1-based) of ``source`` holding ``text``: once only."""
    (line,) = [i for i, s in enumerate(source.splitlines(), 1) if text in s]
    return line


def test_activating_a_version_whose_rule_names_a_dropped_label_is_refused(
        harness: Any, tmp_path: Path) -> None:
    """v1 routes on card_arrival, v2 (active) no longer does; the classifier is retrained
    without card_arrival (nothing active names it: no warning). Making v1 active again
    would route every text past its rule: refused, as its deploy would be, and nothing
    changes; the active version stays active."""
    texts, labels = read_csv(write_csv(tmp_path / "v1.csv", ROWS))
    train(harness.engine.store, "banking", texts, labels, source="v1.csv", actor="test",
          now="2026-01-01T00:00:00Z")
    harness.deploy_text(ORCH)
    harness.deploy_text(ORCH.replace('"card_arrival"', '"card_payment_wrong"'))
    texts, labels = read_csv(write_csv(tmp_path / "v2.csv", NO_ARRIVAL))
    v2 = train(harness.engine.store, "banking", texts, labels, source="v2.csv",
               actor="test", now="2026-01-02T00:00:00Z")
    assert v2["version"] == 2 and v2["unknown_categories"] == []  # (v1 is not active)

    defs = harness.engine.definitions
    with pytest.raises(DefinitionError) as refused:
        defs.set_active("orchestration", "t_routed", 1, "test")
    (issue,) = refused.value.issues
    v1 = defs.get_version("orchestration", "t_routed", 1)
    assert (issue.file, issue.line, issue.path) == (
        str(harness.tmp / "defs.yaml"), _line_of(v1.source, "card_arrival"),
        "stages[0].next[0].when")
    assert issue.message == (
        "names category 'card_arrival' of ai step 'intent', which its classifier 'banking' "
        "(v2, the latest) does not know (its labels: card_damaged, card_payment_wrong, "
        "passcode_forgotten, and the step's own categories: other): the rule can never "
        "hold; train a version with that label (baton ai train banking --from FILE.csv) "
        "or change the rule (activating orchestration 't_routed' v1; its line as `baton "
        "definitions show t_routed --version 1` prints it)")
    assert [(r.version, r.active) for r in defs.list_versions("orchestration", "t_routed")
            ] in ([(1, False), (2, True)], [(2, True), (1, False)])
    defs.forget()  # (what the store says, not this repo's index)
    assert defs.orchestration("t_routed")[1] == 2
    assert defs.set_active("orchestration", "t_routed", 2, "test") is not None  # it fits


FULFILLMENT = """
kind: object
name: ShopOrder
fields:
  number: {type: string, required: true}
  note: {type: text}
  status: {type: choice, choices: [Draft, Submitted], default: Draft}
---
kind: object
name: ShopLine
fields:
  order: {type: ref, object: ShopOrder, required: true}
  product: {type: choice, choices: [ROUTER]}
  quantity: {type: int, default: 1}
  action: {type: choice, choices: [add, amend, renew, no_change, cancel], default: add}
  attributes: {type: json}
---
kind: catalog
name: shop
products: [{code: ROUTER, family: Device}]
---
kind: fulfillment
name: shop_orders
catalog: shop
trigger: {type: record, object: ShopOrder, on: [create], when: '=record.status == "Submitted"'}
lines: {object: ShopLine}
groups:
  follow:
    - {name: hold, type: interactive, scope: plan, assign: {queue: post}, after: [intent],
       when: '=steps.intent.output.category in ["passcode_forgotten", "other"]'}
scenarios:
  - name: every_order
    when: '=true'
    groups: [follow]
    steps:
      - name: intent
        type: ai
        task: classify
        classifier: banking
        scope: plan
        text: '=record.note'
        categories: [{name: other, description: anything else}]
      - {name: chase, type: interactive, scope: plan, assign: {queue: post}, after: [intent],
         when: '=steps.intent.output.category == "card_arrival"'}
"""


def test_a_fulfillments_step_templates_are_checked_as_an_orchestrations_steps(
        harness: Any, tmp_path: Path) -> None:
    """A plan's steps are the fulfillment's templates: an ai classify template and a rule
    on its category (a template's when, in a scenario or a group) are refused at deploy
    and validate when the classifier does not know it, named when training drops it, and
    refused when an older version naming it is activated."""
    texts, labels = read_csv(write_csv(tmp_path / "v1.csv", ROWS))
    train(harness.engine.store, "banking", texts, labels, source="v1.csv", actor="test",
          now="2026-01-01T00:00:00Z")
    typo = FULFILLMENT.replace('"card_arrival"', '"card_arival"').replace(
        '"passcode_forgotten", "other"', '"passcode_forgoten", "other"')
    with pytest.raises(DefinitionError) as refused:
        harness.deploy_text(typo)
    assert [(i.file.endswith("defs.yaml"), i.line, i.path, i.message.split(",")[0])
            for i in refused.value.issues] == [
        (True, _line_of(typo, "passcode_forgoten"), "groups.follow[0].when",
         "names category 'passcode_forgoten' of ai step 'intent'"),
        (True, _line_of(typo, "card_arival"), "scenarios[0].steps[1].when",
         "names category 'card_arival' of ai step 'intent'")]
    assert "classifier 'banking' (v1, the latest) does not know (did you mean " \
           "'card_arrival'?)" in refused.value.issues[1].message
    assert "shop_orders" not in {r.name for r in harness.engine.definitions.list_versions(
        "fulfillment")}  # nothing deployed, the object types neither
    assert [(i.path, i.line) for i in harness.engine.validate_texts({"typo.yaml": typo})] \
        == [("groups.follow[0].when", _line_of(typo, "passcode_forgoten")),
            ("scenarios[0].steps[1].when", _line_of(typo, "card_arival"))]

    harness.deploy_text(FULFILLMENT)  # v1: card_arrival, which banking v1 knows
    harness.deploy_text(FULFILLMENT.replace('"card_arrival"', '"card_payment_wrong"'))
    harness.engine.definitions.set_active("fulfillment", "shop_orders", 1, "test")
    texts, labels = read_csv(write_csv(tmp_path / "v2.csv", NO_ARRIVAL))
    v2 = train(harness.engine.store, "banking", texts, labels, source="v2.csv",
               actor="test", now="2026-01-02T00:00:00Z")  # v1 is active: named
    (unknown,) = v2["unknown_categories"]
    assert unknown.to_json() == {"fulfillment": "shop_orders", "version": 1,
                                 "file": str(harness.tmp / "defs.yaml"),
                                 "path": "scenarios[0].steps[1].when", "step": "intent",
                                 "category": "card_arrival", "runs_in_progress": 0}
    assert unknown.where() == (f"fulfillment 'shop_orders' v1 ({harness.tmp / 'defs.yaml'}),"
                               " scenarios[0].steps[1].when")

    defs = harness.engine.definitions
    defs.set_active("fulfillment", "shop_orders", 2, "test")  # (card_payment_wrong: known)
    with pytest.raises(DefinitionError) as refused:
        defs.set_active("fulfillment", "shop_orders", 1, "test")
    (issue,) = refused.value.issues
    v1 = defs.get_version("fulfillment", "shop_orders", 1)
    assert (issue.line, issue.path) == (_line_of(v1.source, "card_arrival"),
                                        "scenarios[0].steps[1].when")
    assert issue.message.startswith("names category 'card_arrival' of ai step 'intent', "
                                    "which its classifier 'banking' (v2, the latest)")
    assert issue.message.endswith("(activating fulfillment 'shop_orders' v1; its line as "
                                  "`baton definitions show shop_orders --kind fulfillment "
                                  "--version 1` prints it)")
    assert defs.get_version("fulfillment", "shop_orders", 2).active
