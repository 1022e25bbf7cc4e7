"""Idempotency-Key on the POSTs that create (records, runs): a retry within 24 hours creates
nothing and gets the first answer; the key commits with what it created or not at all.
And request bodies refuse fields they do not know (422 naming them)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.exc import IntegrityError

from baton.runtime.idempotency import IdempotencyClaim, fingerprint
from tests.api.conftest import FLAKY, Api, assert_problem

RECORDS = "/api/objects/Case/records"
CASE = {"data": {"subject": "Invoice 42 is wrong", "origin": "Web"}}


def key(k: str) -> dict[str, str]:
    return {"Idempotency-Key": k}


def counts(api: Api) -> tuple[int, int]:
    return api.engine.count_records("Case"), api.engine.count_runs()


def test_a_retried_record_create_replays_the_first_answer_and_creates_nothing(api: Api) -> None:
    first = api.post("opal", RECORDS, CASE, headers=key("case-1"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    before = counts(api)
    assert before == (1, 1)  # the Case and the triage run its create trigger started

    again = api.post("opal", RECORDS, CASE, headers=key("case-1"))
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert counts(api) == before
    # The first answer, even after the record changed.
    api.patch("opal", first.headers["Location"], {"data": {"subject": "changed"}})
    assert api.post("opal", RECORDS, CASE, headers=key("case-1")).json() == first.json()
    # Without a key every POST creates.
    assert api.post("opal", RECORDS, CASE).status_code == 201
    assert api.post("opal", RECORDS, CASE).status_code == 201
    assert api.engine.count_records("Case") == 3


def test_a_retried_run_start_replays_the_first_answer_and_starts_nothing(api: Api) -> None:
    assert api.post("dee", "/api/definitions/deploy",
                    {"files": {"flaky.yaml": FLAKY}}).status_code == 200
    start = {"orchestration": "flaky_job", "input": {"n": 1}}
    first = api.post("opal", "/api/runs", start, headers=key("run-1"))
    assert first.status_code == 201, first.text
    again = api.post("opal", "/api/runs", start, headers=key("run-1"))
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == f"/api/runs/{first.json()['id']}"
    assert api.engine.count_runs(orchestration="flaky_job") == 1


def test_the_same_key_for_another_request_is_a_422(api: Api) -> None:
    assert api.post("opal", RECORDS, CASE, headers=key("k")).status_code == 201
    other = {"data": {**CASE["data"], "subject": "another case"}}
    body = assert_problem(api.post("opal", RECORDS, other, headers=key("k")), 422,
                          "header.Idempotency-Key")
    assert "another request" in body["detail"] and body["type"].endswith("idempotency-key-reused")
    # Another path with the same key is another request too.
    assert_problem(api.post("opal", "/api/objects/Account/records", {"data": {"name": "A"}},
                            headers=key("k")), 422, "header.Idempotency-Key")
    # Key order and spacing do not make another request.
    same = api.client.post(RECORDS, content='{"data": {"origin": "Web",  "subject": '
                                            '"Invoice 42 is wrong"}}',
                           headers=api.auth("opal") | key("k") |
                           {"content-type": "application/json"})
    assert same.status_code == 201 and same.headers["Idempotent-Replayed"] == "true"
    assert counts(api) == (1, 1)
    assert api.engine.count_records("Account") == 0


def test_keys_are_per_user(api: Api) -> None:
    a = api.post("opal", RECORDS, CASE, headers=key("shared"))
    b = api.post("root", RECORDS, CASE, headers=key("shared"))
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers and a.json()["id"] != b.json()["id"]
    assert api.engine.count_records("Case") == 2


def test_a_key_expires_after_24_hours(api: Api) -> None:
    first = api.post("opal", RECORDS, CASE, headers=key("daily"))
    api.clock.advance(timedelta(hours=23, minutes=59))
    assert api.post("opal", RECORDS, CASE, headers=key("daily")).json() == first.json()
    api.clock.advance(timedelta(minutes=2))
    later = api.post("opal", RECORDS, CASE, headers=key("daily"))
    assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]
    assert api.engine.count_records("Case") == 2
    # ... and the new use is the one a retry replays from now on.
    assert api.post("opal", RECORDS, CASE, headers=key("daily")).json() == later.json()


def test_expired_keys_are_swept(api: Api) -> None:
    for i in range(3):
        api.post("opal", RECORDS, CASE, headers=key(f"old-{i}"))
    api.clock.advance(timedelta(hours=25))
    api.post("opal", RECORDS, CASE, headers=key("new"))
    with api.engine.store.read() as tx:
        assert [tx.idempotency_key_txn("opal", f"old-{i}") for i in range(3)] == [None] * 3
        assert tx.idempotency_key_txn("opal", "new") is not None


def test_a_failed_request_does_not_use_up_its_key(api: Api) -> None:
    # Refused by the service (inside the creating transaction) ...
    assert_problem(api.post("opal", RECORDS, {"data": {"origin": "Fax"}}, headers=key("fix")),
                   422, "data.subject")
    # ... or by the request's validation (before it).
    assert_problem(api.post("opal", RECORDS, {**CASE, "dta": {}}, headers=key("fix")), 422, "dta")
    with api.engine.store.read() as tx:
        assert tx.idempotency_key_txn("opal", "fix") is None
    fixed = api.post("opal", RECORDS, CASE, headers=key("fix"))
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers
    assert api.engine.count_records("Case") == 1


def test_a_malformed_key_is_a_422(api: Api) -> None:
    for bad in ["x" * 256, " padded", "tab\there"]:
        assert_problem(api.post("opal", RECORDS, CASE, headers=key(bad)), 422,
                       "header.Idempotency-Key")
    latin = api.client.post(RECORDS, json=CASE,
                            headers=api.auth("opal") | {"Idempotency-Key": "caf\xe9".encode("latin-1")})
    assert_problem(latin, 422, "header.Idempotency-Key")
    assert api.post("opal", RECORDS, CASE, headers=key("x" * 255)).status_code == 201
    assert api.engine.count_records("Case") == 1


def _claim(api: Api, k: str, body: dict[str, Any]) -> IdempotencyClaim:
    return IdempotencyClaim("opal", k, "POST", RECORDS, fingerprint("POST", RECORDS, body),
                            "record")


def test_an_answer_lost_after_commit_is_rebuilt_from_the_record(api: Api) -> None:
    """The server committed the record and its key, then died before keeping the answer
    (what a kill -9 mid-request does): the retry answers from the record, creating nothing."""
    view = api.engine.create_record("Case", CASE["data"], actor="opal",
                                    idempotency=_claim(api, "lost", CASE))
    retry = api.post("opal", RECORDS, CASE, headers=key("lost"))
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == view["id"] and retry.headers["Location"].endswith(view["id"])
    assert counts(api) == (1, 1)


class Repeat:
    """Ids that repeat one already taken: the record's insert fails after the key's."""

    def __init__(self, taken: str) -> None:
        self.taken = taken

    def new(self, prefix: str) -> str:
        return self.taken


def test_the_key_commits_with_the_record_or_not_at_all(api: Api) -> None:
    taken = api.post("opal", RECORDS, CASE).json()["id"]
    api.engine.records.ids = Repeat(taken)
    with pytest.raises(IntegrityError):
        api.engine.create_record("Case", CASE["data"], actor="opal",
                                 idempotency=_claim(api, "doomed", CASE))
    with api.engine.store.read() as tx:
        assert tx.idempotency_key_txn("opal", "doomed") is None
    assert api.engine.count_records("Case") == 1


def test_concurrent_retries_create_once(api: Api) -> None:
    answers: list[Any] = []
    go = threading.Barrier(4)

    def send() -> None:
        go.wait()
        answers.append(api.post("opal", RECORDS, CASE, headers=key("race")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" in a.headers for a in answers) == 3
    assert counts(api) == (1, 1)


@pytest.mark.parametrize(("path", "body", "field"), [
    (RECORDS, {**CASE, "colour": "red"}, "colour"),
    ("/api/runs", {"orchestration": "x", "inputs": {}}, "inputs"),
    ("/api/definitions/validate", {"files": {"a.yaml": "kind: x"}, "dry": True}, "dry"),
    ("/api/users", {"name": "zed", "roles": ["agent"], "admin": True}, "admin"),
])
def test_unknown_top_level_fields_are_a_422_naming_them(sqlite_api: Api, path: str,
                                                        body: dict[str, Any], field: str) -> None:
    problem = assert_problem(sqlite_api.post("root", path, body), 422, field)
    assert "Extra inputs are not permitted" in problem["detail"]


def test_an_unknown_field_in_an_update_is_a_422(sqlite_api: Api) -> None:
    rec = sqlite_api.post("opal", RECORDS, CASE).json()
    assert_problem(sqlite_api.patch("opal", f"/api/records/{rec['id']}",
                                    {"data": {"subject": "x"}, "verison": 1}), 422, "verison")
    assert sqlite_api.get("opal", f"/api/records/{rec['id']}").json()["version"] == 1


def test_the_header_is_documented(sqlite_api: Api) -> None:
    spec = sqlite_api.client.get("/openapi.json").json()
    for path in (RECORDS.replace("Case", "{object_type}"), "/api/runs"):
        op = spec["paths"][path]["post"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
                   for p in op["parameters"]), op["parameters"]
        assert "Idempotent-Replayed" in op["responses"]["201"]["headers"]
    body = spec["components"]["schemas"]["RecordData"]
    assert body["additionalProperties"] is False
