"""``baton users update --skill/--capacity/--availability/--calendar``, ``baton users team``
and the routing decision in ``baton records timeline``, as subprocesses.

Over 10 s: twenty-seven ``baton`` processes in a row (each starts Python and opens the project),
~60 s on an idle 2-core machine, 300 s at a load average of 16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.e2e.test_cli import EXAMPLES, baton, ok, ok_json, one_line_error

ROUTED = """\
kind: routing
name: by_number
from: {queue: tier1}
required_skills: [billing]
---
kind: object
name: Ticket
fields:
  title: {type: string, required: true}
---
kind: orchestration
name: ticket_routed
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: s
    steps: [{name: answer, type: interactive, assign: {routing: by_number}}]
"""
LONG_NAME = "ticket_routed_to_whoever_takes_the_offer_first_in_the_tier_one_queue"
TITLE = "[VIP] the March invoice was charged twice and the customer wants a call back today"


def test_routing_from_the_cli(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "case_triage", proj)
    (proj / "definitions" / "routed.yaml").write_text(ROUTED)
    ok(baton("deploy", cwd=proj))
    ok(baton("users", "add", "ann", "--role", "agent", "--queue", "tier1", cwd=proj))
    ok(baton("users", "add", "bo", "--role", "agent", "--queue", "tier1", cwd=proj))
    out = ok(baton("users", "update", "ann", "--skill", "billing=4", "--skill", "lang:pt",
                   "--capacity", "3", "--capacity", "tier1=2", "--availability", "offline",
                   cwd=proj)).stdout
    assert "routing profile of ann: offline; load 0/3 (tier1=2); skills billing=4, lang:pt" in out
    one_line_error(baton("users", "update", "ann", "--skill", "x=high", cwd=proj), "skill x=high")
    one_line_error(baton("users", "update", "ann", "--calendar", "nope", cwd=proj), "calendar")

    rec = ok_json(baton("records", "create", "Ticket", "--data", '{"title": "t1"}', "--json",
                        cwd=proj))
    ok(baton("worker", "--until-idle", cwd=proj))
    timeline = ok(baton("records", "timeline", rec["id"], cwd=proj, columns="400")).stdout
    assert "waiting_for_routing" in timeline and "ann: offline" in timeline
    assert "bo: skill missing: billing" in timeline

    ok(baton("users", "update", "ann", "--availability", "available", cwd=proj))
    events = ok_json(baton("records", "timeline", rec["id"], "--json", cwd=proj))
    (routed,) = [e for e in events if e["type"] == "routed"]
    assert routed["data"]["winner"] == "ann" and routed["data"]["rule"] == "by_number"
    team = ok_json(baton("users", "team", "--json", cwd=proj))
    ann = next(p for p in team["people"] if p["name"] == "ann")
    assert ann["load"] == 1 and ann["queue_load"] == {"tier1": 1}
    assert [q["queue"] for q in team["queues"]] == ["queue:tier1"]
    assert team["queues"][0]["routed_last_hour"] == 1


def test_offers_from_the_cli(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "case_triage", proj)
    (proj / "definitions" / "routed.yaml").write_text(
        ROUTED.replace("required_skills: [billing]", "offer: {timeout: 2m}")
        .replace("ticket_routed", LONG_NAME))
    ok(baton("deploy", cwd=proj))
    ok(baton("users", "add", "ann", "--role", "agent", "--queue", "tier1", cwd=proj))
    ok(baton("users", "add", "bo", "--role", "agent", "--queue", "tier1", cwd=proj))
    rec = ok_json(baton("records", "create", "Ticket", "--data", json.dumps({"title": TITLE}),
                        "--json", cwd=proj))
    ok(baton("worker", "--until-idle", cwd=proj))
    (item,) = ok_json(baton("work", "list", "--json", cwd=proj))
    assert item["assigned_to"] == "user:ann" and item["routing_status"] == "offered"
    title, status = f"answer: {TITLE}", item["status"]
    wide = ok(baton("work", "show", item["id"], cwd=proj)).stdout
    assert wide.splitlines()[0] == f"{item['id']} {title}  {status}  assigned to user:ann"
    # 80 columns: the first line keeps the id, status and assignee; the title (free text,
    # its markup-like "[VIP]" printed as it is) wraps at word boundaries under it.
    shown = ok(baton("work", "show", item["id"], cwd=proj, columns="80")).stdout
    lines = shown.splitlines()
    offer = f"offered to ann: baton work accept|decline {item['id']} --user ann"
    under = lines[1:lines.index(offer)]
    assert lines[0] == f"{item['id']}  {status}  assigned to user:ann"
    assert len(under) > 1 and all(line.startswith("  ") and len(line) <= 80 for line in under)
    assert " ".join(line.strip() for line in under) == title
    (run,) = ok_json(baton("runs", "list", "--json", cwd=proj))
    wide = ok(baton("runs", "show", run["id"], cwd=proj)).stdout
    assert wide.splitlines()[0] == (f"{run['id']} {LONG_NAME} v1  {run['status']}  "
                                    f"record {rec['id']}")
    # 80 columns: the id and status; the orchestration (label and name do not fit on one
    # line of 80: the name under its label, further in) and the record under them
    narrow = ok(baton("runs", "show", run["id"], cwd=proj, columns="80")).stdout.splitlines()
    assert narrow[:5] == [f"{run['id']}  {run['status']}", "  orchestration",
                          f"    {LONG_NAME} v1", f"  record {rec['id']}", "Stages and steps"]
    one_line_error(baton("work", "accept", item["id"], "--user", "bo", cwd=proj),
                   "offered to ann, not bo")
    out = ok(baton("work", "decline", item["id"], "--user", "ann", cwd=proj)).stdout
    assert f"{item['id']} declined by ann; now offered to bo" in out
    ok(baton("work", "accept", item["id"], "--user", "bo", cwd=proj))
    timeline = ok(baton("records", "timeline", rec["id"], cwd=proj, columns="400")).stdout
    assert "offered to ann" in timeline and "ann declined" in timeline
    assert "bo accepted" in timeline


def test_the_case_triage_tiers_routed_from_their_own_folder(tmp_path: Path) -> None:
    """examples/case_triage/routing binds a rule to each tier queue: deployed after the
    definitions (which stay the benchmark's, unrouted), a case's triage item goes to an
    agent with the case's product skill instead of waiting in tier1 for anyone."""
    proj = tmp_path / "proj"
    shutil.copytree(EXAMPLES / "case_triage", proj)
    ok(baton("deploy", cwd=proj))
    ok(baton("deploy", "routing", cwd=proj))
    ok(baton("users", "add", "ann", "--role", "agent", "--queue", "tier1", cwd=proj))
    ok(baton("users", "add", "hal", "--role", "agent", "--queue", "tier1", cwd=proj))
    ok(baton("users", "update", "ann", "--skill", "product:billing=4", cwd=proj))
    ok(baton("users", "update", "hal", "--skill", "product:tech=3", cwd=proj))
    rec = ok_json(baton("records", "create", "Case", "--data",
                        '{"subject": "invoice question", "number": 1}', "--json", cwd=proj))
    ok(baton("worker", "--until-idle", cwd=proj))
    events = ok_json(baton("records", "timeline", rec["id"], "--json", cwd=proj))
    (routed,) = [e["data"] for e in events if e["type"] == "routed"]
    assert (routed["rule"], routed["winner"]) == ("tier1_agents", "ann"), routed
    assert routed["excluded"] == [{"user": "hal", "reason": "skill missing: product:billing"}]
    # a second rule for tier1 is refused, located at its for_queue line
    (proj / "extra.yaml").write_text("kind: routing\nname: tier1_rr\nfrom: {queue: tier1}\n"
                                     "for_queue: true\n")
    p = baton("deploy", "extra.yaml", cwd=proj)
    assert p.returncode != 0
    assert "extra.yaml:4 for_queue: queue 'tier1' already has a routing rule: 'tier1_agents'" \
        in p.stdout + p.stderr, p.stdout + p.stderr
