"""``baton definitions diff`` (found by the lifecycle audit: the API and the web page diffed
two versions, the CLI could not), its JSON the API's; a rollback and a roll forward keep
the runs in progress on their version."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from baton.runtime.engine import Engine
from baton.web.app import create_app
from tests.e2e.test_cli import baton, copy_example, ok, ok_json, one_line_error


def _api_get(db_url: str, url: str) -> Any:
    """GET ``url`` from the REST API over the same database, as an admin (in a thread of
    its own: the app's event loop)."""
    out: dict[str, Any] = {}

    def run() -> None:
        engine = Engine(db_url)
        try:
            engine.directory.add_user("root", roles=["admin"])
            token = engine.directory.create_token("root", "test")[1]
            with TestClient(create_app(engine)) as client:
                r = client.get(url, headers={"Authorization": f"Bearer {token}"})
                out["status"], out["json"] = r.status_code, r.json()
        finally:
            engine.close()

    t = threading.Thread(target=run)
    t.start()
    t.join(120)
    assert out.get("status") == 200, out
    return out["json"]


def test_diff_rollback_and_json(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    ok(baton("deploy", cwd=proj))
    rec = ok_json(baton("records", "create", "Case", "--data",
                        '{"subject": "on v1", "origin": "Phone"}', "--json", cwd=proj))
    triage = proj / "definitions" / "case_triage.yaml"
    triage.write_text(triage.read_text().replace("name: case_triage\n", "name: case_triage\n"
                                                 "label: Case triage (v2)\n", 1))
    ok(baton("deploy", cwd=proj))

    # the latest against the one before it, without options
    text = ok(baton("definitions", "diff", "case_triage", cwd=proj)).stdout
    lines = text.splitlines()
    assert lines[:2] == ["--- case_triage v1", "+++ case_triage v2"], text
    assert "+label: Case triage (v2)" in lines, text
    assert not [line for line in lines if line.startswith("-") and not line.startswith("---")]

    # --json is the API's answer, exactly
    cli = ok_json(baton("definitions", "diff", "case_triage", "--from", "1", "--to", "2",
                        "--json", cwd=proj))
    api = _api_get(f"sqlite:///{proj / 'baton.db'}",
                   "/api/definitions/orchestration/case_triage/diff?from=1&to=2")
    assert cli == api
    # backwards, and the same version twice
    back = ok_json(baton("definitions", "diff", "case_triage", "--from", "2", "--to", "1",
                         "--json", cwd=proj))
    assert "-label: Case triage (v2)" in back["diff"].splitlines(), back
    same = ok(baton("definitions", "diff", "case_triage", "--from", "2", "--to", "2",
                    cwd=proj)).stdout
    assert "v2 and v2 are the same text" in same, same

    # what cannot be compared: said on one line, exit 1
    one_line_error(baton("definitions", "diff", "case_triage", "--to", "9", cwd=proj),
                   "'case_triage v9' not found", "its versions are 1, 2")
    one_line_error(baton("definitions", "diff", "case_triage", "--to", "1", cwd=proj),
                   "v1 is 'case_triage''s first version", "give --from")
    one_line_error(baton("definitions", "diff", "Case", cwd=proj),
                   "'Case' is an object, not an orchestration: add --kind object")
    one_line_error(baton("definitions", "diff", "Case", "--kind", "object", cwd=proj),
                   "object 'Case' has one version (v1): nothing to compare it with")

    # roll back: the run started on v1 stays on it, a new one starts on the version made
    # active; forward again, the same
    back_to = ok_json(baton("definitions", "activate", "case_triage", "--version", "1",
                            "--json", cwd=proj))
    assert back_to == {"kind": "orchestration", "name": "case_triage", "active": 1,
                       "latest": 2}
    rec2 = ok_json(baton("records", "create", "Case", "--data",
                         '{"subject": "after the rollback", "origin": "Phone"}', "--json",
                         cwd=proj))
    ok(baton("worker", "--until-idle", cwd=proj))
    runs = {r["record_id"]: r for r in ok_json(baton("runs", "list", "--json", cwd=proj))}
    assert runs[rec["id"]]["version"] == 1 and runs[rec2["id"]]["version"] == 1, runs
    ok(baton("definitions", "activate", "case_triage", "--version", "2", cwd=proj))
    rec3 = ok_json(baton("records", "create", "Case", "--data",
                         '{"subject": "forward again", "origin": "Phone"}', "--json",
                         cwd=proj))
    runs = {r["record_id"]: r for r in ok_json(baton("runs", "list", "--json", cwd=proj))}
    assert [runs[r["id"]]["version"] for r in (rec, rec2, rec3)] == [1, 1, 2], runs
    off = ok_json(baton("definitions", "deactivate", "case_triage", "--json", cwd=proj))
    assert off == {"kind": "orchestration", "name": "case_triage", "active": None,
                   "latest": 2}
