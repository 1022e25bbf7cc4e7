"""The plan view (issue 13 item 7): a plan run's page draws swimlanes server-side — one row
per lane, boxes by dependency depth with their status and PONR mark, arrows across lanes,
each box linking to its step. Its own server over examples/order_fulfillment."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import expect

from baton.cli.demo_carrier import DemoCarrier, pointed_at
from tests.browser.conftest import PASSWORDS, REPO, Server, _answers, login, shot
from tests.net import free_port
from tests.procs import eventually

LINES = ('OrderLine=[{"product": "LAPTOP-BUNDLE"}, {"product": "LAPTOP-PRO", "bundle": "#1",'
         ' "attributes": {"color": "grey"}}, {"product": "DOCK", "bundle": "#1"},'
         ' {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}},'
         ' {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "1G"}}]')


@pytest.fixture(scope="module")
def plan_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("plans-ui")
    project = base / "order_fulfillment"
    shutil.copytree(REPO / "examples" / "order_fulfillment", project,
                    ignore=shutil.ignore_patterns("*.db*", "__pycache__"))
    carrier = DemoCarrier().start()  # the ship callouts book with a real carrier on loopback
    for name, text in pointed_at(project / "definitions", carrier.url).items():
        (project / "definitions" / name).write_text(text)
    port = free_port()
    srv = Server(f"http://127.0.0.1:{port}", project, f"sqlite:///{base / 'baton.db'}",
                 base / "serve.log")
    srv.cli("deploy")
    srv.cli("users", "add", "olga", "--role", "operator", "--email", "olga@example.com",
            "--password-stdin", input=PASSWORDS["olga"] + "\n")
    srv.cli("users", "add", "ivan", "--role", "agent", "--queue", "installers")
    with srv.log.open("w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", "from baton.cli.main import main; main()", "--project",
             str(project), "--db", srv.db, "serve", "--port", str(port)],
            cwd=project, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "CARRIER_TOKEN": carrier.token})
        try:
            eventually(lambda: _answers(srv.url), timeout=60, what="baton serve")
            yield srv
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            carrier.stop()


def test_plan_swimlanes(plan_server: Server, browser: Any) -> None:
    out = plan_server.cli_json("records", "create", "Order", "--data",
                               '{"number": "O-42", "status": "Submitted"}', "--children", LINES)
    order = out["id"]

    def planned() -> dict[str, Any] | None:
        plan = plan_server.cli_json("plans", "show", order, "--json")
        done = {s["name"]: s["status"] for s in plan["steps"]}
        return plan if done.get("reserve[L2.1]") == "completed" else None

    plan = eventually(planned, timeout=60, what="the plan's first steps to run")
    context = browser.new_context(base_url=plan_server.url, viewport={"width": 1400, "height": 900})
    page = context.new_page()
    try:
        login(page, "olga", next_path=f"/runs/{plan['run_id']}")
        svg = page.locator("#run-diagram svg.plan-diagram")
        expect(svg).to_be_visible()
        expect(svg.locator("g.pl-lane")).to_have_count(6)  # five lanes and the unlaned step
        expect(svg.locator("g[data-step='reserve[L2.1]']")).to_have_attribute(
            "data-status", "completed")
        expect(svg.locator("g.pl-ponr")).to_have_count(1)
        expect(svg.locator("g[data-step='billing'].st-not-started")).to_have_count(1)
        # a dependency across lanes: inventory's reserve waits for billing's credit check
        expect(svg.locator("path[data-from='credit_check'][data-to='reserve[L2.1]']")).to_have_count(1)
        shot(page, "plan-swimlanes")
        svg.locator("g[data-step='install[PARIS]']").click()
        expect(page).to_have_url(f"{plan_server.url}/runs/{plan['run_id']}#step-install[PARIS]")
        # The page redraws the plan while it runs: a technician's installation, done
        # elsewhere, turns its box green on this page without a reload.
        box = svg.locator("g[data-step='install[PARIS]']")
        expect(box).to_have_attribute("data-status", "waiting_for_person")
        items = plan_server.cli_json("work", "list", "--queue", "installers")
        item = next(w for w in items if w["step"] == "install[PARIS]")
        plan_server.cli("work", "claim", item["id"], "--user", "ivan")
        plan_server.cli("work", "complete", item["id"], "--user", "ivan", "--data", "{}")
        expect(page.locator("#run-diagram svg g[data-step='install[PARIS]']")).to_have_attribute(
            "data-status", "completed", timeout=30_000)
        assert page.url.endswith("#step-install[PARIS]")  # the same page: no navigation
    finally:
        context.close()
