"""Baton: durable business process orchestration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton.errors import BatonError, StepFailure
from baton.flows import FlowContext, flow

if TYPE_CHECKING:
    from baton.runtime.engine import Engine

__all__ = ["BatonError", "Engine", "FlowContext", "StepFailure", "flow"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # ``from baton import Engine`` without importing the database layer for every user of
    # ``baton.flow`` (a flow module, a worker's child process): loaded on first use.
    if name == "Engine":
        from baton.runtime.engine import Engine

        return Engine
    raise AttributeError(f"module 'baton' has no attribute {name!r}")
