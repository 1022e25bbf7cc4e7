"""An object type change may not break the active definitions that read it.

A CI run's fuzzing deployed the OpenAPI example (a ``Case`` with one field) over
case_triage's ``Case``: the deploy was accepted, and since the active case_triage reads
``record.origin`` it no longer loaded, so starting runs, validating and deploying anything
answered 422 about case_triage from then on. These tests failed before the fix."""

from __future__ import annotations

from typing import Any

from tests.api.conftest import CASE_TRIAGE, Api, assert_problem

EXAMPLE = {"case.yaml": "kind: object\nname: Case\nfields:\n  subject: {type: string}\n"}
HELLO = {"hello2.yaml": "kind: orchestration\nname: hello2\ntrigger: {type: autolaunched}\n"
                        "stages:\n  - name: greet\n    steps: [{name: wait, type: pause, "
                        "for: 1m}]\n"}


def _issues(body: dict[str, Any]) -> list[dict[str, Any]]:
    return body["issues"]  # type: ignore[no-any-return]


def _still_works(api: Api) -> None:
    ok = api.post("root", "/api/definitions/validate", {"files": HELLO})
    assert ok.status_code == 200 and ok.json()["valid"], ok.text
    assert api.post("root", "/api/definitions/deploy", {"files": HELLO}).status_code == 200
    assert api.post("root", "/api/runs", {"orchestration": "hello2"}).status_code == 201
    rec = api.new_case("Still triaged")
    assert api.item_of(rec["id"])["status"] == "open"


def test_an_object_change_that_breaks_an_active_orchestration_is_refused(api: Api) -> None:
    before = api.get("root", "/api/definitions/object/Case").json()["latest_version"]
    checked = api.post("root", "/api/definitions/validate", {"files": EXAMPLE}).json()
    assert not checked["valid"]
    body = assert_problem(api.post("root", "/api/definitions/deploy", {"files": EXAMPLE}), 422)
    for issues in (checked["issues"], _issues(body)):
        assert {(i["file"].rsplit("/", 1)[-1], i["path"]) for i in issues} >= {
            ("case_triage.yaml", "trigger.when")}, issues
        found = next(i for i in issues if i["path"] == "trigger.when")
        assert "origin" in found["message"] and "orchestration 'case_triage' v1" in \
            found["message"] and found["line"] == 7, found
    assert api.get("root", "/api/definitions/object/Case").json()["latest_version"] == before
    _still_works(api)


def test_a_compatible_change_or_both_changed_together_deploy(api: Api) -> None:
    case = (CASE_TRIAGE / "definitions" / "case.yaml").read_text()
    more = case.rstrip("\n") + "\n  note: {type: string}\n"  # a field added: nothing breaks
    r = api.post("root", "/api/definitions/deploy", {"files": {"case.yaml": more}})
    assert r.status_code == 200, r.text
    triage = (CASE_TRIAGE / "definitions" / "case_triage.yaml").read_text()
    without = case.replace("origin:", "source:")  # origin renamed, and its reader with it
    r = api.post("root", "/api/definitions/deploy", {"files": {
        "case.yaml": without, "case_triage.yaml": triage.replace("record.origin",
                                                                 "record.source")}})
    assert r.status_code == 200, r.text
    assert {d["name"]: d["changed"] for d in r.json()["deployed"]} == {
        "Case": True, "case_triage": True}
    _still_works(api)


def test_activating_a_version_that_does_not_fit_is_refused(api: Api) -> None:
    # Deactivate case_triage, change Case under it (nothing active reads it now), then try
    # to bring case_triage back, or the old Case back under a new case_triage.
    root = "root"
    assert api.post(root, "/api/definitions/orchestration/case_triage/deactivate").status_code \
        == 200
    r = api.post(root, "/api/definitions/deploy", {"files": EXAMPLE})
    assert r.status_code == 200, r.text
    body = assert_problem(api.post(root, "/api/definitions/orchestration/case_triage/activate",
                                   {"version": 1}), 422)
    assert any("origin" in i["message"] and "does not fit" in i["message"]
               for i in _issues(body)), body
    assert api.get(root, "/api/definitions/orchestration/case_triage").json()[
        "active_version"] is None
    r = api.post(root, "/api/definitions/object/Case/activate", {"version": 1})
    assert r.status_code == 200, r.text  # the old Case back: case_triage fits it again
    r = api.post(root, "/api/definitions/orchestration/case_triage/activate", {"version": 1})
    assert r.status_code == 200, r.text
    body = assert_problem(api.post(root, "/api/definitions/object/Case/activate",
                                   {"version": 2}), 422)
    assert any("orchestration 'case_triage' v1" in i["message"] for i in _issues(body)), body
    _still_works(api)


def test_a_version_that_runs_in_progress_use_counts_too(api: Api) -> None:
    # Runs stay on their version; a worker that starts later parses it against the object
    # types of the day: a change that breaks it is refused while they run.
    rec = api.new_case("In flight")
    (run,) = api.engine.list_runs(record_id=rec["id"])
    case = (CASE_TRIAGE / "definitions" / "case.yaml").read_text()
    triage = (CASE_TRIAGE / "definitions" / "case_triage.yaml").read_text()
    both = {"case.yaml": case.replace("origin:", "source:"),
            "case_triage.yaml": triage.replace("record.origin", "record.source")}
    body = assert_problem(api.post("root", "/api/definitions/deploy", {"files": both}), 422)
    assert any("orchestration 'case_triage' v1" in i["message"] and "1 run(s) in progress"
               in i["message"] for i in _issues(body)), body
    api.engine.cancel_run(run.id, "test")
    r = api.post("root", "/api/definitions/deploy", {"files": both})
    assert r.status_code == 200, r.text
    _still_works(api)
