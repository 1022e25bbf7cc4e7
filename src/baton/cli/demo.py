"""``baton demo``: the examples, run for real on a fresh SQLite file.

200 support cases go through case_triage (simulated agents escalate about 20 %
at tier 1), 20 address-update requests through address_update, and 6 leads through
lead_enrichment, whose steps call the ERP example's tools (an MCP server, over stdio). The workers
run in this process; agents claim and complete their work items between
batches, exactly as they would from the CLI. The cases' tier queues are routed
(``examples/case_triage/routing``, ``baton.cli.demo_triage``): agents with skills and
capacities come and go in waves, and the demo prints who got what, the waits and one case's
routing reasons. Then the 31 messages of dealer_support go
through a real SMTP listener (``baton.cli.demo_dealers``): the AI classifies and matches
them, the rules route them, and the demo prints the outcome table and one case's rationale.

address_update calls a bank: a small bank service (``baton.cli.demo_bank``) runs on
loopback, and the demo serves Baton's API on loopback too, so the bank's signed
acknowledgments reach ``POST /api/callbacks/{token}`` over HTTP, as they would in production.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from baton.cli.demo_bank import DemoBank
from baton.cli.demo_carrier import DemoCarrier
from baton.cli.demo_carrier import pointed_at as carrier_pointed_at
from baton.cli.demo_triage import TriageRouting
from baton.cli.output import console, table
from baton.clock import parse_iso
from baton.connections.mcp import close_shared_sessions
from baton.engine.status import RunStatus, StepStatus, WorkItemStatus
from baton.errors import ConfigError
from baton.project import load_project
from baton.rows import CALL_EVENT
from baton.runtime.engine import Engine
from baton.runtime.worker import Worker
from baton.settings import Settings

LEADS = [("Acme Corp", "acme.example"), ("Globex", "globex.example"),
         ("Initech", "initech.example")]
# Who claims an item left in a queue (the tier queues too, when the routing folder is
# missing); the tier agents' routing profiles are in baton.cli.demo_triage.AGENTS.
AGENTS = {"tier1": ["ann", "bob"], "tier2": ["cyd", "dan"], "tier3": ["eve"], "back_office": ["fay", "gus"]}
# The demo carrier is busy once and asks to be called again at once (Retry-After: 0); the
# example's callout backoff (10 s first, for a real carrier) would hold the orders that long
# with nothing on the screen, so the demo's copy of the example retries after 1 s.
DEMO_CALLOUT_RETRY = ("callout: {retry: {max: 3}", "callout: {retry: {max: 3, initial: 1s}")


def _examples_dir(given: Path | None) -> Path:
    candidates = [given] if given else [Path("examples"), Path(__file__).resolve().parents[3] / "examples"]
    for c in candidates:
        if c is not None and (c / "case_triage" / "baton.toml").exists():
            return c
    raise ConfigError("cannot find the examples folder (with case_triage/ and address_update/); "
                      "run from the repository root or pass --examples DIR")


def run_demo(db_file: Path, n_cases: int, n_requests: int, examples: Path | None,
             settings: Settings, n_leads: int = 6, dealer_mail: bool = True) -> None:
    ex = _examples_dir(examples)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    projects = [load_project(ex / "case_triage"), load_project(ex / "address_update")]
    erp = ex / "mcp_erp"
    if not (erp / "baton.toml").exists():
        n_leads = 0
    if n_leads:
        projects.append(load_project(erp))
    orders = ex / "order_fulfillment"
    order_project = load_project(orders) if (orders / "baton.toml").exists() else None
    if order_project is not None:
        projects.append(order_project)
    for p in projects:
        p.import_flows()
    bank = DemoBank().start()
    carrier = DemoCarrier().start()
    port = _free_port()
    # (The ERP connection's stdio command runs in its project folder; the bank needs none.)
    settings = dataclasses.replace(
        settings, public_url=f"http://127.0.0.1:{port}",
        project_dir=str(erp.resolve()) if n_leads else str(projects[1].root),
        secrets_env={**settings.secrets_env, "BANK_TOKEN": bank.token,
                     "BANK_HMAC": bank.hmac_secret, "CARRIER_TOKEN": carrier.token})
    engine = Engine(f"sqlite:///{db_file.resolve()}", settings=settings)
    routing = TriageRouting() if TriageRouting.available(projects[0].root) else None
    try:
        engine.deploy([projects[0].definitions_dir], actor="demo")
        if routing is not None:  # the tier queues' rules, on top; the agents join
            routing.deploy_and_join(engine, projects[0].root)
        engine.deploy(texts=_pointed_at(projects[1].definitions_dir, bank.url), actor="demo")
        for extra in projects[2:]:  # the ERP example (MCP over stdio), order fulfillment
            if extra is order_project:  # its ship callouts go to the demo carrier
                texts = carrier_pointed_at(extra.definitions_dir, carrier.url)
                if DEMO_CALLOUT_RETRY[0] in texts["fulfillment.yaml"]:
                    texts["fulfillment.yaml"] = texts["fulfillment.yaml"].replace(
                        *DEMO_CALLOUT_RETRY)
                engine.deploy(texts=texts, actor="demo")
            else:
                engine.deploy([extra.definitions_dir], actor="demo")
        console.print(f"Deployed the examples into [bold]{db_file}[/bold]; the demo bank "
                      f"listens at {bank.url}, Baton's API at {settings.public_url}.")
        with _api(engine, port):
            _run(engine, n_cases, n_requests, n_leads, routing)
            if order_project is not None:
                _orders(engine)
        if dealer_mail and (ex / "dealer_support" / "baton.toml").exists():
            from baton.cli.demo_dealers import run_dealer_support

            run_dealer_support(engine, ex / "dealer_support")
    finally:
        bank.stop()
        carrier.stop()
        engine.close()
    _bank_summary(bank)
    if order_project is not None:
        st = carrier.stats
        table("Calls to the demo carrier (the orders' ship callouts)",
              ["requests", "shipments booked", "busy (503, retried)", "repeats answered"],
              [[st.requests, st.booked, st.busy, st.repeated]])


ORDER_LINES: list[dict[str, Any]] = [
    {"product": "LAPTOP-BUNDLE"},
    {"product": "LAPTOP-PRO", "bundle": "#1", "attributes": {"color": "grey"}},
    {"product": "DOCK", "bundle": "#1"},
    {"product": "BROADBAND", "attributes": {"site": "PARIS", "speed": "1G"}},
    {"product": "BROADBAND", "attributes": {"site": "LYON", "speed": "500M"}},
]


def _orders(engine: Engine) -> None:
    """Three orders through examples/order_fulfillment: one fulfilled, one canceled before
    its point of no return (its completed steps rolled back), one amended (a line added,
    one removed) before its installations are done."""
    worker = Worker(engine, batch=64)

    def drain() -> None:
        """Run until nothing is ready and nothing is due soon (a callout's retry is; an
        SLA's timer hours away is not)."""
        deadline = time.monotonic() + CALLBACK_PATIENCE_S
        while time.monotonic() < deadline:
            if worker.run_once():
                continue
            with engine.store.read() as tx:
                due = tx.next_job_due_txn()
            wait = None if due is None else (parse_iso(due) - engine.clock.now()).total_seconds()
            if wait is None or wait > 10:
                return
            time.sleep(min(max(wait, 0.01), 1.0))

    ids = [str(engine.create_record("Order", {"number": f"DEMO-{i}", "customer": f"Customer {i}",
                                              "status": "Submitted"}, actor="demo",
                                    children={"OrderLine": ORDER_LINES})["id"])
           for i in (1, 2, 3)]
    drain()  # each plan runs up to its manual installations
    canceled = engine.plans.cancel(ids[1], "customer withdrew", "demo")
    lyon = next(r for r in engine.records.lines_of(ids[2])
                if (r.get("attributes") or {}).get("site") == "LYON")
    engine.update_record(str(lyon["id"]), {"action": "cancel"}, actor="demo")
    engine.create_record("OrderLine", {"order": ids[2], "product": "LAPTOP-PRO",
                                       "attributes": {"color": "blue"}}, actor="demo")
    amended = engine.plans.amend(ids[2], "demo")
    drain()
    for item in engine.list_work(queue="installers", limit=100):  # the field technicians
        engine.claim(item["id"], "ivan")
        engine.complete(item["id"], "ivan", {})
    drain()
    worker.store.unregister_worker(worker.id)
    rows = []
    for order, story in zip(ids, ("fulfilled", "canceled before the PONR",
                                  "amended: a laptop added, the Lyon site removed"), strict=True):
        plan = engine.plans.show(order)
        comp = plan["compensation"]
        # (narrow enough for 80 columns beside the whole id; the rollbacks are named below)
        rows.append([order, story, f"{plan['status']} r{plan['revision']}", len(plan["steps"]),
                     f"{len(comp['steps'])} {comp['status']}" if comp else ""])
    table("Orders (examples/order_fulfillment)",
          ["order", "story", "plan", "steps", "rollbacks"], rows,
          ids=("order",))  # printed whole: it is what `plans show` takes
    console.print(f"Rolled back on cancel: {', '.join(canceled['rollbacks'])}; amended: "
                  f"+{len(amended['added'])} -{len(amended['removed'])} steps. "
                  f"`baton --db … plans show {ids[0]}` prints a plan by lane.")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pointed_at(folder: Path, bank_url: str) -> dict[str, str]:
    """address_update's definitions, with its bank connection pointed at the demo bank."""
    texts = {}
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text()
        if path.name == "bank.yaml":
            text = text.replace("http://127.0.0.1:8765", bank_url)
        texts[path.name] = text
    return texts


@contextmanager
def _api(engine: Engine, port: int) -> Iterator[None]:
    """Baton's API on loopback (the bank calls back there), until the block ends."""
    import uvicorn

    from baton.web.app import create_app

    config = uvicorn.Config(create_app(engine), host="127.0.0.1", port=port,
                            log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="demo-api", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)


def _run(engine: Engine, n_cases: int, n_requests: int, n_leads: int,
         routing: TriageRouting | None = None) -> None:
    started = time.perf_counter()
    for i in range(1, n_cases + 1):
        subject = f"invoice question {i}" if i % 2 else f"login broken {i}"
        engine.create_record("Case", {"subject": subject, "number": i, "origin": "Web"}, actor="demo")
    for i in range(1, n_requests + 1):
        engine.create_record("ServiceRequest", {
            "customer": f"Customer {i}", "account_number": f"ACC-{1000 + i}",
            "new_address": f"{i} Solar Way, Springfield", "documents": [f"proof-{i}.pdf"],
        }, actor="demo")
    for i in range(n_leads):  # each looked up in the ERP (MCP over stdio) by lead_enrichment
        company, domain = LEADS[i % len(LEADS)]
        engine.create_record("Lead", {"company": company, "domain": domain}, actor="demo")
    worker = Worker(engine, batch=64)
    total = n_cases + n_requests + n_leads
    patience = time.monotonic() + CALLBACK_PATIENCE_S
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("runs finished", total=total)
        while True:
            worker.run_once()
            worked = _act_as_agents(engine, routing)
            done = _finished(engine)
            progress.update(task, completed=done)
            if done >= total:
                break
            if not worked and worker.run_once() == 0 and all(  # nothing open, or only
                    i.get("routing_status") == "waiting"  # what nobody may take any more
                    for i in engine.list_work(limit=500)):
                if _awaiting_bank(engine) and time.monotonic() < patience:
                    time.sleep(0.05)  # the bank's acknowledgments (or a retry) are coming
                    continue
                break  # nothing can move any more; the summary will show where runs stopped
            patience = time.monotonic() + CALLBACK_PATIENCE_S
    elapsed = time.perf_counter() - started
    worker.store.unregister_worker(worker.id)
    close_shared_sessions()  # the ERP server the worker started stops here
    _summary(engine, elapsed)
    if routing is not None:
        routing.summary(engine)


CALLBACK_PATIENCE_S = 30.0  # longest the demo waits for the bank without other progress


def _awaiting_bank(engine: Engine) -> bool:
    """Does a request wait for the bank: its acknowledgment, or a retry of its call?"""
    return any(run.steps["send_address"].status is StepStatus.RUNNING
               for run in engine.list_runs(status=RunStatus.IN_PROGRESS.value, limit=500)
               if "send_address" in run.steps)


def _bank_summary(bank: DemoBank) -> None:
    st = bank.stats
    table("Calls to the demo bank", ["requests", "effective", "refused", "acknowledgments sent",
                                     "acknowledgments accepted"],
          [[st.requests, st.effective, st.refused, st.callbacks_sent, st.callbacks_accepted]])
    for error in st.errors[:5]:
        console.print(f"[red]{error}[/red]")


def _act_as_agents(engine: Engine, routing: TriageRouting | None = None) -> int:
    """Every open work item is claimed and completed by the agent it was routed to, or by
    an agent of its queue; an item waiting for routing is left to its queue's rule."""
    n = 0
    for item in engine.list_work(limit=500):
        if item.get("routing_status") == "waiting":
            continue
        agents = AGENTS.get(item["assignee"], ["ann"]) if item["assignee_kind"] == "queue" else [item["assignee"]]
        agent = agents[n % len(agents)]
        if item["status"] == WorkItemStatus.OPEN:
            engine.claim(item["id"], agent)
        else:
            agent = item["claimed_by"] or agent
        record_id = item["record_id"] or ""  # every step of the demo works on a record
        if item["step"] == "triage":
            case = engine.get_record(record_id)
            escalate = case["number"] % 5 == 0 and case.get("level", 1) == 1
            data = {"resolution": "escalate" if escalate else "close",
                    "notes": "needs tier 2" if escalate else "resolved on first contact"}
        else:
            req = engine.get_record(record_id)
            reject = int(req["account_number"].split("-")[1]) % 10 == 7
            data = {"decision": "reject" if reject else "approve",
                    "notes": "proof of address is unreadable" if reject else "utility bill matches"}
        engine.complete(item["id"], agent, data)
        n += 1
        if routing is not None:
            routing.done_one(engine, item)
    return n


def _finished(engine: Engine) -> int:
    with engine.store.read() as tx:
        return sum(c for _o, status, _s, c in tx.count_runs_txn() if status != RunStatus.IN_PROGRESS)


def _summary(engine: Engine, elapsed: float) -> None:
    with engine.store.read() as tx:
        counts = tx.count_runs_txn()
    per: Counter[tuple[str, str]] = Counter()
    for orch, status, _stage, c in counts:
        per[(orch, status)] += c
    table("Runs per orchestration", ["orchestration", "status", "runs"],
          [[o, s, c] for (o, s), c in sorted(per.items())])
    paths: Counter[tuple[str, str]] = Counter()
    escalated = None
    for run in _all_runs(engine):
        stages = [run.decisions[0]["stage"]] if run.decisions else []
        stages += [d["goto"] for d in run.decisions]
        paths[(run.orchestration, " → ".join(stages))] += 1
        if escalated is None and any(d["goto"] == "escalate" for d in run.decisions):
            escalated = run
    table("Stage paths", ["orchestration", "path", "runs"],
          [[o, p, c] for (o, p), c in sorted(paths.items())])
    _mcp_calls(engine)
    console.print(f"Finished in {elapsed:.1f} s.")
    sent = [run for run in _all_runs(engine) if "send_address" in run.steps]
    calls = [e for run in sent for e in engine.run_events(run.id) if e["type"] == CALL_EVENT]
    if calls:
        statuses = Counter(str(e["data"].get("status") or "no response") for e in calls)
        console.print(f"{len(calls)} calls to the bank, audited ({', '.join(f'{n} × {s}' for s, n in sorted(statuses.items()))}); "
                      f"e.g. `baton --db … runs show {sent[0].id}` lists them.")
    if escalated is not None and escalated.record_id:
        from baton.cli.render import describe_event

        events = engine.timeline(escalated.record_id)
        table(f"Timeline of escalated case {escalated.record_id} (run {escalated.id})",
              ["at", "event", "actor", "detail"],
              [[e["at"][11:23], e["type"], e["actor"], describe_event(e)] for e in events])


def _mcp_calls(engine: Engine) -> None:
    """The MCP tool calls the runs made (audited as ``mcp_called``), per tool and outcome."""
    calls: Counter[tuple[str, str]] = Counter()
    for run in engine.list_runs(limit=500, orchestration="lead_enrichment"):
        for e in engine.run_events(run.id):
            if e["type"] == "mcp_called":
                d = e["data"]
                calls[(f"{d['connection']}.{d['tool']}", d["outcome"])] += 1
    if calls:
        table("MCP tool calls (the ERP, over stdio)", ["tool", "outcome", "calls"],
              [[t, o, c] for (t, o), c in sorted(calls.items())])


def _all_runs(engine: Engine) -> list:  # type: ignore[type-arg]
    out, offset = [], 0
    while True:
        batch = engine.list_runs(limit=500, offset=offset)
        out.extend(batch)
        if len(batch) < 500:
            return out
        offset += 500
