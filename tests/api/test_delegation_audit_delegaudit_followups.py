"""Who gave whom approval power, and who changed it (found by an audit), on SQLite and
PostgreSQL: every change of a user's delegation, through the API (an admin's
``PATCH /api/users/{name}``, a user's ``PATCH /api/me``), the Settings page or the
directory, appends one ``delegation_changed`` audit event (no run, no record) in the same
transaction, naming the actor, the user and the delegate and dates before and after;
``GET /api/users/{name}`` shows the history. A refused change, or one that changes
nothing, writes none; adding a user whose name a delegation named ends it, audited."""

from __future__ import annotations

import itertools
import threading
from datetime import timedelta
from typing import Any

import pytest

from baton.errors import ValidationError
from tests.api.conftest import Api, assert_problem
from tests.api.test_work_guide import login


def written(api: Api) -> list[dict[str, Any]]:
    """Every ``delegation_changed`` event stored, oldest first, read as any event is."""
    with api.engine.store.read() as tx:
        return [e for e in tx.events_txn() if e["type"] == "delegation_changed"]


def said(e: dict[str, Any]) -> tuple[Any, ...]:
    d = e["data"]
    return (e["actor"], d["user"], d["change"], d["before"], d["after"])


def dele(to: str, start: str | None = None, until: str | None = None) -> dict[str, Any]:
    return {"delegate": to, "delegate_from": start, "delegate_until": until}


def updated_at(api: Api, name: str) -> str:
    with api.engine.store.read() as tx:
        row = tx.user_row_txn(name)
    assert row is not None
    return str(row["updated_at"])


def test_an_admin_sets_changes_and_ends_a_delegation_over_the_api(api: Api) -> None:
    r = api.patch("root", "/api/users/ann", {"delegate": "bob", "delegate_until": "2026-01-31"})
    assert r.status_code == 200, r.text
    r = api.patch("root", "/api/users/ann", {"delegate_from": "2026-01-10"})  # dates alone
    assert r.status_code == 200, r.text
    r = api.patch("root", "/api/users/ann", {"delegate": "cyd"})  # another delegate
    assert r.status_code == 200, r.text
    r = api.patch("root", "/api/users/ann", {"delegate": None})  # ended (merge-patch null)
    assert r.status_code == 200, r.text
    assert [said(e) for e in written(api)] == [
        ("root", "ann", "set", None, dele("bob", None, "2026-01-31")),
        ("root", "ann", "changed", dele("bob", None, "2026-01-31"),
         dele("bob", "2026-01-10", "2026-01-31")),
        ("root", "ann", "changed", dele("bob", "2026-01-10", "2026-01-31"), dele("cyd")),
        ("root", "ann", "ended", dele("cyd"), None)]
    for e in written(api):
        assert (e["run_id"], e["record_id"]) == (None, None)
        assert e["at"].startswith("2026-01-05T09:00")  # (the virtual clock's now)
    # the user's history: newest first, with who made each change
    shown = api.get("root", "/api/users/ann")
    assert shown.status_code == 200, shown.text
    history = shown.json()["delegation_history"]
    assert [(h["actor"], h["change"], h["before"], h["after"]) for h in history] == [
        said(e)[:1] + said(e)[2:] for e in reversed(written(api))]
    assert [h["user"] for h in history] == ["ann"] * 4
    assert history[0]["id"] > history[-1]["id"] and history[0]["reason"] is None
    # a delegate's history says whose approval power they were given, and when it ended
    bob = api.get("root", "/api/users/bob").json()["delegation_history"]
    assert [(h["user"], h["change"]) for h in bob] == [("ann", "changed"), ("ann", "changed"),
                                                      ("ann", "set")]
    assert api.get("root", "/api/users/dee").json()["delegation_history"] == []
    assert_problem(api.get("ann", "/api/users/ann"), 403)  # (the users permission, as before)
    assert_problem(api.get("root", "/api/users/nobody"), 404)


def test_a_user_names_their_own_delegate_audited_as_themselves(api: Api) -> None:
    r = api.patch("ann", "/api/me", {"delegate": "bob", "delegate_from": "2026-02-01",
                                     "delegate_until": "2026-02-14"})
    assert r.status_code == 200, r.text
    # ann may not list users: a name that is nobody's is kept as given, and audited so
    r = api.patch("ann", "/api/me", {"delegate": "ghost"})
    assert r.status_code == 200, r.text
    assert [said(e) for e in written(api)] == [
        ("ann", "ann", "set", None, dele("bob", "2026-02-01", "2026-02-14")),
        ("ann", "ann", "changed", dele("bob", "2026-02-01", "2026-02-14"), dele("ghost"))]
    # an admin adds a user of that name: the delegation made before they existed ends,
    # audited as by the admin, with why
    r = api.post("root", "/api/users", {"name": "ghost", "roles": ["agent"]})
    assert r.status_code == 201, r.text
    last = written(api)[-1]
    assert said(last) == ("root", "ann", "ended", dele("ghost"), None)
    assert "a user 'ghost' was added" in last["data"]["reason"]
    history = api.get("root", "/api/users/ghost").json()["delegation_history"]
    assert [(h["user"], h["change"], h["actor"]) for h in history] == [
        ("ann", "ended", "root"), ("ann", "changed", "ann")]
    assert history[0]["reason"] == last["data"]["reason"]
    assert api.engine.directory.get_user("ann").delegation is None


def test_a_refused_or_empty_change_writes_nothing(api: Api) -> None:
    api.engine.directory.update_user("ann", delegate="bob", actor="setup")
    assert len(written(api)) == 1
    before = updated_at(api, "ann")
    api.clock.advance(timedelta(minutes=1))
    refused = [
        ("root", "/api/users/ann", {"delegate": "nobody"}, "delegate"),  # not a user
        ("root", "/api/users/ann", {"delegate": "dee"}, "delegate"),  # may not work items
        ("root", "/api/users/ann", {"delegate": "ann"}, "delegate"),  # herself
        ("root", "/api/users/ann", {"delegate_from": "2026-03-01",
                                    "delegate_until": "2026-02-01"}, "delegate_until"),
        ("ann", "/api/me", {"delegate_from": "2026-02-30"}, "delegate_from"),
        ("root", "/api/users/ann", {"delegate": "cyd", "roles": []}, "roles"),
    ]
    for who, url, body, field in refused:
        assert_problem(api.patch(who, url, body), 422, field)
    assert_problem(api.patch("root", "/api/users/nobody", {"delegate": "bob"}), 404)
    with_no_delegate = api.patch("root", "/api/users/cyd", {"delegate_until": "2026-02-01"})
    assert_problem(with_no_delegate, 422, "delegate")
    with pytest.raises(ValidationError):
        api.engine.directory.update_user("ann", delegate="nobody", actor="x")
    # (each refused one rolled back whole: the row as it was, the lock taken for it too)
    assert updated_at(api, "ann") == before
    # the same delegation again, ending none, or a change of other fields: nothing changed
    assert api.patch("root", "/api/users/ann", {"delegate": "bob"}).status_code == 200
    assert api.patch("root", "/api/users/cyd", {"delegate": None}).status_code == 200
    assert api.patch("root", "/api/users/ann", {"email": "ann@new.example"}).status_code == 200
    assert [said(e) for e in written(api)] == [("setup", "ann", "set", None, dele("bob"))]
    assert api.engine.directory.get_user("ann").delegation.to == "bob"  # type: ignore[union-attr]


def test_the_settings_page_audits_the_signed_in_user(api: Api) -> None:
    csrf = login(api, "ann")
    c = api.client
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": "bob", "delegate_from": "",
                                  "delegate_until": "2026-01-31"})
    assert r.status_code == 200 and "Saved." in r.text
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": "no body"})
    assert r.status_code == 422
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": "bob",
                                  "delegate_from": "2026-02-01", "delegate_until": "2026-01-31"})
    assert r.status_code == 422
    r = c.post("/settings", data={"csrf_token": csrf, "delegate": ""})
    assert r.status_code == 200 and "Now: nobody." in r.text
    assert [said(e) for e in written(api)] == [
        ("ann", "ann", "set", None, dele("bob", None, "2026-01-31")),
        ("ann", "ann", "ended", dele("bob", None, "2026-01-31"), None)]


def test_changes_at_once_are_each_audited_against_what_the_other_left(api: Api) -> None:
    """Two admins change ann's delegation at the same time, many times: each event's
    ``before`` is the ``after`` of the one before it (the row is locked for the change),
    and the last ``after`` is what is stored."""
    directory = api.engine.directory
    errors: list[Exception] = []

    def changer(actor: str, delegate: str) -> None:
        try:
            for n in range(8):
                directory.update_user("ann", delegate=delegate,
                                      delegate_until=f"2026-02-{n + 10:02d}", actor=actor)
        except Exception as exc:  # noqa: BLE001 (reported below, from the test's thread)
            errors.append(exc)

    threads = [threading.Thread(target=changer, args=("root", "bob")),
               threading.Thread(target=changer, args=("opal", "cyd"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    events = written(api)
    assert len(events) == 16
    assert events[0]["data"]["before"] is None
    for prev, e in itertools.pairwise(events):
        assert e["data"]["before"] == prev["data"]["after"], (prev, e)
    final = directory.get_user("ann").delegation
    assert final is not None
    assert events[-1]["data"]["after"] == dele(final.to, final.start, final.until)
