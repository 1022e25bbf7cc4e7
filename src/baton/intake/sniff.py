"""What an attachment's bytes are, whatever its ``Content-Type`` says (its first bytes).

A sender declares each attachment's type, and nothing makes it true: a "PDF" that is a
Windows program, a "text/plain" that is a PDF. Intake stores the type the bytes show when
it disagrees with the declaration (:func:`effective_type`; the declared one is kept on the
message's list of attachments and said on the record's timeline), sends only real PDFs to
the PDF reader and reads no text from binary bytes declared as text.

Known by their magic numbers: PDF (``%PDF-`` at the start, or within the first KiB when the
sender says it is one, as readers allow), ZIP, PNG, JPEG, GIF, Windows/DOS executables
(``MZ`` with a binary header) and ELF. A ZIP is named by the names of its members, read from
its central directory (:func:`zip_type`: no member is decompressed, and a directory over
:data:`MAX_DIRECTORY` bytes is not read): a Java archive (``META-INF/MANIFEST.MF``), an
OpenDocument file (its ``mimetype`` member, stored first and uncompressed as the format
says), a Word, Excel or PowerPoint file (``[Content_Types].xml`` and ``word/``, ``xl/`` or
``ppt/``; macro-enabled with a ``vbaProject.bin``), else any ZIP. Text sent as
``application/octet-stream`` whose lines have as many fields each (a comma, semicolon, tab
or bar between them) is ``text/csv`` (:func:`is_csv`). Other bytes keep their declared type,
except binary bytes declared as text, which become ``application/octet-stream``.

A mailbox's ``allow`` list then judges the stored type, so the declaration counts only when
the bytes are none of the known types: ``application/octet-stream`` ("some bytes") is what
the bytes show, a PDF under ``application/pdf``, a program under its type. A type is
allowed under any of its names (:func:`aliases`: ``application/x-pdf`` by
``application/pdf``), and programs only when ``allow`` names their type: ``*/*``,
``application/*`` and ``text/*`` do not take them (:mod:`baton.intake.attachments`).
Programs (:func:`program`) are Windows and ELF executables and Java archives, by their bytes
or by their declared type, and scripts: a file named ``.sh``, ``.ps1``, ``.bat``, ``.cmd``,
``.vbs`` or ``.js`` (or ``.jar``) is stored as its script's type whatever its bytes or
declaration say (:func:`script_type`: the system it is opened on runs it by its name), and
text that starts with ``#!`` as ``application/x-sh`` (a shell's), :data:`POWERSHELL` or
:data:`JAVASCRIPT` (``pwsh``'s or ``node``'s) or ``text/x-script.NAME`` (another
interpreter's). A declaration stands only when it is a name of that same type (``.bat``
sent as ``text/x-msdos-batch``), never for another program's (``.bat`` sent as
``application/x-msdos-program``, what Debian's ``/etc/mime.types`` and so Python's
``mimetypes`` call it there, is stored as :data:`BAT`): ``allow`` names each kind alone.
Each kind's other names are the ones registries and tools use (shared-mime-info, Debian's
``mime.types``, Pygments, Magika): :data:`POWERSHELL` is also ``text/x-powershell``,
:data:`BAT` also ``text/x-msdos-batch``, ``application/bat``…
"""

from __future__ import annotations

import codecs
import csv
import io
import re
import struct
import zipfile

PDF = "application/pdf"
ZIP = "application/zip"
PNG = "image/png"
JPEG = "image/jpeg"
GIF = "image/gif"
EXE = "application/vnd.microsoft.portable-executable"
ELF = "application/x-executable"
JAR = "application/java-archive"
BINARY = "application/octet-stream"
CSV = "text/csv"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
PPTX = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
DOCM = "application/vnd.ms-word.document.macroenabled.12"  # (types are stored lowercase)
XLSM = "application/vnd.ms-excel.sheet.macroenabled.12"
PPTM = "application/vnd.ms-powerpoint.presentation.macroenabled.12"
SH = "application/x-sh"
POWERSHELL = "application/x-powershell"
BAT = "application/x-bat"
VBSCRIPT = "text/vbscript"
JAVASCRIPT = "text/javascript"
HTA = "application/hta"  # an HTML application: mshta runs it with the user's rights
WSF = "application/x-wsf"  # a Windows Script File (XML holding VBScript or JScript)
SHORTCUT = "application/x-ms-shortcut"  # a .lnk: it runs what it points at, with arguments
SCRIPT = "text/x-script."  # + the interpreter of a "#!" line that is not a shell

HEAD = 8192  # bytes looked at to tell text from binary
PDF_WITHIN = 1024  # where a PDF's header may start (readers skip junk before it)
MAX_DIRECTORY = 1024 * 1024
"""Bytes of a ZIP's central directory read for its members' names (an office file's is a
few KiB; a larger one, or a ZIP64 one, is any ZIP: thousands of names are not listed)."""
CSV_HEAD = 64 * 1024  # bytes of a text looked at to call it CSV
CSV_ROWS = 2  # rows (a header and one line at least) a CSV shows within CSV_HEAD

# Declared types that say the same as what the bytes show (lowercase, no parameters).
_SAME: dict[str, frozenset[str]] = {
    PDF: frozenset({PDF, "application/x-pdf", "application/acrobat"}),
    ZIP: frozenset({ZIP, "application/x-zip-compressed", "application/x-zip",
                    JAR, "application/epub+zip",
                    "application/vnd.ms-xpsdocument", "application/oxps"}),
    PNG: frozenset({PNG, "image/x-png", "image/apng", "image/vnd.mozilla.apng"}),
    JPEG: frozenset({JPEG, "image/jpg", "image/pjpeg"}),
    GIF: frozenset({GIF}),
    EXE: frozenset({EXE, "application/x-msdownload", "application/x-dosexec",
                    "application/x-msdos-program", "application/x-ms-dos-executable",
                    "application/x-ms-installer", "application/x-msi"}),
    ELF: frozenset({ELF, "application/x-elf", "application/x-sharedlib",
                    "application/x-pie-executable", "application/x-object"}),
    JAR: frozenset({JAR, "application/x-java-archive", "application/x-jar"}),
}
# Scripts' types, each with its other names.
_SCRIPTS: dict[str, frozenset[str]] = {
    SH: frozenset({SH, "application/x-shellscript", "text/x-shellscript", "text/x-sh",
                   "application/x-csh", "text/x-csh"}),  # (csh: shared-mime-info, Debian)
    POWERSHELL: frozenset({POWERSHELL, "text/x-powershell", "application/x-powershell-script"}),
    BAT: frozenset({BAT, "application/bat", "text/x-bat", "application/x-batch", "text/x-batch",
                    "text/x-msdos-batch", "application/x-msdos-batch"}),
    VBSCRIPT: frozenset({VBSCRIPT, "application/x-vbscript", "text/x-vbscript",
                         "application/vbscript", "text/vbs"}),
    JAVASCRIPT: frozenset({JAVASCRIPT, "application/javascript", "application/x-javascript",
                           "application/ecmascript", "text/ecmascript", "text/x-javascript"}),
    HTA: frozenset({HTA, "text/hta"}),
    WSF: frozenset({WSF, "text/x-wsf"}),
    SHORTCUT: frozenset({SHORTCUT, "application/x-ms-shortcut-file"}),
}
# A file's name ending that its system runs it by (lowercase).
_BY_NAME = {".sh": SH, ".bash": SH, ".ps1": POWERSHELL, ".psm1": POWERSHELL, ".bat": BAT,
            ".cmd": BAT, ".vbs": VBSCRIPT, ".vbe": VBSCRIPT, ".js": JAVASCRIPT,
            ".jse": JAVASCRIPT, ".jar": JAR, ".hta": HTA, ".wsf": WSF, ".lnk": SHORTCUT,
            # Windows runs these by their name whatever their bytes say (a .com has no header)
            ".exe": EXE, ".scr": EXE, ".com": EXE, ".pif": EXE, ".cpl": EXE, ".msi": EXE}
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "csh", "tcsh", "ash", "busybox"})
# "#!" interpreters of a script kind named above (PowerShell and Node on Linux or macOS)
_BY_INTERPRETER = {"pwsh": POWERSHELL, "powershell": POWERSHELL, "node": JAVASCRIPT,
                   "nodejs": JAVASCRIPT}
_PROGRAMS = frozenset().union(_SAME[EXE], _SAME[ELF], _SAME[JAR], *_SCRIPTS.values())
# Names of one type (not every type a ZIP may be: an EPUB is not any ZIP).
_ALIASES = (*(_SAME[k] for k in (PDF, PNG, JPEG, GIF, EXE, ELF, JAR)),
            *_SCRIPTS.values(),
            frozenset({ZIP, "application/x-zip-compressed", "application/x-zip"}))
_ZIP_FAMILIES = ("application/vnd.openxmlformats-officedocument.",
                 "application/vnd.oasis.opendocument.", "application/vnd.ms-excel.",
                 "application/vnd.ms-word.", "application/vnd.ms-powerpoint.")
_OFFICE = ((DOCX, DOCM, "word/"), (XLSX, XLSM, "xl/"), (PPTX, PPTM, "ppt/"))
_ODF = re.compile(rb"application/vnd\.oasis\.opendocument\.[a-z0-9.+-]{1,80}")
_EOCD = struct.Struct("<4s4H2LH")  # a ZIP's end of central directory record
_LOCAL = struct.Struct("<4s5H3L2H")  # a ZIP member's local header
# Control bytes that text does not have (tab, line feed, form feed, carriage return and
# escape excepted).
_CONTROL = frozenset(range(32)) - {8, 9, 10, 12, 13, 27}


def sniff(data: bytes, declared: str = "") -> str | None:
    """The type the first bytes of ``data`` show, or None when they are none of the known
    ones (``declared``: the sender's type, lowercase: a PDF's header may then start a little
    later). A ZIP is named by its members (:func:`zip_type`)."""
    head = data[:16]
    if head.startswith(b"%PDF-") or (declared in _SAME[PDF] and b"%PDF-" in data[:PDF_WITHIN]):
        return PDF
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08")):
        return zip_type(data)
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


def zip_type(data: bytes) -> str:
    """What a ZIP archive is, by the names in its central directory: :data:`JAR` (a
    ``META-INF/MANIFEST.MF``: a program, whatever else it holds), an OpenDocument type (its
    first member, ``mimetype``, stored uncompressed), :data:`DOCX`, :data:`XLSX`,
    :data:`PPTX` (or their macro-enabled types: a ``vbaProject.bin``), else :data:`ZIP`.
    Nothing is decompressed, and a directory of more than :data:`MAX_DIRECTORY` bytes is not
    read (a ZIP bomb costs what its names do)."""
    names = _zip_names(data)
    if names is not None and any(n.upper() == "META-INF/MANIFEST.MF" for n in names):
        return JAR
    odf = _odf_type(data)
    if odf is not None:
        return odf
    if names is not None and "[Content_Types].xml" in names:
        for plain, macro, folder in _OFFICE:
            if any(n.startswith(folder) for n in names):
                return macro if f"{folder}vbaProject.bin" in names else plain
    return ZIP


def _zip_names(data: bytes) -> list[str] | None:
    """The member names of a ZIP's central directory (``zipfile`` reads the directory, no
    member), or None when there is none to read within :data:`MAX_DIRECTORY` bytes."""
    end = _end_of_directory(data)
    if end < 0:
        return None
    *_, entries, size, offset, _comment = _EOCD.unpack_from(data, end)
    if size > MAX_DIRECTORY or entries == 0xFFFF or offset == 0xFFFFFFFF \
            or data[max(0, end - 20):end].startswith(b"PK\x06\x07"):
        return None  # (too large, or ZIP64: zipfile would read the sizes ZIP64 gives)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            return archive.namelist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError,
            struct.error, UnicodeError, IndexError, KeyError, OverflowError,
            NotImplementedError):  # (a broken directory: some ZIP)
        return None


def _end_of_directory(data: bytes) -> int:
    """Where the end of central directory record is, as ``zipfile`` finds it: the last 22
    bytes, else the last signature within a comment's reach; -1 when there is none."""
    size = _EOCD.size
    if len(data) >= size and data[-size:-size + 4] == b"PK\x05\x06" and data[-2:] == b"\0\0":
        return len(data) - size
    start = max(len(data) - (1 << 16) - size, 0)
    at = data.rfind(b"PK\x05\x06", start)
    return at if 0 <= at <= len(data) - size else -1


def _odf_type(data: bytes) -> str | None:
    """An OpenDocument file's type: its first member is ``mimetype``, stored uncompressed,
    the type its content (what a reader checks; nothing is decompressed)."""
    if len(data) < _LOCAL.size:
        return None
    sig, _v, _flags, method, _t, _d, _crc, packed, _size, name_len, extra = \
        _LOCAL.unpack_from(data)
    start = _LOCAL.size + name_len + extra
    if sig != b"PK\x03\x04" or method != 0 or not 0 < packed <= 100 \
            or data[_LOCAL.size:_LOCAL.size + name_len] != b"mimetype":
        return None
    found = _ODF.fullmatch(data[start:start + packed])
    return found.group().decode("ascii") if found else None


def script_type(filename: str, data: bytes) -> str | None:
    """The type of a script (or Java archive) by ``filename``'s ending (``.sh``, ``.ps1``,
    ``.bat``, ``.cmd``, ``.vbs``, ``.js``, ``.jar``), else of a text that starts with
    ``#!``: :data:`SH` for a shell's, ``text/x-script.NAME`` for another interpreter's
    (``#!/usr/bin/env python3``: ``text/x-script.python3``); None when it is neither."""
    name = filename.lower().rstrip(" .")
    dot = name.rfind(".")
    if dot >= 0 and name[dot:] in _BY_NAME:
        return _BY_NAME[name[dot:]]
    if not data.startswith(b"#!") or binary(data):
        return None
    words = data[2:256].split(b"\n", 1)[0].decode("latin-1").split()
    if words and words[0].rsplit("/", 1)[-1] == "env" and len(words) > 1:
        words = [w for w in words[1:] if not w.startswith("-") and "=" not in w] or words
    interpreter = words[0].rsplit("/", 1)[-1].lower() if words else ""
    if not interpreter or interpreter in _SHELLS:
        return SH
    if interpreter in _BY_INTERPRETER:
        return _BY_INTERPRETER[interpreter]
    return SCRIPT + (re.sub(r"[^a-z0-9._+-]", "", interpreter)[:40] or "unknown")


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


def is_csv(data: bytes, charset: str | None = None) -> bool:
    """Whether ``data`` is CSV: text (UTF-8, or ``charset``; UTF-16 with its byte order
    mark) whose first :data:`CSV_HEAD` bytes hold :data:`CSV_ROWS` rows or more (empty
    lines aside) of as many fields each, two at least, split by commas, semicolons, tabs or
    bars (a quoted field may hold them, and line breaks). Binary bytes are not."""
    head = data[:CSV_HEAD]
    if not head or binary(head) or (not head.startswith((b"\xff\xfe", b"\xfe\xff"))
                                    and b"\x00" in head):
        return False
    text = _text(head, charset, whole=len(head) == len(data))
    if text is None:
        return False
    if len(head) < len(data):  # (the last line may be cut: not judged)
        text = text[:max(text.rfind("\n"), text.rfind("\r")) + 1]
    for delimiter in (",", ";", "\t", "|"):
        if delimiter not in text:
            continue
        try:
            rows = [r for r in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter,
                                          strict=True) if r]
        except csv.Error:  # (a quote left open…)
            continue
        if len(rows) >= CSV_ROWS and len(rows[0]) >= 2 \
                and all(len(r) == len(rows[0]) for r in rows):
            return True
    return False


def _text(head: bytes, charset: str | None, *, whole: bool) -> str | None:
    """``head`` decoded strictly (its charset, else UTF-8; a character the cut split in two
    left out when it is not ``whole``), or None when it is not text in that charset."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        codec = "utf-16"
    else:
        codec = "utf-8"
        if charset:
            try:
                info = codecs.lookup(charset)
            except (LookupError, ValueError):  # (unknown: read as UTF-8)
                info = None
            if info is not None and getattr(info, "_is_text_encoding", True):
                codec = info.name  # (not base64, rot13…: no charsets)
    try:
        decoder = codecs.getincrementaldecoder(codec)("strict")
        text: str = decoder.decode(head, final=whole)
    except (UnicodeError, LookupError, TypeError):
        return None
    return text


def agrees(declared: str, shown: str) -> bool:
    """Whether a declared type says what the bytes show (a .docx declared as such, or as
    any ZIP, is a ZIP; one that is macro-enabled only when the declaration says so)."""
    if declared in _SAME.get(shown, ()):
        return True
    office = declared.startswith(_ZIP_FAMILIES) or declared.endswith("+zip")
    if shown == ZIP:
        return office
    if shown.startswith(_ZIP_FAMILIES):  # (a Word, Excel, PowerPoint or OpenDocument file)
        if "macroenabled" in shown:
            return declared == shown or (office and "macroenabled" in declared)
        return declared == shown or declared in _SAME[ZIP] or office
    return False


def effective_type(declared: str, data: bytes, filename: str = "",
                   charset: str | None = None) -> str:
    """The type an attachment is stored under: what its bytes show when that disagrees
    with ``declared``; a script's type when ``filename`` (or a ``#!`` line) says it is one
    and ``declared`` is not a name of that type (a ``.bat`` sent as
    ``application/x-msdos-program``, an executable's name on Debian, is :data:`BAT`, so an
    ``allow`` naming one of them does not take the other); ``text/csv`` for CSV text declared as
    ``application/octet-stream`` (``charset``: the declared one); ``application/octet-stream``
    for binary bytes declared as text or as a PDF; else ``declared``."""
    kind = declared.lower()
    shown = sniff(data, kind)
    if shown in (EXE, ELF, JAR):  # a program by its bytes
        return kind if agrees(kind, shown) else shown
    script = script_type(filename, data)
    if script is not None:  # (a declaration stands only when it names the same kind)
        return kind if script in aliases(kind) else script
    if shown is not None:
        return kind if agrees(kind, shown) else shown
    if kind.startswith("text/") and binary(data):
        return BINARY
    if kind in _SAME[PDF]:  # no PDF header: whatever it is, it is not one
        return BINARY if binary(data) else "text/plain"
    if kind == BINARY and is_csv(data, charset):
        return CSV
    return kind


def aliases(kind: str) -> tuple[str, ...]:
    """``kind`` (lowercase) and the other names of the same known type (``image/jpg`` and
    ``image/jpeg``; ``application/x-msdownload`` and :data:`EXE`…), ``kind`` first."""
    kind = kind.lower()
    same = next((names for names in _ALIASES if kind in names), frozenset())
    return (kind, *sorted(same - {kind}))


def program(kind: str) -> bool:
    """Whether ``kind`` is a program's type (a Windows or ELF executable, a Java archive,
    a script, by any name)."""
    kind = kind.lower()
    return kind in _PROGRAMS or kind.startswith(SCRIPT)


def is_pdf(data: bytes) -> bool:
    """Whether ``data`` starts (within its first KiB) like a PDF."""
    return b"%PDF-" in data[:PDF_WITHIN]
