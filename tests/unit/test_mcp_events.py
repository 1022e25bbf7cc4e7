"""How an ``mcp_called`` audit event reads in timelines (CLI and web), and the summary of
arguments that goes into it."""

from __future__ import annotations

from baton.cli.main import describe_event as cli_line
from baton.steps.mcp import summary
from baton.web.ui.events import describe_event as web_line

OK = {"type": "mcp_called", "data": {
    "step": "lookup", "iteration": 1, "attempt": 1, "connection": "erp", "tool": "find_account",
    "arguments": {"domain": "acme.example"}, "outcome": "ok", "duration_ms": 12}}
FAILED = {"type": "mcp_called", "data": {
    **OK["data"], "outcome": "tool_error", "error": "no account for domain 'x'"}}


def test_timeline_lines_name_the_call_and_its_outcome() -> None:
    assert cli_line(OK) == 'lookup #1: erp.find_account {"domain": "acme.example"} → ok in 12 ms'
    assert web_line(OK) == ('lookup (iteration 1): erp.find_account {"domain": "acme.example"} '
                            '→ ok in 12 ms')
    assert cli_line(FAILED).endswith("→ tool_error in 12 ms: no account for domain 'x'")
    assert web_line(FAILED).endswith("→ tool_error in 12 ms: no account for domain 'x'")


def test_argument_summaries_hide_credentials_and_stay_short() -> None:
    args = {"domain": "acme.example", "api_key": "k-123", "nested": {"Password": "p", "n": 1},
            "list": [{"token": "t"}], "note": "contains the secret s3cr3t"}
    assert summary(args, lambda text: text.replace("s3cr3t", "***")) == {
        "domain": "acme.example", "api_key": "***", "nested": {"Password": "***", "n": 1},
        "list": [{"token": "***"}], "note": "contains the secret ***"}
    long = summary({"text": "x" * 5000})
    assert isinstance(long, str) and len(long) <= 1025 and long.endswith("…")
