"""What a ``kind: intake_form`` submission becomes: the record its answers make, with every
problem named by the question it belongs to. One function for both ways in: the public page
(``/forms/NAME``, values typed from the posted strings) and systems
(``POST /api/intake/NAME``, JSON values)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from baton.definitions.intake_form import FormField, IntakeFormDefinition
from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.errors import ValidationError
from baton.records.fields import coerce_fields


@dataclass(frozen=True)
class Asked:
    """One question of a form: what it fills, the object type's field spec, and whether
    an answer is required (the form's ``required``, else the field's)."""

    question: FormField
    spec: FieldDefinition
    required: bool

    @property
    def name(self) -> str:
        return self.question.field

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.question.field, *self.question.also)


def asked(form: IntakeFormDefinition, obj: ObjectTypeDefinition) -> list[Asked]:
    out = []
    for q in form.fields:
        spec = obj.field(q.field) or FieldDefinition(q.field, "string")
        out.append(Asked(q, spec, spec.required if q.required is None else q.required))
    return out


def form_record(form: IntakeFormDefinition, obj: ObjectTypeDefinition,
                answers: Mapping[str, Any], errors: Mapping[str, str] | None = None
                ) -> tuple[dict[str, Any], dict[str, str]]:
    """The record a submission makes (the form's ``set`` values, each answer in its field
    and its ``also`` fields) and the problems, keyed by question (a problem of a field no
    question fills keeps the field's name). ``errors``: problems found before (the page's
    parsing of typed inputs). Answers to questions the form does not ask are refused."""
    questions = asked(form, obj)
    found = dict(errors or {})
    names = {q.name for q in questions}
    for key in answers:
        if key not in names:
            found.setdefault(key, f"form {form.name!r} does not ask for {key!r} (it asks for "
                                  f"{', '.join(sorted(names))})")
    for q in questions:
        if q.required and answers.get(q.name) in (None, ""):
            found.setdefault(q.name, "is required")
    record = dict(form.set)
    for q in questions:
        if q.name in answers:
            record.update({target: answers[q.name] for target in q.targets})
    owner = {t: q.name for q in questions for t in q.targets}
    try:  # every field's problem at once, also when one was already found above
        coerce_fields(obj.fields, record, f"{form.object} record")
    except ValidationError as exc:
        for field, reason in exc.fields.items():
            found.setdefault(owner.get(field, field), reason)
    return record, found


def question_of(form: IntakeFormDefinition, field: str) -> str:
    """The question that fills ``field`` (itself or an ``also`` target), else ``field``."""
    for q in form.fields:
        if field == q.field or field in q.also:
            return q.field
    return field
