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


def test_an_ai_steps_answer_is_described_with_its_rationale_on_both_timelines() -> None:
    out = {"category": "billing", "confidence": 0.8412, "outcome": "classified",
           "rationale": ["invoice", "charged + twice"],
           "ai": {"provider": "offline", "model": "baton-offline-tfidf-linear/3",
                  "prompt_version": "1a2b3c4d5e6f"}}
    event = {"type": "step_completed",
             "data": {"stage": "read", "step": "intent", "iteration": 1, "output": out}}
    why = ("classified: billing (0.84) because invoice; charged + twice "
           "[offline/baton-offline-tfidf-linear/3, prompt 1a2b3c4d5e6f]")
    assert cli_line(event) == f"read.intent #1 {why}"
    assert page_line(event) == f"read / intent (iteration 1) {why}"
    match = {"record_id": None, "record_ids": ["rec_a", "rec_b"], "outcome": "matched",
             "confidence": 1.0, "rationale": ["website 'https://a.example' ~ 'a.example' (100)"],
             "ai": {"provider": "match", "model": "rapidfuzz/8 candidates", "prompt_version": "x"}}
    event["data"]["output"] = match
    assert "matched: rec_a, rec_b (1.00) because website" in cli_line(event)
    event["data"]["output"] = {"result": 1}  # another step's output: as before
    assert cli_line(event) == "read.intent #1" and page_line(event) == "read / intent (iteration 1)"
