"""Every file in corpus/ is a broken definition that targets one validation rule.

Each declares what validation must report in leading comments::

    # expect: 14 stages[0].steps[2].after: unknown step 'clasify' (did you mean 'classify'?)
    # expect: 9 warning: stages[0].steps[1].when: step 'b' starts only when ...

i.e. ``LINE PATH: MESSAGE`` (``LINE MESSAGE`` for an issue without a path). The file must
produce exactly those issues: each expected one, and no other.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from baton.definitions.loader import check_definitions, load_definitions
from baton.definitions.model import FieldDefinition, ObjectTypeDefinition
from baton.errors import DefinitionError, Issue

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.yaml"))
EXPECT = re.compile(r"^#\s*expect:\s*(.+?)\s*$", re.MULTILINE)

KNOWN_FLOWS = {
    "cases.classify",
    "cases.find_agent",
    "cases.raise_level",
    "cases.close",
    "cases.send_survey",
}
DEPLOYED = {
    "Case": ObjectTypeDefinition(
        "Case",
        (
            FieldDefinition("subject", "string", required=True),
            FieldDefinition(
                "origin", "choice", choices=("Web", "Email", "Phone", "Internal"), default="Web"
            ),
            FieldDefinition("level", "int", default=1),
            FieldDefinition(
                "status", "choice", choices=("New", "Triaged", "Escalated", "Closed"), default="New"
            ),
            FieldDefinition("account", "ref", object="Account"),
        ),
    ),
    "Account": ObjectTypeDefinition("Account", (FieldDefinition("name", "string", required=True),)),
}


def _shown(issue: Issue) -> str:
    """The issue as ``baton validate`` prints it, without the file name."""
    line = f"{issue.line} warning:" if issue.level == "warning" else f"{issue.line}"
    return f"{line} {issue.path}: {issue.message}" if issue.path else f"{line} {issue.message}"


def test_corpus_is_big_enough() -> None:
    assert len(FILES) >= 30


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_corpus_file(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    expected = EXPECT.findall(path.read_text(encoding="utf-8"))
    assert expected, f"{path.name} declares no '# expect:' line"
    monkeypatch.chdir(CORPUS)  # so Issue.file is the bare file name

    warnings: list[Issue] = []
    _loaded, errors = check_definitions(
        [path.name], known_flows=KNOWN_FLOWS, deployed_objects=DEPLOYED, warnings=warnings
    )
    issues = errors + warnings  # a warning is expected like an error, as "LINE warning: ..."

    shown = [_shown(i) for i in issues]
    for line in expected:
        assert line in shown, f"{path.name}: expected\n  {line}\ngot\n  " + "\n  ".join(shown)
    assert len(issues) == len(expected), "\n".join(shown)
    assert all(i.file == path.name for i in issues)


@pytest.mark.parametrize("path", FILES[:3], ids=[f.stem for f in FILES[:3]])
def test_load_raises_with_every_issue(path: Path) -> None:
    with pytest.raises(DefinitionError) as info:
        load_definitions([path], known_flows=KNOWN_FLOWS, deployed_objects=DEPLOYED)
    assert len(info.value.issues) == len(EXPECT.findall(path.read_text(encoding="utf-8")))


def test_whole_corpus_at_once_reports_every_file() -> None:
    warnings: list[Issue] = []
    _loaded, issues = check_definitions(
        [CORPUS], known_flows=KNOWN_FLOWS, deployed_objects=DEPLOYED, warnings=warnings
    )
    assert all(i.level == "error" for i in issues) and warnings
    files = {Path(i.file).name for i in issues + warnings}
    assert files == {f.name for f in FILES}  # a YAML error in one file spares the others
    assert issues == sorted(issues, key=lambda i: (i.file, i.line))
