"""``baton intake eml``: the corpus imported into a project, twice (nothing doubles)."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import baton, copy_example, ok, ok_json

CORPUS = Path(__file__).parents[1] / "data" / "eml"

MAILBOX = """kind: mailbox
name: support
object: Case
addresses: [support@baton.example]
fields: {subject: subject}
"""


def test_import_eml_files(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    (proj / "definitions" / "mailbox.yaml").write_text(MAILBOX)
    ok(baton("deploy", cwd=proj))
    files = [CORPUS / f"{n}.eml" for n in ("01_plain", "14_auto_submitted", "23_thread_start",
                                          "24_thread_reply_1")]
    got = ok_json(baton("intake", "eml", *files, "--json", cwd=proj))
    assert [r["outcome"] for r in got] == ["created", "ignored", "created", "threaded"]
    assert got[3]["record_id"] == got[2]["record_id"]
    again = ok_json(baton("intake", "eml", *files, "--json", cwd=proj))
    assert [r["outcome"] for r in again] == ["duplicate"] * 4
    shown = ok(baton("records", "show", got[0]["record_id"], cwd=proj)).stdout
    assert "Invoice 4411 charged twice" in shown
    text = ok(baton("intake", "eml", CORPUS / "02_utf8_encoded_subject.eml", cwd=proj)).stdout
    assert "created" in text and "cartão bloqueado" in text
    bad = tmp_path / "bad.eml"
    bad.write_bytes(b"no headers here")
    p = baton("intake", "eml", bad, cwd=proj)
    assert p.returncode == 1 and "bad.eml: no e-mail headers found" in p.stderr
