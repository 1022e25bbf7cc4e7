"""``message_received`` events read as one line on the record page and in
``baton records timeline``: who, about what, how it came, the new text, the files."""

from __future__ import annotations

from baton.cli.main import describe_event as cli_line
from baton.web.ui.events import describe_event as page_line

EVENT = {"type": "message_received", "actor": "mail:ana@dealer-one.example", "run_id": None,
         "at": "2026-12-01T09:30:00Z",
         "data": {"mailbox": "support", "message_id": "1@x", "via": "smtp",
                  "from": "ana@dealer-one.example", "subject": "Invoice 4411",
                  "text": "The invoice\n\ncharges twice. " + "x" * 300,
                  "attachments": ["invoice.pdf", "setup.exe"], "refused": ["setup.exe"]}}


def test_a_message_is_one_readable_line() -> None:
    line = cli_line(EVENT)
    assert line == page_line(EVENT)
    assert line.startswith("from ana@dealer-one.example: Invoice 4411 (via smtp) — The invoice")
    assert "\n" not in line and "…" in line and len(line) < 300
    assert line.endswith("; attachments: invoice.pdf, setup.exe (refused)")
    reply = {**EVENT, "data": {**EVENT["data"], "via": "reply", "attachments": [], "text": ""}}
    assert cli_line(reply) == "from ana@dealer-one.example: Invoice 4411 (a reply)"
