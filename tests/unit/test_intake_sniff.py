"""Attachments are typed by their first bytes (``baton.intake.sniff``), and text is read only
from what is text and PDFs only from what is a PDF (``baton.intake.attachments``)."""

from __future__ import annotations

import io
import zipfile

import pytest

from baton.intake import sniff
from baton.intake.attachments import extract_text
from tests.pdfs import pdf_with_text

PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
ELF = b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + b"\x00" * 20
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 20
GIF = b"GIF89a\x01\x00\x01\x00" + b"\x00" * 10


def docx() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("[Content_Types].xml", "<Types/>")
    return out.getvalue()


DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


@pytest.mark.parametrize(("declared", "data", "stored"), [
    # what the declaration says, the bytes agree: kept as declared
    ("application/pdf", pdf_with_text("x"), "application/pdf"),
    ("application/pdf", b"junk before\n" + pdf_with_text("x"), "application/pdf"),
    (DOCX, docx(), DOCX),
    ("application/zip", docx(), "application/zip"),
    ("image/jpg", JPEG, "image/jpg"),
    ("application/x-msdownload", PE, "application/x-msdownload"),
    ("text/plain", b"MZ Corp invoice 4411, total 99.50\n", "text/plain"),  # no DOS header
    ("text/plain", "Grüße\n".encode("utf-16"), "text/plain"),
    ("image/webp", b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),  # unknown: trusted
    # what the bytes show wins
    ("application/pdf", PNG, "image/png"),
    ("application/pdf", PE, sniff.EXE),
    ("application/pdf", b"\x00\x01\x02binary", "application/octet-stream"),
    ("application/pdf", b"Just some text, no PDF.\n", "text/plain"),
    ("text/plain", pdf_with_text("x"), "application/pdf"),
    ("text/plain", PE, sniff.EXE),
    ("text/plain", ELF, sniff.ELF),
    ("text/plain", b"\x00\x01\x02\x03" * 100, "application/octet-stream"),
    ("text/html", GIF, "image/gif"),
    ("image/png", JPEG, "image/jpeg"),
    ("application/octet-stream", pdf_with_text("x"), "application/pdf"),
    ("application/octet-stream", PE, sniff.EXE),
    (DOCX, PE, sniff.EXE),
    ("application/pdf", docx(), "application/zip"),
])
def test_the_stored_type_is_what_the_bytes_show(declared: str, data: bytes,
                                                 stored: str) -> None:
    assert sniff.effective_type(declared, data) == stored


def test_binary_is_told_from_text() -> None:
    assert not sniff.binary(b"")
    assert not sniff.binary("a plain letter\r\n\tindented, é ü\f\n".encode())
    assert sniff.binary(b"text then a NUL\x00")
    assert sniff.binary(bytes(range(1, 32)) * 4)
    assert not sniff.binary(b"\x1b[31mcoloured log\x1b[0m\n" * 10)  # (escape is text)


def test_no_pdf_reader_for_what_is_not_a_pdf_and_no_text_from_binary() -> None:
    # (extract_text is given the stored type; these are what a caller could still pass)
    assert extract_text("application/pdf", PNG) == (
        None, "not a PDF (no %PDF- header): no text is read")
    assert extract_text("text/plain", PE) == (
        None, "its bytes are binary, not text/plain: no text is read")
    assert extract_text("text/html", b"<p>a\x00</p>" * 10)[0] is None
    assert extract_text("text/plain", b"Invoice 4411\n") == ("Invoice 4411\n", None)
    assert extract_text("text/plain", "Grüße".encode("utf-16")) == ("Grüße", None)
    text, error = extract_text("application/pdf", pdf_with_text("Invoice 4411"))
    assert error is None and text == "Invoice 4411"


def test_a_long_text_is_cut_without_breaking_a_character() -> None:
    from baton.intake.attachments import MAX_TEXT

    text, _ = extract_text("text/plain", ("é" * (MAX_TEXT * 3)).encode())
    assert text == "é" * MAX_TEXT
    text, _ = extract_text("text/plain", b"a" * (4 * MAX_TEXT - 1) + "é".encode())
    assert text == "a" * MAX_TEXT
    # Latin-1 that is not UTF-8 is still read as Latin-1
    assert extract_text("text/plain", "Grüße".encode("latin-1"))[0] == "Grüße"
