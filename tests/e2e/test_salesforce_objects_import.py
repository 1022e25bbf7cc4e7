"""``baton import salesforce`` with custom-object metadata (SFDX source format and Metadata
API ``.object`` files in a retrieve zip): the object types come from the metadata (lengths,
precision and scale, picklist values, required, defaults, lookups), a field has the same
Baton name in the flows' conditions and in objects.yaml, what is computed in Salesforce is
reported with its file and line, and the project validates, deploys on a real SQLite file
and takes (and refuses) records by the mapped fields. A second import keeps objects.yaml's
own fields and adds what the metadata has that it lacks."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import yaml

from baton.importers.salesforce import import_salesforce
from tests.e2e.test_cli import baton, ok, ok_json

DATA = Path(__file__).resolve().parents[1] / "data" / "salesforce_objects"
SFDX = DATA / "sfdx"
FLOW = SFDX / "flows" / "Purchase_Request_Review.flow-meta.xml"
PR_FIELDS = SFDX / "objects" / "Purchase_Request__c" / "fields"


def objects_of(out: Path) -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((out / "definitions" / "objects.yaml").read_text())
    return {d["name"]: d for d in docs}


def entries(report: dict[str, Any], kind: str) -> list[str]:
    return [f"{Path(e['file']).name}:{e['line']} {e.get('construct') or e.get('element')}"
            for e in report[kind]]


def test_sfdx_objects_become_typed_fields_that_deploy_and_check_records(tmp_path: Path
                                                                         ) -> None:
    out = tmp_path / "purchasing"
    report = ok_json(baton("import", "salesforce", SFDX, "--out", out, "--json",
                           cwd=tmp_path))
    objects = objects_of(out)
    assert report["objects"] == ["Purchase_Request", "Vendor"]
    pr = objects["Purchase_Request"]
    assert pr["label"] == "Purchase Request"
    f = pr["fields"]
    assert f["name"] == {"type": "string", "label": "Request Name", "max_length": 80,
                         "required": True}
    assert f["amount"] == {"type": "decimal", "label": "Amount", "precision": 16, "scale": 2,
                           "required": True}
    assert f["quantity"] == {"type": "int", "label": "Quantity", "default": 1}
    assert f["tax_rate"] == {"type": "decimal", "label": "Tax rate", "precision": 5,
                             "scale": 2}
    assert f["category"] == {"type": "choice", "label": "Category",
                             "description": "What is being bought",
                             "choices": ["Hardware", "Software", "Services"],
                             "default": "Hardware", "required": True}
    assert f["region"]["choices"] == ["EMEA", "Americas"]  # from the global value set file
    assert f["tags"]["type"] == "json"
    assert f["vendor"] == {"type": "ref", "label": "Vendor", "object": "Vendor"}
    assert f["legacy_record"]["type"] == "string"  # Legacy_System__c is not imported
    assert f["urgent"] == {"type": "bool", "label": "Urgent", "default": False}
    assert (f["needed_by"]["type"], f["submitted_at"]["type"]) == ("date", "datetime")
    assert f["justification"] == {"type": "text", "label": "Justification",
                                  "max_length": 32768}
    assert f["requester_email"]["type"] == "string"
    assert f["request_number"]["type"] == "string"
    assert "total" not in f and "open_requests" not in objects["Vendor"]["fields"]
    # Version__c: the flow reads it as version__c; one Baton name, version_c, in both
    assert f["version_c"] == {"type": "string", "label": "Version", "max_length": 20}
    assert not any(n.startswith("version_") and n != "version_c" for n in f)
    orchestration = (out / "definitions" / "purchase_request_review.yaml").read_text()
    assert "record.version_c" in orchestration and "record.vendor.name" in orchestration

    assert entries(report, "untranslated") == [
        "Name_Not_Blank.validationRule-meta.xml:2 validation rule Vendor__c.Name_Not_Blank",
        "Total__c.field-meta.xml:2 field Purchase_Request__c.Total__c",
        "Open_Requests__c.field-meta.xml:2 field Vendor__c.Open_Requests__c",
    ]
    assert all("computed in Salesforce: port as a flow" in u["reason"]
               for u in report["untranslated"][1:])
    notes = entries(report, "notes")
    for expected in (("Legacy_Record__c.field-meta.xml:2 field Purchase_Request__c."
                     "Legacy_Record__c"),
                     "Region__c.field-meta.xml:2 field Purchase_Request__c.Region__c",
                     ("Request_Number__c.field-meta.xml:2 field Purchase_Request__c."
                     "Request_Number__c"),
                     "Tags__c.field-meta.xml:2 field Purchase_Request__c.Tags__c"):
        assert expected in notes, notes
    assert not any("Check the object types inferred" in s for s in report["next_steps"])

    shown = ok(baton("validate", cwd=out)).stdout.strip().splitlines()
    assert shown[-1] == "valid" and all(" warning: " in line for line in shown[:-1]), shown
    db = f"sqlite:///{out / 'baton.db'}"

    def b(*args: str) -> subprocess.CompletedProcess[str]:
        return baton("--db", db, *args, cwd=out)

    ok(b("deploy"))
    vendor = json.loads(ok(b("records", "create", "Vendor", "--data", '{"name": "Acme"}',
                             "--json")).stdout)
    good = {"name": "Laptops", "amount": 1234.5, "category": "Software", "region": "EMEA",
            "tags": ["Capex"], "vendor": vendor["id"], "version_c": "v1",
            "needed_by": "2026-12-31", "tax_rate": "7.5", "justification": "Old ones\nbroke"}
    made = json.loads(ok(b("records", "create", "Purchase_Request", "--data",
                           json.dumps(good), "--json")).stdout)
    assert (made["amount"], made["tax_rate"], made["quantity"], made["urgent"]) == (
        "1234.50", "7.50", 1, False)
    for bad, why in (({"category": "Food"}, ("category: 'Food' is not one of Hardware, "
                                             "Software, Services")),
                     ({"region": "Mars"}, "region: 'Mars' is not one of EMEA, Americas"),
                     ({"amount": 1.555}, "amount: 1.555 has 3 decimal places"),
                     ({"version_c": "x" * 21}, "version_c: 21 characters is too long: at most 20")):
        p = b("records", "create", "Purchase_Request", "--data", json.dumps({**good, **bad}))
        assert p.returncode == 1 and why in p.stderr, (bad, p.stderr)
    p = b("records", "create", "Purchase_Request", "--data", '{"name": "No amount"}')
    assert p.returncode == 1 and "amount: is required" in p.stderr, p.stderr


def test_a_metadata_api_retrieve_zip_with_object_files(tmp_path: Path) -> None:
    retrieve = tmp_path / "unpackaged.zip"
    with zipfile.ZipFile(retrieve, "w") as zf:
        zf.write(FLOW, "unpackaged/flows/Purchase_Request_Review.flow")
        zf.write(DATA / "mdapi" / "objects" / "Purchase_Request__c.object",
                 "unpackaged/objects/Purchase_Request__c.object")
    out = tmp_path / "out"
    report = import_salesforce([retrieve], out).to_json()
    f = objects_of(out)["Purchase_Request"]["fields"]
    assert f["amount"]["precision"] == 12 and f["amount"]["required"] is True
    assert f["category"]["choices"] == ["Hardware", "Software"]  # <picklist> (API < 38)
    assert f["region"] == {"type": "string", "label": "Region"}  # its value set not given
    assert f["name"] == {"type": "string", "label": "Request Number"}  # an AutoNumber
    assert f["vendor"] == {"type": "ref", "label": "Vendor", "object": "Vendor"}
    shown = f"{retrieve}/unpackaged/objects/Purchase_Request__c.object"
    assert [(u["file"], u["line"], u["construct"]) for u in report["untranslated"]] == [
        (shown, 55, "validation rule Purchase_Request__c.Amount_Positive")]
    assert any(n["file"] == shown and n["line"] == 28 and "global value set Regions" in
               n["reason"] for n in report["notes"]), report["notes"]
    # Vendor has no metadata here: its fields are inferred from the flow, and said so
    assert any("(Vendor)" in s for s in report["next_steps"]), report["next_steps"]


def test_unsafe_or_misplaced_object_files_are_reported_not_read(tmp_path: Path) -> None:
    src = tmp_path / "force-app"
    shutil.copytree(SFDX, src)
    fields = src / "objects" / "Purchase_Request__c" / "fields"
    (fields / "Evil__c.field-meta.xml").write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n<CustomField/>')
    (src / "Loose__c.field-meta.xml").write_text(
        (PR_FIELDS / "Urgent__c.field-meta.xml").read_text())
    (src / "objects" / "Wrong.object-meta.xml").write_text("<?xml version='1.0'?>\n<Flow/>\n")
    out = tmp_path / "out"
    report = import_salesforce([src], out).to_json()
    reasons = {Path(u["file"]).name: (u["line"], u["reason"]) for u in report["untranslated"]}
    assert reasons["Evil__c.field-meta.xml"] == (
        2, "a DOCTYPE (DTD or entity declarations) is not allowed in flow metadata")
    assert reasons["Loose__c.field-meta.xml"][1].startswith("a field file outside "
                                                            "objects/<Object>/fields/")
    assert reasons["Wrong.object-meta.xml"] == (
        2, "not CustomObject metadata: the root element is <Flow>, not <CustomObject>")
    assert "evil" not in objects_of(out)["Purchase_Request"]["fields"]


def test_a_second_import_keeps_what_objects_yaml_has_and_adds_the_rest(tmp_path: Path
                                                                      ) -> None:
    out = tmp_path / "out"
    import_salesforce([FLOW], out)  # the flow alone: amount inferred as a decimal
    first = objects_of(out)["Purchase_Request"]["fields"]
    assert first["amount"] == {"type": "decimal"} and "category" not in first
    path = out / "definitions" / "objects.yaml"
    docs = list(yaml.safe_load_all(path.read_text()))
    mine = next(d for d in docs if d["name"] == "Purchase_Request")
    mine["fields"]["amount"] = {"type": "decimal", "precision": 10, "scale": 0}
    mine["fields"]["category"] = {"type": "choice", "choices": ["Gear", "Other"]}
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))

    report = import_salesforce([SFDX], out, force=True)
    again = objects_of(out)["Purchase_Request"]["fields"]
    assert again["amount"] == {"type": "decimal", "precision": 10, "scale": 0}
    assert again["category"] == {"type": "choice", "choices": ["Gear", "Other"]}
    assert again["tax_rate"]["precision"] == 5 and again["vendor"]["object"] == "Vendor"
    kept = "\n".join(report.kept)
    assert ("Purchase_Request.category kept as it is there ({type: choice, choices: [Gear, "
            "Other]}); the object metadata says {type: choice, label: Category") in kept, kept
    assert "Purchase_Request.tax_rate" in kept  # added
    shown = ok(baton("validate", cwd=out)).stdout.strip().splitlines()
    assert shown[-1] == "valid", shown
