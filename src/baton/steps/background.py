"""``type: background``: run a registered flow in a worker job.

The flow runs outside any transaction, at least once; its output, the run variables it
changed and its record updates commit with the step's completion, exactly once. A failed
attempt is retried per the step's ``retry`` policy (``decide()``), then ``on_failure``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from baton.clock import SystemClock
from baton.definitions.checks import Checker, Scope, check_flow, check_input, join
from baton.definitions.model import StepDefinition
from baton.errors import StepFailure
from baton.flows import get_flow
from baton.steps.base import JobStepType, StepOutput, StepWork
from baton.steps.flowrun import run_flow

log = logging.getLogger("baton.worker")
_UNSET = object()


class FlowNotHere(StepFailure):
    """The flow a step names is not registered in this worker process. Often not the
    step's fault: the flow was added after the worker imported its project's flow modules
    (a worker does not load code again), and a worker started since has it. The worker hands
    the job back to the queue for a while (another worker, or this one restarted, may run
    it); then the step fails, retryable (its ``retry`` policy applies), with the hint."""

    def __init__(self, flow: str) -> None:
        self.flow = flow
        super().__init__(missing_flow_message(flow), retryable=True)


def missing_flow_message(flow: str) -> str:
    """Why ``flow`` is not in this worker, as near as it can tell: its project's flow
    modules name it now, or changed since this process imported them (the worker must be
    restarted), or not (the module that registers it is not listed in baton.toml)."""
    watch = FLOW_FILES
    if watch is not None and (watch.mentions(flow) or watch.changed()):
        return (f"flow {flow!r} was not there when this worker started (PID {watch.pid}, "
                f"started at {watch.started_at}): restart the workers after changing flow "
                "modules")
    return (f"flow {flow!r} is not registered in this worker (is its module listed under "
            "flows in baton.toml?)")


class FlowFiles:
    """The project's flow module files as a worker process imported them (their mtimes),
    to tell when one changed since: a worker keeps running the code it imported.

    Made before the flow modules are imported (the files baton.toml lists), then told of
    the project's modules the import brought in (:meth:`add_imported`). :meth:`check` (the
    workers' heartbeat, every few seconds: one ``stat`` per file) logs a warning once per
    file that changed. Files are few: a package's .py files, at most MAX_FILES in all."""

    MAX_FILES = 200

    def __init__(self, root: Path, modules: Iterable[str]) -> None:
        self.root = root.resolve()
        self.pid = os.getpid()
        # (when this process started, for a person reading the log: the wall clock's)
        self.started_at = SystemClock().now().isoformat(timespec="seconds").replace(
            "+00:00", "Z")
        self.listed: list[Path] = []  # the modules baton.toml lists (searched for a flow)
        self._mtimes: dict[Path, float | None] = {}
        self._warned: set[Path] = set()
        self._lock = threading.Lock()
        for module in modules:
            rel = Path(*module.split("."))
            file, package = self.root / rel.with_suffix(".py"), self.root / rel
            if file.is_file():
                self.listed.append(file)
            elif (package / "__init__.py").is_file():
                self.listed.extend(sorted(package.rglob("*.py"))[:self.MAX_FILES])
        for path in self.listed:
            self._note(path)

    def add_imported(self) -> None:
        """Watch too the project's own modules the flow modules imported (helpers beside
        flows.py): those of ``sys.modules`` whose file is in the project folder."""
        prefix = str(self.root) + os.sep  # (the project's modules are imported from there)
        for module in list(sys.modules.values()):
            name = getattr(module, "__file__", None)
            if not isinstance(name, str) or not name.startswith(prefix) \
                    or not name.endswith(".py"):
                continue
            path = Path(name)
            if path not in self._mtimes \
                    and not any(p in ("site-packages", "dist-packages") for p in path.parts):
                self._note(path)

    def _note(self, path: Path) -> None:
        if len(self._mtimes) < self.MAX_FILES:
            self._mtimes[path] = _mtime(path)

    def changed(self) -> list[Path]:
        """The watched files whose mtime is not what it was (or that are gone)."""
        return [p for p, m in self._mtimes.items() if _mtime(p) != m]

    def mentions(self, flow: str) -> bool:
        """Whether a listed module's text names ``flow`` as a quoted string (its ``@flow``)."""
        quoted = (f'"{flow}"', f"'{flow}'")
        for path in self.listed:
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            if any(q in text for q in quoted):
                return True
        return False

    def check(self) -> None:
        """Log a warning, once per file, for each watched file changed since the import."""
        changed = [p for p in self.changed() if p not in self._warned]
        if not changed:
            return
        with self._lock:  # (the heartbeats of several worker threads: told once)
            changed = [p for p in changed if p not in self._warned]
            self._warned.update(changed)
        for path in changed:
            log.warning("flow module %s changed since this worker (PID %d, started at %s) "
                        "imported it: it runs the code it imported; restart the workers to "
                        "run the new code", _shown(path, self.root), self.pid, self.started_at)


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _shown(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


FLOW_FILES: FlowFiles | None = None
"""This process's project flow files, set by ``baton worker`` and ``baton serve``
(:func:`watch_flow_files`); None in a process that did not (the Python API, tests)."""


def watch_flow_files(root: Path, modules: Iterable[str]) -> FlowFiles:
    """Note the flow module files of the project at ``root`` as they are now, before they
    are imported; call ``add_imported()`` on the result after."""
    global FLOW_FILES
    FLOW_FILES = FlowFiles(root, modules)
    return FLOW_FILES


class Background(JobStepType):
    name = "background"
    keys = ("flow", "input", "timeout")
    job_kind = "step"  # the jobs table's kind for these attempts (a durable format)

    def validate(self, ck: Checker, path: str, step: Mapping[str, Any], scope: Scope) -> None:
        if "flow" in step:
            check_flow(ck, join(path, "flow"), step["flow"], scope.known_flows)
        else:
            ck.add(join(path, "flow"),
                   "required key 'flow' is missing (a background step runs a flow)")
        if "input" in step:
            check_input(ck, join(path, "input"), step["input"], scope)

    def chainable(self, step: StepDefinition) -> bool:
        # A flow this worker has: it runs in the batch that made the step ready.
        return step.flow is not None and get_flow(step.flow) is not None

    def run_job(self, work: StepWork) -> StepOutput:
        name = work.payload["flow"]
        fn = get_flow(name)
        if fn is None:
            raise FlowNotHere(name)
        done = run_flow(work.flows, name, fn, work.payload.get("timeout_ms"), work.run,
                        work.step.name, work.iteration, work.record, work.orchestration,
                        work.payload.get("input"), work.records)
        output = done.output
        if output is None:
            output = {}
        if not isinstance(output, dict):
            raise StepFailure(f"flow {name!r} returned {type(output).__name__}, not a dict",
                              retryable=False)
        before = work.run.vars
        changed = {k: v for k, v in done.vars.items() if before.get(k, _UNSET) != v}
        return StepOutput(output, changed or None, done.record_updates)

BACKGROUND = Background()
