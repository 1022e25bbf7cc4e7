"""The SMTP listener's reply lines: a reason from anywhere (a field's name, a value a sender
wrote) goes out as one line of printable ASCII that fits an SMTP reply."""

from __future__ import annotations

from baton.intake.smtp import REPLY_TEXT, reply


def test_a_reason_is_one_short_line_of_ascii() -> None:
    line = reply("554 5.6.0", "invalid Case record: intent: 'Kündigung'\r\nis not one of\x07 x")
    assert line == "554 5.6.0 invalid Case record: intent: 'K\\xfcndigung' is not one of? x"
    long = reply("554 5.6.0", "y" * 2000)
    assert long.endswith("...") and len(long) == len("554 5.6.0 ") + REPLY_TEXT
    assert reply("550 5.1.1", "mailbox 'x' not found") == "550 5.1.1 mailbox 'x' not found"
