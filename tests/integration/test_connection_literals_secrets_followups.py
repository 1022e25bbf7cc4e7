"""A connection an older release deployed with a literal credential in ``headers`` (refused
since): its runs keep calling with it, on both databases, while a deploy of the same text is
refused with a located message saying what to write instead, never the value."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import text

from baton.errors import DefinitionError
from tests.bank import bank_server
from tests.integration.test_callouts import ADDRESS, SEND, connection, orchestration, start, step

LITERAL = "legacy-Key-7731"


def test_a_stored_literal_header_keeps_working_and_a_redeploy_says_what_to_change(
        harness: Any, caplog: pytest.LogCaptureFixture) -> None:
    harness.setenv(BANK_KEY=LITERAL)  # (for the fix, at the end)
    with bank_server() as bank:
        conn = connection(bank.url)
        harness.deploy_text(ADDRESS + "---\n" + conn + "---\n" + orchestration(SEND))
        legacy = conn.replace("headers: {X-Client: baton}",
                              f"headers: {{X-Client: baton, X-Api-Key: {LITERAL}}}")
        with harness.engine.store.write() as tx:  # as an older release let it be deployed
            tx.conn.execute(text("UPDATE baton_definitions SET source = :s "
                                 "WHERE kind = 'connection' AND name = 'bank'"), {"s": legacy})
        harness.engine.definitions.invalidate()

        with caplog.at_level(logging.WARNING, logger="baton.runtime.definitions"):
            run = start(harness)
            harness.work()
        sr = step(harness, run.id)
        assert sr.status.value == "completed", sr.error
        (seen,) = bank.requests
        assert seen.headers["x-api-key"] == LITERAL  # the run called as before
        warned = [r.getMessage() for r in caplog.records
                  if "as deployed, no longer passes validation" in r.getMessage()]
        assert warned and "headers.X-Api-Key: X-Api-Key names a credential" in warned[0]
        assert LITERAL not in caplog.text

        with pytest.raises(DefinitionError) as exc:  # the same text deployed again
            harness.deploy_text(ADDRESS + "---\n" + legacy + "---\n" + orchestration(SEND))
        (issue,) = exc.value.issues
        assert (issue.line, issue.path) == (11, "headers.X-Api-Key")  # (after ADDRESS)
        assert "auth: {type: api_key, in: header, name: X-Api-Key, secret: env:NAME}" in \
            issue.message
        assert LITERAL not in str(exc.value)
        assert harness.engine.definitions.connection("bank").headers["X-Api-Key"] == LITERAL

        # the fix the message names deploys, and works
        fixed = conn + "auth: {type: api_key, in: header, name: X-Api-Key, secret: env:BANK_KEY}\n"
        harness.deploy_text(ADDRESS + "---\n" + fixed + "---\n" + orchestration(SEND))
        run = start(harness, customer="c2")
        harness.work()
        assert step(harness, run.id).status.value == "completed", step(harness, run.id).error
        assert bank.requests[-1].headers["x-api-key"] == LITERAL
