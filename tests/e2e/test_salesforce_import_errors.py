"""``baton import salesforce`` with files it cannot read, end to end (real ``baton``
subprocesses): when no file holds an orchestration, nothing is written and the error is
one summary line then one ``path:line: reason`` line per file, exit 1 (as ``baton validate``
refusing a definition); with ``--json`` the files are the JSON list ``validate --json``
prints. When some files are good, they are imported (the project is written whole) and the
report lists each file that could not be read, with its line: exit 0."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.e2e.test_cli import baton, ok, ok_json

CORPUS = Path(__file__).resolve().parents[1] / "data" / "salesforce"
ORDER = (CORPUS / "Order_Fulfillment.flow-meta.xml").read_text()


def bad_files(folder: Path) -> list[tuple[Path, int, str]]:
    """Five files that are not flow metadata, each with the line and reason expected."""
    folder.mkdir(parents=True)
    files = {
        "Truncated": ("".join(ORDER.splitlines(True)[:40]), 41,
                      "not well-formed XML: no element found"),
        "Empty": ("", 1, "not well-formed XML: no element found"),
        "Hello": ("hello world", 1, "not well-formed XML: syntax error"),
        "Doctype": ('<?xml version="1.0"?>\n<!DOCTYPE Flow SYSTEM "x">\n<Flow/>', 2,
                    "a DOCTYPE (DTD or entity declarations) is not allowed in flow metadata"),
        "Object": ("<?xml version='1.0'?>\n<CustomObject/>", 2,
                   "not Flow metadata: the root element is <CustomObject>, not <Flow>"),
    }
    out = []
    for name, (text, line, reason) in files.items():
        path = folder / f"{name}.flow-meta.xml"
        path.write_text(text)
        out.append((path, line, reason))
    return sorted(out)


def refused(p: subprocess.CompletedProcess[str]) -> list[str]:
    assert p.returncode == 1, f"{p.args} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    assert "Traceback" not in p.stderr, p.stderr
    return p.stderr.splitlines()


def test_every_file_bad_is_a_summary_and_a_line_per_file(tmp_path: Path) -> None:
    expected = bad_files(tmp_path / "flows")
    out = tmp_path / "quotes"
    for given in ([tmp_path / "flows"], [path for path, _, _ in expected]):
        p = baton("import", "salesforce", *given, "--out", out, cwd=tmp_path)
        lines = refused(p)
        assert p.stdout == ""
        assert lines == ["error: nothing imported: 5 files could not be read",
                         *(f"{path}:{line}: {reason}" for path, line, reason in expected)]
        assert not out.exists()

    # --json: the files as `validate --json` lists problems; the summary on stderr, as JSON
    p = baton("import", "salesforce", tmp_path / "flows", "--out", out, "--json", cwd=tmp_path)
    assert [json.loads(line) for line in refused(p)] == [{"error": {
        "kind": "definition", "message": "nothing imported: 5 files could not be read",
        "exit_code": 1}}]
    assert json.loads(p.stdout) == [
        {"file": str(path), "line": line, "path": "", "message": reason, "level": "error"}
        for path, line, reason in expected]
    assert not out.exists()


def test_the_exit_status_is_the_one_of_other_validation_errors(tmp_path: Path) -> None:
    bad_files(tmp_path / "flows")
    sf = baton("import", "salesforce", tmp_path / "flows", "--out", tmp_path / "q", cwd=tmp_path)
    definition = tmp_path / "bad.yaml"
    definition.write_text("kind: orchestration\nname: x\n")
    validate = baton("validate", definition, cwd=tmp_path)
    assert sf.returncode == validate.returncode == 1, (sf.stderr, validate.stdout)


def test_no_orchestration_among_readable_flows_says_so(tmp_path: Path) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "Review_Screen.flow-meta.xml").write_text(
        (CORPUS / "Review_Screen.flow-meta.xml").read_text())
    (flows / "Empty.flow-meta.xml").write_text("")
    lines = refused(baton("import", "salesforce", flows, "--out", tmp_path / "q", cwd=tmp_path))
    assert lines == [("error: nothing imported: no Orchestrator or ApprovalWorkflow flow "
                      "among the 2 files given (1 file could not be read)"),
                     f"{flows / 'Empty.flow-meta.xml'}:1: not well-formed XML: no element found"]

    nothing = tmp_path / "nothing"
    nothing.mkdir()
    lines = refused(baton("import", "salesforce", nothing, "--out", tmp_path / "q", cwd=tmp_path))
    assert lines == [(f"error: nothing imported: no flow metadata (*.flow-meta.xml, *.flow) "
                      f"in {nothing}")]
    assert not (tmp_path / "q").exists()


def test_good_and_bad_files_import_the_good_and_report_the_bad(tmp_path: Path) -> None:
    """As before: the good flows are imported, the whole project written; each bad file is
    in the report's "Not translated" with its line, and the command succeeds."""
    expected = bad_files(tmp_path / "flows")
    (tmp_path / "flows" / "Order_Fulfillment.flow-meta.xml").write_text(ORDER)
    out = tmp_path / "orders"
    p = ok(baton("import", "salesforce", tmp_path / "flows", "--out", out, cwd=tmp_path))
    for path, line, reason in expected:
        assert f"- {path}:{line} file: {reason}" in p.stdout.splitlines(), p.stdout
    assert "## Not translated (5)" in p.stdout
    assert (out / "IMPORT_REPORT.md").read_text() == p.stdout.removesuffix("\n")
    assert sorted(f.name for f in (out / "definitions").iterdir()) == [
        "objects.yaml", "order_fulfillment.yaml"]

    again = tmp_path / "again"
    report = ok_json(baton("import", "salesforce", tmp_path / "flows", "--output", again,
                           "--json", cwd=tmp_path))
    assert report["orchestrations"] == ["order_fulfillment"]
    assert [(u["file"], u["line"], u["construct"], u["reason"])
            for u in report["untranslated"]] == [
        (str(path), line, "file", reason) for path, line, reason in expected]
