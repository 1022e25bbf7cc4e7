"""A new version of an object type that the records stored under it do not satisfy is
refused, at deploy, at validate and at activation, naming the records; on SQLite and on
PostgreSQL.

The defect: ``amount`` redeployed from ``string`` to ``int`` (a choice removed, a length
cut, a field made required …) was accepted while records held values the new version
refuses, and every later full write of those records failed, far from the cause. The CLI:
tests/e2e/test_object_type_changes_cli.py.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from baton.definitions.loader import load_text
from baton.errors import DefinitionError, Issue
from baton.records.changes import broken_records_txn


def deal(amount: str = "{type: string}", stage: str = "{type: choice, choices: [open, won, lost]}",
         extra: str = "") -> str:
    return textwrap.dedent(f"""
        kind: object
        name: Deal
        fields:
          title:  {{type: string, required: true}}
          amount: {amount}
          stage:  {stage}
        """) + extra


def refused(harness: Any, text: str) -> list[Issue]:
    """Deploy ``text``; it must be refused: its issues."""
    with pytest.raises(DefinitionError) as caught:
        harness.deploy_text(text)
    return caught.value.issues


def deal_versions(harness: Any) -> list[int]:
    return [r.version for r in harness.engine.definitions.list_versions("object", "Deal")]


def test_a_retyped_field_that_records_break_is_refused_naming_them(harness: Any) -> None:
    harness.deploy_text(deal())
    create = harness.engine.create_record
    bad = [create("Deal", {"title": f"b{i}", "amount": f"ten{i}"})["id"] for i in range(7)]
    good = [create("Deal", {"title": "g", "amount": None})["id"],
            create("Deal", {"title": "h"})["id"]]

    # Deployed with another, new object type: all or nothing.
    issues = refused(harness, deal(amount="{type: int}") + "---\nkind: object\nname: Note\n"
                              "fields: {body: {type: text}}\n")
    (issue,) = issues
    assert (Path(issue.file).name, issue.line, issue.path) == ("defs.yaml", 6, "fields.amount.type")
    msg = issue.message
    assert msg.startswith("object type Deal, field amount: type string -> int would break "
                          "7 stored records"), msg
    shown = [rid for rid in bad if rid in msg]
    assert len(shown) == 5 and "and 2 more" in msg, msg
    assert not any(rid in msg for rid in good)
    assert f"{shown[0]} = 'ten" in msg and "expected a whole number" in msg, msg
    assert "baton records update ID" in msg and "add a new field" in msg, msg

    # Nothing deployed: the type is as it was, the other one absent, every record writable.
    assert deal_versions(harness) == [1]
    assert harness.engine.definitions.object_type("Deal").field("amount").type == "string"
    assert "Note" not in harness.engine.definitions.object_types()
    assert harness.engine.update_record(bad[0], {"title": "b", "amount": "9", "stage": "won"})

    # Corrected as the message says (cleared, or set to what the new type holds as text is
    # not enough: "9" stays text), the same change deploys.
    for rid in bad:
        harness.engine.update_record(rid, {"amount": None})
    harness.deploy_text(deal(amount="{type: int}"))
    assert deal_versions(harness) == [1, 2]
    assert harness.engine.update_record(bad[0], {"amount": 12})["amount"] == 12


# case -> (field x before (None: a new field), a value stored that the change breaks
# (ABSENT: none given), a value stored that it does not break (ABSENT: no such record),
# field x after, the spec key located, the change in words, the problem in words)
ABSENT = object()
BREAKING: dict[str, tuple[Any, ...]] = {
    "text to int": ("{type: text}", "twelve", None, "{type: int}", "type",
                    "type text -> int", "expected a whole number, got 'twelve'"),
    "numeric text to int": ("{type: string}", "12", None, "{type: int}", "type",
                            "type string -> int",
                            "stored as text, where an int field holds a whole number"),
    "int to date": ("{type: int}", 5, None, "{type: date}", "type",
                    "type int -> date", "expected a date YYYY-MM-DD, got 5"),
    "int to date, converted": ("{type: int}", 20240101, None, "{type: date}", "type",
                               "type int -> date", ("stored as a whole number, where a date "
                                                    "field holds text: a write would convert it")),
    "bool to string": ("{type: bool}", True, None, "{type: string}", "type",
                       "type bool -> string", "expected text, got bool"),
    "choice removed": ("{type: choice, choices: [a, b, c]}", "c", "a",
                       "{type: choice, choices: [a, b]}", "choices",
                       "choices c removed", "'c' is not one of a, b"),
    "max length cut": ("{type: string}", "x" * 30, "short", "{type: string, max_length: 10}",
                       "max_length", "max_length 1,000 (the default) -> 10",
                       "30 characters is too long: at most 10"),
    "made required": ("{type: string}", ABSENT, "given", "{type: string, required: true}",
                      "required", "required false -> true", "is required"),
    "new required field": (None, ABSENT, ABSENT, "{type: int, required: true}", "",
                           "the new field (int, required)", "is required"),
    "scale cut": ("{type: decimal}", "19.95", None, "{type: decimal, scale: 1}", "scale",
                  "scale 2 (the default) -> 1", "19.95 has 2 decimal places: at most 1"),
}


@pytest.mark.parametrize("case", list(BREAKING))
def test_each_kind_of_breaking_change_is_refused(harness: Any, case: str) -> None:
    before, value, fits, after, key, change, problem = BREAKING[case]

    def with_x(spec: str | None) -> str:
        return deal(extra=f"  x: {spec}\n" if spec else "")

    harness.deploy_text(with_x(before))
    create = harness.engine.create_record
    rid = create("Deal", {"title": "t"} | ({} if value is ABSENT else {"x": value}))["id"]
    stored = harness.engine.get_record(rid)
    other = None if fits is ABSENT else create("Deal", {"title": "u", "x": fits})["id"]

    (issue,) = refused(harness, with_x(after))
    assert issue.path == "fields.x" + (f".{key}" if key else ""), issue
    assert issue.line == 8, issue  # the line of x
    assert f"field x: {change} would break 1 stored record" in issue.message, issue.message
    assert rid in issue.message and problem in issue.message, issue.message
    assert other is None or other not in issue.message
    assert deal_versions(harness) == [1]
    assert harness.engine.get_record(rid) == stored


def test_changes_every_record_satisfies_are_accepted(harness: Any) -> None:
    harness.deploy_text(deal(extra="  n: {type: int}\n  s: {type: string}\n"
                                   "  d: {type: date}\n  opt: {type: string}\n"))
    create = harness.engine.create_record
    ids = [create("Deal", {"title": "a", "amount": "short", "stage": "won", "n": 5,
                           "s": "one line", "d": "2024-05-31"})["id"],
           create("Deal", {"title": "b", "amount": "tiny", "stage": "open", "n": None,
                           "s": "two"})["id"]]
    # A type with no records takes any change.
    harness.deploy_text("kind: object\nname: Empty\nfields: {v: {type: text}}\n", "empty.yaml")
    harness.deploy_text("kind: object\nname: Empty\nfields: {v: {type: int, required: true}}\n",
                        "empty.yaml")

    harness.deploy_text(deal(
        amount="{type: string, max_length: 5, label: Amount}",  # both values fit
        stage="{type: choice, choices: [open, won, lost, parked]}",  # a choice added
        extra="  n: {type: decimal}\n"  # an int is read as the decimal it is
              "  s: {type: text, required: true, description: Notes}\n"  # both have one
              "  d: {type: datetime}\n"  # a date is an ISO date-time
              "  opt: {type: int}\n"  # retyped: every record leaves it empty
              "  more: {type: bool}\n"))  # a new optional field
    assert deal_versions(harness) == [1, 2]
    assert harness.engine.get_record(ids[0])["n"] == "5.00"


def test_a_change_that_only_empty_records_break_says_to_fill_them_in(harness: Any) -> None:
    """Made required (s): b is empty, and is not required before."""
    harness.deploy_text(deal(extra="  s: {type: string}\n"))
    create = harness.engine.create_record
    create("Deal", {"title": "a", "s": "set"})
    empty = create("Deal", {"title": "b"})["id"]
    (issue,) = refused(harness, deal(extra="  s: {type: string, required: true}\n"))
    assert "required false -> true would break 1 stored record" in issue.message
    assert f"{empty} = empty (is required)" in issue.message, issue.message
    assert "Fill s in on those records first" in issue.message, issue.message
    assert "or deploy the field without required: true" in issue.message


def test_a_ref_pointed_at_another_type_is_checked_against_the_records_named(harness: Any) -> None:
    harness.deploy_text("""
kind: object
name: Account
fields: {name: {type: string}}
---
kind: object
name: Contact
fields: {name: {type: string}}
""", "parties.yaml")
    create = harness.engine.create_record
    acme = create("Account", {"name": "Acme"})["id"]
    ada = create("Contact", {"name": "Ada"})["id"]
    harness.deploy_text(deal(extra="  party: {type: ref, object: Account, check: false}\n"))
    named = create("Deal", {"title": "a", "party": acme})["id"]
    dangling = create("Deal", {"title": "b", "party": "rec_gone"})["id"]

    (issue,) = refused(harness, deal(extra="  party: {type: ref, object: Contact}\n"))
    assert issue.path == "fields.party.object"
    msg = issue.message
    assert "field party: ref to Account -> Contact, check false -> true would break 2 stored " \
           "records" in msg, msg
    assert f"{named} = '{acme}' ('{acme}' is a Account record, not a Contact)" in msg, msg
    assert f"{dangling} = 'rec_gone' (no Contact record 'rec_gone')" in msg, msg
    assert "Point party of those records at Contact records" in msg, msg

    # Unchecked, any id is taken: the change deploys. Then made checked again, against
    # records that now name a Contact, it deploys too.
    harness.deploy_text(deal(extra="  party: {type: ref, object: Contact, check: false}\n"))
    harness.engine.update_record(named, {"party": ada})
    harness.engine.update_record(dangling, {"party": None})
    harness.deploy_text(deal(extra="  party: {type: ref, object: Contact}\n"))
    assert deal_versions(harness) == [1, 2, 3]


def test_records_are_read_in_batches_and_every_one_counted(harness: Any) -> None:
    """Records created at one instant (an import's batch) and at others, with records of
    another type among them: a batch at a time, each read once, in (created_at, id)
    order; the count and the records shown do not depend on the batch size."""
    harness.deploy_text(deal())
    harness.deploy_text("kind: object\nname: Note\nfields: {body: {type: text}}\n", "note.yaml")
    rows = [{"title": f"t{i}", "amount": f"a{i}" if i % 3 else str(i)} for i in range(40)]
    made: list[dict[str, Any]] = []
    for start in range(0, 40, 10):
        harness.clock.advance(timedelta(seconds=1))
        made += harness.engine.create_records("Deal", rows[start:start + 10])
        harness.engine.create_records("Note", [{"body": "n"}] * 3)
    scanned: list[dict[str, Any]] = []
    with harness.engine.store.read() as tx:
        after = None
        while batch := tx.scan_records_txn("Deal", after, 3):
            assert len(batch) <= 3
            scanned += batch
            after = (batch[-1]["created_at"], batch[-1]["id"])
    assert [r["id"] for r in scanned] == [r["id"] for r in sorted(
        made, key=lambda r: (r["created_at"], r["id"]))]

    old = harness.engine.definitions.object_type("Deal")
    (doc,) = load_text(deal(amount="{type: string, max_length: 2}"))
    with harness.engine.store.read() as tx:
        by_batches = broken_records_txn(tx, old, doc.definition, page=3)
        at_once = broken_records_txn(tx, old, doc.definition, page=1000)
    (b,) = by_batches
    assert b.count == sum(len(r["amount"]) > 2 for r in rows) == 20 == at_once[0].count
    assert b.samples == at_once[0].samples
    # the oldest five: a10, a11, a13, a14, a16 (12 and 15 fit)
    assert [s.value for s in b.samples] == ["a10", "a11", "a13", "a14", "a16"]


def test_validate_reports_what_deploy_refuses(harness: Any) -> None:
    """``baton validate`` (the project's files) and the API's validate (texts) check the
    records as deploy does, and deploy nothing."""
    harness.deploy_text(deal())
    rid = harness.engine.create_record("Deal", {"title": "a", "stage": "lost"})["id"]
    text = deal(stage="{type: choice, choices: [open, won]}")
    path = harness.tmp / "deal_v2.yaml"
    path.write_text(text)
    (from_files,) = harness.engine.validate([path], known_flows=[])
    (from_texts,) = harness.engine.validate_texts({"deal_v2.yaml": text}, known_flows=[])
    for issue in (from_files, from_texts):
        assert (Path(issue.file).name, issue.line, issue.path) == (
            "deal_v2.yaml", 7, "fields.stage.choices")
        assert "choices lost removed would break 1 stored record" in issue.message
        assert f"{rid} = 'lost'" in issue.message
    assert deal_versions(harness) == [1]


def test_activating_a_version_the_records_break_is_refused(harness: Any) -> None:
    harness.deploy_text(deal())
    harness.deploy_text(deal(amount="{type: int}"))  # no records yet: fine
    rid = harness.engine.create_record("Deal", {"title": "a", "amount": 5})["id"]
    defs = harness.engine.definitions
    with pytest.raises(DefinitionError) as caught:
        defs.set_active("object", "Deal", 1, "admin")
    (issue,) = caught.value.issues
    # located in v1's text (what `baton definitions show Deal --version 1` prints)
    assert issue.path == "fields.amount.type" and issue.line == 6, issue
    assert "type int -> string would break 1 stored record" in issue.message
    assert f"{rid} = 5 (expected text, got int)" in issue.message
    assert issue.message.endswith("(activating Deal v1)"), issue.message
    assert [r.version for r in defs.list_versions("object", "Deal") if r.active] == [2]
    harness.engine.update_record(rid, {"amount": None})
    defs.set_active("object", "Deal", 1, "admin")
    assert defs.object_type("Deal").field("amount").type == "string"


def test_a_removed_field_keeps_its_values_and_adding_it_back_is_checked(harness: Any) -> None:
    """Removing a field is accepted (as before): records keep its value, shown after the
    type's fields, and writes of the other fields go on. Adding a field of that name
    again is checked against the values they kept."""
    harness.deploy_text(deal(extra="  note: {type: text}\n"))
    rid = harness.engine.create_record("Deal", {"title": "a", "note": "call back"})["id"]
    harness.deploy_text(deal())
    assert harness.engine.update_record(rid, {"title": "b", "amount": "1", "stage": "won"})
    assert harness.engine.get_record(rid)["note"] == "call back"

    (issue,) = refused(harness, deal(extra="  note: {type: int}\n"))
    assert issue.path == "fields.note", issue
    assert "field note: the new field (int) would break 1 stored record" in issue.message
    assert f"{rid} = 'call back' (expected a whole number" in issue.message, issue.message
    assert "they hold a value of a field the type had before" in issue.message
    harness.deploy_text(deal(extra="  note: {type: text}\n"))  # as it was: fits
    assert deal_versions(harness) == [1, 2, 3]


def test_a_value_the_old_version_refused_already_is_not_blamed_on_the_change(
        harness: Any) -> None:
    """Only what the change breaks is refused: a value no version took (written around
    the records service, as a database restored by hand may hold) does not stop another
    change of the field."""
    harness.deploy_text(deal(amount="{type: int}"))
    rid = harness.engine.create_record("Deal", {"title": "a", "amount": 5})["id"]
    with harness.engine.store.write() as tx:
        row = tx.get_record_txn(rid)
        tx.update_record_txn(rid, {**row["data"], "amount": "junk"}, row["version"],
                             "2026-01-05T09:00:00.000Z")
    harness.deploy_text(deal(amount="{type: decimal}"))
    assert deal_versions(harness) == [1, 2]
