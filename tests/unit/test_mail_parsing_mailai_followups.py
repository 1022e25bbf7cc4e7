"""Malformed headers never crash mail parsing (the audit's ``Message-ID: <>``, a display name
whose encoded word holds CR/LF, a Date past the last instant), an unknown charset is noted,
and hypothesis fuzzes header values so that nothing but :class:`MailError` ever escapes
:func:`baton.intake.mail.parse` (and not even that, for a message with a From header)."""

from __future__ import annotations

import logging
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from baton.intake.mail import Mail, MailError, parse

BASE = ("From: f@dealer.example\r\nTo: support@acme.example\r\nSubject: s\r\n"
        "Message-ID: <ok@x>\r\n")


def _with(header: str, value: str, base: str = BASE) -> bytes:
    lines = [line for line in base.split("\r\n") if line and
             not line.lower().startswith(header.lower() + ":")]
    return ("\r\n".join([*lines, f"{header}: {value}"]) + "\r\n\r\nbody\r\n").encode()


def test_an_empty_message_id_falls_back_to_the_hash_and_says_so() -> None:
    a = parse(_with("Message-ID", "<>"))
    b = parse(_with("Message-ID", "<>").replace(b"body", b"other body"))
    assert a.message_id.startswith("sha256-") and b.message_id.startswith("sha256-")
    assert a.message_id != b.message_id  # (two such messages are not one duplicate)
    assert any("Message-ID" in n and "hash" in n for n in a.notes)
    for value in ("<   >", "< >", "<<>>", "\x01"):
        m = parse(_with("Message-ID", value))
        assert m.message_id.startswith("sha256-"), value
    long = parse(_with("Message-ID", "<" + "a" * 600 + "@x>"))  # (no column holds it)
    assert long.message_id.startswith("sha256-")
    assert parse(_with("In-Reply-To", "<>")).in_reply_to is None
    assert parse(_with("References", "<> <r1@x>")).references == ("r1@x",)


@pytest.mark.parametrize("header", ["From", "To", "Cc"])
def test_a_display_name_with_an_encoded_line_break_is_sanitized(header: str) -> None:
    m = parse(_with(header, "=?utf-8?q?A=0D=0AB?= <a@x.example>"))
    if header == "From":
        assert (m.sender_name, m.sender) == ("A B", "a@x.example")
    else:
        assert (m.to if header == "To" else m.cc) == ("a@x.example",)


def test_an_encoded_word_never_becomes_an_address() -> None:
    m = parse(_with("From", '=?utf-8?q?Evil=0D=0ABcc=3A_x=40y?= <real@x.example>'))
    assert (m.sender_name, m.sender) == ("Evil Bcc: x@y", "real@x.example")
    m = parse(_with("To", '=?utf-8?q?Evil=0D=0ABcc=3A_x=40y?= <real@x.example>, b@y.example'))
    assert m.to == ("real@x.example", "b@y.example")


@pytest.mark.parametrize("value", ["Fri, 31 Dec 9999 23:59:59 -1200",
                                   "Mon, 99 Foo 2024 25:61:00 +9999",
                                   "1 Jan 2024 10:00:00 +2400", "not a date at all"])
def test_a_date_that_cannot_be_read_is_no_date_and_noted(value: str) -> None:
    m = parse(_with("Date", value))
    assert m.date is None
    assert any(n.startswith("the Date header") and "no date is kept" in n for n in m.notes)


def test_a_good_date_has_no_note() -> None:
    m = parse(_with("Date", "Mon, 01 Jan 0001 00:00:00 +1400"))  # (not before year 1 in UTC?)
    assert m.date is None or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m.date)
    ok = parse(_with("Date", "Tue, 03 Nov 2026 10:15:00 +0100"))
    assert ok.date == "2026-11-03T09:15:00Z" and ok.notes == ()


def test_an_unknown_charset_is_noted_on_the_message() -> None:
    raw = (b"From: x@dealer.example\r\nTo: support@acme.example\r\nSubject: bad charset\r\n"
           b"Message-ID: <badcs@x>\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: text/plain; charset=x-unknown-42\r\n\r\nBody \xe9\xe8 here\r\n")
    m = parse(raw)
    assert "\ufffd" in m.body
    assert any("x-unknown-42" in n and "unknown" in n and "damaged" in n for n in m.notes)
    html = raw.replace(b"text/plain", b"text/html").replace(b"Body", b"<p>Body</p>")
    assert any("x-unknown-42" in n for n in parse(html).notes)
    known = raw.replace(b"x-unknown-42", b"iso-8859-1")
    assert parse(known).body == "Body éè here" and parse(known).notes == ()
    latin = raw.replace(b"x-unknown-42", b"latin1")  # (an alias Python knows)
    assert parse(latin).notes == ()
    nul = parse(raw.replace(b"x-unknown-42", b'"utf\x00-8"'))  # (the codec lookup raises)
    assert nul.body == "Body \ufffd\ufffd here" and "unknown" in nul.notes[0]


# ---- fuzzing -------------------------------------------------------------------------------

HEADERS = ["From", "To", "Cc", "Reply-To", "Sender", "Message-ID", "In-Reply-To", "References",
           "Date", "Subject", "Content-Type", "Content-Disposition",
           "Content-Transfer-Encoding", "Auto-Submitted", "Precedence", "X-Autoreply",
           "MIME-Version"]
PIECES = ["<", ">", "<>", "@", '"', "\\", "(", ")", ",", ";", ":", "=?", "?=", "=?utf-8?q?",
          "=?utf-8?b?", "=?x-unknown?q?", "=0D=0A", "=00", "=", "?", "\r\n ", "\t", " ",
          "\x00", "\x01", "\x7f", "ä", "\udcff", "a@b.example", "9999", "-1200", "+2400",
          "Fri, 31 Dec", "23:59:59", "0000", "boundary=", "charset=", "filename*=", "'",
          "%", "multipart/mixed", "text/plain", "attachment", "utf-8''", "1e9", "[", "]"]
value = st.lists(st.one_of(st.sampled_from(PIECES),
                           st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x2ff,
                                                          exclude_characters="\r\n"),
                                   max_size=12)),
                 max_size=12).map("".join)


def _raw(fields: list[tuple[str, str]], body: bytes) -> bytes:
    head = "".join(f"{name}: {val}\r\n" for name, val in fields)
    return head.encode("utf-8", "surrogateescape") + b"\r\n" + body


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields=st.lists(st.tuples(st.sampled_from(HEADERS), value), min_size=1, max_size=6),
       body=st.sampled_from([b"body\r\n", b"--B\r\nContent-Type: text/plain\r\n\r\nx\r\n--B--\r\n",
                             b"\xe9\xe8\r\n", b"PGI+aGk8L2I+\r\n"]))
def test_fuzzed_header_values_never_break_parsing(fields: list[tuple[str, str]], body: bytes,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    _parses(_raw([("From", "f@dealer.example"), *fields], body), caplog)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(fields=st.lists(st.tuples(st.sampled_from(HEADERS), value), min_size=1, max_size=5))
def test_fuzzed_part_headers_never_break_parsing(fields: list[tuple[str, str]],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """The same values on the parts of a multipart message (attachments, alternatives)."""
    part = _raw(fields, b"PGI+aGk8L2I+\r\n")
    raw = _raw([("From", "f@dealer.example"), ("MIME-Version", "1.0"),
                ("Content-Type", 'multipart/mixed; boundary="B"')],
               b"--B\r\nContent-Type: text/plain\r\n\r\nhello\r\n--B\r\n" + part
               + b"\r\n--B\r\n" + part + b"\r\n--B--\r\n")
    _parses(raw, caplog)


def _parses(raw: bytes, caplog: pytest.LogCaptureFixture) -> None:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="baton.intake.mail"):
        try:
            m = parse(raw)
        except MailError as exc:  # (only the bounds' refusals: none is reached here)
            pytest.fail(f"refused: {exc}")
    # The safety net in parse() logs an error for what no fallback read around: none here.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert isinstance(m, Mail)
    assert m.message_id.strip() and len(m.message_id) <= 500
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", m.message_id + (m.in_reply_to or "")
                         + "".join(m.references))
    assert not re.search(r"[\x00-\x1f\x7f-\x9f]", m.sender_name + m.sender + "".join(m.to + m.cc))
    assert m.date is None or re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m.date)
    assert all(len(a) <= 320 for a in (m.sender, *m.to, *m.cc))
    assert "\x00" not in m.subject and "\x00" not in m.body
