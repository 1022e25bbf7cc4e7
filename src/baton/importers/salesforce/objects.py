"""Salesforce object metadata -> Baton object types.

Read when given: SFDX source format (``objects/<Object>/<Object>.object-meta.xml``,
``objects/<Object>/fields/<Field>.field-meta.xml``), Metadata API format
(``objects/<Object>.object`` with ``<fields>`` children), global value sets
(``globalValueSets/<Name>.globalValueSet-meta.xml`` or ``.globalValueSet``) that picklists
name, standard value sets (``standardValueSets/<Name>.standardValueSet-meta.xml`` or
``.standardValueSet``: the values of standard picklists such as Case Status, whose field
metadata names no values, see :data:`STANDARD_VALUE_SETS`), and validation rules
(reported: not translated). Each field becomes a Baton field
typed by the metadata (length, precision and scale, picklist values, required, default,
lookups); the fields the flows read that the metadata does not define keep the type
inferred from how the flows use them. Field names come from the same
:class:`~baton.importers.salesforce.conditions.Catalog` the flows' conditions use, so a
field has one Baton name wherever it is read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from baton.importers.salesforce.conditions import Catalog
from baton.importers.salesforce.names import (
    BUILTIN_FIELDS,
    ObjectNames,
    field_segment,
    object_name,
    object_suffix,
)
from baton.importers.salesforce.report import ImportReport
from baton.importers.salesforce.xmlread import Node, XmlProblem

if TYPE_CHECKING:
    from baton.importers.salesforce.project import Source

OBJECT_SUFFIX, FIELD_SUFFIX, MDAPI_OBJECT_SUFFIX = (".object-meta.xml", ".field-meta.xml",
                                                    ".object")
VALUE_SET_SUFFIXES = (".globalValueSet-meta.xml", ".globalValueSet")
STANDARD_SET_SUFFIXES = (".standardValueSet-meta.xml", ".standardValueSet")
RULE_SUFFIX = ".validationRule-meta.xml"
SUFFIXES = (OBJECT_SUFFIX, FIELD_SUFFIX, MDAPI_OBJECT_SUFFIX, *VALUE_SET_SUFFIXES,
            *STANDARD_SET_SUFFIXES, RULE_SUFFIX)

STANDARD_VALUE_SETS = {
    (obj.lower(), fld.lower()): name for name, fields in {
        "AccountContactRole": ["AccountContactRole.Role"],
        "AccountOwnership": ["Account.Ownership"],
        "AccountRating": ["Account.Rating", "Lead.Rating"],
        "AccountType": ["Account.Type"],
        "AssetStatus": ["Asset.Status"],
        "CampaignMemberStatus": ["CampaignMember.Status"],
        "CampaignStatus": ["Campaign.Status"],
        "CampaignType": ["Campaign.Type"],
        "CaseContactRole": ["CaseContactRole.Role"],
        "CaseOrigin": ["Case.Origin"],
        "CasePriority": ["Case.Priority"],
        "CaseReason": ["Case.Reason"],
        "CaseStatus": ["Case.Status"],
        "CaseType": ["Case.Type"],
        "ContactRole": ["OpportunityContactRole.Role"],
        "ContractContactRole": ["ContractContactRole.Role"],
        "ContractStatus": ["Contract.Status"],
        "EntitlementType": ["Entitlement.Type"],
        "EventType": ["Event.Type"],
        "IdeaStatus": ["Idea.Status"],
        "Industry": ["Account.Industry", "Lead.Industry"],
        "LeadSource": ["Account.AccountSource", "Contact.LeadSource", "Lead.LeadSource",
                       "Opportunity.LeadSource"],
        "LeadStatus": ["Lead.Status"],
        "OpportunityStage": ["Opportunity.StageName"],
        "OpportunityType": ["Opportunity.Type"],
        "OrderStatus": ["Order.Status"],
        "OrderType": ["Order.Type"],
        "PartnerRole": ["Partner.Role"],
        "Product2Family": ["Product2.Family"],
        "QuoteStatus": ["Quote.Status"],
        "SalesTeamRole": ["AccountTeamMember.TeamMemberRole",
                          "OpportunityTeamMember.TeamMemberRole"],
        "Salutation": ["Contact.Salutation", "Lead.Salutation"],
        "SolutionStatus": ["Solution.Status"],
        "TaskPriority": ["Task.Priority"],
        "TaskStatus": ["Task.Status"],
        "TaskType": ["Task.Type"],
        "WorkOrderLineItemStatus": ["WorkOrderLineItem.Status"],
        "WorkOrderPriority": ["WorkOrder.Priority"],
        "WorkOrderStatus": ["WorkOrder.Status"],
    }.items() for obj, fld in (f.split(".") for f in fields)}
"""Standard picklist field (object, field; lower case) -> the standard value set holding its
values (Salesforce's "StandardValueSet Names and Standard Picklist Fields"). The field's
own metadata (``objects/Case/fields/Status.field-meta.xml``) names no values: from API 38
they are in ``standardValueSets/CaseStatus.standardValueSet-meta.xml``. (Task and Event
``Subject`` are left out: combo boxes, whose values are suggestions, stay strings.)"""

AUTO_NUMBER = ("an auto-number in Salesforce: a string in Baton, which does not number "
               "records (set it in a flow)")
RULE = ("Baton object types have no validation rules (a formula over the record): add "
        "the check by hand (a form's required fields, a step's condition or a flow)")
COMPUTED = "computed in Salesforce: port as a flow that sets it"
TEXT_TYPES = {"TextArea": 255, "LongTextArea": None, "Html": None}
STRING_TYPES = {"Email": 80, "Phone": 40, "Url": 255, "EncryptedText": None}
FAMILIES = {"int": "number", "decimal": "number", "string": "text", "text": "text",
            "choice": "text"}
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def is_object_file(name: str) -> bool:
    """Whether ``name`` is object metadata (read here), not a flow."""
    return name.endswith(SUFFIXES)


@dataclass
class FieldDef:
    api: str          # the field's API name, e.g. Amount__c
    node: Node        # <CustomField> or an object's <fields>
    shown: str        # the file, as the report names it


@dataclass
class ObjectDef:
    api: str
    shown: str
    line: int
    label: str = ""
    name_field: FieldDef | None = None
    fields: dict[str, FieldDef] = field(default_factory=dict)  # by lower-case API name


@dataclass
class ValueSet:
    values: list[str]        # the active values (the choices)
    default: str | None      # None when none is marked, or the one marked is inactive
    shown: str
    line: int
    inactive: list[str] = field(default_factory=list)  # isActive false: not choices
    flagged: dict[str, list[str]] = field(default_factory=dict)  # closed/won/converted
    inactive_default: str | None = None  # the value marked default, when inactive


VALUE_FLAGS = ("closed", "won", "converted")
"""A standard value's flags that say what a value means (a closed Case Status, a won
Opportunity Stage, a converted Lead Status). Baton's choices carry no flags: they are said
in the report, value by value."""


def _values(nodes: list[Node]) -> ValueSet:
    """The values of ``nodes`` (``customValue``, ``standardValue``, ``value``,
    ``picklistValues``): active ones (``isActive`` not false) are the choices; the default
    is the first marked one, when active; the inactive ones and the flagged ones are kept
    to be said."""
    out = ValueSet([], None, "", 0)
    marked: str | None = None
    for v in nodes:
        name = v.value("fullName")
        if not name:
            continue
        if v.value("isActive").lower() == "false":
            out.inactive.append(name)
        else:
            out.values.append(name)
            for flag in VALUE_FLAGS:
                if v.flag(flag):
                    out.flagged.setdefault(flag, []).append(name)
        if v.flag("default") and marked is None:
            marked = name
    out.values = list(dict.fromkeys(out.values))
    out.inactive = [v for v in dict.fromkeys(out.inactive) if v not in out.values]
    out.default = marked if marked in out.values else None
    if marked is not None and out.default is None:
        out.inactive_default = marked
    return out


@dataclass
class Metadata:
    """The object metadata given, by lower-case Salesforce API name (the Baton name of each
    is :class:`~baton.importers.salesforce.names.ObjectNames`')."""

    objects: dict[str, ObjectDef] = field(default_factory=dict)
    value_sets: dict[str, ValueSet] = field(default_factory=dict)  # by lower-case name
    standard_sets: dict[str, ValueSet] = field(default_factory=dict)  # by lower-case name

    def object_apis(self) -> list[tuple[str, str, int]]:
        """(API name, file, line) of each object given, for
        :meth:`~baton.importers.salesforce.names.ObjectNames.add_all`."""
        return [(o.api, o.shown, o.line) for o in self.objects.values()]

    def by_name(self, names: ObjectNames) -> dict[str, ObjectDef]:
        """The objects given, by Baton object type name."""
        return {names.name(o.api, o.shown, o.line): o for o in self.objects.values()}

    def relationships(self, names: ObjectNames) -> dict[str, dict[str, str]]:
        """Per object type: the relationship each lookup's ``relationshipName`` names, as a
        record path writes it (lower case: ``supplier__r`` for a custom lookup, ``account``
        for a standard one) -> the lookup field's API name (``Supplier_Account__c``,
        ``AccountId``), for the flows' relationships
        (:attr:`~baton.importers.salesforce.conditions.Catalog.relationships`)."""
        out: dict[str, dict[str, str]] = {}
        for name, obj in self.by_name(names).items():
            for f in obj.fields.values():
                rel = f.node.value("relationshipName")
                if f.node.value("type") in LOOKUP_TYPES and rel:
                    out.setdefault(name, {})[relationship_segment(f.api, rel).lower()] = f.api
        return out

    def lookups(self, names: ObjectNames) -> dict[str, dict[str, str]]:
        """Per object type: its lookups to one object (lower-case field API name -> the
        API name of the object it points at), for the flows' relationships
        (:attr:`~baton.importers.salesforce.conditions.Catalog.lookups`)."""
        out: dict[str, dict[str, str]] = {}
        for name, obj in self.by_name(names).items():
            for key, f in obj.fields.items():
                sf_type = f.node.value("type")
                targets = _targets(f.node, sf_type)
                if sf_type in LOOKUP_TYPES and len(targets) == 1:
                    out.setdefault(name, {})[key] = targets[0]
        return out


LOOKUP_TYPES = ("Lookup", "MasterDetail", "Hierarchy")
NAMESPACED = re.compile(r"^([A-Za-z0-9]+)__[A-Za-z0-9_]+__c$")


def relationship_segment(field_api: str, relationship: str) -> str:
    """How a record path names the relationship ``relationship`` of lookup ``field_api``:
    a custom lookup's with ``__r`` (and its namespace: ``ns__Supplier__r`` for
    ``ns__Supplier_Account__c``), a standard one's as it is (``Account`` for
    ``AccountId``)."""
    rel = relationship.strip()
    if not field_api.strip().lower().endswith("__c"):
        return rel
    m = NAMESPACED.match(field_api.strip())
    prefix = f"{m[1]}__" if m and not rel.startswith(f"{m[1]}__") else ""
    return f"{prefix}{rel}__r"


def _targets(node: Node, sf_type: str) -> list[str]:
    """The objects a lookup field points at (``referenceTo``; a hierarchy: User)."""
    targets = [t.text.strip() for t in node.all("referenceTo") if t.text.strip()]
    return ["User"] if sf_type == "Hierarchy" and not targets else targets


def _parts(src: Source) -> list[str]:
    return src.member.split("/") if src.member else list(src.path.parts)


def _strip(name: str, suffixes: Sequence[str]) -> str:
    for s in suffixes:
        if name.endswith(s):
            return name[: -len(s)]
    return name


def read_metadata(files: Sequence[Source], report: ImportReport) -> Metadata:
    """The object metadata in ``files`` (each :func:`is_object_file`); a file that cannot
    be read, or is not what its name says, is in the report with its line and why."""
    md = Metadata()
    for src in files:
        try:
            root = src.read()
        except XmlProblem as exc:
            report.cannot(src.shown, exc.line, "file", str(exc))
            continue
        except OSError as exc:
            report.cannot(src.shown, 1, "file", f"cannot read it: {exc.strerror or exc}")
            continue
        name = src.name
        if name.endswith(VALUE_SET_SUFFIXES):
            _value_set(md, src, root, _strip(name, VALUE_SET_SUFFIXES), report)
        elif name.endswith(STANDARD_SET_SUFFIXES):
            _value_set(md, src, root, _strip(name, STANDARD_SET_SUFFIXES), report,
                       standard=True)
        elif name.endswith(FIELD_SUFFIX):
            _field_file(md, src, root, report)
        elif name.endswith(RULE_SUFFIX):
            parts = _parts(src)
            obj = parts[-3] if len(parts) >= 3 else "?"
            report.cannot(src.shown, root.line,
                          f"validation rule {obj}.{_strip(name, (RULE_SUFFIX,))}", RULE)
        elif _expect(src, root, "CustomObject", report):
            _object(md, src, root, _strip(name, (OBJECT_SUFFIX, MDAPI_OBJECT_SUFFIX)), report)
    return md


def _expect(src: Source, root: Node, tag: str, report: ImportReport) -> bool:
    if root.tag == tag:
        return True
    report.cannot(src.shown, root.line, "file", f"not {tag} metadata: the root element is "
                                                f"<{root.tag}>, not <{tag}>")
    return False


def _object_def(md: Metadata, api: str, shown: str, line: int) -> ObjectDef:
    have = md.objects.get(api.lower())  # (API names ignore case)
    if have is None:
        have = md.objects[api.lower()] = ObjectDef(api, shown, line)
    return have


def _object(md: Metadata, src: Source, root: Node, api: str, report: ImportReport) -> None:
    obj = _object_def(md, api, src.shown, root.line)
    obj.label = obj.label or root.value("label")
    name_field = root.first("nameField")
    if name_field is not None and obj.name_field is None:
        obj.name_field = FieldDef("Name", name_field, src.shown)
    for f in root.all("fields"):  # Metadata API format: the fields are in the object file
        _add_field(obj, FieldDef(f.value("fullName"), f, src.shown), report)
    for rule in root.all("validationRules"):
        report.cannot(src.shown, rule.line, f"validation rule {api}.{rule.value('fullName')}",
                      RULE)


def _field_file(md: Metadata, src: Source, root: Node, report: ImportReport) -> None:
    if not _expect(src, root, "CustomField", report):
        return
    parts = _parts(src)
    if len(parts) < 3 or parts[-2] != "fields":
        report.cannot(src.shown, root.line, "file", "a field file outside "
                      "objects/<Object>/fields/: the object it belongs to is not known")
        return
    api = root.value("fullName") or _strip(src.name, (FIELD_SUFFIX,))
    obj = _object_def(md, parts[-3], src.shown, root.line)
    _add_field(obj, FieldDef(api.rsplit(".", 1)[-1], root, src.shown), report)


def _add_field(obj: ObjectDef, f: FieldDef, report: ImportReport) -> None:
    if not f.api:
        report.cannot(f.shown, f.node.line, f"field of {obj.api}", "it has no fullName")
        return
    have = obj.fields.setdefault(f.api.lower(), f)
    if have is not f:
        report.note(f.shown, f.node.line, f"field {obj.api}.{f.api}",
                    f"defined again: the one imported is at {have.shown}:{have.node.line}")


def _value_set(md: Metadata, src: Source, root: Node, name: str, report: ImportReport,
               *, standard: bool = False) -> None:
    """A global value set (``customValue``s) or a standard one (``standardValue``s)."""
    if not _expect(src, root, "StandardValueSet" if standard else "GlobalValueSet", report):
        return
    found = _values(root.all("standardValue" if standard else "customValue"))
    found.shown, found.line = src.shown, root.line
    sets = md.standard_sets if standard else md.value_sets
    sets.setdefault(name.lower(), found)


# ---- metadata -> Baton fields ---------------------------------------------------------------
@dataclass
class Mapped:
    spec: dict[str, Any] | None      # None: not imported (computed in Salesforce)
    caveats: list[str] = field(default_factory=list)


@dataclass
class Known:
    """What a field's metadata may point at: the metadata given (its value sets), the Baton
    names of the import's objects, the object types imported, and those the project's
    definitions (any file under ``definitions/``) kept (``--force``) have."""

    md: Metadata
    names: ObjectNames
    imported: set[str]
    kept: frozenset[str]


def object_types(catalog: Catalog, md: Metadata, report: ImportReport,
                 kept: frozenset[str] = frozenset()
                 ) -> tuple[list[dict[str, Any]], set[tuple[str, str]]]:
    """The object types to write: every object the flows read or whose metadata was given;
    its fields from the metadata first (in the metadata's order), then the fields the flows
    read that the metadata lacks, typed as the flows use them (a standard picklist: by its
    standard value set, when given). ``kept``: the object types of the project's own
    definitions, which lookups may point at. Fills ``report``. Also gives the (object,
    field) pairs typed by the metadata."""
    given = md.by_name(catalog.object_names)
    known = Known(md, catalog.object_names, set(catalog.objects) | set(given), kept)
    from_metadata: dict[str, dict[str, dict[str, Any]]] = {}
    for name in sorted(given):
        from_metadata[name] = _fields(catalog, known, given[name], name, report)
    out: list[dict[str, Any]] = []
    for name in sorted(known.imported):
        fields: dict[str, Any] = dict(from_metadata.get(name, {}))
        for fname, guess in sorted(catalog.objects.get(name, {}).items()):
            if fname in fields:
                continue
            if guess.type == "ref" and guess.ref is not None:
                fields[fname] = {"type": "ref", "object": guess.ref}
                standard = None
            else:
                fields[fname] = {"type": guess.type or "string"}
                standard = _standard_read(catalog, md, name, fname, guess.type)
            if standard is not None:
                spec, why = standard
                fields[fname] = spec or fields[fname]
                report.note(guess.file, guess.line, f"field {name}.{fname}", why)
            elif name in given:
                report.note(guess.file, guess.line, f"field {name}.{fname}",
                            "not in the object metadata given: typed from how the flows use "
                            "it")
        if not fields:
            fields["name"] = {"type": "string"}
        doc: dict[str, Any] = {"kind": "object", "name": name}
        if name in given and given[name].label:
            doc["label"] = given[name].label
        doc["fields"] = fields
        out.append(doc)
    return out, {(o, f) for o, fields in from_metadata.items() for f in fields}


def _standard_read(catalog: Catalog, md: Metadata, name: str, fname: str, guessed: str
                   ) -> tuple[dict[str, Any] | None, str] | None:
    """A field the flows read whose metadata was not given, when it is a standard picklist
    (``Case.Status``): (a choice of its standard value set's values, or None when the set
    was not given either; the note saying so). None for any other field, or one the flows
    use as other than text."""
    api = catalog.object_names.owners.get(name.lower(), name)
    field_api = catalog.owners.get(name, {}).get(fname, "")
    set_name = STANDARD_VALUE_SETS.get((api.lower(), field_api.lower()))
    if set_name is None or object_suffix(api) or FAMILIES.get(guessed or "string") != "text":
        return None
    found = md.standard_sets.get(set_name.lower())
    if found is None:
        return None, (f"a standard picklist, whose values are the standard value set "
                      f"{set_name}, not given: typed from how the flows use it ("
                      f"{_give_standard(set_name)})")
    said = "; ".join(["", *_said(found)])
    if not found.values:
        return None, (f"a standard picklist whose standard value set {set_name} "
                      f"({found.shown}) has no active value: typed from how the flows use "
                      f"it{said}")
    spec = _choice(found.values, found.default)
    return spec, (f"a standard picklist: its values are the standard value set {set_name} "
                  f"({found.shown}), copied into the field, a choice that refuses other "
                  f"values (its field metadata was not given){said}")


def _give_standard(set_name: str) -> str:
    return (f"give its file, standardValueSets/{set_name}.standardValueSet-meta.xml or "
            ".standardValueSet, to import the values")


def _choice(values: list[str], default: str | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "choice", "choices": list(values)}
    if default is not None:
        spec["default"] = default
    return spec


def _fields(catalog: Catalog, known: Known, obj: ObjectDef, name: str,
            report: ImportReport) -> dict[str, dict[str, Any]]:
    report.ok(obj.shown, obj.line, f"object {obj.api}", f"object type {name}")
    defs = ([obj.name_field] if obj.name_field is not None
            and "name" not in obj.fields else []) + list(obj.fields.values())
    out: dict[str, dict[str, Any]] = {}
    for f in defs:
        where = f"field {obj.api}.{f.api}"
        segment, _ = field_segment(f.api)
        if f.api in BUILTIN_FIELDS:
            report.ok(f.shown, f.node.line, where, f"the record's own {segment}")
            continue
        fname = catalog.field_name(report, name, f.api, segment, f.shown, f.node.line)
        mapped = (_name_field(f.node) if f is obj.name_field
                  else _map(f.node, known, obj.api, f.api))
        guess = catalog.objects.get(name, {}).get(fname)
        if mapped.spec is None:
            what = f"{mapped.caveats[0]}, {COMPUTED}"
            if guess is not None:
                report.note(f.shown, f.node.line, where, f"{what}; the flows read it, so "
                            f"{name}.{fname} is kept, typed from how they use it")
            else:
                report.cannot(f.shown, f.node.line, where, f"{what} (not imported)")
            continue
        for caveat in mapped.caveats:
            report.note(f.shown, f.node.line, where, caveat)
        spec = mapped.spec
        if guess is not None and guess.type and guess.type != spec["type"] and \
                FAMILIES.get(guess.type, guess.type) != FAMILIES.get(spec["type"], spec["type"]):
            report.note(guess.file, guess.line, f"field {name}.{fname}",
                        f"the flows use it as {guess.type}; the metadata ({f.shown}:"
                        f"{f.node.line}) says {spec['type']}: kept {spec['type']}")
        out[fname] = spec
        report.ok(f.shown, f.node.line, f"{where} ({f.node.value('type') or 'Text'})",
                  f"{name}.{fname}: {_describe(spec)}")
    return out


def _describe(spec: dict[str, Any]) -> str:
    extras = [f"{k} {v}" for k, v in spec.items()
              if k in ("max_length", "precision", "scale", "object")]
    if "choices" in spec:
        extras.append(f"{len(spec['choices'])} choices")
    if spec.get("required"):
        extras.append("required")
    if "default" in spec:
        extras.append(f"default {json.dumps(spec['default'], ensure_ascii=False)}")
    return str(spec["type"]) + (f" ({', '.join(extras)})" if extras else "")


def _base(node: Node) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if node.value("label"):
        spec["label"] = node.value("label")
    help_text = node.value("inlineHelpText") or node.value("description")
    if help_text:
        spec["description"] = help_text
    return spec


def _int(node: Node, tag: str) -> int | None:
    text = node.value(tag)
    return int(text) if text.isdigit() else None


def _name_field(node: Node) -> Mapped:
    """An object's ``nameField``: its ``Name`` (a Text of 80, or an AutoNumber)."""
    spec = {"type": "string", **_base(node)}
    if node.value("type") == "AutoNumber":
        return Mapped(spec, [AUTO_NUMBER])
    return Mapped({**spec, "max_length": 80, "required": True})


def _map(node: Node, known: Known, obj_api: str, api: str) -> Mapped:
    sf_type = node.value("type")
    if node.value("formula") or sf_type == "Summary":
        what = "a roll-up summary" if sf_type == "Summary" else "a formula field"
        return Mapped(None, [what])
    base = _base(node)
    caveats: list[str] = []
    spec: dict[str, Any]
    length, precision, scale = _int(node, "length"), _int(node, "precision"), _int(node, "scale")
    if sf_type == "Text":
        spec = {"type": "string"}
        if length:
            spec["max_length"] = length
    elif sf_type in TEXT_TYPES:
        spec = {"type": "text"}
        limit = length or TEXT_TYPES[sf_type]
        if limit:
            spec["max_length"] = limit
        if sf_type == "Html":
            caveats.append("rich text in Salesforce: Baton keeps the HTML as text")
    elif sf_type in STRING_TYPES:
        spec = {"type": "string"}
        limit = length or STRING_TYPES[sf_type]
        if limit:
            spec["max_length"] = limit
        if sf_type == "EncryptedText":
            caveats.append("encrypted in Salesforce: Baton stores it as plain text")
    elif sf_type == "Number" and (scale or 0) == 0:
        spec = {"type": "int"}
    elif sf_type in ("Number", "Currency", "Percent"):
        spec = {"type": "decimal"}
        if precision:
            spec["precision"] = precision
        if scale is not None:
            spec["scale"] = min(scale, precision) if precision else scale
    elif sf_type == "Checkbox":
        spec = {"type": "bool", "default": node.value("defaultValue").lower() == "true"}
    elif sf_type in ("Date", "DateTime"):
        spec = {"type": sf_type.lower()}
    elif sf_type in ("Picklist", "MultiselectPicklist"):
        spec = _picklist(node, known.md, sf_type == "MultiselectPicklist", caveats,
                         STANDARD_VALUE_SETS.get((obj_api.lower(), api.lower()))
                         if not object_suffix(obj_api) else None)
    elif sf_type in LOOKUP_TYPES:
        spec = _lookup(node, known, sf_type, caveats)
    elif sf_type == "AutoNumber":
        spec = {"type": "string"}
        caveats.append(AUTO_NUMBER)
    else:
        spec = {"type": "string"}
        caveats.append(f"type {sf_type or '(none)'} has no Baton equivalent: a string")
    if node.flag("required") or sf_type == "MasterDetail":
        spec["required"] = True
    default = node.value("defaultValue")
    if default and "default" not in spec:
        value = _literal(default, spec["type"])
        if value is None:
            caveats.append(f"its default {default!r} is a formula: not translated")
        else:
            spec["default"] = value
    return Mapped({"type": spec.pop("type"), **base, **spec}, caveats)


def _literal(formula: str, ftype: str) -> Any:
    """A default value formula that is a plain literal (``"USD"``, ``10``), else None."""
    text = formula.strip()
    if ftype in ("string", "text") and len(text) >= 2 and text[0] == text[-1] == '"' \
            and '"' not in text[1:-1]:
        return text[1:-1]
    if ftype in ("int", "decimal") and NUMBER.match(text):
        return int(text) if ftype == "int" and "." not in text else text
    return None


def _picklist(node: Node, md: Metadata, multi: bool, caveats: list[str],
              standard_set: str | None) -> dict[str, Any]:
    """A picklist's values: its own, a global value set's it names, or (``standard_set``:
    a standard picklist, whose metadata names no values) its standard value set's. Only
    active values are choices (:func:`_said`)."""
    found = ValueSet([], None, "", 0)
    restricted = False
    value_set = node.first("valueSet")
    if value_set is not None:
        restricted = value_set.flag("restricted")
        definition = value_set.first("valueSetDefinition")
        global_name = value_set.value("valueSetName")
        if definition is not None:
            found = _values(definition.all("value"))
        elif global_name:
            have = md.value_sets.get(global_name.lower())
            if have is None:
                caveats.append(f"its values are the global value set {global_name}, whose "
                               "metadata was not given: a string (give its file, globalValueSets/"
                               f"{global_name}.globalValueSet-meta.xml or .globalValueSet, "
                               "to import the values)")
                return {"type": "string"}
            found = have
            caveats.append(f"its values are the global value set {global_name} "
                           f"({have.shown}): copied into the field")
            restricted = True  # a global value set is always restricted
    else:  # before API 38: <picklist><picklistValues>
        old = node.first("picklist")
        if old is not None:
            restricted = old.flag("restrictedPicklist")
            found = _values(old.all("picklistValues"))
    if not found.values and not found.inactive and standard_set is not None:
        have = md.standard_sets.get(standard_set.lower())
        if have is None:
            caveats.append(f"a standard picklist: its values are the standard value set "
                           f"{standard_set}, whose metadata was not given: a string ("
                           f"{_give_standard(standard_set)})")
            return {"type": "string"}
        found = have
        caveats.append(f"a standard picklist: its values are the standard value set "
                       f"{standard_set} ({have.shown}), copied into the field, a choice "
                       "that refuses other values")
        restricted = True  # (said in the caveat above)
    caveats += _said(found)
    if not found.values:
        caveats.append("a picklist without active values in its metadata: a string"
                       if found.inactive else "a picklist without values in its metadata: "
                       "a string")
        return {"type": "string"}
    if multi:
        caveats.append(f"a multi-select picklist: a json list of values (one or more of "
                       f"{', '.join(found.values)}), not checked against them")
        return {"type": "json"}
    if not restricted:
        caveats.append("an unrestricted picklist in Salesforce (other values are taken "
                       "through the API): a choice in Baton, which refuses other values")
    return _choice(found.values, found.default)


def _said(found: ValueSet) -> list[str]:
    """What the report says of a picklist's values beside the choices: the inactive ones
    (not choices: Baton's choices have no values kept readable but not selectable, so one
    would be offered for new records), an inactive default (left out), and each flag
    (closed, won, converted) that Baton's choices cannot carry."""
    out: list[str] = []
    if found.inactive:
        out.append(f"inactive values {', '.join(found.inactive)} (isActive false) are not "
                   "choices: a record cannot be given them (Baton's choices have no values "
                   "kept readable but not selectable; add one back to the choices to keep "
                   "records that hold it)")
    if found.inactive_default is not None:
        out.append(f"its default {found.inactive_default} is inactive: no default")
    for flag in VALUE_FLAGS:
        if found.flagged.get(flag):
            out.append(f"{flag} in Salesforce: {', '.join(found.flagged[flag])} (Baton's "
                       f"choices carry no {flag} flag: name these values in conditions)")
    return out


def _lookup(node: Node, known: Known, sf_type: str, caveats: list[str]) -> dict[str, Any]:
    """A ref to the object type of the object the lookup points at: one of the import's
    (by its Salesforce API name: a lookup to ``Vendor`` never points at ``Vendor__c``'s
    type, nor at a kept type whose ``# Salesforce object:`` line names another), else one
    the project's definitions kept have, under the name the import would give it (its
    marker line names it, or nothing names it otherwise); else a string, the record id,
    noted."""
    targets = _targets(node, sf_type)
    if len(targets) != 1:
        caveats.append(f"a lookup to {' or '.join(targets) or 'no object'}: a string (the "
                       "record id); a Baton ref points at one object type")
        return {"type": "string"}
    target = known.names.known(targets[0])
    if target is None:
        target = object_name(targets[0])
        holder = known.names.owners.get(target.lower())
        if holder is not None:
            caveats.append(f"a lookup to {targets[0]}, whose object type is not imported: "
                           f"{target} is {holder}'s, another Salesforce object: a string "
                           "(the record id)")
            return {"type": "string"}
    if target not in known.imported and target not in known.kept:
        caveats.append(f"a lookup to {targets[0]}, whose object type is nowhere: not "
                       "imported (no flow reads it, its metadata was not given) nor among "
                       "the object types of the project's definitions/: a string (the "
                       "record id)")
        return {"type": "string"}
    if sf_type == "MasterDetail":
        caveats.append(f"master-detail to {targets[0]}: a required ref; Baton refuses to "
                       "delete the master while details name it (Salesforce deletes them)")
    return {"type": "ref", "object": target}
