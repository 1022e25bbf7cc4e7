"""Markup where people's and definitions' text goes: nothing anyone writes becomes HTML.

A project whose every free text holds markup (object, field, step and form labels and
descriptions, instructions, choices, an intake form's texts; a record's fields, a work
item's title and summary made from them, an e-mail's subject, sender and attachment file
name, a flow's error in fallout, what a person typed into a work item's form, an AI step's
reading of it), served by a real ``baton serve``. Every page an admin and an agent can
reach from the navigation is read, and none may hold the markup unescaped (the server's
answer is the oracle: the CSP would stop a script, not an injected form or link). Then
Chromium opens the pages where it shows (the process diagram, the plan of the work item,
the record with its messages, fallout, the public form) and finds no element the markup
would have made, and no dialog opens.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pytest

from tests.browser.conftest import EXAMPLE, Server, _answers, shot
from tests.net import free_port
from tests.procs import eventually

MARK = "<b id=pwn>P</b><img src=x id=pwnimg onerror=alert(1)>\"'><svg id=pwnsvg onload=alert(2)>"
UNESCAPED = re.compile(r"<b id=pwn|<img src=x|<svg id=pwnsvg")
Q = json.dumps(MARK)  # (a YAML double-quoted scalar)
PASSWORD = "xss-probe-secret-1"

DEFINITIONS = {
    "xcase.yaml": f"""
kind: object
name: XCase
label: {Q}
title_field: subject
summary_field: note
fields:
  subject: {{type: string, required: true, label: {Q}, description: {Q}}}
  note: {{type: string, label: {Q}}}
  body: {{type: text}}
  sender: {{type: string}}
  kind: {{type: choice, choices: [{Q}, plain], label: {Q}, description: {Q}}}
  blob: {{type: json}}
""",
    "xorch.yaml": f"""
kind: orchestration
name: xorch
label: {Q}
description: {Q}
trigger: {{type: record, object: XCase, on: [create]}}
stages:
  - name: first
    steps:
      - name: read
        type: ai
        task: classify
        text: '=record.subject'
        categories:
          - {{name: markup, description: {Q}, examples: [{Q}]}}
          - {{name: plain, description: plain words, examples: ["plain words here"]}}
      - name: work
        type: interactive
        label: {Q}
        description: {Q}
        after: [read]
        assign: {{queue: xss_probe}}
        title: '="T " + record.subject'
        summary: '="S " + record.subject'
        instructions: {Q}
        input: {{echo: '=record.subject', lit: {Q}}}
        form:
          - {{name: pick, type: choice, choices: [{Q}, other], label: {Q}, description: {Q}}}
          - {{name: txt, type: text, label: {Q}, description: {Q}, default: {Q}}}
      - {{name: refuse, type: background, flow: xss.refuse, label: {Q}}}
    next:
      - {{when: '=record.subject == "x"', goto: second}}
      - {{goto: second}}
  - name: second
    steps:
      - {{name: wait, type: pause, signal: go}}
""",
    "xbox.yaml": """
kind: mailbox
name: xbox
object: XCase
addresses: [xss@example.com]
fields: {subject: subject, body: body, sender: sender}
attachments: {allow: ["*/*"]}
""",
    "xform.yaml": f"""
kind: intake_form
name: xform
object: XCase
label: {Q}
description: {Q}
fields:
  - {{field: subject, label: {Q}, help: {Q}, required: true}}
  - {{field: kind, label: {Q}, help: {Q}}}
  - note
thanks: {Q}
""",
}
FLOWS = '''
from baton import flow
from baton.errors import StepFailure


@flow("xss.refuse")
def refuse(ctx):
    raise StepFailure("the ERP refused " + str(ctx.record.get("subject")), retryable=False)
'''


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``baton serve`` over a project of markup, with an admin (``xadmin``) and an agent of
    the probe's queue (``xagent``)."""
    base = tmp_path_factory.mktemp("xss")
    project = base / "proj"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    for name, text in DEFINITIONS.items():
        (project / "definitions" / name).write_text(text)
    (project / "xss_flows.py").write_text(FLOWS)
    toml = project / "baton.toml"
    toml.write_text(toml.read_text().replace('flows = ["flows"]', 'flows = ["flows", "xss_flows"]'))
    port = free_port()
    srv = Server(f"http://127.0.0.1:{port}", project, f"sqlite:///{base / 'baton.db'}",
                 base / "serve.log")
    srv.cli("deploy")
    srv.cli("users", "add", "xadmin", "--role", "admin", "--password-stdin", input=PASSWORD)
    srv.cli("users", "add", "xagent", "--role", "agent", "--queue", "xss_probe",
            "--password-stdin", input=PASSWORD)
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from baton.cli.main import main; main()", "--project",
             str(project), "--db", srv.db, "serve", "--port", str(port)],
            cwd=project, stdout=log, stderr=subprocess.STDOUT)
        try:
            eventually(lambda: proc.poll() is None and _answers(srv.url), timeout=60,
                       what=f"baton serve to answer at {srv.url}")
            _seed(srv)
            yield srv
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _signed_in(url: str, name: str) -> tuple[httpx.Client, str]:
    """A client with ``name``'s session, and its CSRF token."""
    client = httpx.Client(base_url=url, timeout=60)
    form = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert token
    r = client.post("/login", data={"username": name, "password": PASSWORD,
                                    "csrf_token": token[1]})
    assert r.status_code == 303, r.text[:300]
    csrf = re.search(r'"X-CSRF-Token": "([^"]+)"', client.get("/settings").text)
    assert csrf
    return client, csrf[1]


def _seed(srv: Server) -> None:
    """The markup everywhere people and systems write: a record, an e-mail with an
    attachment, the public form, a work item's form sent back with errors and then
    completed, a reassignment refused, an operator's reason."""
    admin, csrf = _signed_in(srv.url, "xadmin")
    agent, agent_csrf = _signed_in(srv.url, "xagent")
    api = {"X-CSRF-Token": csrf}
    with closing(admin), closing(agent):
        r = admin.post("/api/objects/XCase/records", headers=api, json={"data": {
            "subject": MARK, "note": MARK, "kind": MARK, "blob": {MARK: MARK}}})
        assert r.status_code == 201, r.text
        attachment = base64.b64encode(b"<script>alert(3)</script>").decode()
        r = admin.post("/api/intake/xbox", headers=api, json={
            "subject": MARK, "body": MARK + "\n\n-- \n" + MARK, "sender": "a@example.com",
            "sender_name": MARK, "attachments": [{"filename": MARK + ".html",
                                                  "content_type": "text/html",
                                                  "content_base64": attachment}]})
        assert r.status_code == 200, r.text
        public = httpx.Client(base_url=srv.url, timeout=60)
        with public:
            token = re.search(r'name="csrf_token" value="([^"]+)"', public.get("/forms/xform").text)
            assert token
            r = public.post("/forms/xform", data={"csrf_token": token[1], "subject": MARK,
                                                  "kind": "plain", "note": MARK})
            assert r.status_code == 303, r.text  # to the thanks page, which is probed too
            r = public.get(r.headers["location"])
            assert r.status_code == 200 and not UNESCAPED.search(r.text), r.text

        def items() -> list[dict[str, Any]] | None:
            found = admin.get("/api/work", params={"orchestration": "xorch"}).json()["items"]
            return found if len(found) == 3 else None
        work = eventually(items, timeout=90, what="the probe's three work items")
        eventually(lambda: len(admin.get("/api/fallout").json()["items"]) == 3, timeout=90,
                   what="the probe's three steps in fallout")
        first, second = work[0]["id"], work[1]["id"]
        r = agent.post(f"/work/{first}", data={"csrf_token": agent_csrf, "pick": "nope",
                                               "txt": MARK})
        assert r.status_code == 422 and not UNESCAPED.search(r.text), r.text
        r = agent.post(f"/work/{second}", data={"csrf_token": agent_csrf, "pick": MARK,
                                                "txt": MARK})
        assert r.status_code == 303, r.text  # to what happened next, which is probed too
        r = agent.get(r.headers["location"])
        assert r.status_code == 200 and not UNESCAPED.search(r.text), r.text
        r = admin.post(f"/work/{first}/reassign", data={"csrf_token": csrf, "to": MARK})
        assert r.status_code == 422 and not UNESCAPED.search(r.text), r.text
        run = work[2]["run_id"]
        r = admin.post(f"/runs/{run}/cancel", data={"csrf_token": csrf, "reason": MARK})
        assert r.status_code == 303, r.text


def _crawl(client: httpx.Client, start: list[str], limit: int = 150) -> dict[str, str]:
    """The pages reachable from ``start`` by the links and refreshes they hold (one page
    of each list), by URL -> the markup found unescaped there ("" when none)."""
    seen: dict[str, str] = {}
    todo = list(start)
    while todo and len(seen) < limit:
        url = todo.pop(0)
        if url in seen:
            continue
        r = client.get(url)
        hit = UNESCAPED.search(r.text)
        seen[url] = r.text[max(0, hit.start() - 120):hit.end() + 40] if hit else ""
        if "text/html" not in r.headers.get("content-type", ""):
            continue
        for link in re.findall(r'(?:href|hx-get|action)="(/[^"#]*)"', r.text):
            link = link.replace("&amp;", "&")
            if link.startswith(("//", "/static/", "/api/", "/logout")) or "after=" in link:
                continue
            if link not in seen:
                todo.append(link)
    return seen


def test_no_page_shows_anyones_text_as_markup(probe: Server) -> None:
    admin, _ = _signed_in(probe.url, "xadmin")
    agent, _ = _signed_in(probe.url, "xagent")
    with closing(admin), closing(agent):
        pages = _crawl(admin, ["/work", "/runs", "/records", "/definitions", "/fallout",
                               "/team", "/settings"])
        pages |= {f"(agent) {u}": hit for u, hit in _crawl(agent, ["/work"]).items()}
        anonymous = httpx.Client(base_url=probe.url, timeout=60)
        with anonymous:
            for url in ("/forms/xform", "/login?next=" + quote("/\"><b id=pwn>x")):
                r = anonymous.get(url)
                hit = UNESCAPED.search(r.text)
                pages[url] = r.text[max(0, hit.start() - 120):hit.end()] if hit else ""
        # text typed into the URL is said back in error pages and filters
        for url in ("/runs?orchestration=" + quote(MARK), "/work?q=" + quote(MARK),
                    "/definitions/" + quote(MARK, safe="") + "/x",
                    "/records/" + quote(MARK.replace("/", ""), safe="")):
            r = admin.get(url)
            hit = UNESCAPED.search(r.text)
            pages[url] = r.text[max(0, hit.start() - 120):hit.end()] if hit else ""
    visited = set(pages)
    for must in ("/definitions/orchestration/xorch", "/definitions/object/XCase", "/fallout"):
        assert must in visited, sorted(visited)
    assert any(u.startswith("/records/rec_") for u in visited), sorted(visited)
    assert any(u.startswith("/runs/run_") for u in visited), sorted(visited)
    assert any(u.startswith("(agent) /work/wi_") for u in visited), sorted(visited)
    assert len(pages) >= 40, sorted(visited)
    found = {u: hit for u, hit in pages.items() if hit}
    assert not found, found


def test_the_browser_builds_no_element_from_anyones_text(probe: Server, browser: Any) -> None:
    admin, _ = _signed_in(probe.url, "xadmin")
    with closing(admin):
        work = admin.get("/api/work", params={"orchestration": "xorch"}).json()["items"]
        record = admin.get("/api/records", params={"object_type": "XCase"}).json()["items"][0]
        runs = admin.get("/api/runs", params={"orchestration": "xorch"}).json()["items"]
    context = browser.new_context(base_url=probe.url)
    dialogs: list[str] = []
    try:
        page = context.new_page()
        def dialog(d: Any) -> None:
            dialogs.append(d.message)
            d.dismiss()

        page.on("dialog", dialog)
        page.goto("/forms/xform")
        _no_markup(page, "xss-public-form")
        page.goto("/login")
        page.get_by_label("User name").fill("xadmin")
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Log in").click()
        page.wait_for_load_state()
        for name, url in (("work-item", f"/work/{work[0]['id']}"),
                          ("record", f"/records/{record['id']}"),
                          ("run", f"/runs/{runs[0]['id']}"),
                          ("definition", "/definitions/orchestration/xorch"),
                          ("work-list", "/work?tab=all"), ("fallout", "/fallout"),
                          ("runs", "/runs")):
            page.goto(url)
            _no_markup(page, f"xss-{name}")
    finally:
        context.close()
    assert dialogs == []


def _no_markup(page: Any, name: str) -> None:
    page.wait_for_load_state("networkidle")
    made = page.evaluate("""() => ['#pwn', '#pwnimg', '#pwnsvg', 'img[src="x"]']
        .filter(sel => document.querySelector(sel) !== null)""")
    assert made == [], (name, made)
    assert "<b id=pwn>P</b>" in page.inner_text("body"), name  # shown, as the text it is
    shot(page, name)
