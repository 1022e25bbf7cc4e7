"""Bodies at the edges of what the API parses: JSON nested past Python's recursion limit
is a 422 naming ``body`` (FastAPI reported it as a bare 400 "error parsing the body"), and
a body with tens of thousands of bad fields is answered with the first hundred of them
and how many more (not a response of megabytes)."""

from __future__ import annotations

import json

from tests.api.conftest import Api


def _post(api: Api, body: str) -> object:
    return api.client.post("/api/objects/Case/records", content=body,
                           headers={**api.auth("opal"), "Content-Type": "application/json"})


def test_json_nested_too_deeply_is_a_located_422(api: Api) -> None:
    r = _post(api, '{"data": ' + "[" * 50_000 + "]" * 50_000 + "}")
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    problem = r.json()  # type: ignore[attr-defined]
    assert problem["errors"][0]["field"] == "body"
    assert "nested too deeply" in problem["errors"][0]["message"], problem
    assert api.get("opal", "/api/records").json()["items"] == [], "nothing was created"


def test_tens_of_thousands_of_bad_fields_are_listed_a_hundred_and_counted(api: Api) -> None:
    r = _post(api, json.dumps({"data": {"subject": "s", **{f"k{i}": 1 for i in range(60_000)}}}))
    assert r.status_code == 422, r.text  # type: ignore[attr-defined]
    assert len(r.content) < 50_000, len(r.content)  # type: ignore[attr-defined]
    problem = r.json()  # type: ignore[attr-defined]
    assert len(problem["errors"]) == 101, len(problem["errors"])
    assert problem["errors"][-1] == {"field": "(more)",
                                     "message": "59,900 more problems not listed"}, problem
    assert "60,000 fields have problems" in problem["detail"], problem["detail"]
    assert api.get("opal", "/api/records").json()["items"] == [], "nothing was created"


def test_an_integer_past_64_bits_in_signal_data_is_json_the_store_keeps(api: Api) -> None:
    """The store's codec keeps what orjson refuses (an integer past 64 bits) through json:
    signal data holding one is not refused as 'not JSON' (schemathesis found the 422)."""
    r = api.client.post("/api/runs/run_nope/signal",
                        content='{"name": "docs_received", "data": {"n": 1180591620717411303424}}',
                        headers={**api.auth("opal"), "Content-Type": "application/json"})
    assert r.status_code == 404, r.text
