"""``baton bench``: the reference benchmark (WORKLOAD.md), with an optional comparison.

Registered in :mod:`baton.cli.commands` with ``app.add_typer(bench_app, name="bench")``; it
also runs on its own (``python -c "from baton.cli.bench import bench_app; bench_app()"``).

The benchmark itself is the repository's top-level ``bench/`` folder, not part of the
installed package (the wheel does not carry it): this command finds it beside the package's
source when Baton is installed from a checkout (``pip install -e .``), and says so clearly
otherwise.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from baton.cli.output import console, err_console, print_error, print_json
from baton.errors import BatonError, ConfigError
from baton.settings import Settings

if TYPE_CHECKING:  # loaded by the bench command itself: every `baton` command imports this module
    from rich.progress import Progress, TaskID

bench_app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                        help="Benchmarks: the reference case-triage workload.")


def checkout_root() -> Path | None:
    """The repository this package's source lives in, if it is a checkout with ``bench/``."""
    root = Path(__file__).resolve().parents[3]  # src/baton/cli/bench.py -> the repository
    return root if (root / "bench" / "triage.py").is_file() else None


def load_triage() -> ModuleType:
    """``bench.triage`` from the checkout Baton runs from; ConfigError when there is none."""
    root = checkout_root()
    if root is None:
        raise ConfigError("baton bench needs a checkout of the Baton repository: the benchmark "
                          "(bench/triage.py) is not installed with the package. Clone the "
                          "repository and install it with `pip install -e '.[bench]'`")
    if str(root) not in sys.path:  # worker processes (spawn) inherit sys.path
        sys.path.insert(0, str(root))
    return importlib.import_module("bench.triage")


@bench_app.callback()
def _bench() -> None:
    """Benchmarks: the reference case-triage workload (WORKLOAD.md)."""


class _RichReporter:
    """One progress line per phase (Baton's repetitions, each SpiffWorkflow run), on stderr."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def phase(self, label: str, total: int | None) -> None:
        if self.task is not None:
            self.progress.update(self.task, visible=False)
            self.progress.stop_task(self.task)
        self.task = self.progress.add_task(label, total=total, note="")

    def update(self, done: int, note: str = "") -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, note=note)


@bench_app.command("triage")
def triage(
    runs: Annotated[int, typer.Option("--runs", "-n", help="Cases (runs) per repetition")] = 2000,
    db: Annotated[str | None, typer.Option(
        "--db", help="sqlite:///FOLDER/NAME.db (fresh files are made next to it, per repetition) or "
                     "postgresql://USER@HOST/DB (a fresh database is created on that server and "
                     "dropped). Default: SQLite files in a temporary folder.")] = None,
    workers: Annotated[int, typer.Option("--workers", "-k", help="Worker processes")] = 1,
    repeat: Annotated[int, typer.Option("--repeat", "-r", help="Repetitions (median, min, max)")] = 1,
    rate: Annotated[float | None, typer.Option(
        help="Records created per second (latency at a moderate load). Default: as fast as possible")] = None,
    batch: Annotated[int, typer.Option(help="Worker batch size (jobs claimed per transaction)")] = 256,
    compare: Annotated[list[str] | None, typer.Option(
        help="Also run another engine at the same N, in a subprocess: spiffworkflow "
             "(in memory, durable with Baton's batching, durable after every step; needs "
             "the 'bench' extra)")] = None,
    cpus: Annotated[int | None, typer.Option(
        "--cpus", help="Pin every process of every engine to this many CPUs (the first this "
                       "process may use); --cpus 1: all on one core, per-core efficiency")] = None,
    noise: Annotated[bool, typer.Option(
        "--noise", help="Run a CPU-bound neighbour (one busy process) during each measured "
                        "run, so the figure under contention is reproducible")] = False,
    examples: Annotated[Path | None, typer.Option(help="Examples folder (with case_triage/)")] = None,
    keep: Annotated[bool, typer.Option("--keep", help="Keep the benchmark databases")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object for machines")] = False,
) -> None:
    """Run N Case records through the seed process (case_triage), every run verified, and
    print runs/s, CPU per run, steps/s, latency and RSS.

    Examples:
      baton bench triage --runs 2000 --workers 2 --repeat 3
      baton bench triage --runs 500 --db postgresql://postgres@127.0.0.1/postgres --json
    """
    try:
        triage_mod = load_triage()
        cfg = triage_mod.BenchConfig(runs=runs, db=db, workers=workers, repeat=repeat, rate=rate,
                                     batch=batch, examples=examples,
                                     compare=tuple(compare or ()), keep=keep, cpus=cpus,
                                     noise=noise,
                                     settings=Settings.from_environment())
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        with Progress(SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(),
                      MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[note]}"),
                      console=err_console, transient=True) as progress:
            result = triage_mod.run_benchmark(cfg, _RichReporter(progress))
    except BatonError as exc:
        print_error(str(exc))
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/red]")
        raise typer.Exit(130) from None
    if as_json:
        print_json(result)
    else:
        print_table(result)


SPIFF_LABELS = {
    "memory": "in memory",
    "durable-batched": "state to SQLite in batches (as Baton's)",
    "durable-per-step": "state to SQLite after each step",
}


def _spread(s: dict[str, Any], fmt: str = "{:,.1f}") -> str:
    if s.get("median") is None:
        return "—"
    if s["min"] == s["max"]:
        return fmt.format(s["median"])
    return f"{fmt.format(s['median'])} [dim]({fmt.format(s['min'])}–{fmt.format(s['max'])})[/dim]"


def _lat(sp: dict[str, Any], key: str) -> str:
    vals = [sp[f"{key}_{p}"]["median"] for p in ("p50", "p95", "p99")]
    return " / ".join("—" if v is None else f"{v:,.0f}" for v in vals)


def _mib(n: float | None) -> str:
    return "—" if n is None else f"{n / 1024 / 1024:,.1f} MiB"


def print_table(r: dict[str, Any]) -> None:
    d = r["durability"]
    if d["database"] == "sqlite":
        db = f"SQLite {d['sqlite_version']}, {d['journal_mode']}, synchronous={d['synchronous']}"
    else:
        db = (f"PostgreSQL {d['server_version']}, synchronous_commit={d['synchronous_commit']}, "
              f"fsync={d['fsync']}")
    from rich.table import Table

    reps = r["repeat"]
    t = Table(title=f"Case triage, N={r['runs']:,} ({r['steps']:,} steps), "
                    f"{reps} repetition{'s' if reps != 1 else ''}: median (min–max)",
              title_justify="left")
    for col, just in (("engine", "left"), ("durable?", "left"), ("runs/s", "right"),
                      ("CPU ms/run", "right"), ("steps/s", "right"),
                      ("first step p50/p95/p99 ms", "right"),
                      ("complete p50/p95/p99 ms", "right"), ("peak RSS", "right"),
                      ("database", "right")):
        t.add_column(col, justify=just)  # type: ignore[arg-type]
    sp = r["spread"]
    t.add_row(f"Baton {r['version']}, {r['workers']} worker process{'es' if r['workers'] != 1 else ''}",
              "yes" if d["durable"] else "[red]no[/red]",
              _spread(sp["runs_per_s"]), _spread(sp["cpu_ms_per_run"], "{:,.2f}"),
              _spread(sp["steps_per_s"]),
              _lat(sp, "latency_first_step_ms"), _lat(sp, "latency_complete_ms"),
              _spread(sp["peak_rss_mib"], "{:,.1f}") + " MiB", _mib(r["db_bytes"]))
    for c in r["compare"].values():
        t.add_row(f"SpiffWorkflow {c['version']}, {SPIFF_LABELS.get(c['mode'], c['mode'])}",
                  "yes" if c["durable"] else "no",
                  _spread(c["spread"]["runs_per_s"]),
                  _spread(c["spread"]["cpu_ms_per_run"], "{:,.2f}"),
                  _spread(c["spread"]["steps_per_s"]),
                  "—", "—", _spread(c["spread"]["peak_rss_mib"], "{:,.1f}") + " MiB",
                  _mib(c.get("db_bytes")))
    console.print(t)
    lines = [f"Database: {db}" + ("" if d["durable"] else " [red](not durable)[/red]"),
             f"Workers: {r['workers']} process(es), batch {r['batch']}; records created "
             + ("as fast as possible" if r["rate"] is None else f"at {r['rate']:g}/s")
             + f" in chunks; host: {r['host']['cpus']} CPUs, load {r['host']['loadavg_1m_at_start']}",
             (f"Peak RSS: driver {r['peak_rss_driver_mib']} MiB, largest worker "
              f"{r['peak_rss_workers_mib']} MiB, all processes {r['peak_rss_total_mib']} MiB"),
             ("CPU per run: Baton's driver and worker processes summed; SpiffWorkflow's one "
              "process (user + system time over the timed span)."),
             "Verified: every run completed with exactly 5 (8 if escalated) counted steps."]
    if r.get("cpus_pinned"):
        lines.append(f"Pinned: every process on CPU(s) {', '.join(map(str, r['cpus_pinned']))}")
    if r.get("noise"):
        got = "; ".join(f"{k} {', '.join(f'{x:g}' for x in v)} s"
                        for k, v in r["noise"]["cpu_s"].items())
        lines.append(f"Noise: one busy process during each measured run (its CPU: {got})")
    for c in r["compare"].values():
        key = c["mode"].replace("-", "_")
        ratio, cpu = r.get(f"ratio_vs_spiffworkflow_{key}"), r.get(f"cpu_ratio_vs_spiffworkflow_{key}")
        if ratio is not None:
            lines.append(f"Baton ÷ SpiffWorkflow {c['mode']}: runs/s {ratio:g}×"
                         + ("" if cpu is None else f", CPU per run {cpu:g}×"))
    if reps < 3:
        lines.append("[dim]WORKLOAD.md asks for the spread over at least 3 repetitions: --repeat 3[/dim]")
    if r.get("kept_databases"):
        lines.append("Kept: " + ", ".join(r["kept_databases"]))
    for line in lines:
        console.print(line, highlight=False)


__all__ = ["bench_app", "checkout_root", "load_triage", "print_table", "triage"]
