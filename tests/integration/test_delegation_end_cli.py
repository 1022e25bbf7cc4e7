"""`baton work release ID --user U`, as `POST /api/work/{id}/release` does (SQLite and
PostgreSQL, the CLI as subprocesses): the claimer gives the item back (a delegate whose
delegation ended too), nobody else but an operator may, and it is audited."""

from __future__ import annotations

import json

from tests.conftest import Harness
from tests.integration.test_delegation_end import cli, ok, setup


def test_the_former_delegate_releases_it_from_the_cli(harness: Harness) -> None:
    (iid,) = setup(harness)
    eng = harness.engine
    eng.directory.add_user("opal", roles=["operator"])
    not_claimed = cli(harness, "work", "release", iid, "--user", "ann")
    assert not_claimed.returncode != 0
    assert "only a claimed item can be released" in " ".join(not_claimed.stderr.split())
    ok(cli(harness, "work", "claim", iid, "--user", "ann"))
    ok(cli(harness, "users", "update", "dora", "--no-delegate"))
    # cyd, an agent who did not claim it, may not; ann, its claimer, may
    refused = cli(harness, "work", "release", iid, "--user", "cyd")
    assert refused.returncode != 0
    assert "claimed by ann: only they or an operator can release it" in \
        " ".join(refused.stderr.split())
    out = ok(cli(harness, "work", "release", iid, "--user", "ann"))
    assert f"{iid} released by ann; open for user:dora" in " ".join(out.split())
    item = eng.get_work_item(iid)
    assert (item["status"], item["claimed_by"]) == ("open", None)
    # an operator releases anyone's claim (and --json answers the item)
    eng.claim(iid, "dora")
    shown = json.loads(ok(cli(harness, "work", "release", iid, "--user", "opal", "--json")))
    assert (shown["status"], shown["claimed_by"], shown["assigned_to"]) == (
        "open", None, "user:dora")
    released = [(e["actor"], e["data"]["claimed_by"]) for e in eng.run_events(item["run_id"])
                if e["type"] == "work_item_released"]
    assert released == [("ann", "ann"), ("opal", "dora")]
