"""The step-type registry: the built-in types, and what a registration may not take."""

from __future__ import annotations

import pytest

from baton.errors import BatonError
from baton.runtime import worker
from baton.steps import registry
from baton.steps.base import JobStepType


class _Named(JobStepType):
    def __init__(self, name: str, job_kind: str | None) -> None:
        self.name, self.job_kind = name, job_kind


def test_builtin_types_in_the_order_messages_list_them() -> None:
    assert registry.names()[:4] == ("background", "interactive", "milestone", "pause")
    assert registry.for_job("step") is registry.get("background")
    assert registry.option_owners()["signal"] == ("pause",)


def test_a_name_or_a_job_kind_is_taken_once() -> None:
    with pytest.raises(BatonError, match="already registered"):
        registry.register(_Named("pause", None))
    with pytest.raises(BatonError, match="job kind 'step'"):
        registry.register(_Named("other", "step"))
    # the worker's own kinds (timers, e-mail…) are reserved when it is imported
    assert set(worker._ENGINE_JOBS) >= {"timer", "email"}
    with pytest.raises(BatonError, match="job kind 'timer'"):
        registry.register(_Named("other", "timer"))
    assert registry.get("other") is None


def test_unregister_forgets_the_type_and_its_job_kind() -> None:
    registry.register(_Named("probe", "probe_job"))
    assert registry.for_job("probe_job") is registry.get("probe")
    registry.unregister("probe")
    assert registry.get("probe") is None and registry.for_job("probe_job") is None
