"""``baton export`` / ``baton import`` (issue 16 point 8): definitions and people moved from
one database to another, validated first, one transaction, a dry run that changes nothing;
runs start on the imported definitions."""

from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli import baton, copy_example, ok, ok_json, one_line_error

NIGHTLY = """kind: orchestration
name: nightly_close
trigger: {type: schedule, cron: "0 2 * * *"}
stages:
  - name: work
    steps: [{name: sweep, type: background, flow: cases.close}]
"""


def definitions(proj: Path) -> dict[tuple[str, str], dict[str, object]]:
    rows = ok_json(baton("definitions", "list", "--json", cwd=proj))
    return {(d["kind"], d["name"]): d for d in rows}


@pytest.fixture(scope="module")
def stored(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """case_triage deployed with one record stored (a case by phone), once; the folder and
    the record. Read as it is (an export), or copied by a test that imports into it
    (:func:`dst_copy`)."""
    proj = copy_example(tmp_path_factory.mktemp("stored"))
    ok(baton("deploy", cwd=proj))
    rec = ok_json(baton("records", "create", "Case", "--data",
                        '{"subject": "by phone", "origin": "Phone"}', "--json", cwd=proj))
    return proj, rec


@pytest.fixture
def dst_copy(stored: tuple[Path, dict[str, Any]], tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A copy of ``stored``'s folder, database included, of this test's own."""
    proj = tmp_path / "dst" / stored[0].name
    shutil.copytree(stored[0], proj, ignore=shutil.ignore_patterns("*.db-shm"))
    return proj, stored[1]


def test_export_then_import_into_a_fresh_database(tmp_path: Path) -> None:
    src = copy_example(tmp_path / "src")
    (src / "definitions" / "nightly.yaml").write_text(NIGHTLY)
    ok(baton("deploy", cwd=src))
    triage = src / "definitions" / "case_triage.yaml"
    triage.write_text(triage.read_text().replace("name: case_triage\n", "name: case_triage\n"
                                                 "label: Case triage (v2)\n", 1))
    ok(baton("deploy", cwd=src))  # case_triage v2, active
    ok(baton("users", "add", "ann", "--role", "agent", "--queue", "tier1",
             "--email", "ann@example.com", cwd=src))
    bundle = tmp_path / "bundle.tar.gz"
    ok(baton("export", "--include", "people", "--all-versions", "-o", bundle, cwd=src))

    dst = copy_example(tmp_path / "dst")  # the same flows, a database of its own, empty
    dry = ok_json(baton("import", bundle, "--dry-run", "--json", cwd=dst))
    assert dry["dry_run"] is True
    changes = {(c["kind"], c["name"], c["change"]) for c in dry["changes"]}
    assert ("orchestration", "case_triage", "new version 1") in changes
    assert ("orchestration", "case_triage", "new version 2") in changes
    assert ("orchestration", "case_triage", "activate v2") in changes
    assert any(c[0] == "user" and c[1] == "ann" and c[2].startswith("add") for c in changes)
    assert definitions(dst) == {}, "a dry run changes nothing"

    ok(baton("import", bundle, cwd=dst))
    got = definitions(dst)
    assert got[("orchestration", "case_triage")]["active"] == 2
    assert got[("orchestration", "nightly_close")]["next_run_at"], "the schedule is armed"
    assert got[("object", "Case")]["active"] == 1
    users = {u["name"]: u for u in ok_json(baton("users", "list", "--json", cwd=dst))}
    assert users["ann"]["roles"] == ["agent"] and users["ann"]["queues"] == ["tier1"]

    again = ok_json(baton("import", bundle, "--json", cwd=dst))
    assert not any(c["writes"] for c in again["changes"]), "importing twice changes nothing"

    # Runs start on the imported definitions.
    ok(baton("records", "create", "Case", "--data", '{"subject": "invoice question 7", "number": 7}',
             cwd=dst))
    ok(baton("worker", "--until-idle", cwd=dst))
    (run,) = ok_json(baton("runs", "list", "--json", cwd=dst))
    assert run["orchestration"] == "case_triage" and run["version"] == 2, run
    (item,) = ok_json(baton("work", "list", "--json", cwd=dst))
    assert item["run_id"] == run["id"]


def test_a_bad_bundle_is_refused_whole_saying_what_and_where(
        tmp_path: Path, stored: tuple[Path, dict[str, Any]]) -> None:
    good = tmp_path / "good.tar.gz"
    ok(baton("export", "-o", good, cwd=stored[0]))  # case_triage's definitions

    # A definition's text broken inside an otherwise valid bundle.
    with tarfile.open(good, "r:gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    members["definitions.json"] = members["definitions.json"].replace(
        b"type: interactive", b"type: interactiv", 1)
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    dst = copy_example(tmp_path / "dst")
    p = baton("import", bad, cwd=dst)
    assert p.returncode != 0
    assert "definitions/orchestration/case_triage/v1.yaml" in p.stdout + p.stderr, p
    assert "interactiv" in p.stdout + p.stderr, p
    assert definitions(dst) == {}, "nothing of a bad bundle is imported"

    garbage = tmp_path / "garbage.tar.gz"
    garbage.write_bytes(b"not a tarball")
    one_line_error(baton("import", garbage, cwd=dst), "not a bundle")


def test_an_import_that_would_break_stored_records_is_refused_as_a_deploy_is(
        tmp_path: Path, dst_copy: tuple[Path, dict[str, Any]]) -> None:
    """An imported object type is checked against the records stored here, as ``baton
    deploy`` checks it: a choice the records use, dropped, refuses the import (dry run
    too), naming the record; nothing is written."""
    dst, rec = dst_copy  # deployed, a case by phone stored
    src = copy_example(tmp_path / "src")
    case = src / "definitions" / "case.yaml"
    case.write_text(case.read_text().replace("[Web, Email, Phone, Internal]",
                                             "[Web, Email, Internal]", 1))
    ok(baton("deploy", cwd=src))
    bundle = tmp_path / "bundle.tar.gz"
    ok(baton("export", "-o", bundle, cwd=src))
    before = definitions(dst)
    for dry in (["--dry-run"], []):
        p = baton("import", bundle, *dry, cwd=dst)
        assert p.returncode == 1, p
        out = p.stdout + p.stderr
        assert "origin" in out and rec["id"] in out and "'Phone'" in out, out
    assert definitions(dst) == before, "nothing of the refused bundle is imported"


def test_an_import_gives_stored_records_a_new_required_fields_default(
        tmp_path: Path, dst_copy: tuple[Path, dict[str, Any]]) -> None:
    """As a deploy does: an imported object type with a new required field that has a
    ``default`` gives the records stored here that default (dry run and import agree)."""
    dst, rec = dst_copy  # deployed, a case by phone stored
    src = copy_example(tmp_path / "src")
    case = src / "definitions" / "case.yaml"
    case.write_text(case.read_text().replace(
        "  number:  {type: int}\n",
        "  number:  {type: int}\n  region:  {type: string, required: true, default: EMEA}\n", 1))
    ok(baton("deploy", cwd=src))
    bundle = tmp_path / "bundle.tar.gz"
    ok(baton("export", "-o", bundle, cwd=src))
    ok(baton("import", bundle, "--dry-run", cwd=dst))
    ok(baton("import", bundle, cwd=dst))
    got = ok_json(baton("records", "show", rec["id"], "--json", cwd=dst))
    assert got["region"] == "EMEA", got
