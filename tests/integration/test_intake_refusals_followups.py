"""Mail intake refused is kept for operators (``baton_intake_refusals``, migration 32), on
both databases: an SMTP session's refusals (too large at ``MAIL FROM … SIZE=``, too large
once the data ran over, a record its type refuses), ``.eml`` files (unreadable, refused, too
large to be read) and IMAP messages gone past in a real Dovecot (with their folder,
UIDVALIDITY and UID, taken in again by ``baton intake imap-fetch`` once mended) are listed
by ``baton intake refused`` (a real CLI process on the same database), ``GET
/api/intake/refused`` and the Fallout page; the list stays bounded; a refusal whose row
cannot be written still stands."""

from __future__ import annotations

import email.policy
import imaplib
import json
import logging
import os
import re
import smtplib
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from baton.clock import SystemClock
from baton.intake.mail import MailError
from baton.intake.service import MessageRefused
from baton.intake.smtp import SmtpListener
from baton.store.sql import refusals as refusals_sql
from tests.api.conftest import Api
from tests.api.test_run_page_actions import login
from tests.integration.test_imap_dovecot import PASSWORD, dovecot  # noqa: F401 - a fixture
from tests.net import free_port

DEFS = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
  body: {type: text}
---
kind: mailbox
name: support
object: Ticket
addresses: [support@baton.example]
fields: {subject: subject, body: body}
"""

IMAP_DEFS = """
kind: object
name: PolledTicket
fields:
  subject: {{type: string, required: {required}}}
---
kind: mailbox
name: inbox
object: PolledTicket
fields: {{subject: subject}}
imap: {{host: 127.0.0.1, port: {port}, username: support, password_secret: env:T_DOVECOT_PW,
        ssl: false}}
"""


def mail(subject: str, n: int, body: str = "Hello.") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Client {n} <client{n}@dealer.example>"
    msg["To"] = "support@baton.example"
    msg["Subject"] = subject
    msg["Message-ID"] = f"<refused-{n}@dealer.example>"
    msg.set_content(body)
    return msg.as_bytes(policy=email.policy.SMTP)  # (CRLF: as SMTP sends it)


def lines(char: str, size: int) -> str:
    """About ``size`` characters of text in lines of 70."""
    return (char * 69 + "\n") * (size // 70)


@pytest.fixture
def api(db_url: str, clock: Any, tmp_path: Path) -> Iterator[Api]:
    a = Api(db_url, clock)
    path = tmp_path / "mail.yaml"
    path.write_text(textwrap.dedent(DEFS))
    a.engine.deploy([path], actor="setup", known_flows=None)
    yield a
    a.close()


def cli(db_url: str, *args: str | Path, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """``baton --db URL ARGS`` as a process of its own, on the test's database."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    environ.update(COLUMNS="250", NO_COLOR="1", **env)
    return subprocess.run([sys.executable, "-m", "baton.cli.main", "--db", db_url,
                           *map(str, args)], cwd=cwd, env=environ, capture_output=True,
                          text=True, timeout=300, check=False)


def listed(db_url: str, cwd: Path, *args: str) -> list[dict[str, Any]]:
    p = cli(db_url, "intake", "refused", "--json", *args, cwd=cwd)
    assert p.returncode == 0, p.stderr
    return list(json.loads(p.stdout)["items"])


def test_smtp_refusals_are_listed_by_the_cli_and_the_api(api: Api, tmp_path: Path) -> None:
    listener = SmtpListener(api.engine.intake, "127.0.0.1", free_port(), max_bytes=20_000)
    listener.start()
    try:
        with smtplib.SMTP("127.0.0.1", listener.port, timeout=120) as client:
            # smtplib announces the size (the server's EHLO says SIZE): 552 at MAIL FROM
            big = mail("Scan of the contract", 1, lines("x", 30_000))
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.sendmail("client1@dealer.example", ["support@baton.example"], big)
            assert refused.value.smtp_code == 552
            client.rset()
            # a sender that does not announce it: 552 once the data ran over
            assert client.mail("client2@dealer.example")[0] == 250
            assert client.rcpt("support@baton.example")[0] == 250
            code, _ = client.data(mail("Another scan", 2, lines("y", 30_000)))
            assert code == 552
            # a message whose record the type refuses: 554 with the reason
            with pytest.raises(smtplib.SMTPDataError) as empty:
                client.sendmail("client3@dealer.example", ["support@baton.example"],
                                mail("", 3))
            assert empty.value.smtp_code == 554
            # and one that is taken: not listed
            client.sendmail("client4@dealer.example", ["support@baton.example"],
                            mail("Fine", 4))
    finally:
        listener.stop()
    r = api.get("opal", "/api/intake/refused")
    assert r.status_code == 200, r.text
    page = r.json()
    assert page["total"] == 3
    newest, middle, oldest = page["items"]
    assert oldest["via"] == middle["via"] == newest["via"] == "smtp"
    assert oldest["outcome"] == "too_large" and oldest["sender"] == "client1@dealer.example"
    assert oldest["size"] == len(big) and oldest["mailbox"] is None  # (no RCPT yet)
    assert "over 20,000 bytes" in oldest["reason"]
    assert middle["outcome"] == "too_large" and middle["sender"] == "client2@dealer.example"
    assert middle["mailbox"] == "support"
    assert newest["outcome"] == "refused" and newest["mailbox"] == "support"
    assert newest["sender"] == "client3@dealer.example"
    assert newest["message_id"] == "refused-3@dealer.example" and newest["subject"] == ""
    assert "subject" in newest["reason"] and "is empty" in newest["reason"]
    assert newest["raw_sha256"] and newest["imap"] is None and "554" not in newest["reason"]
    assert "bounces it" in newest["remedy"]
    # paging, a mailbox's own, who may read them
    first = api.get("opal", "/api/intake/refused", params={"limit": 2}).json()
    rest = api.get("opal", "/api/intake/refused", params={"after": first["next"]}).json()
    assert [i["id"] for i in first["items"] + rest["items"]] == [
        i["id"] for i in page["items"]]
    only = api.get("dee", "/api/intake/refused", params={"mailbox": "support"}).json()
    assert [i["id"] for i in only["items"]] == [newest["id"], middle["id"]]
    assert api.get("ann", "/api/intake/refused").status_code == 403
    assert api.client.get("/api/intake/refused").status_code == 401
    # the CLI, a process of its own on the same database, lists the same
    assert listed(api.db_url, tmp_path) == page["items"]
    p = cli(api.db_url, "intake", "refused", "--mailbox", "support", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "client3@dealer.example" in p.stdout and "client1@" not in p.stdout


def test_eml_refusals_are_listed_and_the_page_shows_them(api: Api, tmp_path: Path) -> None:
    files = tmp_path / "mail"
    files.mkdir()
    (files / "a_unreadable.eml").write_bytes(b"no headers here")
    (files / "b_no_subject.eml").write_bytes(mail("", 10))
    (files / "c_large.eml").write_bytes(mail("Huge one", 11, lines("z", 5_000)))
    (files / "d_fine.eml").write_bytes(mail("Fine", 12))
    p = cli(api.db_url, "intake", "eml", files, "--json", cwd=tmp_path,
            BATON_INTAKE_MAX_MESSAGE_BYTES="4096")
    assert p.returncode == 1
    assert [r["outcome"] for r in json.loads(p.stdout)] == ["error", "error", "error", "created"]
    got = listed(api.db_url, tmp_path)
    assert [(r["via"], r["outcome"]) for r in got] == [
        ("eml", "too_large"), ("eml", "refused"), ("eml", "unreadable")]
    large, no_subject, unreadable = got
    assert large["sender"] == "client11@dealer.example" and large["subject"] == "Huge one"
    assert large["size"] == len(mail("Huge one", 11, lines("z", 5_000)))
    assert large["raw_sha256"] is None and "over 4,096 bytes" in large["reason"]
    assert large["mailbox"] == "support"  # (by its To: the only mailbox listing it)
    assert no_subject["mailbox"] == "support" and "baton intake eml FILE --mailbox support" \
        in no_subject["remedy"]
    assert unreadable["mailbox"] is None and unreadable["sender"] is None
    assert "no e-mail headers" in unreadable["reason"]
    # the API's own posts are kept too (at the time the CLI's were: the server's clock)
    api.clock.set(SystemClock().now())
    r = api.post("opal", "/api/intake/support", content=mail("", 13),
                 headers={"Content-Type": "message/rfc822"})
    assert r.status_code == 422
    items = api.get("root", "/api/intake/refused").json()["items"]
    assert [i["id"] for i in items[1:]] == [i["id"] for i in got]
    assert items[0]["via"] == "api" and items[0]["message_id"] == "refused-13@dealer.example"
    # the Fallout page: a count and the newest, for operators
    login(api, "opal")
    text = api.client.get("/fallout").text
    assert "4 refused messages kept" in text and "client11@dealer.example" in text
    assert "Huge one" in text and 'href="/api/intake/refused"' in text


def test_imap_messages_gone_past_in_dovecot_are_listed_and_taken_in_once_mended(
        api: Api, dovecot: int, tmp_path: Path,  # noqa: F811 - the fixture
        monkeypatch: pytest.MonkeyPatch) -> None:
    from baton.intake.imap import poll

    monkeypatch.setenv("T_DOVECOT_PW", PASSWORD)
    path = tmp_path / "imap.yaml"
    path.write_text(IMAP_DEFS.format(port=dovecot, required="true"))
    api.engine.deploy([path], actor="setup", known_flows=None)
    poison = Path("/tmp/audit-ai-imap/eml/nullhdr.eml")
    raws = [mail("First", 20), mail("", 21), b"no headers here\r\n",
            mail("Far too long", 22, lines("w", 40_000)), mail("Last", 23)]
    if poison.exists():  # (an audit's hostile mail, when this machine has it)
        raws.insert(3, poison.read_bytes())
    client = imaplib.IMAP4("127.0.0.1", dovecot, timeout=30)
    try:
        client.login("support", PASSWORD)
        for raw in raws:
            status, _ = client.append("INBOX", "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK"
    finally:
        client.logout()
    box = api.engine.definitions.mailboxes()["inbox"]
    got = poll(api.engine.intake, box, env=os.environ, max_bytes=30_000)
    outcomes = dict(got.taken)
    uids = [u for u, _ in got.taken]
    assert outcomes[uids[0]] == "created" and outcomes[uids[-1]] == "created"
    assert outcomes[uids[1]] == "refused" and outcomes[uids[2]] == "unreadable"
    items = api.get("opal", "/api/intake/refused").json()["items"]
    gone_past = sorted(u for u, o in got.taken if o not in ("created", "threaded"))
    assert sorted(i["imap"]["uid"] for i in items) == gone_past
    assert {i["via"] for i in items} == {"imap"} and {i["mailbox"] for i in items} == {"inbox"}
    by_uid = {i["imap"]["uid"]: i for i in items}
    refused = by_uid[uids[1]]
    assert refused["imap"]["uidvalidity"] == got.uidvalidity
    assert refused["imap"]["folder"] == "INBOX"
    assert refused["imap"]["account"] == f"support@127.0.0.1:{dovecot}/INBOX"
    assert refused["sender"] == "client21@dealer.example"
    assert f"--uid {uids[1]}" in refused["remedy"] and "stays in UID" in refused["remedy"]
    large = next(i for i in items if i["outcome"] == "too_large")
    assert large["raw_sha256"] is None and large["size"] > 30_000
    # what the server's ENVELOPE said of the message it did not fetch
    assert large["subject"] == "Far too long" and large["sender"] == "client22@dealer.example"
    assert large["message_id"] == "refused-22@dealer.example"
    # the CLI says the same, and where they stay
    p = cli(api.db_url, "intake", "refused", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert f"imap UID {uids[1]}" in p.stdout and "baton intake imap-fetch" in p.stdout
    # mended (the subject no longer required): that one message taken in, by its UID
    path.write_text(IMAP_DEFS.format(port=dovecot, required="false"))
    api.engine.deploy([path], actor="setup", known_flows=None)
    p = cli(api.db_url, "intake", "imap-fetch", "--mailbox", "inbox", "--uid", str(uids[1]),
            "--uidvalidity", str(got.uidvalidity), "--json", cwd=tmp_path,
            T_DOVECOT_PW=PASSWORD)
    assert p.returncode == 0, p.stderr
    taken = json.loads(p.stdout)
    assert taken["outcome"] == "created" and taken["message_id"] == "refused-21@dealer.example"
    p = cli(api.db_url, "intake", "imap-fetch", "--mailbox", "inbox", "--uid", str(uids[1]),
            "--uidvalidity", str(got.uidvalidity + 1), cwd=tmp_path, T_DOVECOT_PW=PASSWORD)
    assert p.returncode == 1 and "was recreated" in p.stderr
    # the poll's bookkeeping is as it was: nothing new, nothing listed twice
    assert poll(api.engine.intake, box, env=os.environ, max_bytes=30_000).taken == ()
    assert api.get("opal", "/api/intake/refused").json()["total"] == len(items)


def test_the_list_stays_bounded_by_count_and_age(harness: Any, clock: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    harness.deploy_text(DEFS)
    intake = harness.engine.intake
    monkeypatch.setattr(refusals_sql, "KEEP_ROWS", 5)
    for n in range(8):
        with pytest.raises(MessageRefused):
            intake.accept(mail("", 30 + n), via="eml")
        clock.advance(timedelta(minutes=1))
    items, total = intake.refusals(limit=50)
    assert total == 5
    assert [i["message_id"] for i in items] == [f"refused-{30 + n}@dealer.example"
                                                for n in range(7, 2, -1)]
    monkeypatch.setattr(refusals_sql, "KEEP_ROWS", 10_000)
    clock.advance(timedelta(days=91))
    with pytest.raises(MailError):
        intake.accept(b"no headers here", via="eml")
    items, total = intake.refusals(limit=50)
    assert total == 1 and items[0]["outcome"] == "unreadable"  # the old ones swept


def test_a_refusal_whose_row_cannot_be_written_still_stands(
        harness: Any, caplog: pytest.LogCaptureFixture) -> None:
    harness.deploy_text(DEFS)
    with harness.engine.store.write() as tx:
        tx.conn.exec_driver_sql("DROP TABLE baton_intake_refusals")
    with caplog.at_level(logging.WARNING, logger="baton.intake.service"), \
            pytest.raises(MessageRefused, match="subject"):
        harness.engine.intake.accept(mail("", 40), via="smtp", recipients=["support@baton.example"])
    assert any(re.search(r"refusal \(smtp, .*subject.*\) could not be recorded", r.message)
               for r in caplog.records)
    # and intake goes on taking mail
    assert harness.engine.intake.accept(mail("Fine", 41), via="eml").outcome == "created"
