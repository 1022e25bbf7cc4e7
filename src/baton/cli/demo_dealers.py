"""``baton demo``'s dealer-support part: the messages of ``examples/dealer_support/mail``
go through a real SMTP listener on loopback (an ``smtplib`` client, as a mail server would
deliver them), the worker runs the ai steps and the routing rules, and the demo prints
what each message became (intent, dealer account, queue, confidence) and one case's AI
rationale as its timeline holds it. Then the pods' agents answer and the runs end.
"""

from __future__ import annotations

import re
import smtplib
import time
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

from baton.cli.output import console, is_routing_event, print_timeline, table
from baton.engine.status import RunStatus, StepStatus, WorkItemStatus
from baton.errors import ConfigError
from baton.project import load_project
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker

MAILBOX = "support@dealers.baton.example"
AGENT_QUEUE = "dealer_agents"  # routing.yaml's pod_agents takes its candidates from it
AGENTS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...]]] = {
    # name: (pod, teams, brands) -> skills pod:..., team:..., brand:...; capacity 3 each
    "nora": ("pod_north", ("sales", "billing"), ("Aurora",)),
    "niklas": ("pod_north", ("technical", "privacy"), ("Kestrel",)),
    "nadia": ("pod_north", ("retention", "billing", "sales"), ("Kestrel",)),
    "noah": ("pod_north", ("technical", "privacy", "retention"), ("Aurora",)),
    "sofia": ("pod_south", ("sales", "billing"), ("Vantor",)),
    "sven": ("pod_south", ("technical", "privacy"), ("Solenne",)),
    "sara": ("pod_south", ("retention", "technical", "billing"), ("Vantor", "Solenne")),
    "selin": ("pod_south", ("sales", "privacy", "retention"), ("Solenne",)),
}
FIRST_WAVE = ("nora", "niklas", "sofia", "sven")  # online when the mail arrives; the rest later
CAPACITY = 3
ORCHESTRATION = "dealer_support"
CHILD = "dealer_case"  # a split message's child case per dealer
EXPLAINED = "23_signature_group_en"  # whose rationale is printed: a signature that must not decide


@dataclass
class Delivery:
    """One message sent over SMTP: the file, what the listener answered, its case."""

    name: str
    message_id: str
    reply: str  # the listener's answer: created, threaded, ignored, duplicate
    record_id: str | None = None


@dataclass
class DealerDemo:
    deliveries: list[Delivery] = field(default_factory=list)
    agents_completed: int = 0


def run_dealer_support(engine: Engine, folder: Path, *, patience_s: float = 120.0) -> DealerDemo:
    """Deploy ``folder`` (examples/dealer_support), create its dealers, send its mail over
    SMTP, run the cases to their first person, print the outcome table and one rationale,
    then let the agents finish them."""
    import yaml

    from baton.intake.smtp import SmtpListener

    if not (folder / "baton.toml").exists():
        raise ConfigError(f"{folder} is not the dealer_support example (no baton.toml)")
    project = load_project(folder)
    project.import_flows()
    engine.deploy([project.definitions_dir], actor="demo")
    dealers = yaml.safe_load((folder / "dealers.yaml").read_text(encoding="utf-8"))
    engine.create_records("Dealer", list(dealers), actor="demo")
    _agents_join(engine)
    demo = DealerDemo()
    mails = sorted((folder / "mail").glob("*.eml"))
    from baton.cli.demo import _free_port

    listener = SmtpListener(engine.intake, "127.0.0.1", _free_port(),
                            allowed_domains=["dealers.baton.example"])
    listener.start()
    try:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=60) as client:
            for path in mails:
                demo.deliveries.append(_send(client, path))
    finally:
        listener.stop()
    ids = _cases_by_message(engine)
    for d in demo.deliveries:
        d.record_id = ids.get(d.message_id)
    worker = Worker(engine, batch=64)
    try:
        _work_until_people(engine, worker, patience_s)
        _outcomes(engine, demo)
        _rationale(engine, demo)
        _second_wave(engine, worker, demo, patience_s)
        demo.agents_completed = _agents_finish(engine, worker, patience_s)
    finally:
        worker.store.unregister_worker(worker.id)
    _statuses(engine)
    return demo


def _agents_join(engine: Engine) -> None:
    """The pods' agents with their routing profiles; only the first wave is online yet."""
    from baton.work.team import ProfileChange

    for name, (pod, teams, brands) in AGENTS.items():
        if engine.directory.find_user(name) is None:
            engine.directory.add_user(name, roles=["agent"], queues=[AGENT_QUEUE])
        skills: dict[str, int | None] = {f"pod:{pod}": None}
        skills.update({f"team:{t}": None for t in teams})
        skills.update({f"brand:{b}": 3 for b in brands})
        engine.team.update(name, ProfileChange(
            skills=skills, capacity=CAPACITY,
            availability="available" if name in FIRST_WAVE else "offline"), "demo")


def _waiting_for_routing(engine: Engine) -> list[Any]:
    return [i for i in engine.list_work(limit=500, statuses=["open"])
            if i["assignee_kind"] == "queue" and i["assignee"] == AGENT_QUEUE]


def _second_wave(engine: Engine, worker: Worker, demo: DealerDemo, patience_s: float) -> None:
    """Print who has what and what waits (nobody eligible: offline or at capacity), bring
    the other agents online, and print it again with one case's routing reasons."""
    from baton.work.team import ProfileChange

    waiting = len(_waiting_for_routing(engine))
    _routing_table(engine, f"Routing with {len(FIRST_WAVE)} of {len(AGENTS)} agents online "
                           f"({waiting} cases wait for routing)")
    for name in AGENTS:
        if name not in FIRST_WAVE:
            engine.team.update(name, ProfileChange(availability="available"), "demo")
    _work_until_people(engine, worker, patience_s)
    waiting = len(_waiting_for_routing(engine))
    _routing_table(engine, f"Routing once all {len(AGENTS)} agents are online ({waiting} cases "
                           "wait: their pod's team is at capacity until an agent answers one)")
    for f in engine.team.figures():
        if f["queue"] in (AGENT_QUEUE, f"queue:{AGENT_QUEUE}"):
            median = f["median_to_assignment_s"]
            console.print(f"Waits in {AGENT_QUEUE}: {f['routed_last_hour']} routed in the last "
                          f"hour, median {median if median is not None else '-'} s from "
                          f"creation to assignment, {f['waiting']} waiting")
    chosen = next((d for d in demo.deliveries if d.name == EXPLAINED and d.record_id), None)
    if chosen is not None and chosen.record_id is not None:
        print_timeline(engine, chosen.record_id,
                       f"\n[bold]Routing[/bold] of case {chosen.record_id} ({chosen.name}), "
                       "as its timeline holds it:", is_routing_event)


def _routing_table(engine: Engine, title: str) -> None:
    open_items = engine.list_work(limit=500, statuses=["open", "claimed"])
    held: dict[str, int] = {}
    for i in open_items:
        if i["assignee_kind"] == "user":
            held[i["assignee"]] = held.get(i["assignee"], 0) + 1
    rows = []
    for name, (pod, teams, brands) in AGENTS.items():
        profile = engine.team.get(name)
        rows.append([name, pod, ", ".join(teams), ", ".join(brands), profile.availability,
                     f"{held.get(name, 0)} of {CAPACITY}"])
    table(title, ["agent", "pod", "teams", "brands", "availability", "cases held"], rows,
          ids=("agent",))


def _send(client: smtplib.SMTP, path: Path) -> Delivery:
    # on the wire, lines end in CRLF (smtplib sends bytes as they are)
    raw = re.sub(rb"\r?\n", b"\r\n", path.read_bytes())
    headers = BytesHeaderParser().parsebytes(raw)
    sender = parseaddr(str(headers.get("From", "")))[1] or "unknown@dealers.example"
    client.ehlo_or_helo_if_needed()
    code, text = client.mail(sender)
    if code != 250:
        raise ConfigError(f"{path.name}: MAIL FROM refused: {code} {text.decode()}")
    code, text = client.rcpt(MAILBOX)
    if code != 250:
        raise ConfigError(f"{path.name}: RCPT TO refused: {code} {text.decode()}")
    code, text = client.data(raw)
    if code != 250:
        raise ConfigError(f"{path.name}: the listener refused it: {code} {text.decode()}")
    reply = text.decode().removeprefix("OK").strip() or "accepted"
    return Delivery(path.stem, str(headers.get("Message-ID", "")).strip().strip("<>"), reply)


def _cases_by_message(engine: Engine) -> dict[str, str]:
    """Message-ID → the DealerCase it made or was added to."""
    out: dict[str, str] = {}
    for rec in engine.list_records("DealerCase", limit=500):
        for m in engine.intake.messages(rec["id"]):
            out[str(m["message_id"]).strip("<>")] = rec["id"]
    return out


def _runs(engine: Engine) -> list[Any]:
    """The messages' runs and the child cases' runs."""
    return (engine.list_runs(limit=500, orchestration=ORCHESTRATION)
            + engine.list_runs(limit=500, orchestration=CHILD))


def _busy(engine: Engine) -> bool:
    """Is a case still with the machine (not ended, not waiting for a person or an operator)?"""
    # (a split message's run waits for its child cases: that is the children's business)
    return any(r.status == RunStatus.IN_PROGRESS
               and not any(s.status in (StepStatus.WAITING_FOR_PERSON, StepStatus.FALLOUT)
                           or (s.status == StepStatus.RUNNING and s.children is not None)
                           for s in r.steps.values()) for r in _runs(engine))


def _work_until_people(engine: Engine, worker: Worker, patience_s: float) -> None:
    """Run the workers until every case waits for a person or has ended."""
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        moved = worker.run_once()
        if not moved and not _busy(engine):
            return
        if not moved:
            time.sleep(0.05)


def _outcomes(engine: Engine, demo: DealerDemo) -> None:
    rows = []
    runs = {r.record_id: r for r in _runs(engine)}
    for d in demo.deliveries:
        rec = engine.get_record(d.record_id) if d.record_id else None
        run = runs.get(d.record_id) if d.record_id else None
        if rec is None or run is None or d.reply != "created":
            rows.append([d.name, d.reply, "", "", "", "", "" if rec is None
                         else f"onto {d.record_id}"])
            continue
        rows.append([d.name, d.reply, *_cells(engine, rec, run)])
        split = run.steps.get("split")
        for child in (split.children or []) if split is not None else []:
            case = engine.get_record(str(child["record_id"]))
            child_run = engine.get_run(str(child["run_id"]))
            rows.append([f"  ↳ {d.name}", "split", *_cells(engine, case, child_run)])
    table("Dealer support: the messages sent over SMTP and what became of them",
          ["message", "smtp", "intent", "confidence", "dealer account", "queue", "stage"], rows,
          ids=("message", "intent", "queue"))


def _cells(engine: Engine, rec: dict[str, Any], run: Any) -> list[str]:
    """intent, confidence, dealer account, queue, stage of one case."""
    named = int(rec.get("dealers_named") or 0)
    dealer = (f"{named} dealers" if named > 1 else engine.get_record(rec["dealer"])["name"]
              if rec.get("dealer") else "none found")
    conf = rec.get("confidence")
    queue = rec.get("queue") or ("split" if rec.get("status") == "Split" else "")
    return [rec.get("intent") or "", f"{float(conf):.2f}" if conf is not None else "",
            dealer, queue, run.current_stage or ""]


def _rationale(engine: Engine, demo: DealerDemo) -> None:
    """The AI's reasons for one case, from its timeline (``step_completed`` of the ai
    steps): what ``baton records timeline`` and the record page show."""
    from baton.ai.describe import is_ai_answer

    chosen = next((d for d in demo.deliveries if d.name == EXPLAINED and d.record_id), None)
    if chosen is None or chosen.record_id is None:
        return
    print_timeline(engine, chosen.record_id,
                   f"\n[bold]Why[/bold]: the AI's decisions on case {chosen.record_id} "
                   f"({chosen.name}), as its timeline holds them (`baton records timeline`):",
                   lambda e: (e["type"] == "step_completed"
                              and is_ai_answer(e["data"].get("output"))))


def _agents_finish(engine: Engine, worker: Worker, patience_s: float) -> int:
    """The pods' agents answer their items; one cancellation in two is retained."""
    done = 0
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        items = [i for i in engine.list_work(limit=500) if i["record_id"]]
        mine = [i for i in items if engine.get_record(str(i["record_id"]))["object_type"]
                == "DealerCase"] if items else []
        for item in mine:
            if item["assignee_kind"] == "queue" and item["assignee"] == AGENT_QUEUE:
                continue  # waits for routing: an agent gets it when one is free
            agent = (item["assignee"] if item["assignee_kind"] == "user"
                     else f"agent-{item['assignee']}")
            if item["status"] == WorkItemStatus.OPEN:
                engine.claim(item["id"], agent)
            else:
                agent = item["claimed_by"] or agent
            if item["step"] == "retention_call":
                data: dict[str, Any] = {"outcome": "retained" if done % 2 == 0 else "cancelled",
                                        "resolution": "offered the brand's retention package"}
            else:
                data = {"resolution": f"answered by {agent}"}
            engine.complete(item["id"], agent, data)
            done += 1
        moved = worker.run_once()
        actionable = [i for i in mine
                      if not (i["assignee_kind"] == "queue" and i["assignee"] == AGENT_QUEUE)]
        if not actionable and not moved:
            if not _busy(engine):
                break  # ended, or in fallout (the summary shows it)
            time.sleep(0.05)
    return done


def _statuses(engine: Engine) -> None:
    counts: dict[tuple[str, str], int] = {}
    for rec in engine.list_records("DealerCase", limit=500):
        key = (str(rec.get("status")), str(rec.get("intent")))
        counts[key] = counts.get(key, 0) + 1
    runs = _runs(engine)
    table(f"Dealer cases once the agents answered ({sum(r.status == RunStatus.COMPLETED for r in runs)}"
          f" of {len(runs)} runs completed)", ["status", "intent", "cases"],
          [[s, i, n] for (s, i), n in sorted(counts.items())])
    console.print("Every AI decision is on its case's timeline: `baton --db … records timeline "
                  "CASE` or the record page.")
