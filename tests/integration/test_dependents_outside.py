"""A deploy, an activation, a deactivation or a bundle import that deactivates or changes
a connection or an orchestration is judged against the ACTIVE definitions outside it that
use it: an orchestration (or a fulfillment) whose callout, mcp or ai step calls the
connection, or whose child-run step starts the orchestration (with the input it passes, on
the record it gives). A change that would make one of them fail at run time is refused,
naming the dependent definition, its file, line and path, and what breaks; deploying,
activating or deactivating the dependent in the same set (or first) is the way out.

These tests failed before the check: each refused change was accepted, and the dependent
failed later, at run time.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from baton import Engine
from baton.errors import DefinitionError, Issue
from baton.runtime.bundle import apply_import, plan_import

BANK = "kind: connection\nname: bank\ntype: http\nbase_url: http://127.0.0.1:9\n"
BANK_MCP = ("kind: connection\nname: bank\ntype: mcp\ntransport: stdio\ncommand: python\n"
            "args: [-c, pass]\n")
KID = """kind: orchestration
name: kid
trigger: {type: autolaunched, input: {n: {type: int, required: true}}}
stages:
  - name: s
    steps:
      - {name: hold, type: pause, signal: go}
"""
KID_M = KID.replace("{n: {type: int, required: true}}",
                    "{n: {type: int, required: true}, m: {type: int, required: true}}")
ORDER = """kind: orchestration
name: order
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: charge, type: callout, connection: bank, method: POST, path: /x}
"""
ONBOARD = """kind: orchestration
name: onboard
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: check, type: orchestration, orchestration: kid, input: {n: 1}}
"""


def _active(eng: Engine) -> dict[tuple[str, str], int]:
    return {(r.kind, r.name): r.version for r in eng.definitions.list_versions() if r.active}


def _refused(act: Any) -> list[Issue]:
    """The issues refusing ``act()``."""
    with pytest.raises(DefinitionError) as refused:
        act()
    return list(refused.value.issues)


def _deploy(eng: Engine, **texts: str) -> None:
    eng.deploy(texts={f"{name}.yaml": text for name, text in texts.items()})


def test_deactivating_a_connection_an_active_orchestration_calls_is_refused(
        db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, bank=BANK, order=ORDER)
        before = _active(eng)
        (issue,) = _refused(lambda: eng.definitions.set_active("connection", "bank", None, "t"))
        assert (issue.file, issue.line, issue.path) == (
            "order.yaml", 7, "stages[0].steps[0].connection"), issue
        assert issue.message == (
            "orchestration 'order' v1 step 'charge' calls connection 'bank', which this would "
            "deactivate (unknown connection 'bank'): deactivate order first, or deploy a "
            "version of it that does not need it"), issue.message
        assert _active(eng) == before
        # The way out: the dependent first, then what it used.
        eng.definitions.set_active("orchestration", "order", None, "t")
        eng.definitions.set_active("connection", "bank", None, "t")
        assert ("connection", "bank") not in _active(eng)
        # Bringing the old order back now names a connection no longer active: refused,
        # as a deploy of its text would be.
        (issue,) = _refused(lambda: eng.definitions.set_active("orchestration", "order", 1, "t"))
        assert (issue.file, issue.path) == ("order.yaml", "stages[0].steps[0].connection")
        assert issue.message.startswith("unknown connection 'bank'"), issue.message
        assert "orchestration 'order' v1 does not fit the connections and orchestrations " \
               "active now" in issue.message, issue.message
        eng.definitions.set_active("connection", "bank", 1, "t")
        eng.definitions.set_active("orchestration", "order", 1, "t")
        assert _active(eng) == before


def test_a_connection_changed_to_another_type_is_refused_unless_its_callers_change_too(
        db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, bank=BANK, order=ORDER)
        (issue,) = _refused(lambda: _deploy(eng, bank=BANK_MCP))
        assert (issue.file, issue.path) == ("order.yaml", "stages[0].steps[0].connection")
        assert "step 'charge' calls connection 'bank', which this would make an mcp " \
               "connection" in issue.message, issue.message
        assert _active(eng)[("connection", "bank")] == 1
        # Changed together with its caller (which calls a tool over mcp now): deployed.
        mcp_order = ORDER.replace("type: callout, connection: bank, method: POST, path: /x",
                                  "type: mcp, connection: bank, tool: pay")
        _deploy(eng, bank=BANK_MCP, order=mcp_order)
        assert _active(eng)[("connection", "bank")] == 2
        # Activating the http version back would break the new order: refused.
        (issue,) = _refused(lambda: eng.definitions.set_active("connection", "bank", 1, "t"))
        assert "step 'charge' calls connection 'bank', which this would make an http " \
               "connection" in issue.message, issue.message
        assert _active(eng)[("connection", "bank")] == 2


def test_a_child_orchestration_taking_a_new_required_input_is_refused(db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, kid=KID, onboard=ONBOARD)
        (issue,) = _refused(lambda: _deploy(eng, kid=KID_M))
        assert (issue.file, issue.line, issue.path) == (
            "onboard.yaml", 7, "stages[0].steps[0].input"), issue
        assert issue.message == (
            "orchestration 'onboard' v1 step 'check' starts orchestration 'kid', which this "
            "would change (input 'm' of orchestration 'kid' is required): deploy a version "
            "of onboard that fits, in the same set"), issue.message
        assert _active(eng)[("orchestration", "kid")] == 1
        # With the parent passing m: both deployed.
        _deploy(eng, kid=KID_M, onboard=ONBOARD.replace("{n: 1}", "{n: 1, m: 2}"))
        assert _active(eng) == {("orchestration", "kid"): 2, ("orchestration", "onboard"): 2}
        # kid v1 back: onboard v2 passes m, which it does not take.
        (issue,) = _refused(lambda: eng.definitions.set_active("orchestration", "kid", 1, "t"))
        assert issue.path == "stages[0].steps[0].input.m", issue
        assert "orchestration 'kid' has no input 'm'" in issue.message, issue.message
        # Changing its trigger so that no child run can start it: refused too.
        scheduled = KID_M.replace(KID_M.splitlines()[2],
                                  "trigger: {type: schedule, cron: '0 2 * * *'}")
        issues = _refused(lambda: _deploy(eng, kid=scheduled))
        assert any("starts from its schedule trigger" in i.message and
                   i.message.startswith("orchestration 'onboard' v2 step 'check' starts "
                                        "orchestration 'kid'") for i in issues), issues


def test_deactivating_a_child_orchestration_an_active_parent_starts_is_refused(
        db_url: str) -> None:
    with Engine(db_url) as eng:
        _deploy(eng, kid=KID, onboard=ONBOARD)
        (issue,) = _refused(lambda: eng.definitions.set_active("orchestration", "kid", None,
                                                               "t"))
        assert (issue.file, issue.path) == ("onboard.yaml", "stages[0].steps[0].orchestration")
        assert issue.message.startswith(
            "orchestration 'onboard' v1 step 'check' starts orchestration 'kid', which this "
            "would deactivate (unknown orchestration 'kid')"), issue.message
        assert ("orchestration", "kid") in _active(eng)
        # An orchestration that starts itself (a recursion) may be deactivated: nothing
        # active outside it uses it.
        selfish = ONBOARD.replace("orchestration: kid, input: {n: 1}",
                                  "orchestration: onboard, wait: false")
        _deploy(eng, onboard=selfish)
        eng.definitions.set_active("orchestration", "onboard", None, "t")
        eng.definitions.set_active("orchestration", "kid", None, "t")
        assert _active(eng) == {}


FULFILLMENT = """kind: object
name: Order
fields:
  status: {type: string}
---
kind: object
name: OrderLine
fields:
  order: {type: ref, object: Order}
---
kind: fulfillment
name: ful
trigger: {type: record, object: Order, on: [create]}
lines: {object: OrderLine}
scenarios:
  - name: every
    when: '=true'
    steps:
      - {name: kyc, type: orchestration, scope: plan, orchestration: kid, input: {n: 1}}
"""


def test_a_fulfillment_step_template_counts_as_a_dependent(tmp_path: Path) -> None:
    with Engine(f"sqlite:///{tmp_path / 'baton.db'}") as eng:
        _deploy(eng, kid=KID, ful=FULFILLMENT)
        (issue,) = _refused(lambda: _deploy(eng, kid=KID_M))
        assert (issue.file, issue.path) == ("ful.yaml", "scenarios[0].steps[0].input")
        assert issue.message.startswith("fulfillment 'ful' v1 step 'kyc' starts orchestration "
                                        "'kid', which this would change"), issue.message
        (issue,) = _refused(lambda: eng.definitions.set_active("orchestration", "kid", None,
                                                               "t"))
        assert issue.path == "scenarios[0].steps[0].orchestration", issue
        # A change no child-run step can mind (an optional input more) is not judged.
        _deploy(eng, kid=KID.replace("{n: {type: int, required: true}}",
                                     "{n: {type: int, required: true}, o: {type: int}}"))
        assert _active(eng)[("orchestration", "kid")] == 2


def _entry(kind: str, name: str, source: str, *, active: bool = True) -> dict[str, Any]:
    return {"kind": kind, "name": name, "version": 1, "active": active,
            "file": f"{name}.yaml", "source": source}


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"manifest.json": {"format": 1}, "definitions.json": list(entries)}


def test_a_bundle_deactivating_or_changing_what_an_active_definition_uses_is_refused(
        db_url: str) -> None:
    with Engine(db_url) as eng, Engine(db_url) as other:
        _deploy(eng, bank=BANK, order=ORDER, kid=KID, onboard=ONBOARD)
        before = _active(eng)
        off = _bundle(_entry("connection", "bank", BANK, active=False))
        with pytest.raises(DefinitionError) as refused:
            plan_import(eng, off)
        (issue,) = refused.value.issues
        assert (issue.file, issue.path) == ("order.yaml", "stages[0].steps[0].connection")
        assert issue.message.startswith("orchestration 'order' v1 step 'charge' calls "
                                        "connection 'bank', which this would deactivate"), issue
        assert issue.message.endswith("import a version of it that fits, or deactivate it, "
                                      "in the same bundle"), issue.message
        with pytest.raises(DefinitionError) as refused:
            plan_import(eng, _bundle(_entry("orchestration", "kid", KID_M)))
        (issue,) = refused.value.issues
        assert (issue.file, issue.path) == ("onboard.yaml", "stages[0].steps[0].input")
        assert _active(eng) == before
        # Deactivated together with its caller: imported.
        both = _bundle(_entry("connection", "bank", BANK, active=False),
                       _entry("orchestration", "order", ORDER, active=False))
        plan = plan_import(eng, both)
        # Another process activates a caller before the apply: judged again, refused.
        other.deploy(texts={"order2.yaml": ORDER.replace("name: order", "name: order2")})
        with pytest.raises(DefinitionError) as refused:
            apply_import(eng, plan, "t")
        (issue,) = refused.value.issues
        assert issue.file == "order2.yaml" and "orchestration 'order2' v1" in issue.message
        other.definitions.set_active("orchestration", "order2", None, "t")
        apply_import(eng, plan_import(eng, both), "t")
        after = _active(eng)
        assert ("connection", "bank") not in after and ("orchestration", "order") not in after


def test_the_cli_and_the_api_say_which_definition_a_deactivation_breaks(
        tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from baton.web.app import create_app

    project = tmp_path / "p"
    (project / "definitions").mkdir(parents=True)
    (project / "baton.toml").write_text('database = "sqlite:///baton.db"\nflows = []\n')
    for name, text in {"bank": BANK, "order": ORDER, "kid": KID, "onboard": ONBOARD}.items():
        (project / "definitions" / f"{name}.yaml").write_text(text)

    def baton(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "baton.cli.main", *args], cwd=project,
                              capture_output=True, text=True, timeout=180, check=False)

    done = baton("deploy")
    assert done.returncode == 0, done.stderr
    p = baton("definitions", "deactivate", "bank", "--kind", "connection")
    assert p.returncode == 1 and "Traceback" not in p.stderr + p.stdout, p.stderr
    assert "nothing was changed" in p.stderr, p.stderr
    assert "definitions/order.yaml:7 stages[0].steps[0].connection: orchestration 'order' " \
           "v1 step 'charge' calls connection 'bank', which this would deactivate" in p.stdout
    (project / "definitions" / "kid.yaml").write_text(KID_M)
    p = baton("deploy", "definitions/kid.yaml")
    assert p.returncode == 1 and "definitions/onboard.yaml:7" in p.stdout, p.stdout + p.stderr
    assert "input 'm' of orchestration 'kid' is required" in p.stdout, p.stdout

    with Engine(f"sqlite:///{project / 'baton.db'}") as eng:
        eng.directory.add_user("root", roles=["admin"])
        token = eng.directory.create_token("root", "t")[1]
        with TestClient(create_app(eng)) as client:
            r = client.post("/api/definitions/orchestration/kid/deactivate",
                            headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 422, r.text
            (issue,) = r.json()["issues"]
            assert issue["file"].endswith("onboard.yaml"), issue
            assert (issue["line"], issue["path"]) == (7, "stages[0].steps[0].orchestration")
            assert "which this would deactivate" in issue["message"], issue
            assert _active(eng)[("orchestration", "kid")] == 1
            # Validating the change says it too, as the deploy would.
            r = client.post("/api/definitions/validate", json={"files": {"kid.yaml": KID_M}},
                            headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200 and not r.json()["valid"], r.text
            (issue,) = r.json()["issues"]
            assert issue["path"] == "stages[0].steps[0].input", issue
            assert "input 'm' of orchestration 'kid' is required" in issue["message"], issue
