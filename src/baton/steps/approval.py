"""``type: approval``: a person approves or rejects, with comments (Salesforce approvals).

An interactive step with a fixed form (``decision``: approve or reject, required;
``comments``). While it waits, its record is **locked**: people cannot edit the record
(``RecordService.update`` answers 409 naming the approval) but the process can. The
approval history is on the record's timeline (``approval_requested``, ``approval_decided``
with who, when, the decision and the comments). The person who submitted it (whoever
started the run) may **recall** it (``baton work recall``, ``POST /api/work/{id}/recall``):
the step completes with ``decision: recalled``. The output is ``{decision, comments,
approver, decided_at}``, which ``next`` rules route on.

**Delegation**: a user-assigned approval may be decided by the assignee's delegate (``baton
users update NAME --delegate OTHER [--from DATE] [--until DATE]``, the API, the Settings
page) while the delegation is in force; the output and ``approval_decided`` then carry
``on_behalf_of`` (the assignee) beside ``approver`` (the delegate): "approved by X on
behalf of Y". The work service decides who may act (``baton.work.service``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from baton.definitions.model import FieldDefinition, StepDefinition
from baton.engine.state import StepRun
from baton.steps.base import DecideContext
from baton.steps.interactive import Interactive

DECISIONS = ("approve", "reject")
FORM = (
    FieldDefinition("decision", "choice", required=True, choices=DECISIONS, label="Decision"),
    FieldDefinition("comments", "text", label="Comments"),
)


class Approval(Interactive):
    name = "approval"
    keys: tuple[str, ...] = ("assign", "instructions", "priority", "input", "title", "summary",
                             "complete_when")

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        super().start(d, sr, replace(step, form=FORM))
        if sr.status.value == "waiting_for_person":
            d.audit("approval_requested", step=sr.name, stage=sr.stage, iteration=sr.iteration)

    def completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  output: dict[str, Any], actor: str) -> dict[str, Any]:
        out = {"decision": output.get("decision"), "comments": output.get("comments"),
               "approver": actor, "decided_at": d.now,
               **{k: v for k, v in output.items() if k not in ("decision", "comments")}}
        # A delegate decided for the assignee: "approved by X on behalf of Y".
        behalf = {"on_behalf_of": out["on_behalf_of"]} if out.get("on_behalf_of") else {}
        d.audit("approval_decided", actor, step=sr.name, stage=sr.stage,
                iteration=sr.iteration, decision=out["decision"], comments=out["comments"],
                **behalf)
        return out


APPROVAL = Approval()
