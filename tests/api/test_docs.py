"""/docs is served from Baton itself, with a Content-Security-Policy (hardening #9)."""

from __future__ import annotations

import re

from tests.api.conftest import Api


def test_docs_page_loads_nothing_from_elsewhere_and_has_a_csp(api: Api) -> None:
    r = api.client.get("/docs")
    assert r.status_code == 200
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text), r.text
    assert "<script>" not in r.text  # no inline script: the CSP can forbid them
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self';" in csp
    for asset in re.findall(r"""(?:src|href)="(/static/[^"]+)\"""", r.text):
        assert api.client.get(asset).status_code == 200, asset


def test_a_body_over_the_limit_is_refused_before_it_is_read(api: Api) -> None:
    """Hardening #3: the default limit is 1 MiB, answered 413 with a problem document."""
    big = {"data": {"subject": "big", "resolution": {"blob": "x" * (1024 * 1024)}}}
    r = api.post("opal", "/api/objects/Case/records", big)
    assert r.status_code == 413, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert "at most 1,048,576 bytes" in r.json()["detail"]

    def chunks():  # no Content-Length: counted as it arrives
        yield b'{"data": {"subject": "'
        for _ in range(80):
            yield b"y" * 16384
        yield b'"}}'

    r = api.client.post("/api/objects/Case/records", content=chunks(),
                        headers=api.auth("opal") | {"Content-Type": "application/json"})
    assert r.status_code == 413, r.text
    assert api.engine.count_records("Case") == 0
