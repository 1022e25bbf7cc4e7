"""/docs works with no internet and a strict Content-Security-Policy (hardening #9).

It loaded Swagger UI from a CDN, so without internet it was a blank page, and it had no
CSP. Every request the page makes to another host is aborted here and counted.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from playwright.sync_api import expect

from tests.browser.conftest import Server, shot


def test_docs_render_from_vendored_assets_under_a_strict_csp(server: Server, new_page: Any) -> None:
    page = new_page()
    elsewhere: list[str] = []
    problems: list[str] = []
    own = urlparse(server.url).netloc

    def route(r: Any) -> None:
        if urlparse(r.request.url).netloc != own:
            elsewhere.append(r.request.url)
            r.abort()
        else:
            r.continue_()

    page.route("**/*", route)
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    response = page.goto("/docs")
    assert response is not None and response.ok
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Baton")
    expect(page.locator(".opblock-summary-path").filter(has_text="/api/runs").first).to_be_visible()
    shot(page, "docs")
    # the tags with their descriptions, the readable operation ids, a request example
    runs_tag = page.locator("#operations-tag-Runs")
    expect(runs_tag).to_contain_text("A run is one execution of an orchestration")
    expect(page.locator(".opblock-summary-operation-id").filter(has_text="listRuns")).to_be_visible()
    page.locator("#operations-Runs-startRun .opblock-summary").click()
    expect(page.locator("#operations-Runs-startRun")).to_contain_text('"orchestration": "hello"')
    shot(page, "docs-start-run")
    assert elsewhere == []
    assert not [p for p in problems if "Content Security Policy" in p or "Refused" in p], problems
