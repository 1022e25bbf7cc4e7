"""CPU per CLI read command: what ``baton runs list`` and friends cost before they answer.

Issue 16 item 6: a read command finishes in < 0.3 s of CPU on a small database. This script
measures it from the outside, with real processes, the way a person runs them:

1. A fresh project (``baton init``) in a temporary folder, deployed, with ``--records``
   tickets created and the worker run until idle (runs, work items, audit events: a small
   database). The database is the project's SQLite file, or ``--db`` (e.g. a PostgreSQL
   database, given as ``BATON_DB``).
2. Each read command (``runs list``, ``runs show RUN``, ``work list``, ``records list``,
   ``records show REC``, ``definitions list``, ``definitions show``, ``fallout list``,
   ``incidents list``, ``--help``, ``--version``) is run ``--repeat`` times from the project folder, as the
   ``baton`` console script runs (``from baton.cli.main import main; main()``), and its CPU
   time is read from the kernel: user + system of the finished child
   (``resource.getrusage(RUSAGE_CHILDREN)`` before and after). The median is reported.
   Each command runs once unmeasured first, so that bytecode is cached as in an installed
   package (in the temporary folder: ``PYTHONPYCACHEPREFIX``; ``PYTHONDONTWRITEBYTECODE``
   is dropped).

``--write`` measures the write commands instead (``validate``, ``deploy`` of unchanged
definitions, ``records create`` of a ticket, which starts its run, and ``worker --until-idle``
after one such ticket, unmeasured, so each sample does the same work): what the test suite
starts most. ``--ir`` counts each command's instructions with valgrind (callgrind's ``Ir``,
``PYTHONHASHSEED=0``, one run each after the unmeasured one): deterministic, unlike CPU time
on a shared host, and ~50 times slower.

``--src`` measures another checkout's code side by side (``--src ../main/src``), so a
before/after comparison runs in one sitting. CPU time is less sensitive to a busy machine than
wall time, not immune: the 1-minute load average at start and end is printed with the
figures. Prints a table, or one JSON object with ``--json``::

    PYTHONPATH=src python bench/cli.py
    PYTHONPATH=src python bench/cli.py --repeat 9 --src /path/to/older/src --json
    PYTHONPATH=src python bench/cli.py --write --ir --src /path/to/older/src
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TARGET_CPU_S = 0.3  # issue 16 item 6
ENTRY = "import sys; from baton.cli.main import main; sys.argv[0] = 'baton'; main()"
TIMEOUT_S = 300.0


class CliBenchError(Exception):
    """A command the benchmark needs failed (its output says why)."""


class Baton:
    """Runs ``baton`` with the measured source, in the project folder, and times it."""

    def __init__(self, src: Path, project: Path, db: str | None, pycache: Path,
                 ir: bool = False) -> None:
        self.project = project
        self.ir = ir
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("BATON_") and k not in ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE")}
        env["PYTHONPATH"] = str(src)
        # Bytecode as an installed package has it (pip compiles it), kept in the temporary
        # folder so that the measured source tree is left as it is.
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
        env["COLUMNS"] = "160"  # the same table layout whatever the terminal
        if db:
            env["BATON_DB"] = db
        self.env = env

    def run(self, *args: str, cwd: Path | None = None) -> tuple[str, float]:
        """Run ``baton ARGS``; its stdout and its CPU seconds (user + system)."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        p = subprocess.run([sys.executable, "-c", ENTRY, *args], cwd=cwd or self.project,
                           env=self.env, capture_output=True, text=True, timeout=TIMEOUT_S,
                           stdin=subprocess.DEVNULL, check=False)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if p.returncode != 0:
            raise CliBenchError(f"baton {' '.join(args)} exited with {p.returncode}:\n"
                                f"{p.stdout[-1500:]}{p.stderr[-1500:]}")
        return p.stdout, cpu

    def count(self, *args: str) -> int:
        """Instructions ``baton ARGS`` executes (callgrind's ``Ir``, the whole process)."""
        p = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                            sys.executable, "-c", ENTRY, *args], cwd=self.project,
                           env={**self.env, "PYTHONHASHSEED": "0"}, capture_output=True,
                           text=True, timeout=TIMEOUT_S * 20, stdin=subprocess.DEVNULL,
                           check=False)
        found = re.search(r"Collected : (\d+)", p.stderr)
        if p.returncode != 0 or not found:
            raise CliBenchError(f"valgrind baton {' '.join(args)} exited with {p.returncode}:"
                                f"\n{p.stdout[-1500:]}{p.stderr[-1500:]}")
        return int(found.group(1))

    def sample(self, *args: str) -> float:
        """One measurement: CPU seconds, or instructions with ``--ir``."""
        return float(self.count(*args)) if self.ir else self.run(*args)[1]


def make_project(baton: Baton, records: int) -> dict[str, str]:
    """A small database: the template project deployed, RECORDS tickets, the worker run once.
    Returns ids the ``show`` commands read."""
    baton.run("init", str(baton.project), cwd=baton.project.parent)
    baton.run("deploy")
    record_id = ""
    for i in range(records):
        out, _ = baton.run("records", "create", "Ticket", "--json",
                           "--data", json.dumps({"subject": f"Printer {i} on fire"}))
        record_id = json.loads(out)["id"]
    baton.run("worker", "--until-idle")
    runs = json.loads(baton.run("runs", "list", "--json")[0])
    if not runs:
        raise CliBenchError("no run was started by the tickets")
    return {"run": runs[0]["id"], "record": record_id}


def commands(ids: dict[str, str]) -> dict[str, list[str]]:
    """The read commands measured, by label (``runs show`` is given the run)."""
    return {
        "--help": ["--help"],
        "--version": ["--version"],
        "runs list": ["runs", "list"],
        "runs show": ["runs", "show", ids["run"]],
        "work list": ["work", "list"],
        "records list": ["records", "list"],
        "records show": ["records", "show", ids["record"]],
        "definitions list": ["definitions", "list"],
        "definitions show": ["definitions", "show", "ticket_flow"],
        "fallout list": ["fallout", "list"],
        "incidents list": ["incidents", "list"],
    }


TICKET = ["records", "create", "Ticket", "--json", "--data", '{"subject": "Toner low"}']


def write_commands() -> dict[str, tuple[list[str] | None, list[str]]]:
    """The write commands measured, by label: (what runs unmeasured before each sample, the
    command). ``worker --until-idle`` runs one new ticket's jobs each time."""
    return {
        "validate": (None, ["validate"]),
        "deploy": (None, ["deploy"]),
        "records create": (None, TICKET),
        "worker --until-idle": (TICKET, ["worker", "--until-idle"]),
    }


def measure(src: Path, repeat: int, records: int, db: str | None, write: bool = False,
            ir: bool = False) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="baton-cli-bench-") as tmp:
        baton = Baton(src, Path(tmp) / "project", db, Path(tmp) / "pycache", ir=ir)
        ids = make_project(baton, records)
        out: dict[str, Any] = {}
        todo = write_commands() if write else {k: (None, v) for k, v in commands(ids).items()}
        for label, (before, args) in todo.items():
            if before:
                baton.run(*before)
            baton.run(*args)  # once unmeasured: every module's bytecode is cached from now on
            samples = []
            for _ in range(1 if ir else repeat):
                if before:
                    baton.run(*before)
                samples.append(baton.sample(*args) if ir else round(baton.sample(*args), 4))
            if ir:
                out[label] = {"ir": int(samples[0])}
            else:
                out[label] = {"median_cpu_s": round(statistics.median(samples), 3),
                              "min_cpu_s": round(min(samples), 3), "samples_cpu_s": samples}
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5,
                        help="runs of each command; the median is reported (default 5)")
    parser.add_argument("--records", type=int, default=5,
                        help="tickets created in the fresh project (default 5)")
    parser.add_argument("--db", help="database URL for the fresh project (BATON_DB), e.g. an "
                                     "empty PostgreSQL database; default: the project's SQLite file")
    parser.add_argument("--src", type=Path, default=REPO / "src",
                        help="the Baton source folder the measured commands run "
                             "(default: this checkout's)")
    parser.add_argument("--write", action="store_true",
                        help="measure the write commands (validate, deploy, records create, "
                             "worker --until-idle) instead of the read commands")
    parser.add_argument("--ir", action="store_true",
                        help="count instructions with valgrind (callgrind Ir, one run each) "
                             "instead of timing CPU")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.records < 1:
        parser.error("--repeat and --records must be at least 1")
    load = round(os.getloadavg()[0], 2)
    try:
        figures = measure(args.src.resolve(), args.repeat, args.records, args.db,
                          write=args.write, ir=args.ir)
    except (CliBenchError, subprocess.TimeoutExpired) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    result = {"src": str(args.src.resolve()), "database": "postgresql" if args.db and
              args.db.startswith("postgresql") else "sqlite", "repeat": args.repeat,
              "target_cpu_s": TARGET_CPU_S, "loadavg_1m_at_start": load,
              "loadavg_1m_at_end": round(os.getloadavg()[0], 2), "commands": figures}
    if args.json:
        print(json.dumps(result))
        return 0
    if args.ir:
        print(f"Instructions per command (callgrind Ir, one run), {result['database']}, "
              f"{args.src}:")
        for label, m in figures.items():
            print(f"  baton {label:<20} {m['ir']:>15,}")
        return 0
    print(f"CPU per command (user + system, median of {args.repeat}), {result['database']}, "
          f"{args.src} (load {load} → {result['loadavg_1m_at_end']}); target < {TARGET_CPU_S} s:")
    for label, m in figures.items():
        mark = "" if m["median_cpu_s"] < TARGET_CPU_S else "  (over the target)"
        print(f"  baton {label:<20} {m['median_cpu_s']:.3f} s  (min {m['min_cpu_s']:.3f}){mark}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
