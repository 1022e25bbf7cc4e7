"""A ZIP attachment is named by its members (``baton.intake.sniff.zip_type``): a Word, Excel
or PowerPoint file, an OpenDocument file, a Java archive (a program), else any ZIP. Only the
central directory's names are read (and an OpenDocument's uncompressed ``mimetype``): a
ZIP bomb, or a directory of tens of thousands of names, costs nothing to judge."""

from __future__ import annotations

import io
import tracemalloc
import zipfile

import pytest

from baton.definitions.model import AttachmentPolicy
from baton.intake import sniff
from baton.intake.attachments import refusal

OCTETS = "application/octet-stream"
ODT = "application/vnd.oasis.opendocument.text"
ODS = "application/vnd.oasis.opendocument.spreadsheet"


def archive(*names: str, first: tuple[str, bytes] | None = None,
            method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """A ZIP of ``names`` (each a little XML), after ``first`` (name, content) stored
    uncompressed, as OpenDocument's ``mimetype`` is."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        if first is not None:
            z.writestr(zipfile.ZipInfo(first[0]), first[1], zipfile.ZIP_STORED)
        for name in names:
            z.writestr(name, f"<x name='{name}'/>")
    return out.getvalue()


def office(folder: str, *more: str) -> bytes:
    """The members Word, Excel and PowerPoint write (``folder``: word/, xl/, ppt/)."""
    main = {"word/": "document.xml", "xl/": "workbook.xml", "ppt/": "presentation.xml"}[folder]
    return archive("[Content_Types].xml", "_rels/.rels", "docProps/core.xml",
                   "docProps/app.xml", f"{folder}{main}", f"{folder}_rels/{main}.rels",
                   f"{folder}styles.xml", *more)


def odf(kind: str, *more: str) -> bytes:
    return archive("content.xml", "styles.xml", "meta.xml", "META-INF/manifest.xml", *more,
                   first=("mimetype", kind.encode()))


def jar(*more: str) -> bytes:
    return archive("META-INF/MANIFEST.MF", "com/example/Main.class", *more)


@pytest.mark.parametrize(("data", "shown"), [
    (office("word/"), sniff.DOCX),
    (office("xl/", "xl/worksheets/sheet1.xml"), sniff.XLSX),
    (office("ppt/", "ppt/slides/slide1.xml"), sniff.PPTX),
    (office("word/", "word/vbaProject.bin"), sniff.DOCM),
    (office("xl/", "xl/vbaProject.bin"), sniff.XLSM),
    (office("ppt/", "ppt/vbaProject.bin"), sniff.PPTM),
    (odf(ODT), ODT),
    (odf(ODS), ODS),
    (jar(), sniff.JAR),
    (archive("META-INF/manifest.mf"), sniff.JAR),  # (Java finds it in any case)
    (odf(ODT, "META-INF/MANIFEST.MF"), sniff.JAR),  # a program, whatever else it is
    (office("word/", "META-INF/MANIFEST.MF"), sniff.JAR),
    (archive("invoice.pdf", "photo.jpg"), sniff.ZIP),  # any ZIP
    (archive("word/document.xml"), sniff.ZIP),  # no [Content_Types].xml: not OOXML
    (archive("[Content_Types].xml", "Documents/1/FixedDocument.fdoc"), sniff.ZIP),  # (XPS)
    (odf("application/epub+zip"), sniff.ZIP),  # a mimetype, not OpenDocument's
    (odf("application/vnd.oasis.opendocument.<script>"), sniff.ZIP),
    (archive("content.xml", first=("mimetype", b"")), sniff.ZIP),
    (archive("mimetype", "content.xml"), sniff.ZIP),  # (compressed: not read)
    (b"PK\x03\x04" + b"\x00" * 60, sniff.ZIP),  # a broken ZIP is still a ZIP
    (office("word/")[:-30], sniff.ZIP),  # its directory cut off
])
def test_a_zip_is_named_by_its_members(data: bytes, shown: str) -> None:
    assert sniff.sniff(data) == shown


@pytest.mark.parametrize(("declared", "data", "stored"), [
    # sent as some bytes (or as another type): named by what is inside
    (OCTETS, office("word/"), sniff.DOCX),
    (OCTETS, office("xl/"), sniff.XLSX),
    (OCTETS, office("ppt/"), sniff.PPTX),
    (OCTETS, odf(ODT), ODT),
    (OCTETS, jar(), sniff.JAR),
    ("application/pdf", office("xl/"), sniff.XLSX),
    ("application/zip", jar(), sniff.JAR),  # a program is never kept as "any ZIP"
    (sniff.DOCX, jar(), sniff.JAR),
    # what the sender says agrees: kept as declared
    (sniff.DOCX, office("word/"), sniff.DOCX),
    ("application/zip", office("word/"), "application/zip"),
    ("application/vnd.openxmlformats-officedocument.wordprocessingml.template",
     office("word/"), "application/vnd.openxmlformats-officedocument.wordprocessingml.template"),
    ("application/vnd.oasis.opendocument.text-template", odf(ODT),
     "application/vnd.oasis.opendocument.text-template"),
    ("application/x-java-archive", jar(), "application/x-java-archive"),
    (sniff.DOCM, office("word/", "word/vbaProject.bin"), sniff.DOCM),
    (sniff.DOCM, office("word/"), sniff.DOCM),  # (said to have macros, has none)
    # macros the declaration does not own to: stored as macro-enabled
    (sniff.DOCX, office("word/", "word/vbaProject.bin"), sniff.DOCM),
    ("application/zip", office("xl/", "xl/vbaProject.bin"), sniff.XLSM),
    # a Java archive by its name, or by its declared type, even without a manifest
    (OCTETS, archive("a.class"), sniff.ZIP),
])
def test_the_stored_type_of_a_zip(declared: str, data: bytes, stored: str) -> None:
    assert sniff.effective_type(declared, data) == stored


def test_a_jar_is_a_program_by_its_bytes_its_name_or_its_declared_type() -> None:
    plain = archive("a.class")
    assert sniff.effective_type(OCTETS, plain, "tool.jar") == sniff.JAR
    assert sniff.effective_type("application/java-archive", plain, "tool.zip") == \
        "application/java-archive"
    everything = AttachmentPolicy(allow=("*/*",))
    assert refusal(everything, sniff.JAR, 100) == (
        "type application/java-archive is a program: stored only when allow names its "
        "type (allowed: */*)")
    assert refusal(AttachmentPolicy(allow=("application/x-jar",)), sniff.JAR, 100) is None
    # an office file is no program: "*/*" takes it, and a list that names it
    assert refusal(everything, sniff.DOCX, 100) is None
    assert refusal(AttachmentPolicy(allow=(sniff.DOCX,)), sniff.DOCX, 100) is None
    assert refusal(AttachmentPolicy(allow=(sniff.DOCX,)), sniff.DOCM, 100) is not None


def test_a_zip_bomb_is_judged_by_its_names_without_inflating_anything() -> None:
    """A Word file whose document inflates to 64 MiB (a 64 KiB attachment): named
    DOCX, its members never decompressed (a few KiB of memory, not the 64 MiB)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        with z.open("word/document.xml", "w") as member:
            zeros = b"\0" * (1 << 20)
            for _ in range(64):
                member.write(zeros)
    bomb = out.getvalue()
    assert len(bomb) < 1 << 20
    tracemalloc.start()
    try:
        assert sniff.effective_type(OCTETS, bomb, "report.docx") == sniff.DOCX
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20  # (bytes: the archive's few names, never a member's content)


def directory_size(data: bytes) -> int:
    return int.from_bytes(data[-10:-6], "little")  # (the end record's, without a comment)


def test_a_directory_past_its_bound_is_not_read() -> None:
    """Tens of thousands of names (a directory over MAX_DIRECTORY bytes): any ZIP, whatever
    it holds, its names not listed; an end record that says ZIP64, or lies about the
    directory's size, likewise."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        for i in range(sniff.MAX_DIRECTORY // 60):
            z.writestr(f"word/media/image{i:06d}.png", b"")
    many = out.getvalue()
    assert directory_size(many) > sniff.MAX_DIRECTORY
    tracemalloc.start()
    try:
        assert sniff.sniff(many) == sniff.ZIP
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    word = office("word/")
    assert sniff.sniff(word) == sniff.DOCX
    end = len(word) - 22
    for at, value in ((10, b"\xff\xff"), (12, (sniff.MAX_DIRECTORY + 1).to_bytes(4, "little")),
                      (16, b"\xff\xff\xff\xff")):  # entries, size, offset: ZIP64's or a lie
        forged = word[:end + at] + value + word[end + at + len(value):]
        assert sniff.sniff(forged) == sniff.ZIP, at
    locator = word[:end] + b"PK\x06\x07" + b"\0" * 16 + word[end:]  # (a ZIP64 locator)
    assert sniff.sniff(locator) == sniff.ZIP
