"""Definitions fuzzed (hardening): whatever the text, validation answers with located issues.

Three generators: arbitrary YAML-ish text (so the parser's own errors are exercised),
structurally valid YAML of random shapes and depths (mappings, lists, anchors, aliases,
scalars), and orchestrations that are right except for random expressions and keys in
the places expressions go. For each, ``check_texts`` must return (never raise), every issue
must name the file and a line inside the text (0 for whole-file problems), and a run must
finish within a generous bound — a safety net against a hang, not a speed assertion.
"""

from __future__ import annotations

import re
import time

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.definitions.loader import check_texts

FILE = "fuzz.yaml"
BOUND_S = 30.0  # far above what any input takes (milliseconds): only a hang trips it

YAML_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def check(text: str) -> None:
    started = time.monotonic()
    loaded, issues = check_texts({FILE: text})
    assert time.monotonic() - started < BOUND_S
    lines = len(YAML_LINE_BREAK.split(text))  # YAML's line breaks, which its marks count
    for issue in issues:
        assert issue.file == FILE
        assert 0 <= issue.line <= lines, (issue, lines)
        assert issue.message and "Traceback" not in issue.message
    if issues:
        assert isinstance(issues, list)
    for definition in loaded:
        assert definition.kind in ("object", "orchestration", "calendar")


# ---- arbitrary text --------------------------------------------------------------------------

YAMLISH = st.sampled_from(list("abk: -[]{},&*!|>'\"#\n\t%@`?=.0123456789") + [
    "kind: ", "orchestration", "object", "name: ", "stages:", "steps:", "\n  - ", "---\n",
    "&a ", "*a", "<<: ", "!!python/object:os.system ", "!!binary ", "\x07", "\ufeff", "é",
])


@FUZZ
@given(st.lists(YAMLISH, max_size=120).map("".join))
def test_any_text_gets_issues_not_exceptions(text: str) -> None:
    check(text)


@FUZZ
@given(st.text(max_size=400))
def test_any_unicode_gets_issues_not_exceptions(text: str) -> None:
    check(text)


# ---- valid YAML of random shapes --------------------------------------------------------------

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(max_size=20), st.sampled_from(["=record.x", "=1 +", "=true", "on"]))
KEYS = st.sampled_from(["kind", "name", "fields", "stages", "steps", "type", "after", "next",
                        "when", "goto", "flow", "assign", "trigger", "form", "x", "on"])
SHAPES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(KEYS, inner, max_size=5)),
    max_leaves=40,
)


@FUZZ
@given(st.dictionaries(KEYS, SHAPES, max_size=6),
       st.sampled_from(["object", "orchestration", "calendar", "catalog", None]))
def test_random_shapes_get_issues_not_exceptions(doc: dict[str, object], kind: str | None) -> None:
    if kind is not None:
        doc = {"kind": kind, **doc}
    check(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@FUZZ
@given(st.integers(min_value=1, max_value=3000), st.sampled_from(["[", "{a: ", "- "]))
def test_random_depths_get_issues_not_exceptions(depth: int, opening: str) -> None:
    if opening == "- ":
        body = "".join("  " * level + "- \n" for level in range(depth))
        check("kind: object\nname: Deep\nx:\n" + body)
    else:
        closing = "]" if opening == "[" else "}"
        check("kind: object\nname: Deep\nx: " + opening * depth + closing * depth + "\n")


@FUZZ
@given(st.integers(min_value=1, max_value=12), st.integers(min_value=1, max_value=12))
def test_random_alias_fans_get_issues_not_exceptions(levels: int, width: int) -> None:
    lines = ["kind: object", "name: Fan", "a0: &a0 [x]"]
    for n in range(1, levels + 1):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * width) + "]")
    check("\n".join(lines) + "\n")


# ---- expressions in the places they go --------------------------------------------------------

EXPRESSIONS = st.one_of(
    st.text(max_size=60).map(lambda t: "=" + t),
    st.lists(st.sampled_from(["record.", "steps.", "vars.", "old.", "x", "(", ")", "[", "]",
                              " && ", " || ", "!", "==", "1", "'s'", "\"", ".all(a, ", "size(",
                              "now", " ? ", " : ", "+", "/", "0", "null", "{", "}"]),
             max_size=30).map(lambda parts: "=" + "".join(parts)),
)


@FUZZ
@given(EXPRESSIONS, EXPRESSIONS, EXPRESSIONS)
def test_random_expressions_get_issues_not_exceptions(when: str, assign: str, exit_when: str) -> None:
    text = yaml.safe_dump({
        "kind": "orchestration",
        "name": "fuzzed",
        "trigger": {"type": "autolaunched"},
        "stages": [{
            "name": "only",
            "exit_when": exit_when,
            "steps": [{"name": "look", "type": "interactive", "when": when,
                       "assign": {"queue": assign}}],
            "next": [{"when": when, "goto": "end"}],
        }],
    }, sort_keys=False, allow_unicode=True)
    check(text)
