"""A deploy (or an activation) that changes an object type judges the stored records first
in a read transaction, holding no lock (a survey), and under the write lock judges again
only the records written since: what it refuses, and what it answers, are what judging
every record under the lock gave. On SQLite and on PostgreSQL.

The defect: the whole check ran under the write lock (~1 s per 30,000 records on SQLite;
bench/object_type_deploy.py), every record write, run step and create in every process
waiting for it. The risk of the cure: a record written between the survey and the lock
must be judged, and a record deleted or a page's records changed must not be taken as the
survey saw them.
"""

from __future__ import annotations

import textwrap
from datetime import timedelta
from typing import Any

import pytest

from baton.definitions.loader import load_text
from baton.errors import DefinitionError
from baton.records.changes import broken_records_txn, survey_records_txn


def deal(stage: str = "[open, won, lost]", extra: str = "") -> str:
    return textwrap.dedent(f"""
        kind: object
        name: Deal
        fields:
          title: {{type: string, required: true}}
          stage: {{type: choice, choices: {stage}}}
        """) + extra


def _seed(harness: Any, n: int, stage: str = "open") -> list[dict[str, Any]]:
    """``n`` Deals over a few instants (pages of 3 then cut across instants)."""
    made: list[dict[str, Any]] = []
    for start in range(0, n, 7):
        harness.clock.advance(timedelta(seconds=1))
        made += harness.engine.create_records(
            "Deal", [{"title": f"t{i}", "stage": stage} for i in range(start, min(n, start + 7))])
    return sorted(made, key=lambda r: (r["created_at"], r["id"]))


def _both(harness: Any, old: Any, new: Any, survey: Any, **kw: Any) -> tuple[Any, Any]:
    """(the answer given the survey, the answer of a full read), in one write transaction."""
    with harness.engine.store.write() as tx:
        given = broken_records_txn(tx, old, new, survey=survey, page=3, **kw)
        full = broken_records_txn(tx, old, new, page=3, **kw)
    return given, full


def test_records_written_created_and_deleted_since_the_survey_are_judged_again(
        harness: Any) -> None:
    harness.deploy_text(deal())
    made = _seed(harness, 30)
    lost_then = [made[4]["id"], made[5]["id"], made[29]["id"]]
    for rid in lost_then:
        harness.engine.update_record(rid, {"stage": "lost"})
    old = harness.engine.definitions.object_type("Deal")
    (doc,) = load_text(deal("[open, won]"))
    new = doc.definition
    with harness.engine.store.read() as tx:
        survey = survey_records_txn(tx, old, new, page=3)
    assert survey is not None and len(survey.parts) == 10
    (seen,) = broken_records_txn_read(harness, old, new)
    assert seen.count == 3

    # Since the survey: a record of a clean page made lost, a record created lost (after
    # the survey's last page), a lost one deleted, and the last record of a page (its
    # bound) deleted, which joins that page to the next.
    harness.engine.update_record(made[10]["id"], {"stage": "lost"})
    harness.clock.advance(timedelta(seconds=1))
    created = harness.engine.create_record("Deal", {"title": "new", "stage": "lost"})["id"]
    harness.engine.delete_record(made[4]["id"])
    harness.engine.delete_record(made[14]["id"])  # (the last of the fifth page)
    harness.engine.update_record(made[15]["id"], {"stage": "lost"})

    given, full = _both(harness, old, new, survey)
    assert given == full
    (b,) = given
    assert b.count == 5
    assert [s.record_id for s in b.samples] == [
        made[5]["id"], made[10]["id"], made[15]["id"], made[29]["id"], created]


def broken_records_txn_read(harness: Any, old: Any, new: Any) -> Any:
    with harness.engine.store.read() as tx:
        return broken_records_txn(tx, old, new, page=3)


def test_pages_unchanged_are_taken_as_the_survey_found_them(harness: Any) -> None:
    """Nothing written since: the answer is the survey's, the samples the oldest five of
    all pages, counted across them."""
    harness.deploy_text(deal())
    made = _seed(harness, 20, stage="lost")
    old = harness.engine.definitions.object_type("Deal")
    (doc,) = load_text(deal("[open, won]"))
    with harness.engine.store.read() as tx:
        survey = survey_records_txn(tx, old, doc.definition, page=3)
    given, full = _both(harness, old, doc.definition, survey)
    assert given == full
    assert given[0].count == 20
    assert [s.record_id for s in given[0].samples] == [r["id"] for r in made[:5]]


def test_a_survey_of_another_change_is_not_used(harness: Any) -> None:
    """The active version moved between the survey and the lock (another deploy): the
    survey judged another change, so every record is read again."""
    harness.deploy_text(deal())
    made = _seed(harness, 6)
    old = harness.engine.definitions.object_type("Deal")
    (doc,) = load_text(deal("[open, won]"))
    with harness.engine.store.read() as tx:
        survey = survey_records_txn(tx, old, doc.definition, page=3)
    harness.engine.update_record(made[0]["id"], {"stage": "won"})
    (other,) = load_text(deal("[open, lost]"))
    given, full = _both(harness, old, other.definition, survey)
    assert given == full and given[0].samples[0].record_id == made[0]["id"]
    # and a survey made without fills does not answer a check with them
    assert not survey.fits(old, doc.definition, None, True, 5)


def test_a_checked_ref_is_not_surveyed(harness: Any) -> None:
    """Whether a ref holds depends on the records it names: judged whole under the lock."""
    harness.deploy_text(deal(extra="  party: {type: ref, object: Deal, check: false}\n"))
    old = harness.engine.definitions.object_type("Deal")
    (doc,) = load_text(deal(extra="  party: {type: ref, object: Deal}\n"))
    with harness.engine.store.read() as tx:
        assert survey_records_txn(tx, old, doc.definition) is None


def _write_after_survey(harness: Any, write: Any) -> list[int]:
    """Make the engine's next survey be followed by ``write`` (a real record write, by
    the engine, before the deploy's write transaction begins); the list counts surveys."""
    defs = harness.engine.definitions
    surveyed = defs._survey_records
    calls: list[int] = []

    def then_write(docs: Any) -> Any:
        out = surveyed(docs)
        calls.append(len(out))
        write()
        return out

    defs._survey_records = then_write
    return calls


def test_a_deploy_refuses_a_record_written_between_its_survey_and_its_lock(
        harness: Any) -> None:
    harness.deploy_text(deal())
    made = _seed(harness, 12)
    calls = _write_after_survey(
        harness, lambda: harness.engine.update_record(made[7]["id"], {"stage": "lost"}))
    with pytest.raises(DefinitionError) as caught:
        harness.deploy_text(deal("[open, won]"))
    assert calls == [1]  # (the survey found the change and judged the records)
    (issue,) = caught.value.issues
    assert issue.path == "fields.stage.choices"
    assert issue.message.startswith(
        "object type Deal, field stage: choices lost removed would break 1 stored record ")
    assert f"{made[7]['id']} = 'lost'" in issue.message
    assert [r.version for r in harness.engine.definitions.list_versions("object", "Deal")] == [1]


def test_a_deploy_fills_a_record_created_between_its_survey_and_its_lock(
        harness: Any) -> None:
    """The default is given to every record stored when the deploy commits, the one
    created after the survey included."""
    harness.deploy_text(deal())
    _seed(harness, 8)
    late: list[str] = []
    _write_after_survey(harness, lambda: late.append(
        harness.engine.create_record("Deal", {"title": "late"})["id"]))
    harness.deploy_text(deal(extra="  tier: {type: string, required: true, default: gold}\n"))
    assert harness.engine.get_record(late[0])["tier"] == "gold"
    with harness.engine.store.read() as tx:
        assert all(r["data"]["tier"] == "gold" for r in tx.scan_records_txn("Deal", None, 100))


def test_an_activation_refuses_a_record_written_between_its_survey_and_its_lock(
        harness: Any) -> None:
    harness.deploy_text(deal("[open, won]"))
    harness.deploy_text(deal())
    made = _seed(harness, 5)
    _write_after_survey(
        harness, lambda: harness.engine.update_record(made[2]["id"], {"stage": "lost"}))
    defs = harness.engine.definitions
    with pytest.raises(DefinitionError) as caught:
        defs.set_active("object", "Deal", 1, "admin")
    (issue,) = caught.value.issues
    assert issue.message.endswith("(activating Deal v1)"), issue.message
    assert f"{made[2]['id']} = 'lost'" in issue.message
    assert defs.get_version("object", "Deal", 2).active
