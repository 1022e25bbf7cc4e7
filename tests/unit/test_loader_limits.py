"""The definitions loader is bounded: hostile YAML is refused with a located issue.

Found by trying it as an attacker would: a 343-byte document whose aliases expand to 9^6
nodes took 8.5 s, a 9^9 one grew past 1.4 GB, and 10,000 nested levels raised a
``RecursionError`` (a 500 from ``POST /api/definitions/validate``). Every bound answers
with an issue naming the file and line, and nothing is expanded.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from baton.definitions.loader import (
    MAX_ALIASES,
    MAX_DEPTH,
    MAX_DOCUMENTS,
    MAX_FILE_BYTES,
    MAX_NODES,
    check_definitions,
    check_texts,
)
from baton.errors import Issue


def alias_bomb(levels: int, width: int = 9) -> str:
    """The "billion laughs": each level lists the one before it ``width`` times."""
    lines = ["kind: object", "name: Bomb", 'a0: &a0 ["lol"]']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def only_issue(text: str, file: str = "f.yaml") -> Issue:
    loaded, issues = check_texts({file: text})
    assert loaded == []
    assert len(issues) == 1, issues
    return issues[0]


def test_an_alias_bomb_is_refused_before_it_is_expanded() -> None:
    issue = only_issue(alias_bomb(6))
    assert (issue.file, issue.line) == ("f.yaml", 1)
    assert f"more than {MAX_NODES:,} nodes" in issue.message
    assert "aliases are expanded" in issue.message


def test_a_nine_to_the_ninth_bomb_does_not_run_away() -> None:
    """In a child process with 1 GiB of address space, so that a loader without the bound
    fails this test (MemoryError, or the generous deadline) instead of taking the machine."""
    program = textwrap.dedent("""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from baton.definitions.loader import check_texts
        _, issues = check_texts({"bomb.yaml": sys.stdin.read()})
        print(issues[0].message)
    """)
    done = subprocess.run([sys.executable, "-c", program], input=alias_bomb(9),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "aliases are expanded" in done.stdout


def test_shared_anchors_within_the_bound_still_load() -> None:
    text = textwrap.dedent("""\
        kind: object
        name: Shared
        fields:
          a: &text {type: string, label: A text}
          b: *text
          c: {<<: *text, required: true}
    """)
    loaded, issues = check_texts({"ok.yaml": text})
    assert issues == []
    fields = {f.name: f for f in loaded[0].definition.fields}  # type: ignore[union-attr]
    assert fields["b"].label == "A text" and fields["c"].required is True


@pytest.mark.parametrize("opening", ["[", "{a: "])
def test_deep_flow_nesting_is_refused_at_the_depth_bound(opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    text = "kind: object\nname: Deep\nx: " + opening * 10_000 + closing * 10_000 + "\n"
    issue = only_issue(text)
    assert issue.line == 3
    assert f"nested too deeply: more than {MAX_DEPTH} levels" in issue.message


def test_deep_block_nesting_is_refused_at_the_depth_bound() -> None:
    body = "".join("  " * (level + 1) + f"k{level}:\n" for level in range(MAX_DEPTH + 10))
    issue = only_issue("kind: object\nname: Deep\nx:\n" + body)
    assert f"more than {MAX_DEPTH} levels" in issue.message
    assert issue.line == 3 + MAX_DEPTH - 1  # the first mapping past the bound


def test_nesting_at_the_bound_is_allowed() -> None:
    # The root mapping is level 1 and `x` holds the rest: MAX_DEPTH levels in all.
    text = "kind: object\nname: Deep\nx: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1) + "\n"
    _, issues = check_texts({"f.yaml": text})
    assert not any("nested too deeply" in i.message for i in issues), issues


def test_too_many_aliases_are_refused() -> None:
    refs = ", ".join(["*a"] * (MAX_ALIASES + 1))
    issue = only_issue(f"kind: object\nname: Many\nz: &a 1\nrefs: [{refs}]\n")
    assert issue.line == 4
    assert f"too many aliases: more than {MAX_ALIASES}" in issue.message


def test_a_file_over_the_size_bound_is_refused_unread(tmp_path) -> None:  # type: ignore[no-untyped-def]
    big = "kind: object\nname: Big\n# " + "x" * MAX_FILE_BYTES + "\n"
    issue = only_issue(big)
    assert issue.line == 0 and "too large" in issue.message
    path = tmp_path / "big.yaml"
    path.write_text(big)
    loaded, issues = check_definitions([path])
    assert loaded == [] and len(issues) == 1
    assert issues[0].file == str(path) and "too large" in issues[0].message


def test_too_many_documents_in_one_file_are_refused() -> None:
    text = "".join(f"---\nkind: object\nname: O{i}\nfields: {{}}\n" for i in range(MAX_DOCUMENTS + 1))
    issue = only_issue(text)
    assert f"at most {MAX_DOCUMENTS}" in issue.message


def test_a_bomb_spoils_only_its_own_document() -> None:
    good = "kind: object\nname: Fine\nfields:\n  subject: {type: string}\n"
    loaded, issues = check_texts({"f.yaml": good + "---\n" + alias_bomb(7)})
    assert [d.name for d in loaded] == ["Fine"]
    assert len(issues) == 1 and issues[0].line == 6
