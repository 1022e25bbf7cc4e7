"""A deploy that makes a field required with a ``default`` gives the records stored without
it the default, and a decimal scale cut that declares ``rounding`` rounds the stored
values; both in the deploy's transaction, a page at a time, each change on its record's
timeline. On SQLite and on PostgreSQL.

The defect: a new field ``required: true, default: ...`` (or a field made required with a
default) was refused while stored records lacked it, where a Salesforce admin expects
them to take the default; and a scale cut was refused saying only to fix the records.
The check itself: tests/integration/test_object_type_changes.py.
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from baton.definitions.loader import load_text
from baton.errors import DefinitionError, Issue
from baton.records.changes import broken_records_txn, rewrite_records_txn

NOW = "2026-01-05T09:00:00.000Z"


def deal(extra: str = "", amount: str = "{type: string}") -> str:
    return textwrap.dedent(f"""
        kind: object
        name: Deal
        fields:
          title:  {{type: string, required: true}}
          amount: {amount}
        """) + extra


def refused(harness: Any, text: str) -> list[Issue]:
    with pytest.raises(DefinitionError) as caught:
        harness.deploy_text(text)
    return caught.value.issues


def versions(harness: Any) -> list[int]:
    return [r.version for r in harness.engine.definitions.list_versions("object", "Deal")]


def filled_events(harness: Any, rid: str) -> list[dict[str, Any]]:
    return [e for e in harness.engine.timeline(rid)
            if e["type"] == "record_updated" and "by" in e["data"]]


def test_a_new_required_field_with_a_default_is_given_to_the_stored_records(
        harness: Any) -> None:
    harness.deploy_text(deal())
    create = harness.engine.create_record
    old = [create("Deal", {"title": f"t{i}"}) for i in range(3)]

    results = harness.engine.deploy([_write(harness, deal(
        "  priority: {type: choice, choices: [low, normal, high], required: true, "
        "default: normal}\n  rate: {type: decimal, required: true, default: '1.5'}\n"))],
        known_flows=None, actor="ada")
    (result,) = results
    assert (result.version, result.changed) == (2, True)
    assert dict(result.records_changed) == {"priority": 3, "rate": 3}
    for before in old:
        now = harness.engine.get_record(before["id"])
        # The API's view holds the default, as the stored data does (a decimal as a write
        # stores it: its canonical string at the field's scale).
        assert (now["priority"], now["rate"]) == ("normal", "1.50"), now
        assert now["version"] == before["version"] + 1
        (event,) = filled_events(harness, before["id"])
        assert event["actor"] == "ada"
        assert event["data"] == {"changes": {"priority": [None, "normal"], "rate": [None, "1.50"]},
                                 "by": "deploy of Deal v2"}
    with harness.engine.store.read() as tx:
        stored = tx.get_record_txn(old[0]["id"])
        # what SQL filters see (a list filtered by the field): the stored value itself
        found = tx.find_records_txn("Deal", {"priority": "normal"}, 10)
    assert stored["data"]["priority"] == "normal" and stored["data"]["rate"] == "1.50"
    assert sorted(r["id"] for r in found) == sorted(r["id"] for r in old)
    # Every record now satisfies the type: a full write of an old one is taken as it is.
    assert harness.engine.update_record(old[0]["id"], {"title": "x", "amount": None,
                                                       "priority": "high", "rate": "2"})
    # A record created afterwards is given the default by its write, as always.
    assert create("Deal", {"title": "new"})["priority"] == "normal"


def test_an_expression_reads_the_default_given(harness: Any) -> None:
    """A trigger's condition over the new field holds for a record stored before it: the
    record holds the default, so CEL reads it as any other value."""
    harness.deploy_text(deal())
    rid = harness.engine.create_record("Deal", {"title": "old"})["id"]
    harness.deploy_text(deal("  priority: {type: string, required: true, default: normal}\n")
                        + textwrap.dedent("""
        ---
        kind: orchestration
        name: follow_up
        trigger: {type: record, object: Deal, on: [update], when: '=record.priority == "normal"'}
        stages:
          - name: s
            steps:
              - {name: hold, type: pause, signal: go}
        """))
    assert not harness.engine.list_runs(orchestration="follow_up")
    harness.engine.update_record(rid, {"title": "edited"})
    (run,) = harness.engine.list_runs(orchestration="follow_up")
    assert run.record_id == rid


def test_a_field_made_required_with_a_default_fills_the_records_that_leave_it_empty(
        harness: Any) -> None:
    harness.deploy_text(deal("  stage: {type: string}\n  n: {type: int}\n"))
    create = harness.engine.create_record
    absent = create("Deal", {"title": "a"})["id"]
    null = create("Deal", {"title": "b", "stage": None, "n": None})["id"]
    blank = create("Deal", {"title": "c", "stage": "  ", "n": 4})["id"]
    given = create("Deal", {"title": "d", "stage": "won", "n": 7})
    harness.deploy_text(deal("  stage: {type: string, required: true, default: open}\n"
                             "  n: {type: int, required: true, default: 0}\n"))
    assert versions(harness) == [1, 2]
    got = {rid: harness.engine.get_record(rid) for rid in (absent, null, blank, given["id"])}
    assert [(got[r]["stage"], got[r]["n"]) for r in (absent, null, blank)] == [
        ("open", 0), ("open", 0), ("open", 4)]
    assert filled_events(harness, blank)[0]["data"]["changes"] == {"stage": ["  ", "open"]}
    # A record holding both fields is left as it was: not written, no event.
    assert got[given["id"]]["version"] == given["version"]
    assert not filled_events(harness, given["id"])


def test_a_required_field_without_a_default_is_still_refused(harness: Any) -> None:
    harness.deploy_text(deal())
    rid = harness.engine.create_record("Deal", {"title": "a"})["id"]
    (issue,) = refused(harness, deal("  priority: {type: string, required: true}\n"))
    assert "the new field (string, required) would break 1 stored record" in issue.message
    assert f"{rid} = empty (is required)" in issue.message
    assert "Fill priority in on those records first" in issue.message
    assert versions(harness) == [1]


def test_nothing_is_filled_when_another_change_is_refused(harness: Any) -> None:
    """All or nothing: the default is not given while another field's change is refused
    in the same deploy."""
    harness.deploy_text(deal())
    rid = harness.engine.create_record("Deal", {"title": "a", "amount": "ten"})["id"]
    stored = harness.engine.get_record(rid)
    (issue,) = refused(harness, deal("  priority: {type: string, required: true, default: n}\n",
                                     amount="{type: int}"))
    assert issue.path == "fields.amount.type"
    assert harness.engine.get_record(rid) == stored
    assert not filled_events(harness, rid)


def test_validate_reports_nothing_and_writes_nothing(harness: Any) -> None:
    harness.deploy_text(deal())
    rid = harness.engine.create_record("Deal", {"title": "a"})["id"]
    text = deal("  priority: {type: string, required: true, default: normal}\n")
    assert harness.engine.validate_texts({"deal.yaml": text}, known_flows=[]) == []
    assert "priority" not in harness.engine.get_record(rid)
    # A caller that writes no record (it does not say it fills) is told the records break.
    (doc,) = load_text(text)
    with harness.engine.store.read() as tx:
        (issue,) = harness.engine.definitions.broken_records_txn(tx, [doc])
        assert harness.engine.definitions.broken_records_txn(tx, [doc], fills=True) == []
    assert issue.path == "fields.priority" and rid in issue.message


def test_activating_a_version_with_a_required_default_fills_the_records(harness: Any) -> None:
    harness.deploy_text(deal("  priority: {type: string, required: true, default: normal}\n"))
    harness.deploy_text(deal())  # v2: priority removed (records keep their values)
    defs = harness.engine.definitions
    kept = harness.engine.create_record("Deal", {"title": "a"})["id"]
    defs.set_active("object", "Deal", 1, "bob")
    record = harness.engine.get_record(kept)
    assert record["priority"] == "normal"
    (event,) = filled_events(harness, kept)
    assert (event["actor"], event["data"]["by"]) == ("bob", "activation of Deal v1")


def test_the_records_are_filled_a_page_at_a_time_every_one_once(harness: Any) -> None:
    """Records created at one instant and at others, another type's among them: whatever
    the page size, each record of the type is written once."""
    harness.deploy_text(deal())
    harness.deploy_text("kind: object\nname: Note\nfields: {body: {type: text}}\n", "note.yaml")
    made = []
    for _ in range(3):
        made += harness.engine.create_records("Deal", [{"title": f"t{i}"} for i in range(7)])
        harness.engine.create_records("Note", [{"body": "n"}] * 2)
    made.append(harness.engine.create_record("Deal", {"title": "s", "amount": "x"}))
    old = harness.engine.definitions.object_type("Deal")
    (doc,) = load_text(deal("  a2: {type: string, required: true, default: none}\n"))
    new = doc.definition
    with harness.engine.store.write() as tx:
        counts = rewrite_records_txn(tx, old, new, actor="ada", now=NOW, because="test",
                                     page=4)
        assert counts == {"a2": len(made)}
        assert broken_records_txn(tx, old, new) == []  # (every record holds it now)
    for r in made:
        got = harness.engine.get_record(r["id"])
        assert got["a2"] == "none" and got["version"] == r["version"] + 1, got
        assert len(filled_events(harness, r["id"])) == 1


def test_many_records_are_filled(harness: Any) -> None:
    """Thousands of records (inserted straight into the store: the write path is not
    what is tested) are all given the default by one deploy, on both databases."""
    harness.deploy_text(deal())
    n = 3_000
    with harness.engine.store.write() as tx:
        for i in range(n):
            tx.insert_record_txn({"id": f"rec_{i:06d}", "object_type": "Deal",
                                  "data": {"title": f"t{i}"}, "version": 1,
                                  "created_at": NOW, "updated_at": NOW})
    harness.deploy_text(deal("  priority: {type: int, required: true, default: 3}\n"))
    with harness.engine.store.read() as tx:
        assert tx.count_records_txn("Deal") == n
        assert len(tx.find_records_txn("Deal", {"priority": 3}, n + 1)) == n
    assert filled_events(harness, f"rec_{n - 1:06d}")[0]["data"]["changes"] == {
        "priority": [None, 3]}


# ---- decimal scale cuts ------------------------------------------------------------------

def test_a_scale_cut_is_refused_saying_how_to_round_or_keep_the_values(harness: Any) -> None:
    harness.deploy_text(deal(amount="{type: decimal, scale: 4}"))
    rid = harness.engine.create_record("Deal", {"title": "a", "amount": "1.2345"})["id"]
    (issue,) = refused(harness, deal(amount="{type: decimal, scale: 2}"))
    msg = issue.message
    assert issue.path == "fields.amount.scale"
    assert "scale 4 -> 2 would break 1 stored record" in msg, msg
    assert f"{rid} = '1.2345' (1.2345 has 4 decimal places: at most 2" in msg, msg
    assert "To round them to 2 places, add `rounding: half_even` to amount (or half_up" in msg
    assert "the deploy then rounds the stored values" in msg, msg
    assert "leave the scale at 4 (or add a new field with scale 2)" in msg, msg
    assert "baton records update ID --data '{\"amount\": \"...\"}'" in msg, msg
    assert harness.engine.get_record(rid)["amount"] == "1.2345"
    assert versions(harness) == [1]


def test_a_scale_cut_with_rounding_rounds_the_stored_values(harness: Any) -> None:
    harness.deploy_text(deal(amount="{type: decimal, scale: 4}"))
    create = harness.engine.create_record
    cut = create("Deal", {"title": "a", "amount": "1.2350"})["id"]
    down = create("Deal", {"title": "b", "amount": "-2.0049"})["id"]
    fits = create("Deal", {"title": "c", "amount": "3.1000"})["id"]
    empty = create("Deal", {"title": "d"})
    results = harness.engine.deploy(
        [_write(harness, deal(amount="{type: decimal, scale: 2, rounding: half_up}"))],
        known_flows=None, actor="ada")
    assert dict(results[0].records_changed) == {"amount": 3}
    assert [harness.engine.get_record(r)["amount"] for r in (cut, down, fits)] == [
        "1.24", "-2.00", "3.10"]
    (event,) = filled_events(harness, cut)
    assert event["data"]["changes"] == {"amount": ["1.2350", "1.24"]}
    assert event["actor"] == "ada"
    with harness.engine.store.read() as tx:  # (what an export reads)
        assert tx.get_record_txn(fits)["data"]["amount"] == "3.10"
    assert harness.engine.get_record(empty["id"])["version"] == empty["version"]


def test_a_scale_cut_every_value_fits_needs_no_rounding(harness: Any) -> None:
    """Values that have no more places than the new scale, but the zeros the old scale
    wrote (3.1000 at scale 4), are not broken by the cut: written at the new scale."""
    harness.deploy_text(deal(amount="{type: decimal, scale: 4}"))
    rid = harness.engine.create_record("Deal", {"title": "a", "amount": "3.1"})["id"]
    assert harness.engine.get_record(rid)["amount"] == "3.1000"
    harness.deploy_text(deal(amount="{type: decimal, scale: 2}"))
    assert versions(harness) == [1, 2]
    assert harness.engine.get_record(rid)["amount"] == "3.10"
    # a scale widened again leaves stored values as they are (read at their number)
    harness.deploy_text(deal(amount="{type: decimal, scale: 3}"))
    assert len(filled_events(harness, rid)) == 1


def _write(harness: Any, text: str) -> Any:
    path = harness.tmp / "defs.yaml"
    path.write_text(textwrap.dedent(text))
    return path
