"""``baton import salesforce``: three weak spots of object metadata, on SFDX metadata written
here as a retrieve holds it (pure: no database, no processes).

* ``Vendor`` (a standard-looking object) and ``Vendor__c`` (a custom one) stay two object
  types (``Vendor``, ``Vendor_c``), said in the report; lookups and the flows' relationships
  go to the one their metadata names.
* Standard picklists (Case Status, Opportunity Stage) take their values from the standard
  value sets given (``standardValueSets/``); a set not given is said, field by field.
* A lookup to an object the retrieve lacks is a ref when the project's kept objects.yaml has
  its object type, and a string with a caveat only when it is nowhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from baton.definitions.loader import check_definitions
from baton.importers.salesforce import ImportReport, import_salesforce
from baton.importers.salesforce.conditions import Catalog
from tests.unit.test_salesforce_import import flow_xml

NS = 'xmlns="http://soap.sforce.com/2006/04/metadata"'


def meta(root: str, body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} {NS}>\n{body}\n</{root}>\n'


def obj(label: str) -> str:
    return meta("CustomObject", f"    <label>{label}</label>\n    <nameField><label>Name</label>"
                                "<type>Text</type></nameField>")


def fld(name: str, body: str) -> str:
    return meta("CustomField", f"    <fullName>{name}</fullName>\n{body}")


def lookup(name: str, target: str) -> str:
    return fld(name, f"    <label>{name}</label>\n    <referenceTo>{target}</referenceTo>\n"
                     f"    <relationshipName>{name[:-3]}</relationshipName>\n"
                     "    <type>Lookup</type>")


def standard_set(tag: str, values: list[str], default: str) -> str:
    return meta("StandardValueSet", "    <sorted>false</sorted>\n" + "\n".join(
        f"    <{tag}><fullName>{v}</fullName><default>{str(v == default).lower()}</default>"
        f"<label>{v}</label></{tag}>" for v in values))


def orchestration(obj_api: str, conditions: list[tuple[str, str]]) -> str:
    """An Orchestrator flow started by ``obj_api`` records, with one background step whose
    entry conditions compare each (record path, string) with EqualTo."""
    entry = "\n".join(
        f"<entryConditions><leftValueReference>{left}</leftValueReference><operator>EqualTo"
        f"</operator><rightValue><stringValue>{right}</stringValue></rightValue>"
        "</entryConditions>" for left, right in conditions)
    return flow_xml(f"""
    <start>
        <connector><targetReference>S</targetReference></connector>
        <object>{obj_api}</object><recordTriggerType>Create</recordTriggerType>
        <triggerType>RecordAfterSave</triggerType>
    </start>
    <orchestratedStages>
        <name>S</name><label>S</label>
        <stageSteps><name>B</name><label>B</label><actionName>Do_B</actionName>
            <actionType>stepBackground</actionType>
            <entryConditionLogic>and</entryConditionLogic>
            {entry}
        </stageSteps>
    </orchestratedStages>
    """)


def write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def objects_of(out: Path) -> dict[str, dict[str, Any]]:
    docs = yaml.safe_load_all((out / "definitions" / "objects.yaml").read_text())
    return {d["name"]: d for d in docs if d}


def notes(report: ImportReport) -> dict[str, str]:
    return {n.construct: n.reason for n in report.notes}


def valid(out: Path) -> None:
    _, issues = check_definitions([out / "definitions"], known_flows=None)
    assert [str(i) for i in issues if i.level == "error"] == []


# ---- 1. Vendor and Vendor__c --------------------------------------------------------------
def test_a_standard_looking_and_a_custom_object_of_one_name_stay_two_object_types(
        tmp_path: Path) -> None:
    src = write(tmp_path / "force-app", {
        "flows/Buy.flow-meta.xml": orchestration("Purchase__c", [
            ("$Record.Supplier__r.Tier__c", "Gold"),
            ("$Record.Old_Vendor__r.Terms__c", "Net 30")]),
        "objects/Vendor/Vendor.object-meta.xml": obj("Vendor"),
        "objects/Vendor/fields/Terms__c.field-meta.xml": fld(
            "Terms__c", "    <label>Terms</label>\n    <length>20</length>\n"
                        "    <type>Text</type>"),
        "objects/Vendor__c/Vendor__c.object-meta.xml": obj("Vendor (custom)"),
        "objects/Vendor__c/fields/Tier__c.field-meta.xml": fld(
            "Tier__c", "    <label>Tier</label>\n    <length>10</length>\n"
                       "    <type>Text</type>"),
        "objects/Purchase__c/Purchase__c.object-meta.xml": obj("Purchase"),
        # the relationships the flow follows go where these lookups point, not by name
        "objects/Purchase__c/fields/Supplier__c.field-meta.xml": lookup("Supplier__c",
                                                                        "Vendor__c"),
        "objects/Purchase__c/fields/Old_Vendor__c.field-meta.xml": lookup("Old_Vendor__c",
                                                                          "Vendor"),
    })
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    objects = objects_of(out)
    assert report.objects == ["Purchase", "Vendor", "Vendor_c"]
    assert set(objects["Vendor"]["fields"]) == {"name", "terms"}
    assert set(objects["Vendor_c"]["fields"]) == {"name", "tier"}
    assert objects["Vendor_c"]["label"] == "Vendor (custom)"
    purchase = objects["Purchase"]["fields"]
    assert purchase["supplier"] == {"type": "ref", "label": "Supplier__c", "object": "Vendor_c"}
    assert purchase["old_vendor"] == {"type": "ref", "label": "Old_Vendor__c",
                                      "object": "Vendor"}
    flow = (out / "definitions" / "buy.yaml").read_text()
    assert 'record.supplier.tier == "Gold"' in flow
    assert 'record.old_vendor.terms == "Net 30"' in flow
    # said once, naming both objects, where the renamed one is defined
    [apart] = [n for n in report.notes if n.construct == "object Vendor__c"]
    assert apart.file.endswith("Vendor__c.object-meta.xml") and apart.line == 2
    assert apart.reason.startswith("object type Vendor_c, apart from Vendor (object type "
                                   "Vendor): two Salesforce objects")
    assert "object Vendor__c: object type Vendor_c, apart from Vendor" in (
        out / "IMPORT_REPORT.md").read_text()
    assert report.untranslated == []
    valid(out)


def test_names_do_not_depend_on_order_and_an_unknown_lookup_is_taken_as_said() -> None:
    catalog = Catalog()
    names = catalog.object_names
    names.add_all([("vendor__c", "a.xml", 3), ("Vendor", "b.xml", 4), ("Vendor__x", "c", 5)])
    assert (names.name("Vendor__C"), names.name("Vendor"), names.name("Vendor__x")) == (
        "vendor_c", "Vendor", "Vendor_x")
    assert [(a.api, a.other_api) for a in names.apart] == [("vendor__c", "Vendor"),
                                                           ("Vendor__x", "Vendor")]
    # Vendor_c__c would read as the name vendor__c got: it gets another
    assert names.name("Vendor_c__c") == "Vendor_c_c"
    # a relationship whose lookup's metadata is not given: the custom object, noted
    report = ImportReport()
    assert catalog.related(report, "Order", "Vendor__r", "f.xml", 9) == "vendor_c"
    [note] = report.notes
    assert (note.line, note.construct) == (9, "relationship Vendor__r of Order")
    assert "not Vendor (object type Vendor)" in note.reason
    # with only the standard object known, Vendor__r stays the name it always had
    only = Catalog()
    only.object_names.add_all([("Vendor", "b.xml", 4)])
    assert only.related(report, "Order", "Vendor__r", "f.xml", 9) == "Vendor"
    assert len(report.notes) == 1


# ---- 2. standard value sets --------------------------------------------------------------
CASE_STATUS = ["New", "Working", "Escalated", "Closed"]
STAGES = ["Prospecting", "Negotiation", "Closed Won", "Closed Lost"]
PICKLIST = "    <trackHistory>false</trackHistory>\n    <type>Picklist</type>"


def test_standard_picklists_take_the_values_of_their_standard_value_sets(tmp_path: Path
                                                                         ) -> None:
    src = write(tmp_path / "force-app", {
        "flows/Case_Flow.flow-meta.xml": orchestration("Case", [("$Record.Status",
                                                                 "Escalated")]),
        "flows/Deal_Flow.flow-meta.xml": orchestration("Opportunity", [
            ("$Record.StageName", "Negotiation"), ("$Record.LeadSource", "Web")]),
        # Case's fields are given: Status and Origin name no values (standard picklists)
        "objects/Case/fields/Status.field-meta.xml": fld("Status", PICKLIST),
        "objects/Case/fields/Origin.field-meta.xml": fld("Origin", PICKLIST),
        "standardValueSets/CaseStatus.standardValueSet-meta.xml": standard_set(
            "standardValue", CASE_STATUS, "New"),
        # Opportunity's are not: the flows read StageName (its set is given, in the
        # Metadata API form) and LeadSource (its set is not)
        "standardValueSets/OpportunityStage.standardValueSet": standard_set(
            "standardValue", STAGES, "Prospecting"),
    })
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    objects = objects_of(out)
    case, deal = objects["Case"]["fields"], objects["Opportunity"]["fields"]
    assert case["status"] == {"type": "choice", "choices": CASE_STATUS, "default": "New"}
    assert deal["stage_name"] == {"type": "choice", "choices": STAGES,
                                  "default": "Prospecting"}
    assert case["origin"] == {"type": "string"} and deal["lead_source"] == {"type": "string"}
    said = notes(report)
    assert said["field Case.Status"].startswith(
        "a standard picklist: its values are the standard value set CaseStatus (")
    assert "OpportunityStage" in said["field Opportunity.stage_name"]
    # each set referenced and not given is said, with the file to give
    assert said["field Case.Origin"] == (
        "a standard picklist: its values are the standard value set CaseOrigin, whose "
        "metadata was not given: a string (give its file, standardValueSets/CaseOrigin."
        "standardValueSet-meta.xml or .standardValueSet, to import the values)")
    assert said["field Opportunity.lead_source"].startswith(
        "a standard picklist, whose values are the standard value set LeadSource, not given")
    assert report.untranslated == []
    valid(out)


def test_a_standard_value_set_file_of_another_kind_is_reported(tmp_path: Path) -> None:
    src = write(tmp_path / "force-app", {
        "flows/Case_Flow.flow-meta.xml": orchestration("Case", [("$Record.Status", "New")]),
        "objects/Case/fields/Status.field-meta.xml": fld("Status", PICKLIST),
        "standardValueSets/CaseStatus.standardValueSet-meta.xml": meta(
            "GlobalValueSet", "<customValue><fullName>New</fullName></customValue>"),
    })
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    [bad] = report.untranslated
    assert bad.file.endswith("CaseStatus.standardValueSet-meta.xml") and bad.line == 2
    assert bad.reason == ("not StandardValueSet metadata: the root element is "
                          "<GlobalValueSet>, not <StandardValueSet>")
    assert objects_of(out)["Case"]["fields"]["status"] == {"type": "string"}
    assert "CaseStatus, whose metadata was not given" in notes(report)["field Case.Status"]


# ---- 3. a lookup to an object type the kept objects.yaml has -------------------------------
def test_a_lookup_to_an_object_only_the_kept_objects_yaml_has_is_a_ref(tmp_path: Path
                                                                      ) -> None:
    out = tmp_path / "out"
    write(out, {"definitions/objects.yaml": yaml.safe_dump_all([
        {"kind": "object", "name": "Supplier",
         "fields": {"name": {"type": "string", "required": True}}}], sort_keys=False)})
    src = write(tmp_path / "force-app", {
        "flows/Buy.flow-meta.xml": orchestration("Purchase__c", [("$Record.Note__c", "x")]),
        "objects/Purchase__c/Purchase__c.object-meta.xml": obj("Purchase"),
        "objects/Purchase__c/fields/Supplier__c.field-meta.xml": lookup("Supplier__c",
                                                                        "Supplier__c"),
        "objects/Purchase__c/fields/Ghost__c.field-meta.xml": lookup("Ghost__c", "Ghost__c"),
    })
    report = import_salesforce([src], out, force=True)
    objects = objects_of(out)
    assert objects["Supplier"]["fields"] == {"name": {"type": "string", "required": True}}
    purchase = objects["Purchase"]["fields"]
    assert purchase["supplier"] == {"type": "ref", "label": "Supplier__c",
                                    "object": "Supplier"}
    assert purchase["ghost"] == {"type": "string", "label": "Ghost__c"}
    said = notes(report)
    assert "field Purchase__c.Supplier__c" not in said
    assert said["field Purchase__c.Ghost__c"] == (
        "a lookup to Ghost__c, whose object type is nowhere: not imported (no flow reads it, "
        "its metadata was not given) nor among the object types of the project's "
        "definitions/: a string (the record id)")
    assert "Ghost" not in objects
    valid(out)
