"""The text of a PDF, read in a process of its own (:func:`baton.intake.attachments.pdf_text`
starts it): ``python -I pdfchild.py MAX_PAGES MAX_TEXT MAX_MEMORY`` with the PDF on standard
input writes ``{"text": ...}`` or ``{"error": ...}`` as JSON to standard output.

A PDF comes from anyone who can send mail, and a few kilobytes of it can ask a reader for
gigabytes or hours (streams that inflate a thousandfold, content streams of millions of
operators, thousands of pages sharing them). Here its reader runs under a memory limit
(``RLIMIT_AS``) and is killed by the parent past its time limit, whatever the installed
``pypdf`` version guards against itself. It imports nothing of Baton (it is run by path,
in isolated mode, so the environment's ``PYTHONPATH`` cannot put other code in its place).
"""

from __future__ import annotations

import io
import json
import sys


def read(data: bytes, max_pages: int, max_text: int) -> dict[str, str]:
    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            return {"error": "the PDF is encrypted"}
        pages: list[str] = []
        size = 0
        for number, page in enumerate(reader.pages):
            if number >= max_pages:
                break
            text = page.extract_text() or ""
            pages.append(text.strip())
            size += len(text)
            if size >= max_text:
                break
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError,
            RecursionError, OSError) as exc:
        # A broken PDF is still stored and downloadable; only its text is missing.
        return {"error": f"the PDF could not be read: {str(exc)[:200] or type(exc).__name__}"}
    text = "\n\n".join(p for p in pages if p).replace("\x00", "").strip()
    if not text:
        return {"error": "the PDF has no text layer (a scan?)"}
    return {"text": text[:max_text]}


def main(argv: list[str]) -> int:
    max_pages, max_text, max_memory = (int(a) for a in argv[1:4])
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (max_memory, max_memory))
    except (ImportError, ValueError, OSError):  # (no such limit here: the time limit holds)
        pass
    data = sys.stdin.buffer.read()
    try:
        result = read(data, max_pages, max_text)
    except MemoryError:
        result = {"error": f"reading the PDF's text needs more than {max_memory >> 20:,} MB "
                           "of memory: stopped"}
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
