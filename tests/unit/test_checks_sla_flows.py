"""An SLA action's ``flow:`` names a registered flow, checked at validation (and so at
deploy) as every other flow name of a definition is: an orchestration step's
``on_jeopardy``/``on_overdue``, a fulfillment's ``defaults`` and its step templates (their
rollbacks too). Before, only its being a string was checked, and an unknown name showed an
hour later as ``escalation_flow_failed`` on the timeline."""

from __future__ import annotations

import textwrap

from baton.definitions.loader import check_texts
from baton.errors import Issue

FLOWS = {"cases.escalate", "cases.classify", "cases.ready", "orders.bill", "orders.refund"}

CASE = """\
kind: object
name: Case
fields:
  subject: {type: string}
---
"""


def issues(text: str, flows: set[str] | None = FLOWS) -> list[str]:
    _docs, found = check_texts({"defs.yaml": CASE + textwrap.dedent(text)}, known_flows=flows)
    return [_shown(i) for i in found if i.level == "error"]


def _shown(issue: Issue) -> str:
    return f"{issue.line} {issue.path}: {issue.message}"


ORCHESTRATION = """\
kind: orchestration
name: triage
trigger: {type: record, object: Case}
stages:
  - name: work
    steps:
      - name: look
        type: interactive
        assign: {queue: tier1}
        sla:
          duration: 4h
          jeopardy: 1h
          on_jeopardy: {notify: [supervisor], flow: JEOPARDY}
          on_overdue: {reassign: "queue:tier2", flow: OVERDUE}
"""


def orchestration(jeopardy: str, overdue: str) -> str:
    return ORCHESTRATION.replace("JEOPARDY", jeopardy).replace("OVERDUE", overdue)


def test_an_unknown_escalation_flow_is_refused_where_it_is_written() -> None:
    found = issues(orchestration("cases.escalte", "zz.nope"))
    assert found == [
        ("18 stages[0].steps[0].sla.on_jeopardy.flow: unknown flow 'cases.escalte' "
         "(did you mean 'cases.escalate'?)"),
        "19 stages[0].steps[0].sla.on_overdue.flow: unknown flow 'zz.nope'",
    ]


def test_a_registered_escalation_flow_passes() -> None:
    assert issues(orchestration("cases.escalate", "cases.escalate")) == []


def test_a_file_validated_alone_does_not_check_flow_names() -> None:
    # (``baton validate FILE`` outside a project: no flow modules loaded, so no flow names)
    assert issues(orchestration("cases.nope", "cases.nope"), flows=None) == []


def test_an_escalation_flow_must_still_be_a_name() -> None:
    found = issues(orchestration("''", "[a, b]"), flows=None)
    assert found == [
        "18 stages[0].steps[0].sla.on_jeopardy.flow: expected a non-empty string",
        "19 stages[0].steps[0].sla.on_overdue.flow: expected a non-empty string, got a list",
    ]


FULFILLMENT = """\
kind: object
name: OrderLine
fields:
  order: {type: ref, object: Case}
---
kind: fulfillment
name: f
trigger: {type: record, object: Case, on: [update]}
lines: {object: OrderLine}
defaults:
  interactive: {sla: {duration: 4h, on_overdue: {flow: DEFAULTS}}}
scenarios:
  - name: s
    when: "=true"
    steps:
      - name: bill
        type: background
        flow: orders.bill
        rollback:
          type: interactive
          assign: {queue: billing}
          sla: {duration: 1d, on_overdue: {flow: ROLLBACK}}
      - name: check
        type: interactive
        assign: {queue: billing}
        sla: {duration: 2h, jeopardy: 1h, on_jeopardy: {flow: TEMPLATE}}
"""


def test_a_fulfillment_checks_its_defaults_templates_and_rollbacks() -> None:
    text = (FULFILLMENT.replace("DEFAULTS", "orders.escalate")
            .replace("ROLLBACK", "orders.refnd").replace("TEMPLATE", "zz.nope"))
    assert issues(text) == [
        ("16 defaults.interactive.sla.on_overdue.flow: unknown flow 'orders.escalate' "
         "(did you mean 'cases.escalate'?)"),
        ("27 scenarios[0].steps[0].rollback.sla.on_overdue.flow: unknown flow 'orders.refnd' "
         "(did you mean 'orders.refund'?)"),
        "31 scenarios[0].steps[1].sla.on_jeopardy.flow: unknown flow 'zz.nope'",
    ]
    good = (FULFILLMENT.replace("DEFAULTS", "cases.escalate")
            .replace("ROLLBACK", "orders.refund").replace("TEMPLATE", "cases.escalate"))
    assert issues(good) == []


EVERY_PLACE = """\
kind: orchestration
name: everywhere
trigger: {type: record, object: Case}
stages:
  - name: one
    exit_when: {flow: x.exit}
    next:
      - {when: {flow: x.next}, goto: two}
    steps:
      - name: a
        type: background
        flow: x.background
        when: {flow: x.when}
      - name: b
        type: interactive
        assign: {queue: q}
        complete_when: {flow: x.complete}
        sla: {duration: 1h, jeopardy: 10m, on_jeopardy: {flow: x.jeopardy},
              on_overdue: {flow: x.overdue}}
  - name: two
    steps: [{name: c, type: background, flow: cases.classify}]
"""


def test_every_place_a_flow_is_named_is_checked_the_same_way() -> None:
    found = issues(EVERY_PLACE)
    unknown = sorted(line.split(": ", 1)[0].split(" ", 1)[1] for line in found
                     if "unknown flow 'x." in line)
    assert unknown == sorted([
        "stages[0].exit_when.flow", "stages[0].next[0].when.flow",
        "stages[0].steps[0].flow", "stages[0].steps[0].when.flow",
        "stages[0].steps[1].complete_when.flow", "stages[0].steps[1].sla.on_jeopardy.flow",
        "stages[0].steps[1].sla.on_overdue.flow",
    ])
    assert len(found) == len(unknown), found
