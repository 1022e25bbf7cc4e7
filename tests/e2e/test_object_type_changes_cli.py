"""``baton validate`` and ``baton deploy`` refuse a new version of an object type that the
records stored under it break, naming them; the fix the message gives makes it deploy.
(The rules on both databases: tests/integration/test_object_type_changes.py.)"""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli import (
    ISSUE_LINE,
    baton,
    copy_example,
    definitions_table,
    ok,
    ok_json,
)

DEAL = """kind: object
name: Deal
fields:
  title:  {type: string, required: true}
  amount: {type: string}
"""


def test_deploy_and_validate_refuse_a_change_that_records_break(tmp_path: Path) -> None:
    proj = copy_example(tmp_path)
    deal = proj / "definitions" / "deal.yaml"
    deal.write_text(DEAL)
    ok(baton("deploy", cwd=proj))
    broken = ok_json(baton("records", "create", "Deal", "--data",
                           '{"title": "a", "amount": "ten"}', "--json", cwd=proj))["id"]
    fine = ok_json(baton("records", "create", "Deal", "--data", '{"title": "b"}', "--json",
                         cwd=proj))["id"]
    before = definitions_table(proj / "baton.db")

    deal.write_text(DEAL.replace("amount: {type: string}", "amount: {type: int}"))
    db = f"sqlite:///{proj / 'baton.db'}"
    for args in (("validate",), ("--db", db, "validate"), ("deploy",)):
        p = baton(*args, cwd=proj)
        assert p.returncode == 1, (args, p.stdout, p.stderr)
        assert "Traceback" not in p.stderr, p.stderr
        (line,) = p.stdout.splitlines()
        m = ISSUE_LINE.match(line)
        assert m and (Path(m["file"]).name, m["line"], m["path"]) == (
            "deal.yaml", "5", "fields.amount.type"), line
        assert m["message"].startswith("object type Deal, field amount: type string -> int "
                                       "would break 1 stored record"), line
        assert f"{broken} = 'ten' (expected a whole number, got 'ten')" in line, line
        assert fine not in line
        if args[-1] == "deploy":
            assert "nothing was deployed" in p.stderr, p.stderr
    p = baton("validate", "--json", cwd=proj)
    assert p.returncode == 1
    (issue,) = json.loads(p.stdout)
    assert (issue["line"], issue["path"], issue["level"]) == (5, "fields.amount.type", "error")
    assert definitions_table(proj / "baton.db") == before

    # What the message says to do: clear the value (or correct it), then deploy again.
    ok(baton("records", "update", broken, "--data", '{"amount": null}', cwd=proj))
    deployed = ok_json(baton("deploy", "--json", cwd=proj))
    assert {"kind": "object", "name": "Deal", "version": 2, "changed": True} in deployed
    rec = ok_json(baton("records", "update", broken, "--data", '{"amount": 12}', "--json",
                        cwd=proj))
    assert rec["amount"] == 12
