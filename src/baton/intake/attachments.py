"""Attachments of intake's messages: which are kept, and the text read from them.

Kept as blobs in the database, content-addressed by sha256 (``baton_blobs``), not as files:
the message, its record and its attachments are then written in ONE transaction on either
store (a file cannot take part in a PostgreSQL transaction, and a file folder would be one
more thing to back up, share between ``baton serve`` and ``baton worker`` hosts and keep in
step with the database). Content-addressed, the same PDF sent ten times is stored once.

A mailbox's policy (:class:`~baton.definitions.model.AttachmentPolicy`) decides what is
stored: a MIME allow-list and a size cap; the others are listed on the message as refused,
with the reason, and their bytes are dropped.

The text is read when the message arrives (outside the transaction: it is CPU work), so that
AI steps and expressions read it from the record (the mailbox role ``attachments_text``) or
from :meth:`~baton.intake.service.IntakeService.attachments_text`:

* PDF: the text of its pages with ``pypdf`` (a scan without a text layer has none);
* ``text/html``: converted like an HTML mail body;
* other ``text/*``: decoded with the part's charset (UTF-8, else Latin-1).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

from baton.definitions.model import AttachmentPolicy
from baton.intake.mail import Attachment, html_to_text

MAX_TEXT = 500_000  # characters of text kept per attachment
MAX_PAGES = 500  # pages of a PDF read

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Intake:
    """One attachment as intake decided: stored (with its text) or refused (with why)."""

    attachment: Attachment
    refused: str | None  # why it is not stored; None: stored
    text: str | None = None  # the text read from it; None: none could be read
    text_error: str | None = None  # why no text could be read

    @property
    def stored(self) -> bool:
        return self.refused is None


def decide(attachments: tuple[Attachment, ...], policy: AttachmentPolicy) -> list[Intake]:
    out: list[Intake] = []
    for a in attachments:
        refused = policy.refusal(a.content_type, a.size)
        if refused is not None:
            out.append(Intake(a, refused))
            continue
        text, error = extract_text(a.content_type, a.data)
        out.append(Intake(a, None, text, error))
    return out


def extract_text(content_type: str, data: bytes) -> tuple[str | None, str | None]:
    """``(text, None)``, or ``(None, why)`` when no text can be read from the content."""
    kind = content_type.lower()
    if kind == "application/pdf":
        return _pdf_text(data)
    if kind == "text/html":
        return html_to_text(_decode(data))[:MAX_TEXT], None
    if kind.startswith("text/"):
        return _decode(data)[:MAX_TEXT], None
    return None, f"no text is read from {kind}"


def _decode(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\x00", "")  # (no database stores NUL in text)


def _pdf_text(data: bytes) -> tuple[str | None, str | None]:
    from pypdf import PdfReader  # (imported when a PDF arrives, not with intake)
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return None, "the PDF is encrypted"
        pages: list[str] = []
        size = 0
        for page in reader.pages[:MAX_PAGES]:
            text = page.extract_text() or ""
            pages.append(text.strip())
            size += len(text)
            if size >= MAX_TEXT:
                break
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError) as exc:
        # A broken PDF is still stored and downloadable; only its text is missing.
        log.info("no text read from a PDF: %s", exc)
        return None, f"the PDF could not be read: {str(exc)[:200] or type(exc).__name__}"
    text = "\n\n".join(p for p in pages if p).replace("\x00", "").strip()
    if not text:
        return None, "the PDF has no text layer (a scan?)"
    return text[:MAX_TEXT], None


def joined(texts: list[tuple[str, str]], limit: int) -> str:
    """Several attachments' texts as one, each under its file name."""
    out = "\n\n".join(f"--- {name} ---\n{text}" for name, text in texts if text)
    return out[:limit]
