"""The top-level README's Quickstart, run command by command exactly as written.

The placeholders the README uses (``REC_ID``, ``WI_ID``, ``RUN_ID``) are filled from what the
commands before them printed, as a reader would copy them. A README that drifts from the
product (a form field renamed, a command changed) fails here.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

from tests.e2e.test_cli import EXAMPLES, REPO, baton, ok, ok_json

IDS = {"REC_ID": r"\brec_[0-9a-z]+", "WI_ID": r"\bwi_[0-9a-z]+", "RUN_ID": r"\brun_[0-9a-z]+"}


def _blocks() -> list[list[str]]:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return [[line.split("  #")[0].strip() for line in body.splitlines() if line.strip()]
            for body in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)]


def _run_block(lines: list[str], cwd: Path) -> dict[str, str]:
    seen: dict[str, str] = {}
    for line in lines:
        if line.startswith((". ", "source ")):
            continue  # activating the venv: the tests already run its baton
        for part in (p.strip() for p in line.split("&&")):
            words = shlex.split(part)
            if words[0] == "cd":
                cwd = cwd / words[1]
                continue
            assert words[0] == "baton", line
            missing = [w for w in words if w in IDS and w not in seen]
            assert not missing, f"{line!r} needs {missing} before any command printed one"
            out = ok(baton(*[seen.get(w, w) for w in words[1:]], cwd=cwd)).stdout
            for name, pattern in IDS.items():
                if name not in seen and (m := re.search(pattern, out)):
                    seen[name] = m[0]
    return seen


def test_readme_quickstart_runs_as_written(tmp_path: Path) -> None:
    first, triage = _blocks()[:2]
    seen = _run_block(first, tmp_path)
    assert {"REC_ID", "WI_ID", "RUN_ID"} <= set(seen), seen
    proj = tmp_path / "myproject"
    run = ok_json(baton("runs", "show", seen["RUN_ID"], "--json", cwd=proj))
    assert run["status"] == "completed", run
    timeline = ok(baton("records", "timeline", seen["REC_ID"], cwd=proj)).stdout
    assert "run_completed" in timeline, timeline

    # The case-triage block starts with `cd examples/case_triage`: run it on a copy.
    examples = tmp_path / "copy" / "examples"
    shutil.copytree(EXAMPLES / "case_triage", examples / "case_triage",
                    ignore=shutil.ignore_patterns("__pycache__", "*.db", "*.db-*"))
    assert triage[0] == "cd examples/case_triage", triage
    seen = _run_block(triage, tmp_path / "copy")
    assert "WI_ID" in seen, f"`baton work list --queue tier1` listed no item: {seen}"


LINK = re.compile(r"\]\(([^)\s]+)\)")


def _anchors(markdown: str) -> set[str]:
    """GitHub's anchors for a document's headings."""
    out = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            out.add(slug)
    return out


def test_every_link_in_the_readme_and_docs_leads_somewhere() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        text = doc.read_text()
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (doc.parent / path).resolve() if path else doc
            if not dest.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest.read_text()):
                broken.append(f"{doc.name}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_readme_speed_figures_come_from_bench_results() -> None:
    readme = (REPO / "README.md").read_text()
    speed = readme.split("\n## Speed", 1)[1].split("\n## ", 1)[0]
    results = (REPO / "bench" / "RESULTS.md").read_text()
    figures = re.findall(r"\b\d{1,3}(?:,\d{3})+\b|\b\d+\.\d+\b|\b\d{3,}\b", speed)
    assert figures, speed
    missing = [f for f in figures if f not in results]
    assert not missing, f"figures in the README's Speed section not in bench/RESULTS.md: {missing}"
