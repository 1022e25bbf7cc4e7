"""The bank of ``baton demo``: a small HTTP service on loopback that the address_update
example's callout step calls for real.

``POST /api/addresses`` (bearer token required) takes an address change and answers
``202 {ackId}`` at once; each idempotency key takes effect once (a repeat gets the first
answer). A moment later the bank confirms by calling the step back at the ``reply_to`` URL
the request carried, signed with HMAC-SHA256 over ``"<timestamp>.<body>"``, as the
connection's ``callback:`` requires.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baton.cli.loopback import LoopbackJsonService
from baton.clock import SystemClock


@dataclass
class BankStats:
    requests: int = 0
    effective: int = 0
    callbacks_sent: int = 0
    callbacks_accepted: int = 0
    refused: int = 0
    errors: list[str] = field(default_factory=list)


class DemoBank(LoopbackJsonService):
    """Start with :meth:`start`; ``url``, ``token`` and ``hmac_secret`` are what the demo
    hands its connection (base URL, ``env:`` secrets)."""

    name = "demo-bank"

    def __init__(self, confirm_after: float = 0.05) -> None:
        super().__init__()
        self.token = secrets.token_urlsafe(24)
        self.hmac_secret = secrets.token_urlsafe(24)
        self.confirm_after = confirm_after
        self.stats = BankStats()
        self._answers: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._callbacks = ThreadPoolExecutor(4, thread_name_prefix="demo-bank-callback")

    def start(self) -> DemoBank:
        super().start()
        return self

    def stop(self) -> None:
        super().stop()
        self._callbacks.shutdown(wait=True)

    def receive(self, path: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, Any, dict[str, str]]:
        lower = {k.lower(): v for k, v in headers.items()}
        with self._lock:
            self.stats.requests += 1
        if lower.get("authorization") != f"Bearer {self.token}":
            with self._lock:
                self.stats.refused += 1
            return 401, {"error": "unauthorized"}, {}
        if path != "/api/addresses":
            return 404, {"error": "no such resource"}, {}
        try:
            change = json.loads(body)
            reply_to = str(change["reply_to"])
        except (ValueError, KeyError, TypeError):
            return 400, {"error": "expected a JSON address change with reply_to"}, {}
        key = lower.get("idempotency-key", "")
        with self._lock:
            first = self._answers.get(key)
            if first is not None:
                return 202, first, {}
            self.stats.effective += 1
            n = self.stats.effective
            reference = "BNK-" + hashlib.sha256(key.encode()).hexdigest()[:8]
            answer = {"ackId": f"ACK-{n:05d}", "status": "received"}
            self._answers[key] = answer
        self._callbacks.submit(self._confirm, reply_to, {
            "status": "confirmed", "reference": reference,
            "account_number": change.get("account_number")})
        return 202, answer, {}

    def _confirm(self, url: str, data: dict[str, Any]) -> None:
        time.sleep(self.confirm_after)
        raw = json.dumps(data).encode()
        stamp = str(int(SystemClock().now().timestamp()))
        signature = hmac.new(self.hmac_secret.encode(), stamp.encode() + b"." + raw,
                             hashlib.sha256).hexdigest()
        request = urllib.request.Request(url, data=raw, method="POST", headers={
            "Content-Type": "application/json", "X-Timestamp": stamp,
            "X-Signature": signature})
        with self._lock:
            self.stats.callbacks_sent += 1
        for attempt in range(5):  # the demo's API may still be starting
            try:
                with urllib.request.urlopen(request, timeout=10) as r:
                    if r.status in (200, 202):
                        with self._lock:
                            self.stats.callbacks_accepted += 1
                    return
            except OSError as exc:
                if attempt == 4:
                    with self._lock:
                        self.stats.errors.append(f"callback to {url.split('/api')[0]}: {exc}")
                time.sleep(0.2 * (attempt + 1))
