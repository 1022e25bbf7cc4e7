"""``type: approval``: a person approves or rejects, with comments (Salesforce approvals).

An interactive step with a fixed form (``decision``: approve or reject, required;
``comments``). While it waits, its record is **locked**: people cannot edit the record
(``RecordService.update`` answers 409 naming the approval) but the process can. The
approval history is on the record's timeline (``approval_requested``, ``approval_decided``
with who, when, the decision and the comments). The person who submitted it (whoever
started the run) may **recall** it (``baton work recall``, ``POST /api/work/{id}/recall``):
the step completes with ``decision: recalled``. The output is ``{decision, comments,
approver, decided_at}``, which ``next`` rules route on.
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
    keys: tuple[str, ...] = ("assign", "instructions", "priority", "input", "title", "summary")

    def start(self, d: DecideContext, sr: StepRun, step: StepDefinition) -> None:
        super().start(d, sr, replace(step, form=FORM))
        if sr.status.value == "waiting_for_person":
            d.audit("approval_requested", step=sr.name, stage=sr.stage, iteration=sr.iteration)

    def completed(self, d: DecideContext, sr: StepRun, step: StepDefinition,
                  output: dict[str, Any], actor: str) -> dict[str, Any]:
        out = {"decision": output.get("decision"), "comments": output.get("comments"),
               "approver": actor, "decided_at": d.now,
               **{k: v for k, v in output.items() if k not in ("decision", "comments")}}
        d.audit("approval_decided", actor, step=sr.name, stage=sr.stage,
                iteration=sr.iteration, decision=out["decision"], comments=out["comments"])
        return out


APPROVAL = Approval()
