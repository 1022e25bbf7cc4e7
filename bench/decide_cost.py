"""The pure engine's cost per triage run: ``decide()`` alone, in one process, no store.

Drives ``decide()`` through exactly the events one case-triage run of ``baton bench triage``
gets (``bench/WORKLOAD.md``: every fifth case escalated once), in the process each comes
from: the driver's (the run started, the triage item completed) and the worker's (each
background step's result, with the record updates its flow makes). Between events the run
goes through its stored JSON document and back, as it does between transactions.

Prints, per run: Python function calls (cProfile; the same on any host), all and those
inside ``decide()`` alone (the rest: the state's JSON round trip and this driver), and CPU µs
(``time.process_time``, the best of ``--repeat`` passes: the least disturbed by the
host), for the driver's and the worker's events separately.

    python bench/decide_cost.py [--runs 1000] [--repeat 5] [--examples examples] [--json]
    valgrind --tool=callgrind --callgrind-out-file=/dev/null python bench/decide_cost.py \
        --plain --runs 300        # (and --runs 0: the difference is 300 runs' instructions)

Run it against other code with ``PYTHONPATH=OTHER/src``.
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import json
import pstats
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from baton.definitions.loader import load_definitions
from baton.definitions.model import ObjectTypeDefinition, OrchestrationDefinition
from baton.engine.decide import decide
from baton.engine.events import CreateWorkItem, Event, RunStarted, ScheduleStep, StepCompleted
from baton.engine.state import Run

T0 = datetime(2026, 12, 3, 8, 0, tzinfo=UTC)


def load(examples: Path) -> OrchestrationDefinition:
    """case_triage as a deployed version is loaded: with its record type."""
    loaded = {d.name: d.definition for d in
              load_definitions([examples / "case_triage" / "definitions"])}
    defn, case = loaded["case_triage"], loaded["Case"]
    assert isinstance(defn, OrchestrationDefinition) and isinstance(case, ObjectTypeDefinition)
    return dataclasses.replace(defn, record_type=case)


def _flow_output(flow: str, record: dict[str, Any], level: int
                 ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]:
    """(output, record updates, vars) of the example's flow (examples/case_triage/flows.py)."""
    subject = str(record["subject"])
    category = "billing" if "invoice" in subject else "tech"
    if flow == "cases.classify":
        priority = 1 + len(subject) % 3
        return ({"category": category, "priority": priority,
                 "tags": sorted({category, "triaged"})},
                {"category": category, "priority": priority}, None)
    if flow == "cases.find_agent":
        pool = {"billing": ["ann", "bob"], "tech": ["cyd", "dan", "eve"]}[category]
        agent = pool[int(record["number"]) % len(pool)]
        return {"agent": agent, "queue": f"L{level}"}, {"agent": agent}, None
    if flow == "cases.raise_level":
        return ({"level": level + 1}, {"level": level + 1, "status": "Escalated"},
                {"level": level + 1})
    if flow == "cases.close":
        resolution = {"by": record.get("agent"), "level": level}
        return ({"status": "Closed", "resolution": resolution},
                {"status": "Closed", "resolution": resolution}, None)
    return {"survey": {"to": f"customer-{record['number']}", "sent": True}}, {}, None


Step = tuple[str, Callable[[], None]]  # (process, one decide() with its round trip)

# The profiles of decide() alone, by process, while counting calls (``drive(..., calls)``).
_PROFILES: dict[str, cProfile.Profile] = {}


def one_run(defn: OrchestrationDefinition, i: int, clock: list[datetime]) -> list[Step]:
    """The decide() calls of case ``i``, in order, each tagged with its process."""
    subject = f"invoice question {i}" if i % 2 else f"login broken {i}"
    now = clock[0]
    record: dict[str, Any] = {"subject": subject, "number": i, "origin": "Web", "level": 1,
                              "status": "New", "id": f"rec_{i}", "created_at": now.isoformat(),
                              "updated_at": now.isoformat(), "version": 1}
    state: dict[str, Any] = {"doc": None, "jobs": [], "item": None}
    process = [""]  # whose event step() is deciding

    def step(event: Event) -> None:
        clock[0] += timedelta(milliseconds=3)
        prof = _PROFILES.get(process[0])
        if state["doc"] is None:
            run = Run(id=f"run_{i}", orchestration=defn.name, version=1,
                      record_id=record["id"], vars=dict(defn.variables), input={},
                      created_at=clock[0].isoformat())
        else:
            run = Run.from_json(orjson.loads(state["doc"]))
        if prof is not None:
            prof.enable()
        d = decide(defn, run, event, clock[0], record, consume=True)
        if prof is not None:
            prof.disable()
        assert not d.stale, event
        d.run.seq += 1
        state["doc"] = orjson.dumps(d.run.to_json(copy=False))
        for c in d.commands:
            if isinstance(c, ScheduleStep):
                state["jobs"].append(c)
            elif isinstance(c, CreateWorkItem):
                state["item"] = c

    def background() -> None:
        job = state["jobs"].pop(0)
        level = int(orjson.loads(state["doc"]).get("vars", {}).get("level", 1))
        output, updates, vars_ = _flow_output(job.flow, record, level)
        record.update(updates)
        if updates:
            record["version"] += 1
        step(StepCompleted(job.step, job.iteration, output, vars=vars_, attempt=job.attempt,
                           ran_at=clock[0].isoformat()))

    def triage() -> None:
        item = state["item"]
        level = int(orjson.loads(state["doc"]).get("vars", {}).get("level", 1))
        choice = "escalate" if i % 5 == 0 and level == 1 else "close"
        step(StepCompleted(item.step, item.iteration, {"resolution": choice, "notes": None},
                           actor="bench"))

    def on(who: str, fn: Callable[[], None]) -> Step:
        def call() -> None:
            process[0] = who
            fn()
        return who, call

    calls: list[Step] = [on("driver", lambda: step(RunStarted("bench")))]
    calls += [on("worker", background)] * 2  # classify, find_agent
    calls += [on("driver", triage)]
    if i % 5 == 0:  # escalated: raise_level, then the triage stage again
        calls += [on("worker", background)] * 3 + [on("driver", triage)]
    calls += [on("worker", background)] * 2  # close_case, send_survey
    return calls


def drive(defn: OrchestrationDefinition, runs: int, timed: dict[str, float] | None,
          prof: dict[str, cProfile.Profile] | None,
          decide_prof: dict[str, cProfile.Profile] | None = None) -> None:
    clock = [T0]
    _PROFILES.clear()
    _PROFILES.update(decide_prof or {})
    for i in range(runs):
        for who, call in one_run(defn, i, clock):
            if prof is not None:
                prof[who].enable()
                call()
                prof[who].disable()
            elif timed is not None:
                t = time.process_time()
                call()
                timed[who] += time.process_time() - t
            else:
                call()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--examples", type=Path, default=Path("examples"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--profile", type=Path, help="write the cProfile of each side here")
    ap.add_argument("--plain", action="store_true",
                    help="only drive the runs (no profile, no timing): for valgrind, whose "
                         "instruction count of --runs N less that of --runs 0 is N runs'")
    args = ap.parse_args(argv)
    defn = load(args.examples)
    drive(defn, 50, None, None)  # warm: imports, compiled expressions
    if args.plain:
        drive(defn, args.runs, None, None)
        return 0
    prof = {"driver": cProfile.Profile(), "worker": cProfile.Profile()}
    drive(defn, args.runs, None, prof)
    alone = {"driver": cProfile.Profile(), "worker": cProfile.Profile()}
    drive(defn, args.runs, None, None, alone)
    out: dict[str, Any] = {"runs": args.runs, "calls_per_run": {}, "decide_calls_per_run": {},
                           "cpu_us_per_run": {}}
    for who, p in prof.items():
        st = pstats.Stats(p)
        out["calls_per_run"][who] = round(st.total_calls / args.runs, 1)  # type: ignore[attr-defined]
        out["decide_calls_per_run"][who] = round(
            pstats.Stats(alone[who]).total_calls / args.runs, 1)  # type: ignore[attr-defined]
        if args.profile:
            args.profile.mkdir(parents=True, exist_ok=True)
            p.dump_stats(str(args.profile / f"decide-{who}.prof"))
    best: dict[str, float] = {}
    for _ in range(args.repeat):
        timed = {"driver": 0.0, "worker": 0.0}
        drive(defn, args.runs, timed, None)
        for who, s in timed.items():
            best[who] = min(best.get(who, s), s)
    out["cpu_us_per_run"] = {k: round(v / args.runs * 1e6, 1) for k, v in best.items()}
    out["cpu_us_per_run"]["both"] = round(sum(best.values()) / args.runs * 1e6, 1)
    if args.json:
        print(json.dumps(out))
    else:
        for who in ("driver", "worker"):
            print(f"{who}: {out['calls_per_run'][who]:.0f} calls "
                  f"({out['decide_calls_per_run'][who]:.0f} in decide()), "
                  f"{out['cpu_us_per_run'][who]:.0f} µs CPU per run")
        print(f"both: {out['cpu_us_per_run']['both']:.0f} µs CPU per run "
              f"(best of {args.repeat} passes of {args.runs} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
