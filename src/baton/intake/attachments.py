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

* PDF: the text of its first :data:`MAX_PAGES` pages with ``pypdf``, read in a process of
  its own within :data:`PDF_SECONDS` and :data:`PDF_MEMORY`, and the PDFs of one message
  within :data:`PDF_MESSAGE_SECONDS` in all (a hostile PDF, a few KB that inflate to GBs
  or hours of work, is stored without text and ``text_error`` says why; a scan without a
  text layer has none);
* ``text/html``: converted like an HTML mail body;
* other ``text/*``: decoded with the part's charset (UTF-8, else Latin-1).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from baton.definitions.model import AttachmentPolicy
from baton.intake.mail import Attachment, html_to_text

MAX_TEXT = 500_000  # characters of text kept per attachment
MAX_PAGES = 500  # pages of a PDF read
PDF_SECONDS = 30.0
"""Wall-clock seconds one PDF's text may take (its reader process is killed after)."""
PDF_MEMORY = 1024 * 1024 * 1024
"""Bytes of address space the PDF reader's process may use."""
PDF_MESSAGE_SECONDS = 120.0
"""Wall-clock seconds the PDFs of one message may take in all (later ones are not read)."""

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
    started = time.monotonic()
    for a in attachments:
        refused = policy.refusal(a.content_type, a.size)
        if refused is not None:
            out.append(Intake(a, refused))
            continue
        left = PDF_MESSAGE_SECONDS - (time.monotonic() - started)
        text, error = extract_text(a.content_type, a.data, seconds=left)
        out.append(Intake(a, None, text, error))
    return out


def extract_text(content_type: str, data: bytes, *, seconds: float | None = None
                 ) -> tuple[str | None, str | None]:
    """``(text, None)``, or ``(None, why)`` when no text can be read from the content
    (``seconds``: what is left of the message's time for PDFs)."""
    kind = content_type.lower()
    if kind == "application/pdf":
        if seconds is not None and seconds <= 0:
            return None, (f"not read: the message's PDFs took the {PDF_MESSAGE_SECONDS:g} s "
                          "they may take in all")
        return _pdf_text(data, PDF_SECONDS if seconds is None else min(PDF_SECONDS, seconds))
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


def _pdf_text(data: bytes, seconds: float) -> tuple[str | None, str | None]:
    """The PDF's text, read by :mod:`baton.intake.pdfchild` in a process of its own, within
    ``seconds`` and :data:`PDF_MEMORY`: past either, the PDF is stored without its text,
    and ``text_error`` says which limit stopped it."""
    command = [sys.executable, "-I", str(Path(__file__).with_name("pdfchild.py")),
               str(MAX_PAGES), str(MAX_TEXT), str(PDF_MEMORY)]
    try:
        done = subprocess.run(command, input=data, capture_output=True, timeout=seconds,
                              check=False)
    except subprocess.TimeoutExpired:
        log.warning("no text read from a PDF: stopped after %.3g s", seconds)
        return None, f"reading the PDF's text took longer than {seconds:.3g} s: stopped"
    except OSError as exc:
        return None, f"the PDF could not be read: {exc.strerror or exc}"
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = None
    if done.returncode != 0 or not isinstance(result, dict):
        log.warning("no text read from a PDF: its reader ended with status %s: %s",
                    done.returncode, done.stderr[-300:].decode("utf-8", "replace"))
        return None, f"the PDF could not be read: its reader ended with status {done.returncode}"
    if result.get("error"):
        log.info("no text read from a PDF: %s", result["error"])
        return None, str(result["error"])
    return str(result.get("text") or "")[:MAX_TEXT] or None, None


def joined(texts: list[tuple[str, str]], limit: int) -> str:
    """Several attachments' texts as one, each under its file name."""
    out = "\n\n".join(f"--- {name} ---\n{text}" for name, text in texts if text)
    return out[:limit]
