"""The parcel carrier of ``baton demo``: a small HTTP service on loopback that the
order_fulfillment example's ``ship`` callout steps call for real.

``POST /api/shipments`` (bearer token required) books a shipment and answers
``201 {trackingId}``; each idempotency key takes effect once (a repeat gets the first
answer). The carrier is busy for the first shipment it sees — ``503`` with
``Retry-After: 0`` — so the demo shows a callout retried with the same idempotency key and
booked once.
"""

from __future__ import annotations

import json
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.cli.loopback import LoopbackJsonService


@dataclass
class CarrierStats:
    requests: int = 0
    booked: int = 0  # effective: distinct idempotency keys that booked a shipment
    busy: int = 0  # answered 503 (the step retries)
    repeated: int = 0  # a key seen before: answered with the first booking
    refused: int = 0  # no or a wrong token


class DemoCarrier(LoopbackJsonService):
    """Start with :meth:`start`; ``url`` and ``token`` are what the demo gives the
    ``carrier`` connection (base URL, ``env:CARRIER_TOKEN``)."""

    name = "demo-carrier"

    def __init__(self, *, busy_first: bool = True) -> None:
        super().__init__()
        self.token = secrets.token_urlsafe(24)
        self.busy_first = busy_first  # answer the first shipment 503 once (a retry to show)
        self.stats = CarrierStats()
        self._bookings: dict[str, dict[str, Any]] = {}
        self._busy_once: str | None = None  # the key answered 503 once
        self._lock = threading.Lock()

    def start(self) -> DemoCarrier:
        super().start()
        return self

    def receive(self, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, Any, dict[str, str]]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.stats.requests += 1
            if lower.get("authorization") != f"Bearer {self.token}":
                self.stats.refused += 1
                return 401, {"error": "unauthorized"}, {}
        if path != "/api/shipments":
            return 404, {"error": "no such resource"}, {}
        key = lower.get("idempotency-key", "")
        try:
            shipment = json.loads(body)
            order = str(shipment["order"])
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "expected a JSON shipment with order"}, {}
        if not key:
            return 400, {"error": "an Idempotency-Key header is required"}, {}
        with self._lock:
            first = self._bookings.get(key)
            if first is not None:
                self.stats.repeated += 1
                return 201, first, {}
            if self.busy_first and self._busy_once is None:  # busy: come back at once
                self._busy_once = key
                self.stats.busy += 1
                return 503, {"error": "the carrier is busy"}, {"Retry-After": "0"}
            self.stats.booked += 1
            booking = {"trackingId": f"TRK-{self.stats.booked:05d}", "order": order,
                       "status": "booked"}
            self._bookings[key] = booking
            return 201, booking, {}


EXAMPLE_URL = "http://127.0.0.1:8766"  # examples/order_fulfillment/definitions/carrier.yaml


def pointed_at(folder: Path, carrier_url: str) -> dict[str, str]:
    """order_fulfillment's definitions (file name -> YAML), its carrier connection pointed
    at ``carrier_url`` (a :class:`DemoCarrier`'s), for ``Engine.deploy(texts=...)``."""
    texts = {}
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        if path.name == "carrier.yaml":
            text = text.replace(EXAMPLE_URL, carrier_url)
        texts[path.name] = text
    return texts
