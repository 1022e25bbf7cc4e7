"""The SMTP listener ``baton serve --smtp HOST:PORT`` starts (aiosmtpd on its own thread).

Each message of a session goes to :meth:`IntakeService.accept` with its envelope
recipients. What a sending server learns, per the SMTP codes it understands:

* ``RCPT TO`` a recipient no mailbox takes (or outside ``allowed_domains``): ``550``, before
  the data is sent at all;
* a message over the size limit (``--smtp-max-bytes``, else the intake setting
  ``BATON_INTAKE_MAX_MESSAGE_BYTES`` / ``[intake] max_message_bytes``, 25 MiB by default):
  ``552`` (aiosmtpd enforces ``data_size_limit``; its ``EHLO`` announces it as ``SIZE``);
* a message intake will never take, however often it is sent (:data:`REFUSED`): ``554``
  with the reason, so the sender's server bounces it now and says why: not an e-mail, or a
  record its mailbox's object type refuses for what the message holds ("subject: is
  required (the message's subject is empty)");
* a message whose values the database refuses (a constraint, a trigger: again every time):
  ``554``, the reason logged (not sent: it may show what the message holds);
* anything else that fails (a database locked or away, a definition no message can
  satisfy, a bug): ``451``, a temporary failure: the server retries later, and the message
  arrives once that is fixed (a retry of a message already stored is a duplicate, accepted
  without a second case);
* otherwise ``250`` once the message and its record are committed.

A refused message (5xx: over the size limit, refused by intake or by the database) is
recorded as refused (``baton intake refused``): by intake for what it refuses, here for a
message too large, which aiosmtpd answers itself (at ``MAIL FROM … SIZE=``, or once the
data ran over) without the data: its sender and recipients as the envelope says them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Sequence
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from baton.errors import BatonError, NotFound
from baton.intake.mail import MAX_MESSAGE_BYTES
from baton.intake.service import REFUSED, IntakeService
from baton.settings import INTAKE_BOUNDS

log = logging.getLogger("baton.intake.smtp")

DEFAULT_MAX_BYTES = MAX_MESSAGE_BYTES  # (the default of the intake setting)
REPLY_TEXT = 400  # characters of a reason in a reply line (RFC 5321: 512 octets a line)


class _Handler:
    def __init__(self, intake: IntakeService, allowed_domains: Sequence[str],
                 max_bytes: int) -> None:
        self.intake = intake
        self.max_bytes = max_bytes  # (aiosmtpd refuses a larger message before DATA ends)
        self.domains = tuple(d.lower().lstrip("@") for d in allowed_domains)
        self.received = 0

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        domain = address.rpartition("@")[2].lower()
        if self.domains and domain not in self.domains:
            return f"550 5.7.1 relaying to {domain} is not allowed"
        if not self.intake.accepts(address):
            return f"550 5.1.1 no mailbox for {address}"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if isinstance(raw, str):
            raw = raw.encode("utf-8", "surrogateescape")
        loop = asyncio.get_running_loop()
        try:  # the commit runs on a thread: other sessions go on meanwhile
            got = await loop.run_in_executor(None, functools.partial(
                self.intake.accept, raw, via="smtp", recipients=list(envelope.rcpt_tos),
                max_bytes=self.max_bytes))
        except REFUSED as exc:
            log.warning("message refused: %s", exc)  # (no address: personal data)
            return reply("554 5.6.0", str(exc))
        except NotFound as exc:
            return reply("550 5.1.1", str(exc))
        except Exception as exc:  # not the message's fault (a database away, a bug): retried
            if self.intake.store.refuses_data(exc):  # (its values: refused again every time)
                log.error("message refused by the database: %s", _first_line(exc))
                return "554 5.3.0 the message could not be stored (its values were refused)"
            if isinstance(exc, BatonError) or self.intake.store.is_transient(exc):
                log.warning("message not taken now: %s", exc)
            else:
                log.exception("message not taken now")
            return "451 4.3.0 try again later"
        self.received += 1
        log.info("message %s: %s (record %s)", got.message_id, got.outcome, got.record_id)
        return f"250 OK {got.outcome}"


_MAIL_FROM = re.compile(r"^\s*FROM:\s*<([^<>\s]{0,320})>", re.IGNORECASE)
_SIZE = re.compile(r"\sSIZE=([0-9]{1,20})(?:\s|$)", re.IGNORECASE)


class _Server(SMTP):
    """aiosmtpd's session, with the messages it refuses for their size itself (552, the
    handler never called) recorded as refused."""

    _mail_arg = ""

    async def smtp_MAIL(self, arg: str) -> None:
        self._mail_arg = arg or ""  # (what a 552 at MAIL FROM says the message was)
        await super().smtp_MAIL(arg)

    async def push(self, status: Any) -> None:
        if isinstance(status, str) and status.startswith("552"):
            await self._too_large()
        await super().push(status)

    async def _too_large(self) -> None:
        handler = self.event_handler
        if not isinstance(handler, _Handler):
            return
        envelope = self.envelope
        recipients = list(envelope.rcpt_tos) if envelope is not None else []
        sender = envelope.mail_from if envelope is not None else None
        size: int | None = None
        if not recipients:  # refused at MAIL FROM, for the SIZE it announced
            said = _MAIL_FROM.match(self._mail_arg)
            sender = said.group(1) if said else None
            announced = _SIZE.search(self._mail_arg)
            size = int(announced.group(1)) if announced else None
        reason = (f"the message is over {handler.max_bytes:,} bytes: at most that many are "
                  "taken (--smtp-max-bytes, else the intake setting max_message_bytes); "
                  "answered 552")
        try:
            await asyncio.get_running_loop().run_in_executor(None, functools.partial(
                handler.intake.note_refusal, "smtp", reason, outcome="too_large", size=size,
                sender=sender, recipients=recipients))
        except Exception as exc:  # noqa: BLE001 - (the loop shutting down): the 552 stands
            log.warning("a refusal for size could not be recorded: %s", exc)


class _Controller(Controller):
    def factory(self) -> SMTP:
        return _Server(self.handler, **self.SMTP_kwargs)


class SmtpListener:
    """Start with :meth:`start`, stop with :meth:`stop` (the port is bound on start)."""

    def __init__(self, intake: IntakeService, host: str, port: int, *,
                 max_bytes: int | None = None, allowed_domains: Sequence[str] = ()) -> None:
        """``max_bytes``: the largest message taken (``--smtp-max-bytes``); None: the intake
        setting (``intake.limits.max_message_bytes``)."""
        if max_bytes is None:
            max_bytes = intake.limits.max_message_bytes
        least, most, _ = INTAKE_BOUNDS["max_message_bytes"]
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) \
                or not least <= max_bytes <= most:
            raise BatonError(f"--smtp-max-bytes={max_bytes!r} must be a whole number of bytes "
                             f"from {least:,} to {most:,}")
        self.handler = _Handler(intake, allowed_domains, max_bytes)
        self.controller = _Controller(self.handler, hostname=host, port=port,
                                      data_size_limit=max_bytes, ready_timeout=10,
                                      server_hostname="baton")

    @property
    def port(self) -> int:
        return int(self.controller.port)

    def start(self) -> None:
        self.controller.start()

    def stop(self) -> None:
        self.controller.stop()


def _first_line(exc: BaseException) -> str:
    """A database error in one line: the driver's message (never SQLAlchemy's statement and
    parameters: personal data)."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def reply(code: str, text: str) -> str:
    """An SMTP reply line: ``code`` and ``text`` on one line of printable ASCII (the
    listener speaks no SMTPUTF8), shortened to :data:`REPLY_TEXT` characters."""
    line = " ".join(text.encode("ascii", "backslashreplace").decode("ascii").split())
    line = "".join(ch if ch.isprintable() else "?" for ch in line)
    if len(line) > REPLY_TEXT:
        line = line[:REPLY_TEXT - 3] + "..."
    return f"{code} {line}"


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` as ``--smtp`` takes it."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise BatonError(f"--smtp wants HOST:PORT (e.g. 127.0.0.1:2525), got {text!r}")
    return host.strip("[]"), int(port)
