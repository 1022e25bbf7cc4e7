"""E-mail notifications (SLA ``notify`` actions): recipients, the message, SMTP.

Resolution happens when the notification is queued (inside the engine transaction, no
I/O); sending happens on a worker outside any transaction (job kind ``email``).

Environment:

* ``BATON_SMTP_HOST`` (127.0.0.1), ``BATON_SMTP_PORT`` (25), ``BATON_SMTP_FROM``
  (baton@localhost), ``BATON_SMTP_USER`` / ``BATON_SMTP_PASSWORD`` (optional),
  ``BATON_SMTP_STARTTLS`` (0/1), ``BATON_BASE_URL`` (links in the message).
* ``BATON_NOTIFY_ADDRESSES``: JSON object, name -> address or list of addresses.
* ``BATON_USER_EMAILS``: JSON object, user name -> address (for ``assignee``).
"""

from __future__ import annotations

import html
import json
import logging
import os
import smtplib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

log = logging.getLogger("baton.notify")

SMTP_TIMEOUT = 10.0  # seconds
MAX_ATTEMPTS = 5
RETRY_BASE = 30.0  # seconds; the n-th failure waits RETRY_BASE * 2**(n-1)


def _json_env(name: str) -> dict[str, Any]:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("%s is not valid JSON; ignored", name)
        return {}
    if not isinstance(value, dict):
        log.warning("%s is not a JSON object; ignored", name)
        return {}
    return value


def resolve_recipients(names: Iterable[str], assignee: str | None = None,
                       ) -> tuple[list[str], list[str]]:
    """Names -> (addresses, unresolved names). ``assignee`` is the work item's user name.

    An entry with ``@`` is an address; ``assignee`` is the work item's assignee (an address
    itself, or through ``BATON_USER_EMAILS``); other names go through ``BATON_NOTIFY_ADDRESSES``.
    """
    groups = _json_env("BATON_NOTIFY_ADDRESSES")
    users = _json_env("BATON_USER_EMAILS")
    found: list[str] = []
    unresolved: list[str] = []
    for name in names:
        if "@" in name:
            hits: Any = name
        elif name == "assignee":
            hits = None
            if assignee:
                hits = assignee if "@" in assignee else users.get(assignee)
        else:
            hits = groups.get(name)
        hits = [hits] if isinstance(hits, str) else hits
        addresses = [a for a in (hits or []) if isinstance(a, str) and "@" in a]
        if not addresses:
            unresolved.append(name)
        found.extend(a for a in addresses if a not in found)
    return found, unresolved


@dataclass(frozen=True)
class SmtpSettings:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "baton@localhost"
    user: str | None = None
    password: str | None = None
    starttls: bool = False
    base_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SmtpSettings:
        e = os.environ if env is None else env
        return cls(
            host=e.get("BATON_SMTP_HOST") or "127.0.0.1",
            port=int(e.get("BATON_SMTP_PORT") or 25),
            sender=e.get("BATON_SMTP_FROM") or "baton@localhost",
            user=e.get("BATON_SMTP_USER") or None,
            password=e.get("BATON_SMTP_PASSWORD") or None,
            starttls=(e.get("BATON_SMTP_STARTTLS") or "0").strip().lower() in ("1", "true", "yes"),
            base_url=(e.get("BATON_BASE_URL") or "").rstrip("/") or None,
        )


def build_message(settings: SmtpSettings, recipients: list[str], subject: str, text: str,
                  run_id: str | None = None) -> EmailMessage:
    """A plain text message with an HTML alternative (and a link to the run, if configured)."""
    link = f"{settings.base_url}/runs/{run_id}" if settings.base_url and run_id else None
    plain = text + (f"\n\n{link}\n" if link else "\n")
    body = f"<pre>{html.escape(text)}</pre>"
    if link:
        body += f'\n<p><a href="{html.escape(link)}">{html.escape(link)}</a></p>'
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = settings.sender
    msg["To"] = ", ".join(recipients)
    msg.set_content(plain)
    msg.add_alternative(f"<html><body>\n{body}\n</body></html>\n", subtype="html")
    return msg


def send_email(recipients: list[str], subject: str, text: str, run_id: str | None = None,
               settings: SmtpSettings | None = None) -> None:
    """Send one message; raises on any SMTP or network error (the caller retries)."""
    settings = settings or SmtpSettings.from_env()
    msg = build_message(settings, recipients, subject, text, run_id)
    with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        smtp.send_message(msg, from_addr=settings.sender, to_addrs=recipients)


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try."""
    return RETRY_BASE * 2 ** max(attempts - 1, 0)
