"""Attachments of intake's messages: which are kept, and the text read from them.

Kept as blobs in the database, content-addressed by sha256 (``baton_blobs``), not as files:
the message, its record and its attachments are then written in ONE transaction on either
store (a file cannot take part in a PostgreSQL transaction, and a file folder would be one
more thing to back up, share between ``baton serve`` and ``baton worker`` hosts and keep in
step with the database). Content-addressed, the same PDF sent ten times is stored once.

A mailbox's policy (:class:`~baton.definitions.model.AttachmentPolicy`) decides what is
stored: a MIME allow-list and a size cap; the others are listed on the message as refused,
with the reason, and their bytes are dropped. The allow-list judges the type an attachment
is stored as, which is what its bytes show when they are a known type
(:mod:`baton.intake.sniff`): a PDF sent as ``application/octet-stream`` is a PDF to it, a
program sent as anything is a program. A program (a Windows or ELF executable, a Java
archive, a script: :func:`~baton.intake.sniff.program`) is stored only when the list names
its type: a wildcard (``*/*``, ``application/*``, ``text/*``) does not take one.

The text is read when the message arrives (outside the transaction: it is CPU work), so that
AI steps and expressions read it from the record (the mailbox role ``attachments_text``) or
from :meth:`~baton.intake.service.IntakeService.attachments_text`:

* PDF: the text of its first :data:`MAX_PAGES` pages with ``pypdf``, read in a process of
  its own within :data:`PDF_SECONDS` and :data:`PDF_MEMORY`, and the PDFs of one message
  within :data:`PDF_MESSAGE_SECONDS` in all (a hostile PDF, a few KB that inflate to GBs
  or hours of work, is stored without text and ``text_error`` says why; a scan without a
  text layer has none). Those are the defaults: the settings ``BATON_INTAKE_PDF_*`` /
  ``[intake] pdf_*`` (:class:`~baton.settings.IntakeSettings`) change them. Only bytes
  that are a PDF go to the reader (the type is the one the bytes show:
  :mod:`baton.intake.sniff`);
* ``text/html``: converted like an HTML mail body;
* other ``text/*``: decoded with the part's charset (UTF-8, else Latin-1); binary bytes
  declared as text are stored as ``application/octet-stream``, and no text is read from
  them here either.
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
from baton.intake.mail import MAX_HTML, Attachment, html_to_text
from baton.intake.sniff import aliases, binary, is_pdf, program
from baton.settings import IntakeSettings

_DEFAULTS = IntakeSettings()
MAX_TEXT = 500_000  # characters of text kept per attachment
MAX_PAGES = _DEFAULTS.pdf_max_pages  # pages of a PDF read
PDF_SECONDS = _DEFAULTS.pdf_seconds
"""Wall-clock seconds one PDF's text may take (its reader process is killed after)."""
PDF_MEMORY = _DEFAULTS.pdf_memory_mb * 1024 * 1024
"""Bytes of address space the PDF reader's process may use."""
PDF_MESSAGE_SECONDS = _DEFAULTS.pdf_message_seconds
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


def decide(attachments: tuple[Attachment, ...], policy: AttachmentPolicy,
           limits: IntakeSettings = _DEFAULTS) -> list[Intake]:
    """What is stored of ``attachments`` (the policy judges the type their bytes show) and
    the text read from each (``limits``: the PDF reader's)."""
    out: list[Intake] = []
    started = time.monotonic()
    for a in attachments:
        refused = refusal(policy, a.content_type, a.size)
        if refused is not None:
            if a.declared_type is not None:
                refused += f" (sent as {a.declared_type})"
            out.append(Intake(a, refused))
            continue
        left = limits.pdf_message_seconds - (time.monotonic() - started)
        text, error = extract_text(a.content_type, a.data, seconds=left, limits=limits)
        out.append(Intake(a, None, text, error))
    return out


def refusal(policy: AttachmentPolicy, content_type: str, size: int) -> str | None:
    """Why an attachment stored as ``content_type`` is refused, or None. Its type is allowed
    under any of its names (a PDF declared ``application/x-pdf`` by ``application/pdf``), and
    a program only when ``allow`` names its type: a list that takes "anything" or "any
    application" was not written with programs in mind."""
    names = aliases(content_type)
    allowed = next((n for n in names if policy.refusal(n, 0) is None), None)
    if allowed is None:
        return policy.refusal(content_type, size)  # (the type: "not allowed (allowed: …)")
    if program(content_type) and not set(names).intersection(policy.allow):
        return (f"type {names[0]} is a program: stored only when allow names its type "
                f"(allowed: {', '.join(policy.allow)})")
    return policy.refusal(allowed, size)  # (the size)


def extract_text(content_type: str, data: bytes, *, seconds: float | None = None,
                 limits: IntakeSettings = _DEFAULTS) -> tuple[str | None, str | None]:
    """``(text, None)``, or ``(None, why)`` when no text can be read from the content
    (``seconds``: what is left of the message's time for PDFs). Only bytes that are a PDF
    go to the PDF reader, and binary bytes give no text whatever their type says."""
    kind = content_type.lower()
    if "application/pdf" in aliases(kind):  # (application/x-pdf…)
        if not is_pdf(data):
            return None, "not a PDF (no %PDF- header): no text is read"
        if seconds is not None and seconds <= 0:
            return None, (f"not read: the message's PDFs took the "
                          f"{limits.pdf_message_seconds:g} s they may take in all")
        most = limits.pdf_seconds
        return _pdf_text(data, most if seconds is None else min(most, seconds), limits)
    if kind.startswith("text/") and binary(data):
        return None, f"its bytes are binary, not {kind}: no text is read"
    if kind == "text/html":
        return html_to_text(_decode(data, MAX_HTML), MAX_TEXT)[:MAX_TEXT], None
    if kind.startswith("text/"):
        return _decode(data, MAX_TEXT), None
    return None, f"no text is read from {kind}"


def _decode(data: bytes, chars: int) -> str:
    """The first ``chars`` characters of ``data`` as text (UTF-8, else Latin-1), decoding
    no more of it than they can take (a 25 MB text is not turned whole into a string)."""
    head = data[:4 * chars]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = head.decode("utf-16", "replace")
    else:
        try:
            text = head.decode("utf-8")
        except UnicodeDecodeError as exc:
            if len(head) < len(data) and exc.start >= len(head) - 3 \
                    and exc.reason == "unexpected end of data":  # (a character cut in two)
                text = head[:exc.start].decode("utf-8")
            else:
                text = head.decode("latin-1")
    return text[:chars].replace("\x00", "")  # (no database stores NUL in text)


def _pdf_text(data: bytes, seconds: float, limits: IntakeSettings = _DEFAULTS
              ) -> tuple[str | None, str | None]:
    """The PDF's text, read by :mod:`baton.intake.pdfchild` in a process of its own, within
    ``seconds`` and ``limits.pdf_memory_mb``: past either, the PDF is stored without its
    text, and ``text_error`` says which limit stopped it."""
    command = [sys.executable, "-I", str(Path(__file__).with_name("pdfchild.py")),
               str(limits.pdf_max_pages), str(MAX_TEXT), str(limits.pdf_memory_mb * 1024 * 1024)]
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
