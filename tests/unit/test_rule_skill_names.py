"""A routing rule's literal skill must be a skill name as people's profiles have them: one
with a space (or another character a profile's skill cannot hold) could never match anyone."""

from __future__ import annotations

import pytest

from baton.definitions.loader import check_texts

RULE = """
kind: routing
name: support
from: {{queue: support}}
required_skills: [{skill}]
"""


@pytest.mark.parametrize("skill", ["'bad skill name'", "{skill: 'lang pt', min_level: 2}"])
def test_a_skill_no_profile_can_have_is_refused_where_it_is(skill: str) -> None:
    _docs, issues = check_texts({"rules.yaml": RULE.format(skill=skill)})
    errors = [i for i in issues if i.level == "error"]
    assert len(errors) == 1, issues
    assert "is not a skill name" in errors[0].message
    assert errors[0].path.startswith("required_skills[0]")


@pytest.mark.parametrize("skill", ["brand:ford", "lang:pt-BR", "'=\"brand:\" + record.brand'"])
def test_skill_names_and_expressions_pass(skill: str) -> None:
    _docs, issues = check_texts({"rules.yaml": RULE.format(skill=skill)})
    assert [i for i in issues if i.level == "error"] == []


def test_a_level_out_of_range_is_named() -> None:
    _docs, issues = check_texts({"rules.yaml": RULE.format(skill="{skill: a, min_level: 9}")})
    assert [i.message for i in issues if i.level == "error"] == [
        "expected a level from 1 to 5, got 9"]
