"""``baton import salesforce``: four gaps of object metadata and importing again, on SFDX
metadata written here as a retrieve holds it (pure: no database, no processes).

* A lookup whose ``relationshipName`` is not its field's name: the flows' relationship
  (``$Record.Supplier__r.Tier__c``) reads that lookup field, not a field guessed by name.
* Importing again keeps each object type on the Salesforce object it holds (the
  ``# Salesforce object:`` line the import writes): a standard ``Vendor`` coming beside the
  custom ``Vendor__c`` a kept ``Vendor`` holds is never merged into it; a kept type that
  does not say, and that two objects of the import may be, stops the import.
* Object types kept in any YAML file under ``definitions/`` count, not only objects.yaml.
* Inactive picklist values are not choices; closed/won flags are said in the report.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from baton.errors import BatonError
from baton.importers.salesforce import import_salesforce
from tests.unit.test_salesforce_leftovers import (
    PICKLIST,
    fld,
    meta,
    notes,
    obj,
    objects_of,
    orchestration,
    valid,
    write,
)


def lookup(name: str, target: str, relationship: str) -> str:
    return fld(name, f"    <label>{name}</label>\n    <referenceTo>{target}</referenceTo>\n"
                     f"    <relationshipName>{relationship}</relationshipName>\n"
                     "    <type>Lookup</type>")


def text_field(name: str) -> str:
    return fld(name, f"    <label>{name}</label>\n    <length>20</length>\n    <type>Text</type>")


# ---- 1. relationshipName ---------------------------------------------------------------------
def test_a_relationship_named_otherwise_than_its_lookup_reads_that_lookup(tmp_path: Path
                                                                         ) -> None:
    src = write(tmp_path / "force-app", {
        "flows/Buy.flow-meta.xml": orchestration("Purchase__c", [
            ("$Record.Supplier__r.Tier__c", "Gold")]),
        # (the id in an expression of its own: where an expression follows a ref, the ref
        # alone is the related record)
        "flows/Check.flow-meta.xml": orchestration("Purchase__c", [
            ("$Record.Supplier_Account__c", "001000000000001")]),
        "objects/Purchase__c/Purchase__c.object-meta.xml": obj("Purchase"),
        "objects/Purchase__c/fields/Supplier_Account__c.field-meta.xml": lookup(
            "Supplier_Account__c", "Vendor__c", "Supplier"),
        "objects/Vendor__c/Vendor__c.object-meta.xml": obj("Vendor"),
        "objects/Vendor__c/fields/Tier__c.field-meta.xml": text_field("Tier__c"),
    })
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    objects = objects_of(out)
    # the relationship is the lookup's: one ref field, to the object it points at; no
    # "supplier" field nor Supplier object type guessed from the relationship's name
    assert report.objects == ["Purchase", "Vendor"]
    assert set(objects["Purchase"]["fields"]) == {"name", "supplier_account"}
    assert objects["Purchase"]["fields"]["supplier_account"]["object"] == "Vendor"
    flow = (out / "definitions" / "buy.yaml").read_text()
    assert 'record.supplier_account.tier == "Gold"' in flow
    assert 'record.supplier_account == "001000000000001"' in (
        out / "definitions" / "check.yaml").read_text()
    assert report.untranslated == []
    valid(out)
    # how a path names each relationship: custom with __r (and its namespace), standard
    # as it is
    from baton.importers.salesforce.objects import relationship_segment
    assert relationship_segment("Supplier_Account__c", "Supplier") == "Supplier__r"
    assert relationship_segment("ns__Supplier_Acct__c", "Supplier") == "ns__Supplier__r"
    assert relationship_segment("ns__Supplier_Acct__c", "ns__Supplier") == "ns__Supplier__r"
    assert relationship_segment("AccountId", "Account") == "Account"


# ---- 2. importing again: each kept object type keeps its Salesforce object ------------------
def purchases(root: Path, *, standard_vendor: bool) -> Path:
    files = {
        "flows/Buy.flow-meta.xml": orchestration("Purchase__c", [
            ("$Record.Vendor__r.Tier__c", "Gold")] + (
            [("$Record.Old_Vendor__r.Terms__c", "Net 30")] if standard_vendor else [])),
        "objects/Purchase__c/Purchase__c.object-meta.xml": obj("Purchase"),
        "objects/Purchase__c/fields/Vendor__c.field-meta.xml": lookup(
            "Vendor__c", "Vendor__c", "Vendor"),
        "objects/Vendor__c/Vendor__c.object-meta.xml": obj("Vendor (custom)"),
        "objects/Vendor__c/fields/Tier__c.field-meta.xml": text_field("Tier__c"),
    }
    if standard_vendor:  # later, the org has a standard-looking Vendor too
        files |= {
            "objects/Purchase__c/fields/Old_Vendor__c.field-meta.xml": lookup(
                "Old_Vendor__c", "Vendor", "Old_Vendor"),
            "objects/Vendor/Vendor.object-meta.xml": obj("Vendor"),
            "objects/Vendor/fields/Terms__c.field-meta.xml": text_field("Terms__c"),
        }
    return write(root, files)


def test_a_new_standard_object_is_not_merged_into_the_kept_type_of_a_custom_one(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_salesforce([purchases(tmp_path / "v1", standard_vendor=False)], out)
    objects_yaml = out / "definitions" / "objects.yaml"
    assert "# Salesforce object: Vendor__c\nkind: object\nname: Vendor\n" in \
        objects_yaml.read_text()
    assert set(objects_of(out)["Vendor"]["fields"]) == {"name", "tier"}

    report = import_salesforce([purchases(tmp_path / "v2", standard_vendor=True)], out,
                               force=True)
    objects = objects_of(out)
    # the kept Vendor still holds Vendor__c (nothing of the standard Vendor's added); the
    # standard one is named apart, said in the report
    assert report.objects == ["Purchase", "Vendor", "Vendor_2"]
    assert set(objects["Vendor"]["fields"]) == {"name", "tier"}
    assert set(objects["Vendor_2"]["fields"]) == {"name", "terms"}
    purchase = objects["Purchase"]["fields"]
    assert (purchase["vendor"]["object"], purchase["old_vendor"]["object"]) == (
        "Vendor", "Vendor_2")
    assert notes(report)["object Vendor"].startswith(
        "object type Vendor_2, apart from Vendor__c (object type Vendor)")
    text = objects_yaml.read_text()
    assert "# Salesforce object: Vendor__c\nkind: object\nname: Vendor\n" in text
    assert "# Salesforce object: Vendor\nkind: object\nname: Vendor_2\n" in text
    flow = (out / "definitions" / "buy.yaml").read_text()
    assert 'record.vendor.tier == "Gold"' in flow and 'record.old_vendor.terms' in flow
    valid(out)


def test_a_kept_type_that_two_objects_may_be_stops_the_import_until_it_says_which(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    import_salesforce([purchases(tmp_path / "v1", standard_vendor=False)], out)
    # as an import that wrote no marker lines left it (or a user wrote it)
    objects_yaml = out / "definitions" / "objects.yaml"
    docs = list(yaml.safe_load_all(objects_yaml.read_text()))
    objects_yaml.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    line = objects_yaml.read_text().splitlines().index("name: Vendor")  # 0-based: kind's
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    v2 = purchases(tmp_path / "v2", standard_vendor=True)
    with pytest.raises(BatonError) as caught:
        import_salesforce([v2], out, force=True)
    message = str(caught.value)
    assert message.startswith(f"{objects_yaml}:{line}: object type Vendor may hold any of "
                              "the Salesforce objects Vendor ")
    assert "Vendor__c (object type Vendor_c in this import)" in message
    assert "'# Salesforce object: <API name>' just above its first key" in message
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    # said: the import goes on, and keeps the names the project has
    text = objects_yaml.read_text().replace("kind: object\nname: Vendor\n",
                                            "# Salesforce object: Vendor__c\nkind: object\n"
                                            "name: Vendor\n")
    objects_yaml.write_text(text)
    report = import_salesforce([v2], out, force=True)
    assert report.objects == ["Purchase", "Vendor", "Vendor_2"]
    assert set(objects_of(out)["Vendor"]["fields"]) == {"name", "tier"}
    # a kept type matched by its name alone is said (Purchase has no marker line)
    assert any("object type Purchase taken as Salesforce's Purchase__c, by its name" in k
               for k in report.kept)


# ---- 3. object types kept in any file under definitions/ -------------------------------------
def test_object_types_kept_in_other_definition_files_are_used_and_kept_there(
        tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, {
        "definitions/suppliers.yaml": "# my suppliers\n" + yaml.safe_dump(
            {"kind": "object", "name": "Supplier",
             "fields": {"name": {"type": "string", "required": True}}}, sort_keys=False),
        "definitions/purchasing/parts.yml": yaml.safe_dump_all([
            {"kind": "object", "name": "Part", "fields": {"sku": {"type": "string"}}},
        ], sort_keys=False),
        # an object type kept in the file the import writes the orchestration to
        "definitions/buy.yaml": yaml.safe_dump_all([
            {"kind": "orchestration", "name": "buy"},
            {"kind": "object", "name": "Note", "fields": {"text": {"type": "text"}}},
        ], sort_keys=False),
    })
    src = write(tmp_path / "force-app", {
        "flows/Buy.flow-meta.xml": orchestration("Purchase__c", [
            ("$Record.Part__r.Code__c", "X1")]),
        "objects/Purchase__c/Purchase__c.object-meta.xml": obj("Purchase"),
        "objects/Purchase__c/fields/Supplier__c.field-meta.xml": lookup(
            "Supplier__c", "Supplier__c", "Supplier"),
        "objects/Purchase__c/fields/Part__c.field-meta.xml": lookup("Part__c", "Part__c",
                                                                    "Part"),
    })
    report = import_salesforce([src], out, force=True)
    # a lookup to the type suppliers.yaml has is a ref; Part's new field goes in its file
    objects = objects_of(out)
    assert set(objects) == {"Purchase"}  # objects.yaml holds only the new type
    assert objects["Purchase"]["fields"]["supplier"]["object"] == "Supplier"
    assert objects["Purchase"]["fields"]["part"]["object"] == "Part"
    suppliers = (out / "definitions" / "suppliers.yaml").read_text()
    assert suppliers.startswith("# my suppliers\n")  # nothing to add: left alone
    parts = list(yaml.safe_load_all((out / "definitions" / "purchasing" / "parts.yml")
                                    .read_text()))
    assert parts == [{"kind": "object", "name": "Part",
                      "fields": {"sku": {"type": "string"}, "code": {"type": "string"}}}]
    buy = list(yaml.safe_load_all((out / "definitions" / "buy.yaml").read_text()))
    assert [(d["kind"], d["name"]) for d in buy] == [("orchestration", "buy"),
                                                     ("object", "Note")]
    kept = "\n".join(report.kept)
    assert "parts.yml: kept, with Part.code added" in kept
    assert "buy.yaml: written again (the orchestration is what Salesforce says), with the " \
           "other definitions it holds kept after it: object Note" in kept
    assert "field Purchase__c.Supplier__c" not in notes(report)
    valid(out)


def test_a_definition_file_that_is_not_yaml_stops_the_import(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write(out, {"definitions/more/extra.yaml": "kind: object\nname: [unclosed\n"})
    src = write(tmp_path / "force-app", {
        "flows/Buy.flow-meta.xml": orchestration("Purchase__c", [("$Record.A__c", "x")])})
    with pytest.raises(BatonError, match=r"extra\.yaml:\d+: cannot add the object types .* "
                                         r"not YAML Baton reads"):
        import_salesforce([src], out, force=True)
    assert not (out / "definitions" / "objects.yaml").exists()
    # read within the definitions' bounds: an alias bomb is refused, not expanded
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 10)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    write(out, {"definitions/more/extra.yaml": "kind: object\nname: Bomb\nx:\n  " +
                bomb.replace("\n", "\n  ")})
    with pytest.raises(BatonError, match=r"extra\.yaml:\d+: cannot add .*(aliases|too large)"):
        import_salesforce([src], out, force=True)


# ---- 4. inactive values, closed and won ----------------------------------------------------
def values(tag: str, rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"    <{tag}><fullName>{v}</fullName>{extra}<label>{v}</label></{tag}>"
                     for v, extra in rows)


def test_inactive_values_are_not_choices_and_closed_and_won_are_said(tmp_path: Path) -> None:
    off, on = "<isActive>false</isActive>", "<isActive>true</isActive>"
    src = write(tmp_path / "force-app", {
        "flows/Case_Flow.flow-meta.xml": orchestration("Case", [
            ("$Record.Status", "New"), ("$Record.Kind__c", "A")]),
        "flows/Deal_Flow.flow-meta.xml": orchestration("Opportunity", [
            ("$Record.StageName", "Prospecting")]),
        "objects/Case/fields/Status.field-meta.xml": fld("Status", PICKLIST),
        "standardValueSets/CaseStatus.standardValueSet-meta.xml": meta(
            "StandardValueSet", values("standardValue", [
                ("New", "<default>true</default>"), ("Legacy", off),
                ("Closed", "<closed>true</closed>")])),
        # Opportunity's fields are not given: StageName takes its set all the same
        "standardValueSets/OpportunityStage.standardValueSet-meta.xml": meta(
            "StandardValueSet", values("standardValue", [
                ("Prospecting", "<default>false</default>"), ("Dormant", off),
                ("Closed Won", "<closed>true</closed><won>true</won>"),
                ("Closed Lost", "<closed>true</closed><won>false</won>")])),
        # a custom picklist: its inactive default is not the default
        "objects/Case/fields/Kind__c.field-meta.xml": fld("Kind__c", """
    <label>Kind</label>
    <type>Picklist</type>
    <valueSet><restricted>true</restricted><valueSetDefinition>
        <value><fullName>A</fullName><default>false</default><label>A</label></value>
        <value><fullName>Old</fullName><default>true</default><label>Old</label>
            <isActive>false</isActive></value>
    </valueSetDefinition></valueSet>"""),
        # a global value set's inactive value
        "objects/Case/fields/Region__c.field-meta.xml": fld(
            "Region__c", "    <label>Region</label>\n    <type>Picklist</type>\n"
                         "    <valueSet><valueSetName>Regions</valueSetName></valueSet>"),
        "globalValueSets/Regions.globalValueSet-meta.xml": meta(
            "GlobalValueSet", values("customValue", [("EU", on), ("APAC", off)])),
    })
    out = tmp_path / "out"
    report = import_salesforce([src], out)
    case, deal = objects_of(out)["Case"]["fields"], objects_of(out)["Opportunity"]["fields"]
    assert case["status"] == {"type": "choice", "choices": ["New", "Closed"],
                              "default": "New"}
    assert deal["stage_name"] == {"type": "choice",
                                  "choices": ["Prospecting", "Closed Won", "Closed Lost"]}
    assert case["kind"] == {"type": "choice", "label": "Kind", "choices": ["A"]}
    assert case["region"]["choices"] == ["EU"]
    said = {n.construct: [] for n in report.notes}
    for n in report.notes:
        said[n.construct].append(n.reason)
    status = " | ".join(said["field Case.Status"])
    assert "inactive values Legacy (isActive false) are not choices" in status
    assert "closed in Salesforce: Closed (Baton's choices carry no closed flag" in status
    stage = said["field Opportunity.stage_name"][0]
    assert "inactive values Dormant" in stage
    assert "closed in Salesforce: Closed Won, Closed Lost" in stage
    assert "won in Salesforce: Closed Won (" in stage
    kind = " | ".join(said["field Case.Kind__c"])
    assert "inactive values Old" in kind and "its default Old is inactive: no default" in kind
    assert "inactive values APAC" in " | ".join(said["field Case.Region__c"])
    assert report.untranslated == []
    valid(out)
