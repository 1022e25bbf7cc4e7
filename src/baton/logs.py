"""Log output for ``baton serve`` and ``baton worker``: plain text lines, or one JSON object
a line (``--log-format json`` / ``BATON_LOG_FORMAT=json``) for a log pipeline.

Both go through the standard library's ``logging`` (Baton's own loggers, uvicorn's, its
access log); structlog renders them. In JSON each line carries the ids the worker binds
while it runs a job (``run_id``, ``step``, ``job_id``, ``job_kind``), so every line about a
run can be found by its id.

structlog is imported only when JSON logs are asked for: text logs (the default, and what
``baton worker`` prints in a terminal) need only ``logging``, and importing structlog costs
every worker command ~10 ms of CPU it would not use.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_context = False  # bind ids for log lines (JSON logs only: text lines do not show them)


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Send every log record to stderr in ``fmt`` (``text`` or ``json``)."""
    global _context
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        import structlog
        from structlog.contextvars import merge_contextvars

        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso", utc=True, key="at"),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(serializer=_dumps),
            ],
        ))
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        lg = logging.getLogger(name)  # through the root handler, in the same format
        lg.handlers[:] = []
        lg.propagate = True
    _context = fmt == "json"


def _dumps(obj: Any, **_: Any) -> str:
    return orjson.dumps(obj, default=str).decode()


def binds_context() -> bool:
    """Does :func:`job_context` bind anything (JSON logs)? A hot path may skip it if not."""
    return _context


@contextmanager
def job_context(**ids: Any) -> Iterator[None]:
    """Ids every log line written inside carries (JSON logs); free otherwise."""
    if not _context:
        yield
        return
    from structlog.contextvars import bound_contextvars  # JSON logs: configure imported it

    with bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield
