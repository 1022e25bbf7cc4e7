"""Imported Salesforce orchestrations run the paths the originals would (issue 18, Import).

Each test imports orchestrations of the corpus (``tests/data/salesforce``) with
``import_salesforce``, deploys the generated definitions, fills in the flows the importer
left as "port me" stubs with the functions below, and drives runs through their branches
on both databases (``harness`` is parametrised by ``db_url``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton import FlowContext, flow
from baton.importers.salesforce import import_salesforce
from baton.runtime.engine import Engine

CORPUS = Path(__file__).resolve().parents[1] / "data" / "salesforce"
SCREENS = sorted(p for p in CORPUS.glob("*.flow-meta.xml") if "<processType>Flow<" in p.read_text())


# ---- the flows the user ports: they write down what ran, as the originals would ----------
def _mark(ctx: FlowContext, field: str, value: str) -> dict[str, Any]:
    ctx.update_record({field: value})
    return {"done": value}


@flow("salesforce.Classify_Case")
def classify_case(ctx: FlowContext) -> dict[str, Any]:
    return {"category": "billing"}


@flow("salesforce.Raise_Case_Level")
def raise_case_level(ctx: FlowContext) -> dict[str, Any]:
    return {"raised": True}


@flow("salesforce.Close_Case")
def close_case(ctx: FlowContext) -> dict[str, Any]:
    return {"closed": True}


@flow("salesforce.Mark_Quote_Approved")
def mark_quote_approved(ctx: FlowContext) -> dict[str, Any]:
    return _mark(ctx, "status", "Approved")


@flow("salesforce.Mark_Quote_Rejected")
def mark_quote_rejected(ctx: FlowContext) -> dict[str, Any]:
    return _mark(ctx, "status", "Rejected")


@flow("salesforce.Disburse_Loan")
def disburse_loan(ctx: FlowContext) -> dict[str, Any]:
    return _mark(ctx, "status", "Disbursed")


@flow("salesforce.Send_Decline_Letter")
def send_decline_letter(ctx: FlowContext) -> dict[str, Any]:
    return _mark(ctx, "status", "Declined")


@flow("salesforce.Set_Opportunity_Approved")
def set_opportunity_approved(ctx: FlowContext) -> dict[str, Any]:
    return _mark(ctx, "type", "Approved Business")


@flow("salesforce.Set_Opportunity_Rejected")
def set_opportunity_rejected(ctx: FlowContext) -> dict[str, Any]:
    return _mark(ctx, "type", "Rejected Business")


# ---- helpers ----------------------------------------------------------------------------
def imported(harness: Any, *names: str) -> Path:
    """Import the named orchestrations (with every screen flow) and deploy them."""
    out = harness.tmp / "imported"
    report = import_salesforce([CORPUS / f"{n}.flow-meta.xml" for n in names] + SCREENS, out)
    assert report.untranslated == [], report.to_text()
    harness.engine.deploy([out / "definitions"], known_flows=None)
    return out


def run_of(engine: Engine, record_id: str) -> Any:
    runs = engine.list_runs(record_id=record_id)
    assert len(runs) == 1, runs
    return engine.get_run(runs[0].id)


def open_item(engine: Engine, run_id: str, step: str) -> dict[str, Any]:
    items = [i for i in engine.list_work(run_id=run_id) if i["step"] == step]
    assert len(items) == 1, (step, engine.list_work(run_id=run_id))
    return items[0]


def submit(harness: Any, run_id: str, step: str, data: dict[str, Any],
           assignee: tuple[str, str] | None = None) -> None:
    item = open_item(harness.engine, run_id, step)
    if assignee is not None:
        assert (item["assignee_kind"], item["assignee"]) == assignee, item
    who = item["assignee"] if item["assignee_kind"] == "user" else "pat"
    harness.engine.claim(item["id"], who)
    harness.engine.complete(item["id"], who, data)
    harness.work()


def status(harness: Any, run_id: str, step: str) -> str:
    """The step's status; a step of a stage the run never entered has not started."""
    return harness.step_status(run_id).get(step, "not_started")


def labels(engine: Engine, run_id: str) -> list[str]:
    return [d.get("label", "") for d in engine.get_run(run_id).decisions]


# ---- Case triage: a filtered record trigger, a screen-flow form, a decision -------------
def test_case_triage_escalates_or_closes_as_triaged(harness: Any) -> None:
    imported(harness, "Case_Triage_Orchestration")
    eng = harness.engine
    internal = eng.create_record("Case", {"origin": "Internal"})
    assert eng.list_runs(record_id=internal["id"]) == [], "filtered out by Origin != Internal"

    web = eng.create_record("Case", {"origin": "Web"})
    harness.work()
    run = run_of(eng, web["id"])
    assert status(harness, run.id, "classify_case") == "completed"
    item = open_item(eng, run.id, "triage_case")
    assert (item["assignee_kind"], item["assignee"]) == ("queue", "tier1")
    assert [f["name"] for f in item["form"]] == ["resolution", "notes"]
    submit(harness, run.id, "triage_case", {"resolution": "escalate"})
    done = eng.get_run(run.id)
    assert done.status.value == "completed"
    assert status(harness, run.id, "raise_level") == "completed"
    assert status(harness, run.id, "close_case") == "completed"
    assert labels(eng, run.id) == ["", "Escalate", "", ""]

    phone = eng.create_record("Case", {"origin": "Phone"})
    harness.work()
    run = run_of(eng, phone["id"])
    submit(harness, run.id, "triage_case", {"resolution": "close"})
    assert status(harness, run.id, "raise_level") == "not_started"
    assert status(harness, run.id, "close_case") == "completed"
    assert "Resolved" in labels(eng, run.id)


# ---- Quote approval chain: changed-to-meet, a decision first, exit logic 1 OR (2 AND 3) OR 4
def test_quote_chain_takes_each_approval_path(harness: Any) -> None:
    imported(harness, "Quote_Approval_Chain")
    eng = harness.engine

    def quote(discount: float | None) -> tuple[str, Any]:
        q = eng.create_record("Quote", {"status": "Draft", "approver": "mia",
                                        **({"discount": discount} if discount is not None else {})})
        assert eng.list_runs(record_id=q["id"]) == [], "not submitted yet"
        eng.update_record(q["id"], {"status": "Submitted"})
        harness.work()
        return q["id"], run_of(eng, q["id"])

    # No discount: the first decision goes straight to Finalize.
    qid, run = quote(None)
    assert eng.get_record(qid)["status"] == "Approved"
    assert status(harness, run.id, "manager_approval") == "not_started"
    assert labels(eng, run.id)[0] == "No discount"

    # A small discount: the manager's approval is enough (2 AND 3).
    qid, run = quote(10)
    submit(harness, run.id, "manager_approval", {"decision": "approve"}, ("user", "mia"))
    assert eng.get_record(qid)["status"] == "Approved"
    assert status(harness, run.id, "director_approval") in ("waiting", "canceled", "not_started")

    # A big discount: the director must approve too; the director rejects (4, then Rejected).
    qid, run = quote(30)
    submit(harness, run.id, "manager_approval", {"decision": "approve"})
    submit(harness, run.id, "director_approval", {"decision": "reject"}, ("group", "directors"))
    assert eng.get_record(qid)["status"] == "Rejected"
    assert "Rejected" in labels(eng, run.id)

    # The manager rejects: the stage exits at once (1) and the quote is rejected.
    qid, run = quote(30)
    submit(harness, run.id, "manager_approval", {"decision": "reject"})
    assert eng.get_record(qid)["status"] == "Rejected"
    assert status(harness, run.id, "director_approval") != "completed"


# ---- Loan application (ApprovalWorkflow): approval steps, logic 1 AND (2 OR NOT 3) ------
@pytest.mark.parametrize(("amount", "secured", "underwriter", "committee", "outcome"), [
    (600000, True, "approve", "approve", "Disbursed"),     # big: the committee, who approves
    (600000, True, "approve", "reject", "Declined"),      # big: the committee rejects
    (100000, True, "approve", None, "Disbursed"),         # small and secured: approved
    (100000, False, "approve", "approve", "Disbursed"),   # unsecured: the committee (NOT 3)
    (100000, True, "reject", None, "Declined"),           # the underwriter rejects: default
])
def test_loan_approvals_follow_the_custom_logic(harness: Any, amount: int, secured: bool,
                                                underwriter: str, committee: str | None,
                                                outcome: str) -> None:
    imported(harness, "Loan_Application")
    eng = harness.engine
    loan = eng.create_record("Loan_Application", {"status": "Submitted", "amount": amount,
                                                  "secured": secured})
    harness.work()
    run = run_of(eng, loan["id"])
    item = open_item(eng, run.id, "underwriter_approval")
    assert [f["name"] for f in item["form"]] == ["decision", "comments"]
    submit(harness, run.id, "underwriter_approval", {"decision": underwriter,
                                                     "comments": "checked"})
    if committee is None:
        assert status(harness, run.id, "committee_approval") == "not_started"
    else:
        submit(harness, run.id, "committee_approval", {"decision": committee},
               ("group", "credit_committee"))
    assert eng.get_record(loan["id"])["status"] == outcome
    assert eng.get_run(run.id).status.value == "completed"


# ---- B2B approval (ApprovalWorkflow): a rule without a connector ends the run ------------
def test_b2b_rejection_by_the_deal_desk_ends_the_run(harness: Any) -> None:
    imported(harness, "B2B_Opportunity_Approval")
    eng = harness.engine
    small = eng.create_record("Opportunity", {"amount": 1000, "type": "New Business"})
    other = eng.create_record("Opportunity", {"amount": 90000, "type": "Renewal"})
    assert eng.list_runs(record_id=small["id"]) == eng.list_runs(record_id=other["id"]) == []
    opp = eng.create_record("Opportunity", {"amount": 90000, "type": "Existing Business"})
    harness.work()
    run = run_of(eng, opp["id"])
    submit(harness, run.id, "deal_desk_approval", {"decision": "reject"}, ("queue", "deal_desk"))
    done = eng.get_run(run.id)
    assert done.status.value == "completed"
    assert labels(eng, run.id)[-1] == "Rejected by deal desk"
    assert status(harness, run.id, "manager_approval") == "not_started"
    assert eng.get_record(opp["id"])["type"] == "Existing Business", "no outcome flow ran"


# ---- features being built alongside the importer: skip, saying why, until they land -----
def deploy_or_skip(harness: Any, *names: str) -> Path:
    """As :func:`imported`, skipping when this branch lacks ``input:`` on steps and on
    ``{flow:, input:}`` conditions (issue 18, item 2), which the importer writes."""
    from baton.errors import DefinitionError

    try:
        return imported(harness, *names)
    except DefinitionError as exc:
        if any("unknown key 'input'" in i.message for i in exc.issues):
            pytest.skip("input: on steps and evaluation-flow conditions (issue 18 item 2) is "
                        "not on this branch")
        raise


def related_fields_supported(harness: Any) -> bool:
    """Whether conditions follow ``ref`` fields (``record.target.name``, issue 18 item 1):
    a probe step whose ``when`` reads a related record starts only if they do."""
    from baton.errors import DefinitionError

    try:
        harness.deploy_text("""
        kind: object
        name: T_Rel_Target
        fields: {name: {type: string}}
        ---
        kind: object
        name: T_Rel_Source
        fields: {target: {type: ref, object: T_Rel_Target}}
        ---
        kind: orchestration
        name: t_rel_probe
        trigger: {type: record, object: T_Rel_Source, on: [create]}
        stages:
          - name: s
            steps:
              - {name: probe, type: interactive, assign: {queue: q},
                 when: '=record.target.name == "x"'}
        """, "probe.yaml")
    except DefinitionError:
        return False
    target = harness.engine.create_record("T_Rel_Target", {"name": "x"})
    source = harness.engine.create_record("T_Rel_Source", {"target": target["id"]})
    harness.work()
    run = run_of(harness.engine, source["id"])
    return status(harness, run.id, "probe") == "waiting_for_person"


DEACTIVATED: list[dict[str, Any]] = []
HAS_OPEN_WORK: set[str] = set()


@flow("salesforce.Has_Open_Work")
def has_open_work(ctx: FlowContext) -> bool:
    return ctx.input["username"] in HAS_OPEN_WORK


@flow("salesforce.All_Work_Reassigned")
def all_work_reassigned(ctx: FlowContext) -> bool:
    return ctx.input["username"] not in HAS_OPEN_WORK


@flow("salesforce.Deactivate_User")
def deactivate_user(ctx: FlowContext) -> dict[str, Any]:
    DEACTIVATED.append(dict(ctx.input))
    return {}


def test_user_deactivation_waits_for_the_evaluation_flows(harness: Any) -> None:
    deploy_or_skip(harness, "User_Deactivation")
    eng = harness.engine
    DEACTIVATED.clear()
    HAS_OPEN_WORK.clear()
    # Nothing open: the step's entry flow says no, the stage's exit flow says yes.
    idle = eng.start("user_deactivation", {"leaver_username": "ivy", "last_day": "2026-12-31"})
    harness.work()
    assert status(harness, idle.id, "reassign_work") in ("not_started", "waiting", "canceled")
    assert DEACTIVATED == [{"leaver_username": "ivy", "last_day": "2026-12-31",
                            "username": "ivy", "reason": "Left the company"}]
    # Open work: the step is for IT, and the stage waits until the exit flow says yes.
    HAS_OPEN_WORK.add("max")
    busy = eng.start("user_deactivation", {"leaver_username": "max"})
    harness.work()
    assert eng.get_run(busy.id).current_stage == "hand_over"
    HAS_OPEN_WORK.discard("max")
    submit(harness, busy.id, "reassign_work", {}, ("queue", "it_admins"))
    assert eng.get_run(busy.id).status.value == "completed"
    assert DEACTIVATED[-1]["username"] == "max"


def test_b2b_approval_by_the_owners_manager(harness: Any) -> None:
    imported(harness, "B2B_Opportunity_Approval")
    if not related_fields_supported(harness):
        pytest.skip("related-record fields in expressions (record.owner.manager.username, "
                    "issue 18 item 1) are not on this branch")
    eng = harness.engine
    boss = eng.create_record("User", {"username": "bea"})
    rep = eng.create_record("User", {"username": "rob", "manager": boss["id"]})
    opp = eng.create_record("Opportunity", {"amount": 75000, "type": "New Business",
                                            "owner": rep["id"]})
    harness.work()
    run = run_of(eng, opp["id"])
    submit(harness, run.id, "deal_desk_approval", {"decision": "approve"})
    submit(harness, run.id, "manager_approval", {"decision": "approve"}, ("user", "bea"))
    assert eng.get_record(opp["id"])["type"] == "Approved Business"
    assert labels(eng, run.id)[-1] == ""  # the Approved stage's own next
    assert "Approved" in labels(eng, run.id)


# ---- flow approval processes as Salesforce stores them (stepApproval, ApprovalStep) ------
APPLIED: list[dict[str, Any]] = []  # what the ported flows of the two processes below did


@flow("salesforce.Apply_Opportunity_Discount")
def apply_opportunity_discount(ctx: FlowContext) -> dict[str, Any]:
    APPLIED.append({"applied": ctx.record["id"]})
    return {"applied": True}


@flow("salesforce.Notify_Discount_Rejected")
def notify_discount_rejected(ctx: FlowContext) -> dict[str, Any]:
    APPLIED.append({"rejected": ctx.record["id"], "reason": ctx.input.get("reason")})
    return {"notified": True}


@flow("salesforce.Place_Purchase_Order")
def place_purchase_order(ctx: FlowContext) -> dict[str, Any]:
    APPLIED.append({"ordered": ctx.input.get("request_id")})
    return {"ordered": True}


def decide(harness: Any, run_id: str, step: str, data: dict[str, Any],
           assignee: tuple[str, str], who: str | None = None) -> dict[str, Any]:
    """The approver (or ``who``) decides the open approval of ``step``; its output."""
    item = open_item(harness.engine, run_id, step)
    assert (item["assignee_kind"], item["assignee"]) == assignee, item
    assert item["step_type"] == "approval"
    assert [f["name"] for f in item["form"]] == ["decision", "comments"]
    harness.engine.complete(item["id"], who or assignee[1], data)
    harness.work()
    return harness.engine.get_run(run_id).steps[step].output  # type: ignore[no-any-return]


@pytest.mark.parametrize(("discount", "manager", "finance", "outcome", "label"), [
    (20, {"decision": "approve"}, None, {"applied": True}, "Approved"),
    (20, {"decision": "reject", "comments": "margin too thin"}, None,
     {"rejected": True, "reason": "margin too thin"}, "Rejected"),
    (40, {"decision": "approve", "comments": "strategic"}, {"decision": "approve"},
     {"applied": True}, "Approved by finance"),
    (40, {"decision": "approve", "comments": "strategic"},
     {"decision": "reject", "comments": "over budget"},
     {"rejected": True, "reason": "strategic"}, "Rejected by finance"),
])
def test_discount_approval_runs_the_approve_and_reject_paths(
        harness: Any, discount: int, manager: dict[str, Any], finance: dict[str, Any] | None,
        outcome: dict[str, Any], label: str) -> None:
    """A record-triggered ApprovalWorkflow: the manager (the owner's manager, a related
    record), then finance (a queue) for a large discount; each decision routes as the
    original's decisions on approvalDecision do, the comments feed a later step's input,
    and the record is locked while an approval is pending."""
    from baton.errors import TransitionConflict

    imported(harness, "Discount_Approval")
    eng = harness.engine
    APPLIED.clear()
    boss = eng.create_record("User", {"username": "bea"})
    rep = eng.create_record("User", {"username": "rob", "manager": boss["id"]})
    opp = eng.create_record("Opportunity", {"discount": 5, "owner": rep["id"]})
    harness.work()
    assert eng.list_runs(record_id=opp["id"]) == [], "10 % or less needs no approval"
    eng.update_record(opp["id"], {"discount": discount}, actor="user:rob")  # now it meets it
    harness.work()
    run = run_of(eng, opp["id"])
    with pytest.raises(TransitionConflict, match="locked: approval 'manager_approval'"):
        eng.update_record(opp["id"], {"discount": 1}, actor="user:rob")
    out = decide(harness, run.id, "manager_approval", manager, ("user", "bea"))
    assert out["approver"] == "bea" and out["decision"] == manager["decision"]
    if finance is not None:
        decide(harness, run.id, "finance_approval", finance, ("queue", "finance_approvers"),
               who="fin")
    else:
        assert status(harness, run.id, "finance_approval") == "not_started"
    done = eng.get_run(run.id)
    assert done.status.value == "completed" and label in labels(eng, run.id)
    [did] = APPLIED
    if "applied" in outcome:
        assert did == {"applied": opp["id"]}
    else:
        assert did == {"rejected": opp["id"], "reason": outcome["reason"]}
    eng.update_record(opp["id"], {"discount": 2}, actor="user:rob")  # unlocked again


def test_a_delegate_decides_an_imported_approval_on_behalf_of_the_manager(
        harness: Any) -> None:
    imported(harness, "Discount_Approval")
    eng = harness.engine
    APPLIED.clear()
    eng.directory.add_user("bea", roles=["agent"])
    eng.directory.add_user("cara", roles=["agent"])
    eng.directory.update_user("bea", delegate="cara")
    boss = eng.create_record("User", {"username": "bea"})
    rep = eng.create_record("User", {"username": "rob", "manager": boss["id"]})
    opp = eng.create_record("Opportunity", {"discount": 15, "owner": rep["id"]})
    harness.work()
    run = run_of(eng, opp["id"])
    out = decide(harness, run.id, "manager_approval", {"decision": "approve"}, ("user", "bea"),
                 who="cara")
    assert (out["approver"], out["on_behalf_of"]) == ("cara", "bea")
    assert APPLIED == [{"applied": opp["id"]}]
    [decided] = [e for e in eng.timeline(opp["id"]) if e["type"] == "approval_decided"]
    assert decided["actor"] == "cara" and decided["data"]["on_behalf_of"] == "bea"


@pytest.mark.parametrize(("decision", "ordered", "label"), [
    ("approve", ["PR-7"], "Approved"), ("reject", [], "Rejected"), ("recall", [], "Rejected")])
def test_purchase_request_approval_by_the_group_the_submission_names(
        harness: Any, decision: str, ordered: list[str], label: str) -> None:
    """An autolaunched ApprovalWorkflow: its inputs (recordId, submitter,
    submissionComments, the approver group) are the run's input; the group is a resource
    resolved when the step starts; a rejection (or the submitter's recall) ends the run by
    a rule without a connector."""
    imported(harness, "Purchase_Request_Approval")
    eng = harness.engine
    APPLIED.clear()
    run = eng.start("purchase_request_approval", {
        "record_id": "PR-7", "submitter": "sam", "submission_comments": "two laptops",
        "approver_group": "budget_owners"}, actor="user:sam")
    harness.work()
    item = open_item(eng, run.id, "budget_owner_approval")
    assert item["input"] == {"approval_information": "two laptops"}
    if decision == "recall":
        eng.work.recall(item["id"], "sam", None)
        harness.work()
        assert eng.get_run(run.id).steps["budget_owner_approval"].output["decision"] \
            == "recalled"
    else:
        decide(harness, run.id, "budget_owner_approval", {"decision": decision},
               ("group", "budget_owners"), who="gus")
    assert eng.get_run(run.id).status.value == "completed"
    assert labels(eng, run.id)[-1 if decision != "approve" else -2] == label
    assert [a["ordered"] for a in APPLIED] == ordered
