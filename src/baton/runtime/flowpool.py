"""Flow processes: flows a worker can stop, by killing the process they run in.

Python cannot stop a thread, so a flow that must be stoppable (its step has a ``timeout``,
or the deployment says ``isolation = "process"``) runs in a child process of the worker:
the worker sends it a copy of the flow's context (its steps excepted: the child asks for
those its flow reads, as it asks for ``ctx.records``) and waits, at most until the timeout;
then it SIGKILLs and reaps the child (no CPU or memory is held after the attempt fails)
and forks another on next use. A child may get an address-space limit (``RLIMIT_AS``) so
a flow that allocates without bound fails with ``MemoryError`` there instead of growing
the worker.

Children are started with ``os.fork``, lazily, from the worker process: the child has every
flow the parent has registered, including ones registered at run time (tests register
flows inline; ``spawn`` or ``forkserver`` would only see modules it can import again).
A child that predates a registration is replaced (:func:`baton.flows.registry_generation`).
The caveat of ``fork`` in a threaded process: the child gets a copy of every lock as it
was, so it must not use what other threads of the worker hold (database connections and
pools, the logging handlers' streams); it only runs the flow, its logging goes back to the
parent through the pipe, and it never touches the parent's connections. A flow importing a
module for the first time while another worker thread was importing at the fork may find
that import's lock held (rare: import what flows need at module level). Python 3.12+ warns
about forking a threaded process for these reasons; ``spawn`` would avoid them, but it does
not see flows registered at run time and a replacement would take a fresh interpreter's
start (~100 ms) instead of a fork's few milliseconds.

A child exits when its pipe closes or its parent dies (it watches ``getppid()`` from a
thread, so even a flow that never returns does not outlive the worker).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import resource
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from types import MappingProxyType
from typing import Any, cast

from baton.errors import BatonError, StepFailure
from baton.flows import (
    FIND_LIMIT,
    AmbiguousStep,
    FlowContext,
    RecordReader,
    StepView,
    flow_logger,
    get_flow,
    registry_generation,
)
from baton.steps.flowrun import FlowProcessDied, FlowRaised, StepTimeout

log = logging.getLogger("baton.flowpool")

PARENT_CHECK_SECONDS = 0.5  # how often a child looks whether its worker is still there


@dataclass(frozen=True)
class _Call:
    """What crosses to the child: the flow's name and a copy of its context but for its
    steps, which the child asks for when its flow reads them (a plan's run has thousands:
    :class:`_PipeSteps`)."""

    flow: str
    run_id: str
    step: str
    iteration: int
    record: dict[str, Any] | None
    vars: dict[str, Any]
    input: dict[str, Any]


class FlowPool:
    """Up to ``size`` flow processes, shared by the threads of a worker (thread-safe).

    ``memory_mb``: the address space each child may add to what it was forked with.
    """

    def __init__(self, size: int, memory_mb: int | None = None) -> None:
        self.size = max(1, size)
        self.memory_mb = memory_mb
        self._idle: list[_Child] = []
        self._children: set[_Child] = set()  # idle and busy
        self._cond = threading.Condition()
        self._fork_lock = threading.Lock()
        self._closed = False

    def call(self, name: str, ctx: FlowContext, timeout_ms: int | None) -> Any:
        """Run the flow ``name`` on a copy of ``ctx`` in a child; as ``FlowRunner`` says."""
        call = _Call(name, ctx.run_id, ctx.step, ctx.iteration,
                     dict(ctx.record) if ctx.has_record else None, ctx.vars, dict(ctx.input))
        child = self._acquire()
        try:
            kind, payload = child.ask(call, timeout_ms, ctx.records, ctx.steps)
            if kind == "error" and payload["type"] == "MemoryError":
                child.kill()  # its heap may stay at the limit: not reused
        except BaseException:
            child.kill()  # overran, died, or we were interrupted mid-call: never reused
            raise
        finally:
            self._release(child)
        if kind == "error":
            if payload["type"] == "MemoryError" and self.memory_mb:
                raise StepFailure(f"flow {name!r} exceeded its memory limit of "
                                  f"{self.memory_mb} MiB (RLIMIT_AS)", retryable=True)
            raise FlowRaised(payload["type"], payload["message"],
                             retryable=payload["retryable"], retry_after=payload["retry_after"],
                             traceback_text=payload["traceback"])
        output, vars_, updates = payload
        ctx.vars.clear()
        ctx.vars.update(vars_)
        if updates:
            ctx.update_record(updates)
        return output

    def pids(self) -> list[int]:
        """The flow processes alive now (for tests and diagnostics)."""
        with self._cond:
            return sorted(c.pid for c in self._children if c.alive())

    def close(self) -> None:
        """Kill and reap every child; later calls fork new ones."""
        with self._cond:
            children, self._idle = list(self._children), []
            self._children.clear()
            self._cond.notify_all()
        for child in children:
            child.kill()

    def _acquire(self) -> _Child:
        generation = registry_generation()
        with self._cond:
            while True:
                while self._idle:
                    child = self._idle.pop()
                    if child.generation == generation and child.alive():
                        return child
                    self._children.discard(child)
                    child.kill()  # older than a flow registered since, or dead while idle
                if len(self._children) < self.size:
                    break
                self._cond.wait()
            placeholder = _Child.reserve()
            self._children.add(placeholder)
        try:
            child = self._fork(generation)
        except BaseException:
            with self._cond:
                self._children.discard(placeholder)
                self._cond.notify()
            raise
        with self._cond:
            self._children.discard(placeholder)
            self._children.add(child)
        return child

    def _release(self, child: _Child) -> None:
        with self._cond:
            if child.usable and child in self._children:
                self._idle.append(child)
            else:
                self._children.discard(child)
            self._cond.notify()

    def _fork(self, generation: int) -> _Child:
        # os.fork, not multiprocessing's Process: a daemonic process (the benchmark's
        # workers, anyone's multiprocessing worker) may not start one.
        # One fork at a time, and the parent's copy of the child's end closed before the
        # next: a child forked in between would hold it open, and the parent would not see
        # EOF when this child dies.
        with self._fork_lock:
            with self._cond:
                others = [c.conn for c in self._children if c.conn is not None]
            parent_end, child_end = multiprocessing.Pipe()
            parent = os.getpid()
            pid = os.fork()
            if pid == 0:  # the child: never returns
                code = 1
                try:
                    for c in (parent_end, *others):  # the worker's ends of the pipes
                        c.close()
                    _child_main(child_end, parent, self.memory_mb)
                    code = 0
                except BaseException:  # noqa: BLE001 - reported; the worker sees the exit
                    traceback.print_exc()
                    sys.stderr.flush()
                finally:
                    os._exit(code)
            child_end.close()
        return _Child(pid, parent_end, generation)


class _Child:
    """One flow process, seen from the worker (pid 0: a place kept while one is forked)."""

    def __init__(self, pid: int, conn: Connection | None, generation: int) -> None:
        self.pid = pid
        self.conn = conn
        self.generation = generation
        self.usable = pid != 0
        self.status: int | None = None  # the exit code once reaped (negative: a signal)

    @classmethod
    def reserve(cls) -> _Child:
        """A place in the pool for a child being forked."""
        return cls(0, None, -1)

    def alive(self) -> bool:
        if self.pid == 0 or self.status is not None:
            return False
        return not self._reap(os.WNOHANG)

    def _reap(self, options: int) -> bool:
        """waitpid; True once the child is reaped (its exit code kept)."""
        if self.status is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, options)
        except ChildProcessError:  # reaped elsewhere
            self.status = -signal.SIGKILL
            return True
        if pid == 0:
            return False
        self.status = os.waitstatus_to_exitcode(status)
        return True

    def ask(self, call: _Call, timeout_ms: int | None,
            records: RecordReader | None = None,
            steps: Mapping[str, StepView] | None = None) -> tuple[str, Any]:
        """Send the call; wait for its answer, re-emitting the child's log records and
        answering its ``ctx.records`` reads (made here, in the worker, with its store) and
        its ``ctx.steps`` reads (from the context the call was made with)."""
        assert self.conn is not None
        deadline = time.monotonic() + timeout_ms / 1000 if timeout_ms else None
        try:
            self.conn.send(call)
            while True:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not self.conn.poll(remaining):
                    raise StepTimeout(f"attempt overran its timeout of {timeout_ms} ms; flow "
                                      f"{call.flow!r} was stopped (its process killed)",
                                      retryable=True)
                kind, payload = self.conn.recv()
                if kind == "records":
                    self.conn.send(("records", _read(records, payload)))
                    continue
                if kind == "steps":
                    self.conn.send(("steps", _steps_read(steps or {}, payload)))
                    continue
                if kind != "log":
                    return kind, payload
                _emit(payload)
        except (EOFError, OSError):
            self._reap(0)
            raise FlowProcessDied(f"flow {call.flow!r}: its process (pid {self.pid}) died "
                                  f"({_exit_status(self.status)})", retryable=True) from None

    def kill(self) -> None:
        """SIGKILL and reap (a no-op for one already gone)."""
        self.usable = False
        if self.pid and self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(0)
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _exit_status(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (killed: out of memory?)" if -code == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit status {code}"


def _read(records: RecordReader | None, request: tuple[str, tuple[Any, ...], dict[str, Any]]
          ) -> tuple[str, Any]:
    """A child's ``ctx.records`` call, made here: ``("ok", value)`` or ``("error", text)``."""
    method, args, kwargs = request
    try:
        if records is None or method not in ("get", "find"):
            raise BatonError("ctx.records is not available here")
        return "ok", getattr(records, method)(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - raised again in the flow, where it was asked
        return "error", f"{type(exc).__name__}: {exc}" if not isinstance(exc, BatonError) \
            else str(exc)


def _steps_read(steps: Mapping[str, StepView], request: tuple[Any, ...]) -> tuple[str, Any]:
    """A child's ``ctx.steps`` read, answered from the call's context: ``("view", name)``
    (the step's view, or None), ``("names",)``, ``("all",)`` (every view)."""
    try:
        if request[0] == "view":
            return "ok", steps.get(request[1])
        if request[0] == "names":
            return "ok", tuple(steps)
        if request[0] == "all":
            return "ok", dict(steps)
        raise BatonError(f"unknown ctx.steps request {request[0]!r}")
    except AmbiguousStep as exc:  # (a plan template's name meaning several steps)
        return "ambiguous", str(exc)
    except Exception as exc:  # noqa: BLE001 - raised again in the flow, where it was asked
        return "error", f"{type(exc).__name__}: {exc}"


class _PipeSteps(Mapping[str, StepView]):
    """``ctx.steps`` in a flow process: a step's view is asked of the worker when the flow
    first reads it, and kept (the worker's context answers it: the steps as they are during
    the call). A context that outlives its call takes every view before the call's answer
    is sent (:meth:`freeze`), as :func:`baton.steps.flowrun.run_flow` does in the worker."""

    __slots__ = ("__weakref__", "_all", "_conn", "_lock", "_names", "_views")

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        self._conn, self._lock = conn, lock
        self._views: dict[str, StepView | None] = {}
        self._names: tuple[str, ...] | None = None
        self._all = False

    def _ask(self, *request: Any) -> Any:
        with self._lock:
            self._conn.send(("steps", request))
        _, (status, value) = self._conn.recv()
        if status == "ambiguous":
            raise AmbiguousStep(value)
        if status != "ok":
            raise BatonError(value)
        return value

    def freeze(self) -> None:
        """Have every step's view here (while the call lasts: its worker answers)."""
        if not self._all:
            views = cast("dict[str, StepView]", self._ask("all"))
            views.update((n, v) for n, v in self._views.items() if v is not None)
            self._views = dict(views)
            self._names = tuple(views)
            self._all = True

    def __getitem__(self, name: str) -> StepView:
        if name in self._views:
            view = self._views[name]
        elif self._all:
            view = None
        else:
            view = self._views[name] = cast("StepView | None", self._ask("view", name))
        if view is None:
            raise KeyError(name)
        return view

    def _all_names(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = cast("tuple[str, ...]", self._ask("names"))
        return self._names

    def __iter__(self) -> Iterator[str]:
        return iter(self._all_names())

    def __len__(self) -> int:
        return len(self._all_names())

    def __contains__(self, name: object) -> bool:
        if name in self._all_names():
            return True
        # a plan step's flow: a step template's name may mean one of the steps (asked of
        # the worker's context, baton.plans.reads)
        if not isinstance(name, str):
            return False
        try:
            self[name]
        except KeyError:
            return False
        return True


class _PipeRecords:
    """``ctx.records`` in a flow process: each call is asked of the worker over the pipe
    (the child never opens a database connection of its own)."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        self.conn, self.lock = conn, lock

    def _ask(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        with self.lock:
            self.conn.send(("records", (method, args, kwargs)))
        _, (status, value) = self.conn.recv()
        if status != "ok":
            raise BatonError(value)
        return value

    def get(self, record_id: str) -> Mapping[str, Any] | None:
        return cast("Mapping[str, Any] | None", self._ask("get", (record_id,), {}))

    def find(self, object_type: str, /, *, limit: int = FIND_LIMIT,
             **field_values: Any) -> list[Mapping[str, Any]]:
        return cast("list[Mapping[str, Any]]",
                    self._ask("find", (object_type,), {"limit": limit, **field_values}))


def _emit(record: dict[str, Any]) -> None:
    """A log record from a child, handled by the worker's logging as if made here."""
    logging.getLogger(record.get("name") or "baton.flow").handle(logging.makeLogRecord(record))


# ---- in the child ---------------------------------------------------------------------------
def _child_main(conn: Connection, parent: int, memory_mb: int | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the worker, which stops us
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True,
                     name="baton-flow-watch").start()
    send_lock = threading.Lock()
    _forward_logging(conn, send_lock)
    if memory_mb:  # after the thread above: its stack counts against the limit too
        _limit_memory(memory_mb)
    while True:
        try:
            call = conn.recv()
        except (EOFError, OSError):
            return
        steps = _PipeSteps(conn, send_lock)
        kept = weakref.ref(steps)
        reply = _run(call, _PipeRecords(conn, send_lock), steps)
        del steps  # ours: whatever still holds it now is the flow's (see _PipeSteps)
        left = kept()
        if left is not None:
            left.freeze()
        with send_lock:
            try:
                conn.send(reply)
            except Exception as exc:  # noqa: BLE001 - e.g. an output that cannot be pickled
                conn.send(("error", _describe(exc)))


def _run(call: _Call, records: RecordReader, steps: _PipeSteps) -> tuple[str, Any]:
    fn = get_flow(call.flow)
    try:
        if fn is None:
            raise StepFailure(f"flow {call.flow!r} is not registered in this worker",
                              retryable=False)
        ctx = FlowContext(run_id=call.run_id, step=call.step, iteration=call.iteration,
                          record=call.record, vars=call.vars, input=call.input,
                          steps=MappingProxyType(steps),
                          logger=flow_logger(call.run_id, call.step),
                          records=records)
        output = fn(ctx)
        return "ok", (output, ctx.vars, ctx.record_updates)
    except Exception as exc:  # noqa: BLE001 - the attempt's failure, sent to the worker
        return "error", _describe(exc)


def _describe(exc: BaseException) -> dict[str, Any]:
    return {"type": type(exc).__name__, "message": str(exc),
            # as the worker judges an error raised in its own thread
            "retryable": bool(getattr(exc, "retryable", not isinstance(exc, BatonError))),
            "retry_after": getattr(exc, "retry_after", None),
            "traceback": "".join(traceback.format_exception(exc)[-3:])[-2000:]}


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_SECONDS)
    os._exit(1)  # the worker is gone: so is its flow, whatever it is doing


def _limit_memory(memory_mb: int) -> None:
    """Let the child map ``memory_mb`` MiB beyond what it was forked with: a fork starts
    with the worker's whole address space (thread stacks, allocator arenas)."""
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: an absolute limit
        current = 0
    limit = current + memory_mb * 2**20
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


class _PipeHandler(logging.Handler):
    """Sends each record, formatted, to the worker, which hands it to its own handlers."""

    def __init__(self, conn: Connection, lock: threading.Lock) -> None:
        super().__init__()
        self.conn = conn
        self.send_lock = lock

    def emit(self, record: logging.LogRecord) -> None:
        try:
            data = dict(record.__dict__)
            data["msg"], data["args"] = record.getMessage(), None
            if record.exc_info:
                data["exc_text"] = logging.Formatter().formatException(record.exc_info)
            data["exc_info"] = None
            with self.send_lock:
                self.conn.send(("log", data))
        except Exception:  # noqa: BLE001 - a record that cannot be sent is reported, not raised
            self.handleError(record)


def _forward_logging(conn: Connection, lock: threading.Lock) -> None:
    """Route every record of the child through the pipe instead of the handlers it
    inherited (whose locks and streams belong to the worker's threads)."""
    loggers = [logging.getLogger(), *(lg for lg in logging.Logger.manager.loggerDict.values()
                                     if isinstance(lg, logging.Logger))]
    for lg in loggers:
        for h in list(lg.handlers):
            lg.removeHandler(h)
    logging.getLogger().addHandler(_PipeHandler(conn, lock))
