"""Loopback helpers for tests: a free TCP port, and a real SMTP server (aiosmtpd) that
keeps what it receives."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from tests.needs import need


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Inbox:
    """An aiosmtpd handler: every message delivered, with its envelope recipients."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((list(envelope.rcpt_tos), message_from_bytes(envelope.content,
                                                                     policy=policy.default)))
        return "250 OK"


@contextmanager
def smtp_server(harness: Any) -> Iterator[Inbox]:
    """An SMTP server on a free loopback port for the test; the harness's
    BATON_SMTP_HOST/PORT (``Harness.setenv``) point at it."""
    controller = need("aiosmtpd.controller")
    box = Inbox()
    port = free_port()
    ctl = controller.Controller(box, hostname="127.0.0.1", port=port)
    ctl.start()
    harness.setenv(BATON_SMTP_HOST="127.0.0.1", BATON_SMTP_PORT=str(port))
    try:
        yield box
    finally:
        ctl.stop()
