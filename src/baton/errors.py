"""One root for every error Baton raises on purpose.

The CLI and (later) the HTTP API translate these at the edge only; everything
inside raises or returns them as values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


class BatonError(Exception):
    """Root of every error Baton raises on purpose.

    Every Baton error pickles and copies whole (its message and its attributes), whatever
    its constructor takes: it can cross a process boundary (``multiprocessing``, a process
    pool) and come back as itself.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException's own reduce calls ``cls(*self.args)``: ``args`` holds the message
        # alone, which a subclass whose constructor takes other arguments (NotFound(kind,
        # key), ValidationError(what, fields) ...) refuses or misreads. Rebuilt without
        # calling the constructor instead, then given its attributes back.
        return (_rebuilt, (type(self), self.args), self.__dict__)


def _rebuilt(cls: type[BatonError], args: tuple[Any, ...]) -> BatonError:
    """A Baton error as :meth:`BatonError.__reduce__` saved it (its attributes follow)."""
    exc = cls.__new__(cls, *args)
    exc.args = args
    return exc


@dataclass(frozen=True)
class Issue:
    """One located problem in a definition file.

    ``path`` is the position inside the document (``stages[0].steps[2].after``),
    ``line`` is 1-based (0 when unknown).
    """

    file: str
    line: int
    path: str
    message: str
    # "error": the definition cannot be deployed; "warning": it can, but probably does not do
    # what its author meant (``baton validate`` and the Definitions page show both).
    level: str = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        if self.level != "error":
            where = f"{where} {self.level}:"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where} {self.message}"


class DefinitionError(BatonError):
    """A definition is invalid; carries every problem found, not only the first."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = list(issues)
        n = len(self.issues)
        head = f"{n} problem{'s' if n != 1 else ''} found"
        super().__init__(head + "\n" + "\n".join(str(i) for i in self.issues))


class ExpressionError(BatonError):
    """An expression failed to compile or to evaluate.

    ``position`` is a 1-based column in ``source`` when the CEL runtime reports one.
    """

    def __init__(self, source: str, reason: str, position: int | None = None) -> None:
        self.source = source
        self.reason = reason
        self.position = position
        at = f" at column {position}" if position else ""
        super().__init__(f"expression {source!r}{at}: {reason}")


class ValidationError(BatonError):
    """Data (a record, a form submission, run input) does not fit its schema.

    ``fields`` maps each bad field to what is wrong with it, all at once.
    """

    def __init__(self, what: str, fields: dict[str, str]) -> None:
        self.what = what
        self.fields = dict(fields)
        detail = "; ".join(f"{k}: {v}" for k, v in self.fields.items())
        super().__init__(f"invalid {what}: {detail}")


class NotFound(BatonError):
    """A thing that was asked for by id or name does not exist."""

    def __init__(self, kind: str, key: str, hint: str = "") -> None:
        self.kind = kind
        self.key = key
        super().__init__(f"{kind} {key!r} not found" + (f" ({hint})" if hint else ""))


class TransitionConflict(BatonError):
    """A compare-and-set write found the row in another state or version.

    Raised for stale record versions, a work item someone else claimed first, a
    step that moved on while a worker ran it. The message says what to do.
    """


class PermissionDenied(BatonError):
    """The actor may not do this."""


class StepFailure(BatonError):
    """Raised by a flow to fail its step with a business reason.

    ``retryable=False`` tells the retry policy (issue: retries) not to retry.
    A step type may attach ``audit`` (events appended with the failure, e.g. the calls it
    made) and ``details`` (merged into the step's error).
    """

    audit: tuple[Mapping[str, Any], ...] = ()
    details: dict[str, Any] | None = None

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None):
        self.retryable = retryable
        self.retry_after = retry_after
        super().__init__(message)


class ConfigError(BatonError):
    """The project folder, baton.toml or the database URL is unusable."""


class IdempotencyKeyTaken(TransitionConflict):
    """Another request with the same idempotency key committed first: this one created
    nothing; the caller answers with the first request's response."""

    def __init__(self, principal: str, key: str) -> None:
        self.principal = principal
        self.key = key
        super().__init__(f"a request with idempotency key {key!r} was made already "
                         "(or is in progress): retry it to get its response")
