"""``baton demo``'s routing of the support cases: ``examples/case_triage/routing`` binds a
routing rule to each tier queue (``for_queue: true``), so the triage item a case makes in
``tier1``/``tier2`` is routed to one agent of that tier who has the case's product skill,
within their capacity, instead of waiting for anyone to claim it.

The simulated agents join with skills and capacities, some online and one not yet; during
the run one agent goes away and the late one comes online (waves); they complete what was
routed to them. Afterwards the demo prints the routing outcome: items per agent, the waits
(items that waited for routing, median and longest wait from creation to assignment) and
one escalated case's routing decisions as its timeline holds them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.cli.output import console, is_routing_event, print_timeline, table
from baton.clock import parse_iso
from baton.runtime.engine import Engine

FOLDER = "routing"  # examples/case_triage/routing: the tier queues' rules


@dataclass(frozen=True)
class Agent:
    queues: tuple[str, ...]
    skills: dict[str, int | None]
    capacity: int
    queue_capacity: dict[str, int | None] = field(default_factory=dict)
    online: bool = True  # in the first wave


AGENTS: dict[str, Agent] = {
    "ann": Agent(("tier1",), {"product:billing": 4, "product:tech": 2}, 4),
    "bob": Agent(("tier1",), {"product:billing": 2, "product:tech": 3}, 4),
    # a senior who also takes first contact (at most 2 of her 4 from tier1): an escalated
    # case she triaged comes back to her (the tier rules are sticky)
    "cyd": Agent(("tier1", "tier2"), {"product:billing": 3, "product:tech": 4}, 4, {"tier1": 2}),
    "dan": Agent(("tier2",), {"product:billing": 4, "product:tech": 3}, 3),
    "eve": Agent(("tier2", "tier3"), {"product:billing": 5, "product:tech": 5}, 2),
    "hal": Agent(("tier1",), {"product:tech": 3}, 4, online=False),  # no billing skill
}
STEP = "triage"
# The waves, by triage items completed so far: (after, agent, availability)
WAVES: tuple[tuple[int, str, str], ...] = ((60, "bob", "away"), (100, "hal", "available"))


@dataclass
class TriageRouting:
    """The routing part of the case run: who joined, the waves so far."""

    completed: int = 0  # triage items the agents completed
    waves: list[str] = field(default_factory=list)

    @staticmethod
    def available(example: Path) -> bool:
        return (example / FOLDER).is_dir()

    def deploy_and_join(self, engine: Engine, example: Path) -> None:
        """Deploy the tier queues' rules; the agents join with their routing profiles."""
        from baton.work.team import ProfileChange

        engine.deploy([example / FOLDER], actor="demo")
        for name, agent in AGENTS.items():
            if engine.directory.find_user(name) is None:
                engine.directory.add_user(name, roles=["agent"], queues=list(agent.queues))
            engine.team.update(name, ProfileChange(
                skills=agent.skills, capacity=agent.capacity,
                queue_capacity=agent.queue_capacity or None,
                availability="available" if agent.online else "offline"), "demo")

    def done_one(self, engine: Engine, item: Mapping[str, Any]) -> None:
        """An agent completed ``item``; a wave comes when enough triage items are done."""
        if item["step"] != STEP:
            return
        self.completed += 1
        from baton.work.team import ProfileChange

        for after, name, availability in WAVES:
            if self.completed == after:
                held = engine.team.get(name).load
                engine.team.update(name, ProfileChange(availability=availability), name)
                what = (f"{name} goes {availability} (finishes the {held} cases routed to "
                        "them; gets no new one)" if availability != "available"
                        else f"{name} comes online (eligible from now on)")
                self.waves.append(f"after {after} triage items: {what}")
                console.print(f"[bold]Wave[/bold]: {self.waves[-1]}")

    def summary(self, engine: Engine) -> None:
        items = _triage_items(engine)
        if not items:
            return
        per: Counter[tuple[str, str]] = Counter()  # (agent, queue) -> items routed
        waits: list[float] = []
        waited = 0
        for i in items:
            if i.get("routing_status") != "routed" or i["assignee_kind"] != "user":
                continue  # (routed_to is cleared once the item is done: its load is given back)
            per[(str(i["assignee"]), str(i["routing"]["from"]).partition(":")[2])] += 1
            wait = (parse_iso(i["routed_at"]) - parse_iso(i["created_at"])).total_seconds()
            waits.append(wait)
            waited += i["routed_at"] != i["created_at"]  # routed later than made
        queues = sorted({q for _a, q in per})
        rows = []
        for name, agent in AGENTS.items():
            profile = engine.team.get(name)
            rows.append([name, " ".join(agent.queues),
                         ", ".join(f"{s.removeprefix('product:')} {lvl}"
                                   for s, lvl in agent.skills.items()),
                         str(agent.capacity) + "".join(f" ({q}: {c})" for q, c in
                                                       agent.queue_capacity.items()),
                         profile.availability, *[per[(name, q)] for q in queues],
                         sum(per[(name, q)] for q in queues)])
        table(f"Routing of the support cases by the tier queues' rules ({FOLDER}/tiers.yaml)",
              ["agent", "queues", "product skills", "capacity", "now", *queues, "items"], rows,
              ids=("agent",))
        if waits:
            console.print(
                f"Waits: {len(waits)} triage items routed, {waited} of them waited for routing "
                f"(nobody eligible when made); from creation to assignment median "
                f"{statistics.median(waits):.2f} s, longest {max(waits):.2f} s.")
        self._one_case(engine, items)

    def _one_case(self, engine: Engine, items: list[dict[str, Any]]) -> None:
        """The routing decisions of one escalated case, as its timeline holds them: one
        whose second triage went back to the agent who had it first (sticky), else any."""

        by_record: dict[str, list[dict[str, Any]]] = {}
        for i in items:
            by_record.setdefault(str(i["record_id"]), []).append(i)
        escalated = [r for r, its in by_record.items() if len(its) > 1]
        if not escalated:
            return
        sticky = [r for r in escalated
                  if len({i["assignee"] for i in by_record[r]}) == 1]
        chosen = (sticky or escalated)[0]
        print_timeline(engine, chosen,
                       f"\n[bold]Routing[/bold] of escalated case {chosen}, as its timeline "
                       "holds it (`baton --db … records timeline CASE`):", is_routing_event)


def _triage_items(engine: Engine) -> list[dict[str, Any]]:
    """Every triage work item, oldest first."""
    out: list[dict[str, Any]] = []
    offset = 0
    while True:
        batch = engine.list_work(statuses=["open", "claimed", "completed", "canceled"],
                                 limit=500, offset=offset)
        out.extend(dict(i) for i in batch if i["step"] == STEP)
        if len(batch) < 500:
            return out
        offset += 500
