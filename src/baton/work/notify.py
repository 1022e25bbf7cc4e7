"""E-mail notifications: SLA ``notify`` actions and work-item assignments.

Resolution happens when the notification is queued (inside the engine transaction, no
I/O); sending happens on a worker outside any transaction (job kind ``email``).

Configuration comes in as :class:`baton.settings.Settings` (read from ``BATON_SMTP_*``,
``BATON_BASE_URL``, ``BATON_NOTIFY_*`` and ``BATON_USER_EMAILS`` by the ``baton`` command):
``Settings.smtp`` says where messages go and what they link to, ``notify_addresses`` and
``user_emails`` resolve names to addresses, ``notify_assignments`` turns assignment
e-mails on (``Engine(notify_assignments=...)`` overrides it).

``smtplib``, ``ssl`` and ``email`` are imported when a message is built or sent (on a
worker that sends one): every ``baton`` command that opens the Engine imports this module,
and most never send mail.

Every message has what RFC 5322 requires and mail providers check (``Date``, a
``Message-ID``: a server such as Gmail refuses mail without one) and says it is automatic
(``Auto-Submitted: auto-generated``, RFC 3834): the out-of-office reply of someone away, who
is often why they have a delegate, is not sent back to Baton's address. STARTTLS checks the
server's certificate and name (the system's CAs, or ``SSL_CERT_FILE``) before the SMTP
password is sent: ``smtplib``'s default would send it to anyone in the middle.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import TYPE_CHECKING, Any

from baton.clock import SystemClock, parse_iso
from baton.definitions.model import PRIORITIES
from baton.settings import Settings, SmtpSettings

if TYPE_CHECKING:
    from email.message import EmailMessage
    from email.policy import EmailPolicy

log = logging.getLogger("baton.notify")

SMTP_TIMEOUT = 10.0  # seconds
MAX_ATTEMPTS = 5
RETRY_BASE = 30.0  # seconds; the n-th failure waits RETRY_BASE * 2**(n-1)


def resolve_recipients(names: Iterable[str], assignee: str | Sequence[str] | None,
                       settings: Settings) -> tuple[list[str], list[str]]:
    """Names -> (addresses, unresolved names). ``assignee`` is the work item's user name,
    or the names of everyone working it (its user, who claimed it, her delegate).

    An entry with ``@`` is an address; ``assignee`` is the work item's assignee (an address
    itself, or through ``settings.user_emails``); other names go through
    ``settings.notify_addresses``.
    """
    groups = settings.notify_addresses
    users = settings.user_emails
    people = [assignee] if isinstance(assignee, str) else list(assignee or ())
    found: list[str] = []
    unresolved: list[str] = []
    for name in names:
        if "@" in name:
            hits: Any = name
        elif name == "assignee":
            hits = [a if "@" in a else users.get(a) for a in people if a]
        else:
            hits = groups.get(name)
        hits = [hits] if isinstance(hits, str) else hits
        addresses = [a for a in (hits or []) if isinstance(a, str) and "@" in a]
        if not addresses:
            unresolved.append(name)
        found.extend(a for a in addresses if a not in found)
    return found, unresolved


def assignment_message(item: Mapping[str, Any], object_type: str | None = None,
                       previous: str | None = None) -> tuple[str, str, str]:
    """(subject, plain text, HTML fragment) telling people a work item is theirs.

    ``item`` is the work item's row; ``previous`` the assignee it was taken from (a
    reassignment). The link to the item is added when the message is sent.
    """
    title = " ".join(str(item["title"]).split())  # a header line: no line breaks
    prio = item.get("priority")
    priority = PRIORITIES[prio] if isinstance(prio, int) and 0 <= prio < len(PRIORITIES) \
        else "normal"
    record = f"{object_type} {item['record_id']}" if object_type and item.get("record_id") \
        else item.get("record_id") or "-"
    rows = [
        ("Work item", str(item["id"])),
        ("Assigned to", f"{item['assignee_kind']} {item['assignee']}"),
        *([("Reassigned from", previous.replace(":", " ", 1))] if previous else []),
        ("Priority", priority),
        ("Due", when_text(item.get("due_at"))),
        ("Record", record),
        ("Run", f"{item['run_id']} ({item['orchestration']}, step {item['step']})"),
    ]
    subject = f"[Baton] Work item for you: {title}"
    if priority in ("high", "urgent"):
        subject += f" ({priority} priority)"
    width = max(len(k) for k, _ in rows) + 2
    text = "\n".join([f"{title}", "", *(f"{k + ':':<{width}}{v}" for k, v in rows)])
    cells = "\n".join(f"<tr><th align=\"left\">{html.escape(k)}</th><td>{html.escape(v)}</td></tr>"
                      for k, v in rows)
    body = f"<h2>{html.escape(title)}</h2>\n<table>\n{cells}\n</table>"
    instructions = (item.get("instructions") or "").strip()
    if instructions:
        text += f"\n\nInstructions:\n{instructions}"
        body += "\n<h3>Instructions</h3>\n<p>" + html.escape(instructions).replace(
            "\n", "<br>\n") + "</p>"
    return subject, text, body


def when_text(at: str | None) -> str:
    """An ISO time as people read it: ``2026-01-05 13:00 UTC``. (Users have no time zone
    of their own in the directory: e-mails say UTC, as delegation dates are.)"""
    if not at:
        return "-"
    try:
        return parse_iso(at).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    except ValueError:
        return at


# Lines up to RFC 5322's limit, not folded at 78: Python folds a subject of about 70 to 77
# characters whole onto a continuation line, which reads back with a leading space (work
# item titles from records are often that long).
@cache
def message_policy() -> EmailPolicy[EmailMessage]:
    """The messages' ``email`` policy (``email.policy.default``, lines up to 998)."""
    from email import policy

    return policy.default.clone(max_line_length=998)


def message_id(settings: SmtpSettings, local: str | None = None) -> str:
    """A ``Message-ID`` at the sender's domain: ``<LOCAL@DOMAIN>``; a random ``LOCAL``
    when none is given. The worker gives one made from the job (its run and number), so a
    message sent again after a retry or a crash (the server took it, the worker did not
    learn so) carries the same id, which servers and mail programs use to drop the copy."""
    import secrets

    domain = settings.sender.rpartition("@")[2].strip("<> ") or "localhost"
    local = "".join(c for c in (local or "") if c.isalnum() or c in ".-_") \
        or f"baton.{secrets.token_hex(12)}"
    return f"<{local}@{domain}>"


def build_message(settings: SmtpSettings, recipients: list[str], subject: str, text: str,
                  run_id: str | None = None, *, link: str | None = None,
                  html_body: str | None = None, msg_id: str | None = None,
                  at: datetime | None = None) -> EmailMessage:
    """A plain text message with an HTML alternative.

    ``link`` is a path in the web UI (``/work/ID``): the message links to it under
    ``settings.base_url``. Without it the message links to the run (when a base URL is set).
    ``html_body`` replaces the HTML rendering of ``text``. ``msg_id`` is the
    ``Message-ID`` (see :func:`message_id`; a new one if None), ``at`` the ``Date``
    (now if None).
    """
    body = html_body if html_body is not None else f"<pre>{html.escape(text)}</pre>"
    if link is not None:
        url = f"{settings.base_url}{link}" if settings.base_url else None
        if url:
            plain = f"{text}\n\nOpen it in the Work Guide: {url}\n"
            body += (f'\n<p><a href="{html.escape(url)}">Open it in the Work Guide</a><br>'
                     f"{html.escape(url)}</p>")
        else:  # no base URL known to this worker: the path still finds it in the web UI
            plain = f"{text}\n\nOpen it in the Work Guide: {link}\n"
            body += f"\n<p>Open it in the Work Guide: {html.escape(link)}</p>"
    else:
        url = f"{settings.base_url}/runs/{run_id}" if settings.base_url and run_id else None
        plain = text + (f"\n\n{url}\n" if url else "\n")
        if url:
            body += f'\n<p><a href="{html.escape(url)}">{html.escape(url)}</a></p>'
    from email.message import EmailMessage
    from email.utils import format_datetime

    msg = EmailMessage(policy=message_policy())
    msg["Subject"] = subject
    msg["From"] = settings.sender
    msg["Date"] = format_datetime((at or SystemClock().now()).astimezone(UTC))
    msg["Message-ID"] = msg_id or message_id(settings)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no out-of-office replies to it
    # Members of a group or queue get one message, delivered by envelope: none of them sees
    # the others' addresses.
    msg["To"] = recipients[0] if len(recipients) == 1 else "undisclosed-recipients:;"
    msg.set_content(plain)
    msg.add_alternative(f"<html><body>\n{body}\n</body></html>\n", subtype="html")
    return msg


def send_email(recipients: list[str], subject: str, text: str, run_id: str | None,
               settings: SmtpSettings, *, link: str | None = None,
               html_body: str | None = None, msg_id: str | None = None,
               at: datetime | None = None) -> dict[str, str]:
    """Send one message; raises on any SMTP or network error (the caller retries), and
    when the server refuses every recipient. Returns the recipients it refused while
    taking the message for the others (address -> the server's reply), for the caller to
    report: sending again would repeat the message to those who got it."""
    msg = build_message(settings, recipients, subject, text, run_id, link=link,
                        html_body=html_body, msg_id=msg_id, at=at)
    import smtplib

    with smtplib.SMTP(settings.host, settings.port, timeout=SMTP_TIMEOUT) as smtp:
        if settings.starttls:
            import ssl

            # Verified (CAs, host name), unlike smtplib's default, before any password.
            smtp.starttls(context=ssl.create_default_context())
        if settings.user:
            smtp.login(settings.user, settings.password or "")
        refused = smtp.send_message(msg, from_addr=settings.sender, to_addrs=recipients)
    return {rcpt: f"{code} {reply.decode('utf-8', 'replace')}"
            for rcpt, (code, reply) in refused.items()}


def retry_delay(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed try."""
    return RETRY_BASE * 2.0 ** max(attempts - 1, 0)
