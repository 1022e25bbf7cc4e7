"""Salesforce conditions, operators, logic strings and references -> CEL.

A translation problem is reported (file, line, why) and gives ``None``: the caller then
leaves the construct out rather than writing something that means something else.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from baton.importers.salesforce.names import (
    BUILTIN_FIELDS,
    RELATIONSHIP_OBJECTS,
    ObjectNames,
    field_segment,
    ident,
    relationship_target,
)
from baton.importers.salesforce.report import ImportReport
from baton.importers.salesforce.xmlread import Node

AUTOMATED, PERSON, APPROVAL = "automated", "person", "approver"
"""What a Salesforce step is (``StepInfo.kind``): run by a flow, done by a person, decided by
an approver (``type: approval``)."""

# Salesforce step statuses -> the Baton step statuses that mean the same.
STEP_STATUSES: dict[str, tuple[str, ...]] = {
    "notstarted": ("not_started", "waiting"),
    "inprogress": ("running", "waiting_for_person"),
    "completed": ("completed",),
    "discontinued": ("canceled", "skipped"),
    "error": ("failed", "fallout"),
}
APPROVAL_OUTPUTS = {"approvaldecision": "decision", "decision": "decision",
                    "approvalcomments": "comments", "approvercomments": "comments",
                    "comments": "comments"}
APPROVAL_VALUES = {"approve": "approve", "approved": "approve", "reject": "reject",
                   "rejected": "reject"}
VALUE_TYPES = {"stringValue": "string", "numberValue": "decimal", "booleanValue": "bool",
               "dateValue": "date", "dateTimeValue": "datetime"}
ORDERED = {"GreaterThan": ">", "GreaterThanOrEqualTo": ">=", "LessThan": "<",
           "LessThanOrEqualTo": "<="}
STRING_OPS = {"Contains": "contains", "StartsWith": "startsWith", "EndsWith": "endsWith"}
NUMBER_TESTS: dict[str, Callable[[float, float], bool]] = {
    "EqualTo": operator.eq, "NotEqualTo": operator.ne, "GreaterThan": operator.gt,
    "GreaterThanOrEqualTo": operator.ge, "LessThan": operator.lt, "LessThanOrEqualTo": operator.le}


@dataclass
class FieldGuess:
    type: str            # a Baton field type, or "" while unknown
    ref: str | None      # for type ref: the object
    file: str
    line: int


@dataclass
class Catalog:
    """Object types inferred from every reference to them, across all imported flows."""

    objects: dict[str, dict[str, FieldGuess]] = field(default_factory=dict)
    # per object: a Salesforce field (its key, see _field_key) -> its Baton name, and back
    names: dict[str, dict[str, str]] = field(default_factory=dict)
    owners: dict[str, dict[str, str]] = field(default_factory=dict)
    # the Baton name of each Salesforce object (two objects never share one)
    object_names: ObjectNames = field(default_factory=ObjectNames)
    # per object: the lookups its metadata defines, lower-case field API name -> the API
    # name of the object it points at (a relationship followed goes there)
    lookups: dict[str, dict[str, str]] = field(default_factory=dict)
    # per object: the relationships its lookups' metadata names (relationshipName), as a
    # record path writes them in lower case (supplier__r, account) -> the lookup field's
    # API name (Supplier_Account__c, AccountId): a relationship named otherwise than its
    # field is that field
    relationships: dict[str, dict[str, str]] = field(default_factory=dict)

    def lookup_field(self, obj: str, segment: str) -> str | None:
        """The API name of the lookup field of ``obj`` whose relationship ``segment`` is,
        when its metadata says (``relationshipName``), else None."""
        return self.relationships.get(obj, {}).get(segment.strip().lower())

    def related(self, report: ImportReport, obj: str, segment: str, file: str,
                line: int) -> str:
        """The object type a relationship ``segment`` of ``obj`` (``Vendor__r``,
        ``Account``, ``OwnerId``) points at: the one its lookup's metadata names, else
        the likeliest by name (the lookup is the field whose ``relationshipName`` the
        segment is, else the field named like it). ``Vendor__r`` without its lookup's
        metadata, where both
        ``Vendor`` and ``Vendor__c`` are objects of the import, is taken as the custom
        object's (a custom lookup, named after it), noted."""
        lookup, target = relationship_target(segment)
        lookup = self.lookup_field(obj, segment) or lookup
        named = self.lookups.get(obj, {}).get(lookup.lower())
        if named is not None:
            return self.object_names.name(named, file, line)
        standard = target[:-3] if segment.strip().endswith("__r") else None
        if standard is not None and self.object_names.known(target) is None \
                and self.object_names.known(standard) is not None:
            return self.object_names.name(standard, file, line)
        name = self.object_names.name(target, file, line)
        if standard is not None and self.object_names.known(standard) is not None:
            report.note(file, line, f"relationship {segment.strip()} of {obj}",
                        f"taken to point at {target} (object type {name}), not "
                        f"{standard} (object type {self.object_names.name(standard)}): the "
                        f"metadata of the lookup {obj}.{lookup} was not given to say which")
        return name

    def field_name(self, report: ImportReport, obj: str, segment: str, name: str,
                   file: str, line: int) -> str:
        """The Baton name of field ``segment`` of ``obj`` (``name`` is what
        :func:`field_segment` makes of it), the same at every use, and never that of
        another Salesforce field: ``Amount`` and ``Amount__c``, or ``Version__c`` and the
        record's own ``version``, would otherwise read one field. The first field seen
        keeps the name; another gets ``_c`` (a custom field) or ``_2``, noted."""
        key = _field_key(segment)
        names = self.names.setdefault(obj, {})
        if key in names:
            return names[key]
        owners = self.owners.setdefault(obj, {})
        wanted = name
        if segment.strip() not in BUILTIN_FIELDS and (name in owners or name in TAKEN_FIELDS):
            base = f"{name}_c" if key.endswith("__c") else f"{name}_2"
            name, i = base, 2
            while name in owners or name in TAKEN_FIELDS:
                i += 1
                name = f"{base}_{i}"
            other = (f"the record's own {wanted}" if wanted not in owners
                     else f"{obj}.{owners[wanted]}")
            report.note(file, line, f"field {segment.strip()} of {obj}",
                        f"named {name}: {wanted} is already {other}")
        names[key] = name
        owners.setdefault(name, segment.strip())
        return name

    def touch(self, obj: str) -> dict[str, FieldGuess]:
        return self.objects.setdefault(obj, {})

    def add(self, report: ImportReport, obj: str, name: str, ftype: str, ref: str | None,
            file: str, line: int) -> None:
        fields = self.touch(obj)
        if name in ("id", "created_at", "updated_at", "version"):
            return
        if ref is not None:
            self.touch(ref)
        have = fields.get(name)
        if have is None:
            fields[name] = FieldGuess(ftype, ref, file, line)
        elif not have.type:
            have.type, have.ref = ftype, ref
        elif ftype and (have.type, have.ref) != (ftype, ref):
            report.note(file, line, f"field {obj}.{name}",
                        f"used as {ftype} here and as {have.type} at {have.file}:{have.line}; "
                        f"kept {have.type}")


@dataclass(frozen=True)
class ScreenOutput:
    """What ``Step.Outputs.<name>`` of a step running a screen flow reads: the form field
    (Baton name) the output variable is assigned from, or ``None`` and why not."""

    field: str | None
    reason: str = ""
    # a choice field whose choices have number values: (value, the label Baton offers)
    choices: tuple[tuple[float, str], ...] = ()


@dataclass
class StepInfo:
    name: str                 # the Baton step name
    kind: str                 # AUTOMATED | PERSON | APPROVAL
    stage: str                # the Baton stage name
    screen: str = ""          # PERSON: the screen flow it runs (actionName), if any
    # PERSON: what its Outputs.<name> read (lower-case name), when the screen flow is given
    outputs: dict[str, ScreenOutput] | None = None


@dataclass
class Ref:
    """A translated reference: the CEL text, and how to translate values compared with it."""

    cel: str
    kind: str = "value"       # value | status | approval_decision | datetime | date
    owner: tuple[str, str] | None = None  # (object, field) when it reads a record field
    ref_object: str | None = None  # when it reads a ref field: the object it points at
    choices: tuple[tuple[float, str], ...] = ()  # a form field of number choices (value, label)


@dataclass
class Scope:
    """What references in one flow may name."""

    file: str
    report: ImportReport
    catalog: Catalog
    record_object: str | None
    steps: dict[str, StepInfo] = field(default_factory=dict)     # by Salesforce name
    variables: dict[str, str] = field(default_factory=dict)      # Salesforce name -> CEL
    old_allowed: bool = False

    # ---- references -----------------------------------------------------------------
    def reference(self, text: str, line: int, where: str) -> Ref | None:
        ref = text.strip()
        head, _, rest = ref.partition(".")
        if head in ("$Record", "$Record__Prior"):
            return self._record_path(head, rest, line, where)
        if head in self.steps and rest:
            return self._step_ref(self.steps[head], rest, line, where)
        if head in self.variables and not rest:
            return Ref(self.variables[head])
        if head.startswith("$"):
            self.report.cannot(self.file, line, f"{where}: {ref}",
                               f"the global {head} has no Baton equivalent")
        else:
            self.report.cannot(self.file, line, f"{where}: {ref}",
                               "names no step, variable or $Record field of this flow")
        return None

    def _record_path(self, head: str, rest: str, line: int, where: str) -> Ref | None:
        if self.record_object is None:
            self.report.cannot(self.file, line, f"{where}: {head}.{rest}",
                               "the flow has no record ($Record): its start names no object")
            return None
        if head == "$Record__Prior" and not self.old_allowed:
            self.report.cannot(self.file, line, f"{where}: {head}.{rest}",
                               "prior values exist only in an update trigger's conditions")
            return None
        if not rest:
            return Ref("record.id" if head == "$Record" else "old.id")
        segments = rest.split(".")
        obj = self.record_object
        names: list[str] = []
        for i, seg in enumerate(segments):
            # a relationship its lookup's metadata names (Supplier__r of the lookup
            # Supplier_Account__c) reads that lookup field, whatever its own name
            lookup = self.catalog.lookup_field(obj, seg)
            name, ref = field_segment(lookup or seg)
            name = self.catalog.field_name(self.report, obj, lookup or seg, name,
                                           self.file, line)
            last = i == len(segments) - 1
            if not last:  # a relationship followed: to the object its lookup names
                target = self.catalog.related(self.report, obj, seg, self.file, line)
                self.catalog.add(self.report, obj, name, "ref", target, self.file, line)
                names.append(name)
                obj = target
                continue
            names.append(name)
            if ref is not None or lookup is not None:
                ref = self.catalog.related(self.report, obj, seg, self.file, line)
                self.catalog.add(self.report, obj, name, "ref", ref, self.file, line)
                base = "record" if head == "$Record" else "old"
                return Ref(f"{base}.{'.'.join(names)}", ref_object=ref)
            self.catalog.add(self.report, obj, name, "", None, self.file, line)
            base = "record" if head == "$Record" else "old"
            return Ref(f"{base}.{'.'.join(names)}", owner=(obj, name))
        return None  # pragma: no cover - the loop always returns

    def _step_ref(self, step: StepInfo, rest: str, line: int, where: str) -> Ref | None:
        parts = rest.split(".")
        if parts[0].lower() == "status" and len(parts) == 1:
            return Ref(f"steps.{step.name}.status", kind="status")
        if parts[0].lower() == "outputs" and len(parts) == 2:
            out = parts[1]
            if step.kind == APPROVAL:
                mapped = APPROVAL_OUTPUTS.get(out.lower())
                if mapped is None:
                    self.report.cannot(self.file, line, f"{where}: {step.name}.{rest}",
                                       "an approval step's outputs are the decision and the "
                                       "comments")
                    return None
                kind = "approval_decision" if mapped == "decision" else "value"
                return Ref(f"steps.{step.name}.output.{mapped}", kind=kind)
            if step.kind == PERSON:
                return self._screen_output(step, out, rest, line, where)
            return Ref(f"steps.{step.name}.output.{ident(out)}")
        self.report.cannot(self.file, line, f"{where}: {step.name}.{rest}",
                           "a step is read by its Status or its Outputs.<name>")
        return None

    def _screen_output(self, step: StepInfo, out: str, rest: str, line: int, where: str
                       ) -> Ref | None:
        """``Outputs.<out>`` of a step a person does: the form field the screen flow's output
        variable ``out`` is assigned from (a field of that name also does)."""
        if step.outputs is None:
            if step.screen:
                self.report.note(self.file, line, f"{where}: {step.name}.{rest}",
                                 f"read as the form field {ident(out)}: the screen flow "
                                 f"{step.screen} was not given to say which field its output "
                                 f"{out} holds (give the form a field of that name)")
            return Ref(f"steps.{step.name}.output.{ident(out)}")
        got = step.outputs.get(out.lower())
        if got is None:
            self.report.cannot(self.file, line, f"{where}: {step.name}.{rest}",
                               f"the screen flow {step.screen} has no output variable (nor "
                               f"field) {out}: it never holds a value")
            return None
        if got.field is None:
            self.report.cannot(self.file, line, f"{where}: {step.name}.{rest}",
                               f"the output variable {out} of the screen flow {step.screen} "
                               f"{got.reason}: no form field holds it")
            return None
        return Ref(f"steps.{step.name}.output.{got.field}", choices=got.choices)

    # ---- values ---------------------------------------------------------------------
    def value(self, node: Node | None, line: int, where: str) -> tuple[str, str] | None:
        """A ``FlowElementReferenceOrValue`` -> (CEL literal or reference, Baton type)."""
        if node is None:
            return ("null", "")
        for child in node.children:
            text = child.text.strip()
            if child.tag == "elementReference":
                ref = self.reference(text, child.line, where)
                if ref is not None and ref.choices:
                    self.report.note(self.file, child.line, f"{where}: {text}",
                                     "reads the label of the choice made ("
                                     + ", ".join(f"{_label(v)} for {lab!r}"
                                                 for v, lab in ref.choices)
                                     + "), not its number: Baton choices are texts")
                return None if ref is None else (ref.cel, "")
            if child.tag == "stringValue":
                return (json.dumps(text, ensure_ascii=False), "string")
            if child.tag == "numberValue":
                return (_number(text), "decimal")
            if child.tag == "booleanValue":
                return ("true" if text.lower() == "true" else "false", "bool")
            if child.tag == "dateValue":
                return (json.dumps(text), "date")
            if child.tag == "dateTimeValue":
                return (json.dumps(text), "datetime")
            self.report.cannot(self.file, child.line, f"{where}: value {child.tag}",
                               "only strings, numbers, booleans, dates and references are read")
            return None
        return ("null", "")

    # ---- one condition ----------------------------------------------------------------
    def condition(self, node: Node, where: str, *, left_tag: str = "leftValueReference",
                  right_tag: str = "rightValue") -> str | None:
        left_text = node.value(left_tag)
        op = node.value("operator")
        line = node.line
        if not left_text or not op:
            self.report.cannot(self.file, line, where, f"a condition needs {left_tag} and "
                               "operator")
            return None
        if op == "IsChanged":
            return self._is_changed(left_text, node, where)
        left = self.reference(left_text, line, where)
        if left is None:
            return None
        right_node = node.first(right_tag)
        if op in ("IsNull", "IsBlank", "WasSet"):
            return self._null_test(left, op, right_node, line, where)
        right = self._right(left, right_node, line, where)
        if right is None:
            return None
        rtext, rtype = right
        if left.choices:
            return self._choice_test(left, op, rtext, rtype, line, where)
        self._type(left, rtype if op not in STRING_OPS else "string", line)
        if op == "EqualTo":
            return self._status_test(left, rtext, line, where) if left.kind == "status" \
                else f"{left.cel} == {rtext}"
        if op == "NotEqualTo":
            if left.kind == "status":
                inner = self._status_test(left, rtext, line, where)
                return None if inner is None else f"!({inner})"
            return f"{left.cel} != {rtext}"
        if op in ORDERED:
            if rtype == "datetime":
                return f"timestamp({left.cel}) {ORDERED[op]} timestamp({rtext})"
            return f"{left.cel} {ORDERED[op]} {rtext}"
        if op in STRING_OPS:
            return f"{left.cel}.{STRING_OPS[op]}({rtext})"
        self.report.cannot(self.file, line, f"{where}: operator {op}",
                           "not translated (supported: EqualTo, NotEqualTo, GreaterThan, "
                           "GreaterThanOrEqualTo, LessThan, LessThanOrEqualTo, Contains, "
                           "StartsWith, EndsWith, IsNull, IsBlank, IsChanged, WasSet)")
        return None

    def _right(self, left: Ref, node: Node | None, line: int, where: str
               ) -> tuple[str, str] | None:
        right = self.value(node, line, where)
        if right is None:
            return None
        text, rtype = right
        if left.kind == "approval_decision" and rtype == "string":
            word = json.loads(text).strip().lower()
            mapped = APPROVAL_VALUES.get(word)
            if mapped is None:
                self.report.cannot(self.file, line, f"{where}: {text}",
                                   "an approval decision is Approve or Reject")
                return None
            return (json.dumps(mapped), "string")
        return right

    def _choice_test(self, left: Ref, op: str, rtext: str, rtype: str, line: int,
                     where: str) -> str | None:
        """A form field whose Salesforce choices have number values holds the label chosen
        in Baton: a comparison with a number is the set of labels whose value passes it."""
        test = NUMBER_TESTS.get(op)
        if test is None or rtype != "decimal":
            self.report.cannot(self.file, line, f"{where}: {left.cel} {op} {rtext}",
                               "the field's Salesforce choices are numbers and Baton's are "
                               "their labels: only a comparison with a number is translated")
            return None
        number = float(rtext)
        labels = [label for value, label in left.choices if test(value, number)]
        if op == "NotEqualTo":
            # (null, no choice made, is not equal to any number: as in Salesforce)
            equal = [label for value, label in left.choices if value == number]
            return f"!({left.cel} in {json.dumps(equal, ensure_ascii=False)})"
        if len(labels) == 1:
            return f"{left.cel} == {json.dumps(labels[0], ensure_ascii=False)}"
        return f"{left.cel} in {json.dumps(labels, ensure_ascii=False)}"

    def _status_test(self, left: Ref, rtext: str, line: int, where: str) -> str | None:
        word = json.loads(rtext) if rtext.startswith('"') else rtext
        statuses = STEP_STATUSES.get(str(word).lower().replace("_", ""))
        if statuses is None:
            self.report.cannot(self.file, line, f"{where}: step status {word}",
                               f"known statuses: {', '.join(sorted(STEP_STATUSES))}")
            return None
        if len(statuses) == 1:
            return f'{left.cel} == "{statuses[0]}"'
        return f"{left.cel} in {json.dumps(list(statuses))}"

    def _null_test(self, left: Ref, op: str, node: Node | None, line: int, where: str
                   ) -> str | None:
        right = self.value(node, line, where) if node is not None else ("true", "bool")
        if right is None:
            return None
        if right[0] not in ("true", "false"):
            self.report.cannot(self.file, line, f"{where}: {op}", "expects true or false")
            return None
        self._type(left, "", line)
        empty = f'(!has({left.cel}) || {left.cel} == null'
        empty += f' || {left.cel} == "")' if op == "IsBlank" else ")"
        wants_empty = (right[0] == "true") != (op == "WasSet")
        return empty if wants_empty else f"!{empty}"

    def _is_changed(self, left_text: str, node: Node, where: str) -> str | None:
        if not self.old_allowed or not left_text.startswith("$Record."):
            self.report.cannot(self.file, node.line, f"{where}: IsChanged",
                               "a change is seen only in an update trigger's conditions "
                               "(Baton has the record as it was only there)")
            return None
        now = self.reference(left_text, node.line, where)
        before = self.reference(left_text.replace("$Record.", "$Record__Prior.", 1),
                                node.line, where)
        right = self.value(node.first("rightValue"), node.line, where)
        if now is None or before is None or right is None:
            return None
        self._type(now, "", node.line)
        changed = f"{before.cel} != {now.cel}"
        return changed if right[0] != "false" else f"!({changed})"

    def _type(self, left: Ref, rtype: str, line: int) -> None:
        if left.owner is not None:
            obj, name = left.owner
            self.catalog.add(self.report, obj, name, rtype, None, self.file, line)

    # ---- a list of conditions with its logic -------------------------------------------
    def logic(self, conditions: list[Node], logic: str, line: int, where: str,
              **tags: str) -> str | None:
        """``and`` | ``or`` | ``1 OR (2 AND NOT 3)`` over ``conditions`` -> one CEL text."""
        parts = [self.condition(c, f"{where} condition {i}", **tags)
                 for i, c in enumerate(conditions, 1)]
        if any(p is None for p in parts):
            return None
        texts = [_grouped(str(p)) if len(parts) > 1 else str(p) for p in parts]
        mode = (logic or "and").strip()
        if not texts:
            return None
        if mode.lower() == "and":
            return " && ".join(texts)
        if mode.lower() == "or":
            return " || ".join(texts)
        return self._custom(mode, texts, line, where)

    def _custom(self, logic: str, texts: list[str], line: int, where: str) -> str | None:
        tokens = re.findall(r"\d+|AND|OR|NOT|\(|\)|\S+", logic, flags=re.IGNORECASE)
        out: list[str] = []
        depth = 0
        expect_operand = True
        for tok in tokens:
            up = tok.upper()
            problem = None
            if tok.isdigit():
                n = int(tok)
                if not 1 <= n <= len(texts) or not expect_operand:
                    problem = f"condition {n} " + ("does not exist" if expect_operand
                                                  else "follows an operand")
                else:
                    out.append(texts[n - 1])
                    expect_operand = False
            elif up in ("AND", "OR") and not expect_operand:
                out.append("&&" if up == "AND" else "||")
                expect_operand = True
            elif up == "NOT" and expect_operand:
                out.append("!")
            elif tok == "(" and expect_operand:
                out.append("(")
                depth += 1
            elif tok == ")" and not expect_operand and depth > 0:
                out.append(")")
                depth -= 1
            else:
                problem = f"unexpected {tok!r}"
            if problem:
                self.report.cannot(self.file, line, f"{where} logic {logic!r}", problem)
                return None
        if depth or expect_operand:
            self.report.cannot(self.file, line, f"{where} logic {logic!r}", "is incomplete")
            return None
        return " ".join(out).replace("! ", "!").replace("( ", "(").replace(" )", ")")


TAKEN_FIELDS = frozenset({"id", "created_at", "updated_at", "version", "false", "in", "null",
                          "true"})
"""Baton names no Salesforce field may take: a record's own fields, CEL's reserved words."""


def _field_key(segment: str) -> str:
    """The Salesforce field a path segment names (API names ignore case): ``AccountId``
    and ``Account``, ``Manager__c`` and ``Manager__r`` are one field each."""
    s = segment.strip().lower()
    if s.endswith("__r"):
        return s[:-3] + "__c"
    if s.endswith("id") and s[:-2] in _RELATIONSHIPS:
        return s[:-2]
    return s


_RELATIONSHIPS = frozenset(r.lower() for r in RELATIONSHIP_OBJECTS)


def _grouped(cel: str) -> str:
    """``cel`` in parentheses, unless one pair already encloses all of it."""
    if not cel.startswith("("):
        return f"({cel})"
    depth, quoted, escaped = 0, False, False
    for i, ch in enumerate(cel):
        if quoted:  # a string literal (written by json.dumps): its parentheses do not count
            quoted, escaped = (ch != '"' or escaped), (ch == "\\" and not escaped)
            continue
        quoted = ch == '"'
        depth += (ch == "(") - (ch == ")")
        if depth == 0 and i < len(cel) - 1:
            return f"({cel})"
    return cel


def _label(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _number(text: str) -> str:
    try:
        value = float(text)
    except ValueError:
        return json.dumps(text)
    return repr(int(value)) if value.is_integer() and "." not in text and "e" not in text.lower() \
        else repr(value)
