"""``baton import salesforce`` as an admin uses it on a real org's metadata: an SFDX project
(``tests/data/salesforce_qa``: a managed package's namespaced fields, a standard and a custom
field of one name, a field named like a record's own, a scheduled path, unicode and XML
entities), the Metadata API retrieve zip of several versions of one flow, and a second import
into the project the first one made, after the flow changed in Salesforce. Each project is
validated, deployed and run through the CLI on a real SQLite file."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import Any

from tests.e2e.test_cli import baton, ok, ok_json, one_line_error

QA = Path(__file__).resolve().parents[1] / "data" / "salesforce_qa"
FLOWS = QA / "force-app" / "main" / "default" / "flows"
DEAL_DESK = (FLOWS / "Deal_Desk.flow-meta.xml").read_text(encoding="utf-8")

PORTED = '''# my ported flows
from baton import flow


@flow("salesforce.Score_Deal_Flow")
def score(ctx):
    return {"score": 7}


@flow("salesforce.Notify_Owner_Flow")
def notify(ctx):
    return {"notified": True}
'''


def run(out: Path, *args: str) -> str:
    return ok(baton(*args, cwd=out)).stdout


def as_json(out: Path, *args: str) -> Any:
    return json.loads(run(out, *args, "--json"))


def test_an_sfdx_project_imports_reports_what_it_left_out_deploys_and_runs(
        tmp_path: Path) -> None:
    out = tmp_path / "deals"
    report = ok_json(baton("import", "salesforce", QA, "--out", out, "--json", cwd=tmp_path))
    assert report["orchestrations"] == ["deal_desk"]
    # The scheduled path is said, with its line, never dropped unsaid.
    [left_out] = report["untranslated"]
    assert left_out["file"].endswith("Deal_Desk.flow-meta.xml") and left_out["line"] == 183
    assert "scheduled path Three_Days_Later (3 Days" in left_out["construct"]
    assert "pause" in left_out["reason"]
    # `Amount` and `Amount__c` are two fields, `Version__c` is not the record's version.
    notes = {n["construct"]: n["reason"] for n in report["notes"]}
    assert notes["field Amount__c of ns__Deal"] == "named amount_c: amount is already ns__Deal.Amount"
    assert notes["field Version__c of ns__Deal"] == ("named version_c: version is already the "
                                                     "record's own version")
    text = (out / "definitions" / "deal_desk.yaml").read_text(encoding="utf-8")
    assert ('when: =(record.amount_c >= 100000.0) && ((record.ns_region == "EMEA") || '
            '(record.version_c > 1.0))') in text
    assert "(record.amount > 0.0)" in text
    assert "label: Deal Desk ✓" in text and "für Großkunden <EMEA>" in text
    assert "Translated with a caveat" in (out / "IMPORT_REPORT.md").read_text(encoding="utf-8")

    shown = run(out, "validate").strip().splitlines()
    assert shown[-1] == "valid", shown
    run(out, "deploy")
    (out / "flows.py").write_text(PORTED, encoding="utf-8")
    owner = as_json(out, "records", "create", "User", "--data", '{"username": "cfo"}')
    deal = as_json(out, "records", "create", "ns__Deal", "--data", json.dumps({
        "ns_stage": "Submitted", "amount": 10, "amount_c": 250000, "ns_region": "EMEA",
        "version_c": 1, "ns_rush": False, "owner": owner["id"]}))
    run(out, "worker", "--until-idle")
    [item] = [i for i in as_json(out, "work", "list") if i["record_id"] == deal["id"]]
    assert (item["step"], item["assignee_kind"], item["assignee"]) == (
        "desk_review", "queue", "Deal_Desk")
    run(out, "work", "claim", item["id"], "--user", "pat")
    run(out, "work", "complete", item["id"], "--user", "pat", "--data", '{"outcome": "approve"}')
    run(out, "worker", "--until-idle")
    # Large deal (amount_c, not amount): the CFO (the owner's username) and the Finance group.
    items = {i["step"]: (i["assignee_kind"], i["assignee"])
             for i in as_json(out, "work", "list") if i["status"] == "open"}
    assert items == {"cfo_review": ("user", "cfo"), "finance_check": ("group", "Finance")}
    assert (tmp_path / "deals" / "baton.db").is_file()


def _versions_zip(tmp_path: Path) -> Path:
    """A retrieve of three versions of Deal_Desk: 1 Obsolete, 2 Active, 3 Draft (each with
    its own large-deal threshold), and the screen flow."""
    zipped = tmp_path / "unpackaged.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as zf:
        for version, status, threshold in ((1, "Obsolete", "1.0"), (2, "Active", "2.0"),
                                           (3, "Draft", "3.0")):
            text = DEAL_DESK.replace("<status>Active</status>", f"<status>{status}</status>")
            text = text.replace("<numberValue>100000.0</numberValue>",
                                f"<numberValue>{threshold}</numberValue>")
            zf.writestr(f"unpackaged/flows/Deal_Desk-{version}.flow", text)
        zf.writestr("unpackaged/flows/Deal_Review_Screen.flow",
                    (FLOWS / "Deal_Review_Screen.flow-meta.xml").read_text(encoding="utf-8"))
        zf.writestr("unpackaged/flows/Broken.flow", DEAL_DESK[:400])
        zf.writestr("unpackaged/package.xml", "<Package/>")
    return zipped


def test_a_retrieve_zip_of_several_versions_imports_the_active_one_once(
        tmp_path: Path) -> None:
    out = tmp_path / "deals"
    report = ok_json(baton("import", "salesforce", _versions_zip(tmp_path), "--out", out,
                           "--json", cwd=tmp_path))
    # One orchestration, named after the flow (not the version): a record starts one run.
    assert report["orchestrations"] == ["deal_desk"]
    assert sorted(p.name for p in (out / "definitions").iterdir()) == ["deal_desk.yaml",
                                                                      "objects.yaml"]
    assert "record.amount_c >= 2.0" in (out / "definitions" / "deal_desk.yaml").read_text()
    kept = "unpackaged.zip/unpackaged/flows/Deal_Desk-2.flow (it is Active)"
    notes = {n["construct"]: (n["file"], n["reason"]) for n in report["notes"]}
    for version, status in ((1, "Obsolete"), (3, "Draft")):
        file, reason = notes[f"flow Deal_Desk-{version} ({status})"]
        assert file.endswith(f"unpackaged.zip/unpackaged/flows/Deal_Desk-{version}.flow")
        assert reason.endswith(f"not imported: the version of Deal_Desk imported is "
                               f"{tmp_path / kept}") or kept in reason, reason
    # A truncated member is named by its place in the zip and its line.
    broken = [u for u in report["untranslated"] if u["construct"] == "file"]
    assert len(broken) == 1 and broken[0]["file"].endswith("unpackaged.zip/unpackaged/flows/"
                                                           "Broken.flow"), broken
    assert broken[0]["reason"].startswith("not well-formed XML") and broken[0]["line"] > 1
    assert ok(baton("validate", cwd=out)).stdout.strip().splitlines()[-1] == "valid"


def test_a_draft_only_flow_is_imported_with_a_caveat(tmp_path: Path) -> None:
    src = tmp_path / "Deal_Desk.flow-meta.xml"
    src.write_text(DEAL_DESK.replace("<status>Active</status>", "<status>Draft</status>"),
                   encoding="utf-8")
    report = ok_json(baton("import", "salesforce", src, "--out", tmp_path / "o", "--json",
                           cwd=tmp_path))
    [note] = [n for n in report["notes"] if n["construct"] == "status Draft"]
    assert "Salesforce does not run a Draft flow" in note["reason"]


def test_a_second_import_keeps_what_the_user_wrote_and_adds_what_is_new(
        tmp_path: Path) -> None:
    sfdx = tmp_path / "sfdx"
    shutil.copytree(QA, sfdx)
    out = tmp_path / "deals"
    ok(baton("import", "salesforce", sfdx, "--out", out, cwd=tmp_path))
    # The admin ports the flows, gives the stage field its choices, uses PostgreSQL...
    (out / "flows.py").write_text(PORTED, encoding="utf-8")
    toml = (out / "baton.toml").read_text().replace('"sqlite:///baton.db"',
                                                    '"sqlite:///deals.db"  # mine')
    (out / "baton.toml").write_text(toml)
    objects = (out / "definitions" / "objects.yaml").read_text()
    edited = objects.replace("  ns_stage:\n    type: string\n",
                             "  ns_stage:\n    type: choice\n    choices: [Draft, Submitted]\n")
    assert edited != objects
    (out / "definitions" / "objects.yaml").write_text(edited)
    # ...and in Salesforce a step is added to Close_Out, reading a new field.
    flow = sfdx / "force-app" / "main" / "default" / "flows" / "Deal_Desk.flow-meta.xml"
    flow.write_text(DEAL_DESK.replace("""        <stageSteps>
            <name>Notify_Owner</name>""", """        <stageSteps>
            <name>Archive_Deal</name>
            <actionName>Archive_Deal_Flow</actionName>
            <actionType>stepBackground</actionType>
            <entryConditions>
                <leftValueReference>$Record.ns__Archive__c</leftValueReference>
                <operator>EqualTo</operator>
                <rightValue><booleanValue>true</booleanValue></rightValue>
            </entryConditions>
        </stageSteps>
        <stageSteps>
            <name>Notify_Owner</name>"""), encoding="utf-8")
    again = ok_json(baton("import", "salesforce", sfdx, "--out", out, "--force", "--json",
                          cwd=tmp_path))
    assert (out / "baton.toml").read_text() == toml
    ported = (out / "flows.py").read_text()
    assert ported.startswith(PORTED) and ported.count("@flow(") == 3
    assert "@flow('salesforce.Archive_Deal_Flow')" in ported and "port me" in ported
    merged = (out / "definitions" / "objects.yaml").read_text()
    assert "choices:\n    - Draft\n    - Submitted" in merged and "ns_archive:" in merged
    assert "archive_deal" in (out / "definitions" / "deal_desk.yaml").read_text()
    assert any("stubs added for salesforce.Archive_Deal_Flow" in k for k in again["kept"])
    assert any("ns__Deal.ns_archive added" in k for k in again["kept"])
    assert any("(2 already written there)" in s for s in again["next_steps"])
    # The ported flows are used: a deal goes to the desk review; the new stub is the only
    # one to port.
    run(out, "deploy")
    deal = as_json(out, "records", "create", "ns__Deal", "--data", json.dumps({
        "ns_stage": "Submitted", "amount": 5, "ns_rush": False}))
    run(out, "worker", "--until-idle")
    assert [i["step"] for i in as_json(out, "work", "list")
            if i["record_id"] == deal["id"]] == ["desk_review"]
    assert (out / "deals.db").is_file()

    # An objects.yaml that is not YAML any more stops the import before anything is written.
    (out / "definitions" / "objects.yaml").write_text("kind: object\nname: [unclosed\n")
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    one_line_error(baton("import", "salesforce", sfdx, "--out", out, "--force", cwd=tmp_path),
                   "objects.yaml:", "not YAML", "move it away")
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
