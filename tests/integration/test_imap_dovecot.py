"""IMAP polling against a real Dovecot (Debian's ``dovecot-imapd``) on loopback, on both
databases: messages APPENDed to INBOX become cases once, a later one is taken alone.

Dovecot runs its login processes as ``dovenull`` and mail as ``dovecot`` (it refuses
root for either), so starting it needs root and the users the Debian package makes;
without them the test is skipped and says why (``tests/integration/test_imap_polling.py``
covers the UID bookkeeping against a small IMAP server in any case)."""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from baton.intake.imap import poll
from tests.net import free_port
from tests.procs import eventually

DOVECOT = "/usr/sbin/dovecot"
PASSWORD = "dovecot-test-pw-1"
DEFS = """
kind: object
name: Case
fields:
  subject: {{type: string}}
---
kind: mailbox
name: inbox
object: Case
fields: {{subject: subject}}
imap: {{host: 127.0.0.1, port: {port}, username: support, password_secret: env:T_DOVECOT_PW,
        ssl: false}}
"""


def _why_not() -> str | None:
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (apt-get install dovecot-imapd)"
    if os.geteuid() != 0:
        return "starting dovecot for a test needs root (its processes switch users)"
    try:
        pwd.getpwnam("dovecot")
        pwd.getpwnam("dovenull")
    except KeyError:
        return "the dovecot and dovenull users are missing"
    return None


@pytest.fixture
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    why = _why_not()
    if why:
        pytest.skip(why)
    base = Path("/tmp") / f"baton-dovecot-{os.getpid()}-{time.monotonic_ns()}"
    base.mkdir(mode=0o755)
    mail = pwd.getpwnam("dovecot")
    for d in ("run", "state", "home"):
        (base / d).mkdir()
    (base / "passwd").write_text(f"support:{{PLAIN}}{PASSWORD}\n")
    os.chown(base / "home", mail.pw_uid, mail.pw_gid)
    port = free_port()
    (base / "dovecot.conf").write_text(f"""
base_dir = {base}/run
state_dir = {base}/state
log_path = {base}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {mail.pw_uid}
auth_mechanisms = plain login
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {base}/passwd
}}
userdb {{
  driver = static
  args = uid={mail.pw_uid} gid={mail.pw_gid} home={base}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
""")
    proc = subprocess.Popen([DOVECOT, "-F", "-c", str(base / "dovecot.conf")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answers() -> bool:
            assert proc.poll() is None, (base / "dovecot.log").read_text()
            try:
                imaplib.IMAP4("127.0.0.1", port, timeout=5).logout()
                return True
            except OSError:
                return False
        eventually(answers, timeout=30, what="dovecot to answer")
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


def _append(port: int, n: int) -> None:
    msg = EmailMessage()
    msg["From"] = f"client{n}@dealer.example"
    msg["To"] = "support@baton.example"
    msg["Subject"] = f"Dovecot question {n}"
    msg["Message-ID"] = f"<dovecot-{n}@dealer.example>"
    msg.set_content(f"Message {n}.")
    client = imaplib.IMAP4("127.0.0.1", port, timeout=30)
    try:
        client.login("support", PASSWORD)
        status, _ = client.append("INBOX", "", imaplib.Time2Internaldate(time.time()),
                                  msg.as_bytes())
        assert status == "OK"
    finally:
        client.logout()


def test_polling_a_real_dovecot(harness: Any, dovecot: int,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("T_DOVECOT_PW", PASSWORD)
    harness.deploy_text(DEFS.format(port=dovecot))
    box = harness.engine.definitions.mailboxes()["inbox"]
    _append(dovecot, 1)
    _append(dovecot, 2)
    first = poll(harness.engine.intake, box, env=os.environ)
    assert [o for _, o in first.taken] == ["created", "created"]
    assert poll(harness.engine.intake, box, env=os.environ).taken == ()
    _append(dovecot, 3)
    third = poll(harness.engine.intake, box, env=os.environ)
    assert [(u, o) for u, o in third.taken] == [(first.last_uid + 1, "created")]
    rows = harness.engine.page_records("Case", limit=10).rows
    assert sorted(r["subject"] for r in rows) == [f"Dovecot question {n}" for n in (1, 2, 3)]
