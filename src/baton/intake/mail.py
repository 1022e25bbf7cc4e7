"""An e-mail as intake sees it: parsed once from its bytes into what a record needs.

Standard-library parsing (``email`` with the modern ``policy.default``: encoded words,
charsets, multipart) plus what is the product's own:

* the **body** as text: ``text/plain`` preferred in a ``multipart/alternative``, otherwise
  the HTML converted to text (block elements become line breaks, scripts and styles go);
* the **new text** of a reply without the quoted history and the signature (the full text
  is kept too: ``body``), so that AI reads what the sender wrote now, not a signature's
  company name or the previous message;
* **threading** ids (``Message-ID``, ``In-Reply-To``, ``References``);
* **automatic mail** recognised (auto-replies, bounces, list traffic): ``automatic`` says
  why, and intake does not turn such a message into a case;
* **attachments** with their names, types, sizes and bytes; the type is what the bytes
  show when that disagrees with the declared one (:mod:`baton.intake.sniff`: a "PDF" that
  is an executable is stored as one, a ``.js`` file as a script whatever it is sent as),
  the declared one kept and noted;
* **notes** on defects read around (a ``multipart`` message whose parts cannot be found is
  read as text, as mail clients show it), a body cut, an attachment stored as another type
  than it was sent as: on the case's timeline and kept on the stored message (its
  ``notes``);
* **malformed headers read around**, never a crash: a header the standard parser cannot
  read structured is read as text (:meth:`_BoundedPolicy.header_fetch_parse`); a
  Message-ID without a usable id (``<>``) gives way to a hash of the bytes, a Date naming
  no instant (``31 Dec 9999 -1200``) to no date, a body in an unknown charset is read as
  UTF-8, each with a note; display names lose control characters (an encoded CR/LF).
  Anything else the standard library raises on the bytes is a :class:`MailError` (logged
  with its traceback): the message is refused, not retried for ever.

Parsing is **bounded**, because the bytes come from anyone who can send mail: a message
over ``max_bytes`` (:data:`MAX_MESSAGE_BYTES` unless the settings say otherwise:
``BATON_INTAKE_MAX_MESSAGE_BYTES``) or :data:`MAX_LINES`, with more than :data:`MAX_PARTS` MIME
parts, parts nested deeper than :data:`MAX_DEPTH`, a header field longer than
:data:`MAX_HEADER` characters or more than :data:`MAX_HEADERS` characters of header fields
in all is refused (:class:`MailError`, saying which bound and where) before the standard
library's header parser (superlinear in time and memory on hostile encoded words, address
lists and parameters) gets to it. HTML is read with lxml's parser (the standard library's
``HTMLParser`` takes quadratic time on some malformed tags).

**Memory**: the message is fed to the parser in pieces (``BytesParser.parsebytes`` makes a
text copy of it and a four-bytes-a-character buffer of that: five times its size at once),
and each attachment is decoded straight from its base64 and its encoded text let go at
once, so that a 25 MB message takes about three times its size while parsed.

**The body is read only as far as it is kept**: of a long body part, :func:`_read` decodes
(transfer encoding, then charset) only the characters that can reach the kept text
(:data:`MAX_HTML` of HTML, ``4 * MAX_BODY`` of plain text), and the HTML's conversion stops
once its text passes what :func:`_normalise` reads; a 50 MB HTML body costs what its first
5,000,000 characters do. A body that is cut says so in the message's ``notes`` (so on the
record's timeline and on the stored message).
"""

from __future__ import annotations

import binascii
import codecs
import email.errors
import email.policy
import functools
import hashlib
import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from email.feedparser import BytesFeedParser
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage, Message
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path
from typing import Any

from baton.errors import BatonError
from baton.intake.sniff import effective_type, script_type
from baton.settings import IntakeSettings

MAX_BODY = 200_000  # characters of body kept (a pasted log is not a case description)
MAX_MESSAGE_BYTES: int = IntakeSettings().max_message_bytes
"""A message larger than this is refused unread (``.eml`` files, IMAP, the API, SMTP) by
default: ``BATON_INTAKE_MAX_MESSAGE_BYTES`` / ``[intake] max_message_bytes`` change it
(:class:`~baton.intake.service.IntakeService` passes it as ``max_bytes``); the SMTP
listener's ``--smtp-max-bytes`` replaces it for SMTP."""
FEED = 64 * 1024  # bytes fed to the parser at a time
MAX_LINES = 2_000_000
"""Lines of one message (the parser holds each as an object: 25 MB of empty lines would
take GBs; base64 lines are 76 characters)."""
MAX_PARTS = 1_000
"""MIME parts in one message (attachments, alternatives and the containers around them)."""
MAX_DEPTH = 32
"""How deeply parts may nest (a forwarded message in a forwarded message is two levels)."""
MAX_HEADER = 32 * 1024
"""Characters of one header field (a References or To header of hundreds of entries fits)."""
MAX_HEADERS = 512 * 1024
"""Characters of all header fields of a message, its parts' included."""
MAX_HTML = 5_000_000  # characters of HTML read (a body or an attachment) to make its text
READ = 1024 * 1024  # characters of a long body part's encoded payload decoded at a time
MAX_ID = 500
"""Characters of a Message-ID (or an id it answers) kept: what the store's column holds. A
longer one is no id a reply could name: the message is known by a hash of its bytes."""
MAX_ADDRESS = 320
"""Characters of an address (RFC 5321: 64 before the ``@``, 255 after): a longer one is not
an address a mail server delivers to, and no store column holds it."""

log = logging.getLogger(__name__)


class MailError(BatonError):
    """The bytes are not an e-mail intake can read."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # what it is stored as: what its bytes show, if not what was declared
    data: bytes = field(repr=False)
    declared_type: str | None = None  # the sender's type when its bytes show another

    @property
    def size(self) -> int:
        return len(self.data)

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass(frozen=True)
class Mail:
    message_id: str  # without angle brackets; a content hash when the message has none
    subject: str
    sender: str  # the address
    sender_name: str
    to: tuple[str, ...]
    cc: tuple[str, ...]
    date: str | None  # ISO 8601 in UTC, as the Date header says
    body: str  # the whole text, quotes and signature included
    new_text: str  # what the sender wrote in this message: no quoted history, no signature
    signature: str  # the signature block that was cut from new_text ('' when none)
    in_reply_to: str | None
    references: tuple[str, ...]
    automatic: str | None  # why this is automatic mail (auto-reply, bounce…), else None
    attachments: tuple[Attachment, ...]
    html: bool  # the body came from HTML (no text part)
    notes: tuple[str, ...] = ()  # defects read around ("multipart/mixed without a boundary…")

    @property
    def thread_ids(self) -> tuple[str, ...]:
        """Earlier messages this one answers: In-Reply-To first, then References, newest first."""
        ids = [self.in_reply_to] if self.in_reply_to else []
        ids += [r for r in reversed(self.references) if r not in ids]
        return tuple(ids)


def parse(raw: bytes, max_bytes: int = MAX_MESSAGE_BYTES) -> Mail:
    """Parse an RFC 5322 message. Raises :class:`MailError` when it is not one, or when it
    is over one of the bounds (``max_bytes``: the message's size)."""
    if len(raw) > max_bytes:
        raise MailError(f"the message is {len(raw):,} bytes: at most {max_bytes:,} are read")
    if not raw or raw.isspace():  # (raw.strip() would copy it)
        raise MailError("the message is empty")
    lines = raw.count(b"\n")
    if lines > MAX_LINES:
        raise MailError(f"the message has {lines:,} lines: at most {MAX_LINES:,} are read")
    try:
        return _parse(raw)
    except RecursionError:  # (header comments nested a thousand deep: see _depth for parts)
        raise MailError("the message nests too deeply to be read (its parts, or the "
                        "comments or groups of a header)") from None
    except (MailError, MemoryError):
        raise
    except Exception as exc:
        # The standard library (or a reading of ours) failed on these bytes: a defect no
        # fallback below reads around yet. Reading them again fails again, so the message
        # is one intake cannot read (refused: SMTP 554, IMAP goes past it), never an
        # internal error that a sender or a poll would retry for ever. Logged with its
        # traceback: it is a case for a fallback of its own.
        log.exception("a message could not be parsed: refused as unreadable")
        raise MailError(f"the message could not be read ({type(exc).__name__}: "
                        f"{str(exc)[:200]})") from None


def read_file(path: Path, max_bytes: int = MAX_MESSAGE_BYTES) -> bytes:
    """The bytes of an ``.eml`` file, refused unread (:class:`MailError`) when it is larger
    than ``max_bytes``; an :class:`OSError` when it cannot be read."""
    with path.open("rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise MailError(f"the file is over {max_bytes:,} bytes: at most {max_bytes:,} are read")
    return raw


class _Tally:
    """What one message's parse has seen so far, checked against the bounds as it grows."""

    def __init__(self) -> None:
        self.parts = -1  # (the parser calls the factory once to probe it)
        self.header_chars = 0

    def part(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise MailError(f"the message has more than {MAX_PARTS:,} MIME parts")

    def header(self, name: str, value: str) -> None:
        where = f" (in MIME part {self.parts - 1})" if self.parts > 1 else ""
        if len(value) > MAX_HEADER:
            raise MailError(f"header {name[:60]}{where} is {len(value):,} characters long: at "
                            f"most {MAX_HEADER:,} are read")
        self.header_chars += len(name) + len(value)
        if self.header_chars > MAX_HEADERS:
            raise MailError(f"the message's header fields pass {MAX_HEADERS:,} characters "
                            f"(at {name[:60]}{where})")


class _BoundedPolicy(email.policy.EmailPolicy):
    """``policy.default``, counting every header field as the parser reads it."""

    tally: _Tally | None = None

    def __init__(self, tally: _Tally) -> None:
        super().__init__(message_factory=EmailMessage)
        object.__setattr__(self, "tally", tally)  # (as Policy.__init__ sets its attributes)

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if self.tally is not None:
            self.tally.header(name, value)
        return name, value

    def header_fetch_parse(self, name: str, value: str) -> Any:
        """A header as ``policy.default`` reads it (an address list, a date, a Message-ID…)
        or, when that reading fails on a malformed value (``Message-ID: <>``, a display name
        whose encoded word holds a CR or LF…), as unstructured text: what a mail client
        shows. Every reading of a header goes through here, so no malformed header field
        makes the parse fail; the readings that need structure (:func:`_addresses`,
        :func:`_msgid`, :func:`_date`) check what they get."""
        try:
            return super().header_fetch_parse(name, value)
        except (RecursionError, MemoryError):
            raise
        except Exception:  # noqa: BLE001 - any defect of the value: read as text
            return _text_header(name, value)


_UNSTRUCTURED = HeaderRegistry(use_default_map=False)  # (every header as plain text)
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]+")


def _text_header(name: str, value: str) -> Any:
    """``value`` as an unstructured header (encoded words decoded), or, should even that
    fail, the value itself without line breaks."""
    flat = "".join(value.splitlines())
    try:
        return _UNSTRUCTURED(name, flat)
    except (RecursionError, MemoryError):
        raise
    except Exception:  # noqa: BLE001 - the raw text is what is left
        return _CONTROLS.sub(" ", flat)


def _depth(msg: Message) -> int:
    """How deeply ``msg``'s parts nest (without recursion: the bound is checked before the
    standard library's recursive walks see the message)."""
    deepest, stack = 0, [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        deepest = max(deepest, depth)
        payload = part.get_payload() if part.is_multipart() else None
        if isinstance(payload, list):
            stack.extend((p, depth + 1) for p in payload if isinstance(p, Message))
    return deepest


def _parse(raw: bytes) -> Mail:
    tally = _Tally()
    policy = _BoundedPolicy(tally)

    def factory(policy: Any = policy) -> EmailMessage:
        tally.part()
        return EmailMessage(policy)

    parser = BytesFeedParser(factory, policy=policy)
    for start in range(0, len(raw), FEED):  # (in pieces: see the module's "Memory")
        parser.feed(raw[start:start + FEED])
    msg = parser.close()
    if not isinstance(msg, EmailMessage) or not (msg.keys()):
        raise MailError("no e-mail headers found (is this an .eml file?)")
    if "from" not in msg and "subject" not in msg and "message-id" not in msg:
        raise MailError("no From, Subject or Message-ID header: not an e-mail")
    if _depth(msg) > MAX_DEPTH:
        raise MailError(f"the message's parts nest more than {MAX_DEPTH} levels deep")
    senders = _addresses(msg, "from")
    sender_name, sender = senders[0] if senders else ("", "")
    text, html, notes = _body(msg)
    message_id = _msgid(msg.get("message-id"))
    ids = msg.get_all("message-id") or []
    if message_id is None and ids:
        shown = " ".join(str(ids[0]).split())[:80]
        notes += ((f"the Message-ID header ({shown!r}) holds no usable id: the message is "
                   "known by a hash of its bytes"),)
    date, date_note = _date(msg)
    notes += (date_note,) if date_note else ()
    new_text, signature = split_reply(text)
    auto = automatic(msg)
    attachments = _attachments(msg)  # (last: it lets the parts' encoded payloads go)
    notes += tuple(f"{a.filename}: sent as {a.declared_type}, "
                   f"{'its name makes it' if script_type(a.filename, b'') else 'its bytes are'} "
                   f"{a.content_type}: stored as {a.content_type}"
                   for a in attachments if a.declared_type is not None)
    return Mail(
        message_id=message_id or "sha256-" + hashlib.sha256(raw).hexdigest()[:32],
        subject=_header(msg, "subject"),
        sender=sender.lower(),
        sender_name=sender_name,
        to=tuple(a.lower() for _, a in _addresses(msg, "to")),
        cc=tuple(a.lower() for _, a in _addresses(msg, "cc")),
        date=date,
        body=text,
        new_text=new_text,
        signature=signature,
        in_reply_to=_msgid(msg.get("in-reply-to")),
        references=tuple(_msgids(msg.get("references"))),
        automatic=auto,
        attachments=tuple(attachments),
        html=html,
        notes=notes,
    )


# ---- headers --------------------------------------------------------------------------------

_MSGID = re.compile(r"<([^<>\s]+)>")


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, IndexError):  # a malformed encoded word: keep what can be read
        value = msg.get_all(name, [""])[0] if msg.get_all(name) else ""
    return " ".join(str(value or "").replace("\x00", " ").split())  # (=00 in a word: junk)


def _msgid(value: object) -> str | None:
    """The id of a Message-ID (or In-Reply-To) header: within its angle brackets, else the
    text itself; None when it holds none (``<>``, blanks, brackets alone, control
    characters only) or one longer than :data:`MAX_ID` (no stored message has it)."""
    if not value:
        return None
    text = _CONTROLS.sub("", str(value))
    m = _MSGID.search(text)
    found = m.group(1) if m else text.strip().strip("<>").strip()
    return found if found and len(found) <= MAX_ID else None


def _msgids(value: object) -> list[str]:
    return [i for i in _MSGID.findall(_CONTROLS.sub("", str(value))) if len(i) <= MAX_ID] \
        if value else []


def _addresses(msg: Message, name: str) -> list[tuple[str, str]]:
    """``(display name, address)`` of each address in the ``name`` header fields. A field
    the standard parser cannot read (a display name whose encoded word holds a CR or LF
    raises there) is split into its addresses as written, each display name then decoded
    on its own: text an encoded word holds never becomes an address ("Evil=0D=0ABcc:
    x@y" is a name). Display names keep no control characters (a line break is a
    blank), and an address longer than :data:`MAX_ADDRESS` is none."""
    values: list[str] = []
    for key, raw in msg.raw_items():
        if key.lower() != name:
            continue
        try:  # (the strict reading: msg.get() falls back to text on a defect)
            values.append(str(email.policy.default.header_fetch_parse(key, raw)))
        except (RecursionError, MemoryError):
            raise
        except Exception:  # noqa: BLE001 - a defect: the addresses as written
            values.extend(f"{_quoted(_words(n))} <{a}>" if n else a
                          for n, a in getaddresses(["".join(str(raw).splitlines())]) if a)
    return [(" ".join(_CONTROLS.sub(" ", n).split()), a)
            for n, a in getaddresses([v.replace("\x00", "") for v in values])
            if a and "@" in a and len(a) <= MAX_ADDRESS and not _CONTROLS.search(a)]


def _words(text: str) -> str:
    """``text`` with its encoded words decoded, without control characters."""
    return " ".join(_CONTROLS.sub(" ", str(_text_header("x", text))).split())


def _quoted(name: str) -> str:
    """A display name as a quoted string (so getaddresses reads it as one name)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _date(msg: Message) -> tuple[str | None, str | None]:
    """``(date, note)``: the Date header as ISO 8601 in UTC, or None with a note saying why
    when the message has one that names no instant this can write (a year 9999 date west of
    UTC is after the last one; no time zone; not a date at all)."""
    value = msg.get("date")
    if not value:
        return None, None
    shown = " ".join(str(value).split())[:80]
    try:
        dt = parsedate_to_datetime(str(value))
        if dt.tzinfo is None:
            return None, f"the Date header ({shown!r}) names no time zone: no date is kept"
        from datetime import UTC

        return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), None
    except (TypeError, ValueError, IndexError, OverflowError):
        return None, f"the Date header ({shown!r}) is not a date that can be read: no date is kept"


# ---- automatic mail -------------------------------------------------------------------------

_AUTO_SUBJECT = re.compile(
    r"^(auto(matic)?[ -]?(reply|response|antwort)|out of (the )?office|abwesenheitsnotiz|"
    r"r[ée]ponse automatique|resposta autom[áa]tica|respuesta autom[áa]tica|"
    r"undeliver(able|ed)|delivery status notification|mail delivery (failed|failure)|"
    r"returned mail)", re.IGNORECASE)


def automatic(msg: Message) -> str | None:
    """Why ``msg`` is mail no person wrote (RFC 3834 auto-replies, RFC 3464 delivery
    reports, bulk and list traffic), or None."""
    auto = str(msg.get("auto-submitted", "")).strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-response-suppress"):
        value = str(msg.get(name, "")).strip()
        if value and (name != "x-auto-response-suppress" or value.lower() in ("all", "oof")):
            return f"{name}: {value}"
    ctype = msg.get_content_type()
    if ctype == "multipart/report":
        return f"delivery report ({msg.get_param('report-type') or 'unknown type'})"
    precedence = str(msg.get("precedence", "")).strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return f"Precedence: {precedence}"
    sender = str(msg.get("from", "")).lower()
    if re.search(r"\b(mailer-daemon|postmaster)@", sender):
        return "sent by the mail system"
    if _AUTO_SUBJECT.match(_header(msg, "subject")):
        return "auto-reply subject"
    return None


# ---- body -----------------------------------------------------------------------------------

def _body(msg: EmailMessage) -> tuple[str, bool, tuple[str, ...]]:
    """The message's text: its text/plain part, else its HTML as text, else the content of a
    ``multipart`` part whose parts cannot be found (no ``boundary``, or one that never
    occurs) read as text/plain, as mail clients show it, with a note saying so. At most
    :data:`MAX_BODY` characters, with a note when the body was longer."""
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return _plain(part)
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        source, whole = _read(part, MAX_HTML)
        text, complete = _html_text(source, 4 * MAX_BODY)
        body, notes = _kept(text, whole and complete, MAX_HTML, html=True)
        return body, True, _charset_note(part, body) + notes
    if msg.get_content_maintype() == "text":
        return _plain(msg)
    for part in msg.walk():
        if part.get_content_maintype() == "multipart" and not part.is_multipart():
            text, whole = _read(part, 4 * MAX_BODY, _decoded, "utf-8")
            body, notes = _kept(text, whole, 4 * MAX_BODY, html=False)
            if body:
                return body, False, (_broken_multipart(part), *_charset_note(part, body),
                                     *notes)
    return "", False, ()


def _charset_note(part: Message, body: str) -> tuple[str, ...]:
    """A note when the body's part names a charset Python does not know: its bytes were
    read as UTF-8 (:func:`_content`, :func:`_codec`), so letters of another charset came out
    as replacement characters, silently but for this."""
    charset = part.get_content_charset()
    if not charset or not body or _known(charset):
        return ()
    shown = " ".join(_CONTROLS.sub(" ", charset).split())[:60]
    return ((f"the body's charset {shown!r} is unknown: it was read as UTF-8, and its text "
             "may be damaged (characters shown as \ufffd)"),)


def _plain(part: Message) -> tuple[str, bool, tuple[str, ...]]:
    text, whole = _read(part, 4 * MAX_BODY)
    body, notes = _kept(text, whole, 4 * MAX_BODY, html=False)
    return body, False, _charset_note(part, body) + notes


def _kept(text: str, whole: bool, read: int, *, html: bool) -> tuple[str, tuple[str, ...]]:
    """The body as kept (:func:`_normalise`, at most :data:`MAX_BODY` characters) from the
    ``text`` read of it, with a note when that is not all of it (``whole``: the text is
    all the part's; ``read``: how many characters of the part were read)."""
    if len(text) > 4 * MAX_BODY:  # (what _normalise reads)
        whole = False
    body = _normalise(text)
    if len(body) > MAX_BODY:
        return body[:MAX_BODY], (f"the body was cut to its first {MAX_BODY:,} characters",)
    if not whole:
        of = " of HTML" if html else ""
        return body, (f"the body was cut: only its first {read:,} characters{of} were read",)
    return body, ()


def _broken_multipart(part: Message) -> str:
    missing = any(isinstance(d, email.errors.NoBoundaryInMultipartDefect) for d in part.defects)
    why = "without a boundary" if missing else "whose boundary never occurs"
    return f"{part.get_content_type()} {why}: its content was read as text/plain"


def _decoded(part: Message) -> str:
    """A part's payload (transfer encoding undone) as text in its charset, leniently."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    try:
        return payload.decode(part.get_content_charset() or "utf-8", "replace")
    except LookupError:  # an unknown charset
        return payload.decode("utf-8", "replace")


def _content(part: Message) -> str:
    try:
        content = part.get_content()  # type: ignore[attr-defined]
    except (LookupError, ValueError):  # an unknown or lying charset (UnicodeError), a
        # charset name with a NUL in it (ValueError): decode leniently
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


_NOT_BASE64 = re.compile(r"[^A-Za-z0-9+/]")


def _read(part: Message, chars: int, whole: Callable[[Message], str] = _content,
          default: str = "ascii") -> tuple[str, bool]:
    """``(text, all)``: the first ``chars`` characters (at least) of a text part's content,
    and whether they are all of it.

    A payload of at most ``chars`` characters is read whole, by ``whole`` (:func:`_content`:
    the standard library's way, ``default`` the charset of a part that names none). A
    longer one is decoded a piece of :data:`READ` characters at a time: base64 in groups of
    four characters, quoted-printable never between an ``=`` and its two digits, and its
    charset through an incremental decoder (a character whose bytes two pieces share is read
    whole), until ``chars`` characters or about ``4 * chars`` bytes (no charset takes more a
    character, stateful ones aside) are read. So a 50 MB part costs what its first ``chars``
    characters do, not a decode of all of it."""
    # (the payload as parsed: get_payload() would decode an 8bit one whole, by its charset)
    payload = getattr(part, "_payload", None)
    if not isinstance(payload, str) or len(payload) <= chars:
        return whole(part), True
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    codec = _codec(part.get_content_charset() or default)
    decoder = codecs.getincrementaldecoder(codec)("replace")
    out: list[str] = []
    got, budget, pos, carry, short = 0, 4 * chars + 16, 0, "", False  # (16: a BOM…)
    while pos < len(payload) and got < chars:
        piece = carry + payload[pos:pos + READ]
        pos += READ
        last = pos >= len(payload)
        if cte == "base64":
            piece = _NOT_BASE64.sub("", piece)  # (padding too: the last group is padded)
            if last and len(piece) % 4 > 1:
                piece += "=" * (-len(piece) % 4)
            cut = len(piece) - len(piece) % 4
            piece, carry = piece[:cut], piece[cut:]
            data = binascii.a2b_base64(piece) if piece else b""
        elif cte == "quoted-printable":
            cut = len(piece)
            if not last and "=" in piece[-2:]:  # (an escape or soft break not yet whole)
                cut -= 2 - piece[-2:].index("=")
            piece, carry = piece[:cut], piece[cut:]
            data = binascii.a2b_qp(_raw(piece))
        else:  # 7bit, 8bit, binary (and anything unknown: its bytes as they are)
            data = _raw(piece)
        if len(data) > budget:
            data, short = data[:budget], True
        budget -= len(data)
        try:
            text = decoder.decode(data)
        except UnicodeError:  # (UTF-16 or -32 without a byte order mark: as Python reads it)
            decoder = codecs.getincrementaldecoder(_codec(f"{codec}-{sys.byteorder[0]}e"))(
                "replace")
            text = decoder.decode(data)
        out.append(text)
        got += len(text)
        if short:
            break
    done = pos >= len(payload) and not short
    if done:
        out.append(decoder.decode(b"", final=True))
    text = "".join(out)
    return text, done and len(text) <= chars


def _raw(text: str) -> bytes:
    """An encoded payload's bytes (the parser keeps bytes it could not read as ASCII as
    surrogate escapes)."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # (lone surrogates in a message built from text)
        return text.encode("utf-8", "replace")


def _codec(charset: str) -> str:
    """The Python codec of ``charset``; UTF-8 when Python knows no text encoding of that
    name (as :func:`_content` reads such a part)."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):  # (ValueError: a name with a NUL in it)
        return "utf-8"
    if not getattr(info, "_is_text_encoding", True) or info.incrementaldecoder is None:
        return "utf-8"  # (base64, rot13…: not a charset)
    return info.name


def _known(charset: str) -> bool:
    """Python reads ``charset`` as a text encoding (the standard library's own aliases
    included: ``get_content`` looks it up so)."""
    try:
        info = codecs.lookup(charset)
    except (LookupError, ValueError):
        try:
            import email.charset

            info = codecs.lookup(email.charset.ALIASES.get(charset.lower(), ""))
        except (LookupError, ValueError):
            return False
    return bool(getattr(info, "_is_text_encoding", True))


def _normalise(text: str) -> str:
    """Lines without trailing blanks, at most one empty line in a row, no NUL (an ``=00`` or
    base64 NUL decodes to one: no text means it, and no store keeps it). Only the start of
    a long text is read: :data:`MAX_BODY` characters of it are kept."""
    text = text[:4 * MAX_BODY].replace("\x00", "")
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_BLOCK = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "table",
                    "blockquote", "pre", "hr", "ul", "ol", "section", "article", "header",
                    "footer"})
_SKIP = frozenset({"script", "style", "head", "title"})
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # (libxml2 stops at some)
_BLANKS = re.compile(r"[ \t\r\n]+")


def html_to_text(html: str, limit: int | None = None) -> str:
    """The text of an HTML document or fragment (its first :data:`MAX_HTML` characters):
    block elements end lines, list items start with ``- ``, a blockquote's lines with
    ``> `` (quoted history in HTML mail), scripts and styles go. ``limit``: only the first
    ``limit`` characters of the text are wanted (it may be longer: see :func:`_html_text`).

    lxml's parser reads it in pieces and tells a :class:`_TextTarget` what it meets, in
    document order, without building a tree (a tree of 5,000,000 characters of table
    cells takes over 100 MB)."""
    return _html_text(html, limit)[0]


def _html_text(html: str, limit: int | None = None) -> tuple[str, bool]:
    """``(text, all)``: :func:`html_to_text`, and whether the text is all the HTML's. With
    a ``limit``, the HTML is read only until its text has ``limit`` characters that are not
    blanks (its first ``limit`` characters are then what the whole HTML's would be)."""
    from lxml import etree  # type: ignore[import-untyped]  # (imported with the first HTML)

    target = _TextTarget()
    parser = etree.HTMLParser(target=target, encoding="utf-8", remove_comments=True,
                              remove_pis=True, no_network=True)
    complete = len(html) <= MAX_HTML
    html = html[:MAX_HTML]
    try:
        for start in range(0, len(html), FEED):
            if limit is not None and target.chars >= limit:
                complete = False
                break
            parser.feed(_CONTROL.sub("", html[start:start + FEED]).encode("utf-8", "replace"))
        text: str = parser.close()
    except (etree.ParserError, etree.XMLSyntaxError, ValueError):  # nothing but blanks…
        text = "".join(target.out)
    lines = [" ".join(line.split()) for line in text.split("\n")]
    return "\n".join(line for line in lines if line), complete  # block ends, not blank lines


class _TextTarget:
    """What :func:`html_to_text` keeps of the parser's events: text, and line breaks where
    blocks start and end."""

    def __init__(self) -> None:
        self.out: list[str] = []
        self.quote = 0  # blockquotes open
        self.skip = 0  # scripts, styles, heads open (their text is not the message's)
        self.chars = 0  # characters of the text that are not blanks (all of them are kept)

    def start(self, tag: str, attrib: Any, nsmap: Any = None) -> None:
        tag = tag.lower() if isinstance(tag, str) else ""
        if tag in _SKIP:
            self.skip += 1
        if self.skip:
            return
        self.quote += tag == "blockquote"
        self.out.extend(("\n", "- ") if tag == "li" else ("\n",) if tag in _BLOCK else ())

    def end(self, tag: str) -> None:
        tag = tag.lower() if isinstance(tag, str) else ""
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if self.skip:
            return
        self.quote -= tag == "blockquote"
        self.out.extend(("\n",) if tag in _BLOCK else ())

    def data(self, text: str) -> None:
        if self.skip or not text:
            return
        text = _BLANKS.sub(" ", text)
        out = self.out
        if self.quote and (not out or out[-1].endswith("\n")):  # mark it as text quotes do
            text = "> " + text.lstrip()
        out.append(text)
        self.chars += sum(map(len, text.split()))

    def close(self) -> str:
        return "".join(self.out)


# ---- replies and signatures -----------------------------------------------------------------

_REPLY_HEADER = re.compile(
    r"^\s*(On\s.+\swrote:|Em\s.+\sescreveu:|Am\s.+\sschrieb\s?.*:|Le\s.+\sa\s[ée]crit\s?:|"
    r"El\s.+\sescribi[óo]:|Il\s.+\sha\sscritto:|Op\s.+\sschreef\s.*:)\s*$",
    re.IGNORECASE)
_ORIGINAL = re.compile(
    r"^\s*(-{2,}\s*(Original Message|Urspr[üu]ngliche Nachricht|Mensagem original|"
    r"Message d'origine|Mensaje original|Forwarded message)\s*-{2,}|_{10,})\s*$",
    re.IGNORECASE)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|De|Von|Van)\s*:\*?\s+\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(Sent|Date|Enviado|Gesendet|Envoy[ée]|Verzonden|To|Para|An|À)"
                           r"\s*:", re.IGNORECASE)
_SIGNATURE = re.compile(
    r"^\s*(--\s*|Sent from my \w+.*|Enviado do meu \w+.*|Von meinem \w+ gesendet.*|"
    r"Envoy[ée] de mon \w+.*|Get Outlook for \w+.*)$", re.IGNORECASE)
_CLOSING = re.compile(
    r"^\s*(best( regards)?|kind regards|regards|thanks( again)?|thank you|cheers|sincerely|"
    r"atenciosamente|abra[çc]os|obrigad[oa]|cumprimentos|mit freundlichen gr[üu]ßen|"
    r"viele gr[üu]ße|cordialement|bien [àa] vous|saludos|un saludo)[,.!]?\s*$", re.IGNORECASE)


def split_reply(text: str) -> tuple[str, str]:
    """``(new_text, signature)``: the text without quoted history (``>`` lines, "On … wrote:"
    and "-----Original Message-----" blocks, Outlook "From:/Sent:" headers) and without the
    signature (after a ``-- `` line, a "Sent from my…" line, or a closing like "Best regards"
    followed by at most a few short lines)."""
    lines = text.split("\n")
    cut = len(lines)
    for i, line in enumerate(lines):
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        if _REPLY_HEADER.match(line) or _ORIGINAL.match(line) \
                or (_OUTLOOK_FROM.match(line) and _OUTLOOK_NEXT.match(nxt)):
            cut = i
            break
        if line.startswith(">") and all(not l.strip() or l.startswith(">")
                                        for l in lines[i:i + 3]):
            cut = i
            break
        # a reply header split over two lines ("On Mon, 3 Jun 2024 at 10:00, Ann <a@b.c>\nwrote:")
        if nxt.strip().lower() in ("wrote:", "escreveu:", "schrieb:", "a écrit :", "escribió:") \
                and re.match(r"^\s*(On|Em|Am|Le|El)\s", line):
            cut = i
            break
    body = lines[:cut]
    while body and not body[-1].strip():
        body.pop()
    signature: list[str] = []
    for i, line in enumerate(body):
        if _SIGNATURE.match(line):
            signature, body = body[i:], body[:i]
            break
    else:
        for i in range(len(body) - 1, max(-1, len(body) - 8), -1):
            if _CLOSING.match(body[i]) and all(len(l) < 60 for l in body[i + 1:]):
                signature, body = body[i + 1:], body[:i + 1]
                break
    while body and not body[-1].strip():
        body.pop()
    return "\n".join(body).strip(), "\n".join(signature).strip()


# ---- attachments ----------------------------------------------------------------------------

def _attachments(msg: EmailMessage) -> list[Attachment]:
    """The attachments, each decoded and typed by its bytes (:mod:`baton.intake.sniff`). Each
    part's encoded payload is let go once decoded: only one attachment is held twice at a
    time (``msg`` is read no more after this)."""
    out: list[Attachment] = []
    for part in msg.iter_attachments():
        try:
            data = _payload(part)
        except (ValueError, TypeError):
            continue
        if not isinstance(data, bytes):
            continue
        name = _safe_name(part.get_filename() or f"attachment-{len(out) + 1}")
        declared = part.get_content_type()
        charset = part.get_content_charset()
        part.set_payload("")
        kind = effective_type(declared, data, name, charset)
        out.append(Attachment(name, kind, data, declared if kind != declared else None))
    return out


def _payload(part: Message) -> Any:
    """A part's payload with its transfer encoding undone. Base64 is decoded in one step
    from the text (``get_payload(decode=True)`` encodes it to bytes, splits it into lines
    and joins them first: three more copies); anything unusual goes the standard way."""
    payload = part.get_payload()
    if isinstance(payload, str) and part.get("content-transfer-encoding", "").strip().lower() \
            == "base64":
        try:
            return binascii.a2b_base64(payload)  # (skips line breaks; strict about padding)
        except (binascii.Error, ValueError):  # bad padding, non-ASCII: the lenient way
            pass
    return part.get_payload(decode=True)


def _safe_name(name: str) -> str:
    """A file name as a download can give it back: no folders, no control characters."""
    base = re.split(r"[\\/]", name)[-1]
    base = "".join(ch for ch in base if ch.isprintable()).strip(" .")
    return base[:200] or "attachment"
