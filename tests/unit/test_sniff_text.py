"""Text attachments that intake names by what they are (``baton.intake.sniff``): CSV sent as
``application/octet-stream`` is ``text/csv`` (so a default ``text/*`` list takes it, its text
read), and scripts (by their file name or a ``#!`` line) are programs, which only a list
that names their type takes: ``text/*`` and ``*/*`` do not."""

from __future__ import annotations

import pytest

from baton.definitions.model import AttachmentPolicy
from baton.intake import sniff
from baton.intake.attachments import refusal

OCTETS = "application/octet-stream"
ORDERS = b"order,sku,qty\r\n4411,PUMP-3,2\r\n4412,\"VALVE, 1\"\" brass\",10\r\n"


@pytest.mark.parametrize(("data", "charset"), [
    (ORDERS, None),
    (b"order;amount\n4411;99,50\n4412;12,00\n", None),  # (decimal commas: ; splits)
    (b"order\tamount\n4411\t99.50\n", None),
    (b"a|b|c\n1|2|3\n", None),
    ("Straße,Menge\nHauptstraße 1,2\n".encode(), None),
    ("Straße,Menge\nHauptstraße 1,2\n".encode("latin-1"), "iso-8859-1"),  # its charset
    ("Straße,Menge\nHauptstraße 1,2\n".encode("utf-16"), None),  # (a byte order mark)
    (b"id,note\n1,\"two\nlines\"\n2,one\n\n", None),  # a quoted line break; an empty line
    # longer than CSV_HEAD: judged on its first rows, the one the cut splits left out
    (b"id,name\r\n" + b"".join(b"%d,name %d\r\n" % (i, i) for i in range(9000)), None),
])
def test_csv_sent_as_octets_is_text_csv(data: bytes, charset: str | None) -> None:
    assert sniff.effective_type(OCTETS, data, "export.bin", charset) == sniff.CSV


@pytest.mark.parametrize(("data", "charset"), [
    (b"just one line, no rows\n", None),
    (b"order,sku\n4411\n", None),  # fields that do not line up
    (b"Hello Ana,\nthe pump leaks again.\nRegards, Bob\n", None),
    (b"no delimiter\nat all\n", None),
    (b"a,b\n\"open quote,1\n", None),
    ("Straße,Menge\nHauptstraße 1,2\n".encode("latin-1"), None),  # not UTF-8, none said
    (b"a,b\n1,2\n\x00\x01\x02\x03" * 4, None),  # binary
    (bytes(range(256)) * 8, None),
    (b"", None),
    (ORDERS, "base64"),  # (no charset: read as UTF-8, which it is)
])
def test_what_is_not_csv_stays_octets(data: bytes, charset: str | None) -> None:
    expected = sniff.CSV if charset == "base64" else OCTETS
    assert sniff.effective_type(OCTETS, data, "export.bin", charset) == expected


def test_only_octets_are_looked_at_for_csv() -> None:
    assert sniff.effective_type("text/plain", ORDERS, "orders.txt") == "text/plain"
    assert sniff.effective_type("application/vnd.ms-excel", ORDERS, "o.csv") == \
        "application/vnd.ms-excel"
    # the default list takes it, by text/*
    assert refusal(AttachmentPolicy(), sniff.CSV, len(ORDERS)) is None
    assert refusal(AttachmentPolicy(), OCTETS, len(ORDERS)) is not None


@pytest.mark.parametrize(("name", "declared", "data", "stored"), [
    # by name: whatever they are sent as, or hold
    ("setup.sh", "text/plain", b"rm -rf /\n", sniff.SH),
    ("Setup.PS1", OCTETS, b"Remove-Item C:\\ -Recurse\n", sniff.POWERSHELL),
    ("run.bat", "text/plain", b"@echo off\r\ndel *.*\r\n", sniff.BAT),
    ("run.cmd", OCTETS, b"@echo off\r\n", sniff.BAT),
    ("invoice.pdf.vbs", "application/pdf", b"CreateObject(\"WScript.Shell\")\n",
     sniff.VBSCRIPT),
    ("invoice.js", "application/pdf", b"%PDF-1.4 not really\n", sniff.JAVASCRIPT),
    ("invoice.js", "text/plain", b"var s = new ActiveXObject('WScript.Shell');\n",
     sniff.JAVASCRIPT),
    ("invoice.js", "image/png", b"\x89PNG\r\n\x1a\n" + b"\0" * 20, sniff.JAVASCRIPT),
    ("Profile.psm1", "text/plain", b"function Get-X {}\n", sniff.POWERSHELL),
    ("invoice.vbe", OCTETS, b"#@~^encoded==", sniff.VBSCRIPT),
    ("invoice.jse", OCTETS, b"#@~^encoded==", sniff.JAVASCRIPT),
    ("invoice.hta", "text/html", b"<html><script>x()</script></html>", sniff.HTA),
    ("job.wsf", "text/xml", b"<job><script language='VBScript'/></job>", sniff.WSF),
    ("Invoice.pdf.lnk", "application/pdf", b"L\0\0\0\x01\x14\x02\0", sniff.SHORTCUT),
    ("old.com", OCTETS, b"\xb4\x09\xba\x09\x01\xcd\x21", sniff.EXE),
    ("photo.jpg.scr", "image/jpeg", b"\xff\xd8\xff\xe0 not really", sniff.EXE),
    ("notes.txt.", "text/plain", b"(Windows drops a name's last dot)", "text/plain"),
    # by a "#!" line
    ("build", "text/plain", b"#!/bin/sh\nmake\n", sniff.SH),
    ("build", OCTETS, b"#!/usr/bin/env bash\nmake\n", sniff.SH),
    ("tool", "text/plain", b"#!/usr/bin/env -S python3 -u\nprint(1)\n",
     "text/x-script.python3"),
    ("tool", "text/plain", b"#! /usr/bin/perl -w\nprint 1;\n", "text/x-script.perl"),
    ("tool", "text/plain", b"#!\n", sniff.SH),
    ("readme.md", "text/markdown", b"# Title\n#! not at the start\n", "text/markdown"),
    # declared as the same kind of program: kept as declared (by any of its names it is one)
    ("run.sh", "application/x-shellscript", b"echo hi\n", "application/x-shellscript"),
    ("app.js", "application/javascript", b"alert(1)\n", "application/javascript"),
    ("run.bat", "text/x-msdos-batch", b"@echo off\r\n", "text/x-msdos-batch"),
    # declared as another program (Debian's name for .exe, .com and .bat): its name's type
    ("run.bat", "application/x-msdos-program", b"@echo off\r\n", sniff.BAT),
    ("Setup.ps1", "application/x-msdownload", b"iex (irm x)\n", sniff.POWERSHELL),
    # binaries by their bytes first
    ("run.sh", "text/plain", b"\x7fELF\x02\x01\x01\x00" + b"\0" * 56, sniff.ELF),
])
def test_scripts_are_named_by_their_file_name_or_their_first_line(
        name: str, declared: str, data: bytes, stored: str) -> None:
    got = sniff.effective_type(declared, data, name)
    assert got == stored
    assert sniff.program(got) == (stored not in ("text/plain", "text/markdown"))


@pytest.mark.parametrize("kind", [sniff.SH, sniff.POWERSHELL, sniff.BAT, sniff.VBSCRIPT,
                                  sniff.JAVASCRIPT, sniff.HTA, sniff.WSF, sniff.SHORTCUT,
                                  "text/x-script.python3"])
def test_a_script_is_stored_only_where_allow_names_its_type(kind: str) -> None:
    for allow in (("*/*",), ("text/*",), ("application/*",)):
        why = refusal(AttachmentPolicy(allow=allow), kind, 10)
        assert why is not None and kind in why, allow
    assert refusal(AttachmentPolicy(allow=(kind,)), kind, 10) is None
    # by another of its names
    assert refusal(AttachmentPolicy(allow=("application/x-sh",)), "text/x-shellscript",
                   10) is None
    assert refusal(AttachmentPolicy(allow=("application/javascript",)), sniff.JAVASCRIPT,
                   10) is None
