"""What an attachment's bytes are, whatever its ``Content-Type`` says (its first bytes).

A sender declares each attachment's type, and nothing makes it true: a "PDF" that is a
Windows program, a "text/plain" that is a PDF. Intake stores the type the bytes show when
it disagrees with the declaration (:func:`effective_type`; the declared one is kept on the
message's list of attachments and said on the record's timeline), sends only real PDFs to
the PDF reader and reads no text from binary bytes declared as text.

Known by their magic numbers: PDF (``%PDF-`` at the start, or within the first KiB when the
sender says it is one, as readers allow), ZIP (and so OOXML / OpenDocument files, which are
ZIP archives), PNG, JPEG, GIF, Windows/DOS executables (``MZ`` with a binary header) and ELF.
Other bytes keep their declared type, except binary bytes declared as text, which become
``application/octet-stream``.

A mailbox's ``allow`` list then judges the stored type, so the declaration counts only when
the bytes are none of the known types: ``application/octet-stream`` ("some bytes") is what
the bytes show, a PDF under ``application/pdf``, a program under its type. A type is
allowed under any of its names (:func:`aliases`: ``application/x-pdf`` by
``application/pdf``), and programs (:func:`program`: Windows and ELF executables, by their
bytes or by their declared type) only when ``allow`` names their type: ``*/*`` and
``application/*`` do not take them (:mod:`baton.intake.attachments`).
"""

from __future__ import annotations

PDF = "application/pdf"
ZIP = "application/zip"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
EXE = "application/vnd.microsoft.portable-executable"
ELF = "application/x-executable"
BINARY = "application/octet-stream"

HEAD = 8192  # bytes looked at to tell text from binary
PDF_WITHIN = 1024  # where a PDF's header may start (readers skip junk before it)

# Declared types that say the same as what the bytes show (lowercase, no parameters).
_SAME: dict[str, frozenset[str]] = {
    PDF: frozenset({PDF, "application/x-pdf", "application/acrobat"}),
    ZIP: frozenset({ZIP, "application/x-zip-compressed", "application/x-zip",
                    "application/java-archive", "application/epub+zip",
                    "application/vnd.ms-xpsdocument", "application/oxps"}),
    PNG: frozenset({PNG, "image/x-png", "image/apng", "image/vnd.mozilla.apng"}),
    JPEG: frozenset({JPEG, "image/jpg", "image/pjpeg"}),
    GIF: frozenset({GIF}),
    EXE: frozenset({EXE, "application/x-msdownload", "application/x-dosexec",
                    "application/x-msdos-program", "application/x-ms-dos-executable",
                    "application/x-ms-installer", "application/x-msi"}),
    ELF: frozenset({ELF, "application/x-elf", "application/x-sharedlib",
                    "application/x-pie-executable", "application/x-object"}),
}
# Names of one type (not every type a ZIP may be: an EPUB is not any ZIP).
_ALIASES = (*(_SAME[k] for k in (PDF, PNG, JPEG, GIF, EXE, ELF)),
            frozenset({ZIP, "application/x-zip-compressed", "application/x-zip"}))
_ZIP_FAMILIES = ("application/vnd.openxmlformats-officedocument.",
                 "application/vnd.oasis.opendocument.", "application/vnd.ms-excel.",
                 "application/vnd.ms-word.", "application/vnd.ms-powerpoint.")
# Control bytes that text does not have (tab, line feed, form feed, carriage return and
# escape excepted).
_CONTROL = frozenset(range(32)) - {8, 9, 10, 12, 13, 27}


def sniff(data: bytes, declared: str = "") -> str | None:
    """The type the first bytes of ``data`` show, or None when they are none of the known
    ones (``declared``: the sender's type, lowercase: a PDF's header may then start a little
    later)."""
    head = data[:16]
    if head.startswith(b"%PDF-") or (declared in _SAME[PDF] and b"%PDF-" in data[:PDF_WITHIN]):
        return PDF
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return ZIP
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if head.startswith(b"\xff\xd8\xff"):
        return JPEG
    if head.startswith((b"GIF87a", b"GIF89a")):
        return GIF
    if head.startswith(b"\x7fELF"):
        return ELF
    if head.startswith(b"MZ") and len(data) >= 64 and b"\x00" in data[2:64]:
        return EXE  # (a DOS header has zeros: a text that starts with "MZ" has none)
    return None


def binary(data: bytes) -> bool:
    """Whether ``data`` is not text: a NUL, or more than 1 in 10 of its first
    :data:`HEAD` bytes are control characters text does not have (UTF-16 text, with its
    byte order mark, is text)."""
    head = data[:HEAD]
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return False
    if b"\x00" in head:
        return True
    controls = sum(1 for b in head if b in _CONTROL)
    return controls * 10 > len(head)


def agrees(declared: str, shown: str) -> bool:
    """Whether a declared type says what the bytes show (a .docx declared as such is a ZIP)."""
    if declared in _SAME.get(shown, ()):
        return True
    return shown == ZIP and (declared.startswith(_ZIP_FAMILIES) or declared.endswith("+zip"))


def effective_type(declared: str, data: bytes) -> str:
    """The type an attachment is stored under: what its bytes show when that disagrees
    with ``declared``; ``application/octet-stream`` for binary bytes declared as text or as
    a PDF; else ``declared``."""
    kind = declared.lower()
    shown = sniff(data, kind)
    if shown is not None:
        return kind if agrees(kind, shown) else shown
    if kind.startswith("text/") and binary(data):
        return BINARY
    if kind in _SAME[PDF]:  # no PDF header: whatever it is, it is not one
        return BINARY if binary(data) else "text/plain"
    return kind


def aliases(kind: str) -> tuple[str, ...]:
    """``kind`` (lowercase) and the other names of the same known type (``image/jpg`` and
    ``image/jpeg``; ``application/x-msdownload`` and :data:`EXE`…), ``kind`` first."""
    kind = kind.lower()
    same = next((names for names in _ALIASES if kind in names), frozenset())
    return (kind, *sorted(same - {kind}))


def program(kind: str) -> bool:
    """Whether ``kind`` is a program's type (a Windows or ELF executable, by any name)."""
    kind = kind.lower()
    return kind in _SAME[EXE] or kind in _SAME[ELF]


def is_pdf(data: bytes) -> bool:
    """Whether ``data`` starts (within its first KiB) like a PDF."""
    return b"%PDF-" in data[:PDF_WITHIN]
