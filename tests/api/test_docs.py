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
