"""Baton: durable business process orchestration.

The Python API: :class:`Engine` (``from baton import Engine``), flows (``@flow``, their
:class:`FlowContext`), :class:`Settings` and the errors every method raises (all of them
:class:`BatonError`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton.errors import (
    BatonError,
    ConfigError,
    DefinitionError,
    NotFound,
    PermissionDenied,
    StepFailure,
    TransitionConflict,
    ValidationError,
)
from baton.flows import FlowContext, flow

if TYPE_CHECKING:
    from baton.runtime.engine import Engine
    from baton.settings import Settings

__all__ = ["BatonError", "ConfigError", "DefinitionError", "Engine", "FlowContext", "NotFound",
           "PermissionDenied", "Settings", "StepFailure", "TransitionConflict",
           "ValidationError", "flow"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``from baton import Engine`` without importing the database layer for every user of
    # ``baton.flow`` (a flow module, a worker's child process): loaded on first use.
    if name == "Engine":
        from baton.runtime.engine import Engine

        return Engine
    if name == "Settings":
        from baton.settings import Settings

        return Settings
    raise AttributeError(f"module 'baton' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
