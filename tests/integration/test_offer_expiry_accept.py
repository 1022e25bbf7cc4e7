"""An offer past its timeout cannot be accepted, even before the worker has run its expiry
timer (found by an audit: the acceptance won the race against the timer); until then it can.
Both backends, virtual time."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from baton.errors import TransitionConflict
from tests.integration.test_routing import case, events
from tests.integration.test_routing_offers import TWO, item_of, offers


def test_an_offer_past_its_timeout_is_not_accepted_and_its_timer_passes_it_on(
        harness: Any, clock: Any) -> None:
    offers(harness, TWO)
    rec, item = case(harness)
    clock.advance(timedelta(minutes=2))  # the timeout passed; no worker has run its timer
    with pytest.raises(TransitionConflict, match="expired at 2026-01-05T09:02:00"):
        harness.engine.accept(item["id"], "ann")
    assert events(harness, rec, "offer_accepted") == []
    harness.work()  # the timer: bob is offered it
    now = item_of(harness, rec)
    assert (now["assignee"], now["routing_status"]) == ("bob", "offered")
    (expired,) = events(harness, rec, "offer_expired")
    assert expired["user"] == "ann"


def test_an_offer_a_moment_before_its_timeout_is_accepted(harness: Any, clock: Any) -> None:
    offers(harness, TWO)
    _rec, item = case(harness)
    clock.advance(timedelta(minutes=1, seconds=59))
    accepted = harness.engine.accept(item["id"], "ann")
    assert (accepted["assignee"], accepted["routing_status"]) == ("ann", "routed")
