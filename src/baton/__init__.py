"""Baton: durable business process orchestration."""

from baton.errors import BatonError, StepFailure
from baton.flows import FlowContext, flow

__all__ = ["BatonError", "FlowContext", "StepFailure", "flow"]
__version__ = "0.1.0"
