"""The user directory and work-item scope on both backends: users, memberships, passwords,
API tokens, sessions, roles, and what an agent may see and do."""

from __future__ import annotations

from datetime import timedelta

import pytest

from baton.auth.roles import Permission, require
from baton.errors import NotFound, PermissionDenied, TransitionConflict, ValidationError

QUEUE_FLOW = """
kind: object
name: Ticket
fields:
  subject: {type: string, required: true}
---
kind: orchestration
name: handle
trigger: {type: record, object: Ticket, on: [create]}
stages:
  - name: work
    steps:
      - name: answer
        type: interactive
        assign: {queue: support}
        form:
          - {name: reply, type: text, required: true}
"""


def test_add_user_and_memberships(harness) -> None:
    d = harness.engine.directory
    u = d.add_user("alice", roles=["agent"], queues=["support", "billing"], groups=["emea"],
                   email="alice@example.com", password="correct horse")
    assert u.roles == {"agent"} and u.queues == {"support", "billing"} and u.groups == {"emea"}
    assert u.has_password and u.active
    assert [m.name for m in d.members("queue", "support")] == ["alice"]
    assert [m.name for m in d.members("user", "alice")] == ["alice"]
    assert d.members("group", "nobody") == []
    u2 = d.update_user("alice", queues=["support"], roles=["agent", "operator"])
    assert u2.queues == {"support"} and u2.roles == {"agent", "operator"} and u2.groups == {"emea"}
    assert d.members("queue", "billing") == []
    assert [x.name for x in d.list_users()] == ["alice"] and d.count_users() == 1


def test_user_input_errors_name_every_field(harness) -> None:
    d = harness.engine.directory
    with pytest.raises(ValidationError) as exc:
        d.add_user("bad name", roles=["boss"], queues=["ok", "not ok"], email="nope", password="short")
    assert set(exc.value.fields) == {"name", "roles", "queues", "email", "password"}
    assert "admin, designer, operator, agent" in exc.value.fields["roles"]
    with pytest.raises(ValidationError, match="at least one role"):
        d.add_user("carol", roles=[])
    assert d.count_users() == 0  # nothing half-written
    d.add_user("carol", roles=["agent"])
    with pytest.raises(TransitionConflict, match="already exists"):
        d.add_user("carol", roles=["admin"])
    with pytest.raises(NotFound):
        d.update_user("nobody", roles=["agent"])


def test_passwords_are_hashed_and_checked(harness) -> None:
    d = harness.engine.directory
    d.add_user("alice", roles=["agent"], password="correct horse")
    d.add_user("tokenonly", roles=["agent"])
    with harness.engine.store.read() as tx:
        stored = tx.conn.exec_driver_sql("SELECT password_hash FROM baton_users WHERE name='alice'").scalar()
    assert stored.startswith("$argon2") and "correct horse" not in stored
    assert d.authenticate("alice", "correct horse").name == "alice"
    assert d.authenticate("alice", "wrong horse!") is None
    assert d.authenticate("nobody", "correct horse") is None
    assert d.authenticate("tokenonly", "") is None  # no password: no UI login
    d.update_user("alice", active=False)
    assert d.authenticate("alice", "correct horse") is None


def test_api_tokens_shown_once_stored_hashed_revocable(harness) -> None:
    d = harness.engine.directory
    d.add_user("bot", roles=["operator"])
    info, secret = d.create_token("bot", "ci")
    assert secret.startswith("baton_") and len(secret) > 40
    with harness.engine.store.read() as tx:
        hashes = [r[0] for r in tx.conn.exec_driver_sql("SELECT secret_hash FROM baton_api_tokens")]
    assert secret not in hashes and len(hashes[0]) == 64
    assert d.user_for_token(secret).name == "bot"
    assert d.user_for_token(secret + "x") is None and d.user_for_token("garbage") is None
    assert d.list_tokens("bot")[0].last_used_at is not None
    d.revoke_token(info.id)
    assert d.user_for_token(secret) is None
    with pytest.raises(NotFound):
        d.revoke_token("tok_nope")
    with pytest.raises(NotFound):
        d.create_token("ghost")


def test_sessions_expire_and_end_on_password_change(harness) -> None:
    d = harness.engine.directory
    d.add_user("alice", roles=["agent"], password="correct horse")
    cookie, csrf = d.create_session("alice")
    user, got_csrf = d.session(cookie)
    assert user.name == "alice" and got_csrf == csrf
    assert d.session("forged") is None
    harness.clock.advance(timedelta(hours=13))
    assert d.session(cookie) is None  # expired
    cookie, _ = d.create_session("alice")
    d.update_user("alice", password="another horse")
    assert d.session(cookie) is None  # signed out everywhere
    cookie, _ = d.create_session("alice")
    d.delete_session(cookie)
    assert d.session(cookie) is None


def test_roles_grant_permissions(harness) -> None:
    d = harness.engine.directory
    agent = d.add_user("a", roles=["agent"])
    designer = d.add_user("d", roles=["designer"])
    admin = d.add_user("root", roles=["admin"])
    require(agent, Permission.WORK)
    with pytest.raises(PermissionDenied, match="runs:write.*operator"):
        require(agent, Permission.RUNS_WRITE)
    require(designer, Permission.DEFINITIONS_WRITE)
    with pytest.raises(PermissionDenied):
        require(designer, Permission.WORK)
    assert all(admin.can(p) for p in Permission)
    assert not d.update_user("root", active=False).can(Permission.RUNS_READ)


def test_agent_scope_on_work_items(harness) -> None:
    harness.deploy_text(QUEUE_FLOW)
    e, d = harness.engine, harness.engine.directory
    alice = d.add_user("alice", roles=["agent"], queues=["support"])
    bob = d.add_user("bob", roles=["agent"], queues=["sales"])
    for i in range(3):
        e.create_record("Ticket", {"subject": f"t{i}"})
    harness.work()
    items = e.list_work(scope=alice)
    assert len(items) == 3 and e.count_work(scope=alice) == 3
    assert e.list_work(scope=bob) == [] and e.count_work(scope=bob) == 0
    first, second, third = items
    with pytest.raises(PermissionDenied, match="not a member"):
        e.claim(first["id"], "bob", scope=bob)
    with pytest.raises(PermissionDenied):
        e.complete(first["id"], "bob", {"reply": "hi"}, scope=bob)
    assert e.get_work_item(first["id"])["status"] == "open"  # nothing changed
    e.reassign(second["id"], "user:bob", actor="olga")
    assert [i["id"] for i in e.list_work(scope=bob)] == [second["id"]]
    assert second["id"] not in [i["id"] for i in e.list_work(scope=alice)]
    with pytest.raises(PermissionDenied):
        e.claim(second["id"], "alice", scope=alice)
    e.claim(first["id"], "alice", scope=alice)
    done = e.complete(first["id"], "alice", {"reply": "fixed"}, scope=alice)
    assert done["status"] == "completed"
    assert [i["id"] for i in e.list_work(scope=alice)] == [third["id"]]
    assert len(e.list_work(scope=alice, statuses=["completed"])) == 1  # claimed by alice


def test_definition_versions_activate_deactivate_diff(harness) -> None:
    harness.deploy_text(QUEUE_FLOW)
    harness.deploy_text(QUEUE_FLOW.replace("reply, type: text", "reply, type: string"))
    e = harness.engine
    versions = [r.version for r in e.definitions.list_versions("orchestration", "handle")]
    assert versions == [1, 2]
    diff = e.definitions.diff("orchestration", "handle", 1, 2)
    assert "-          - {name: reply, type: text" in diff and "+          - {name: reply, type: string" in diff
    e.definitions.set_active("orchestration", "handle", 1, "dora")
    rec = e.create_record("Ticket", {"subject": "x"})
    assert e.list_runs(record_id=rec["id"])[0].version == 1
    e.definitions.set_active("orchestration", "handle", None, "dora")
    rec2 = e.create_record("Ticket", {"subject": "y"})
    assert e.list_runs(record_id=rec2["id"]) == []  # deactivated: no trigger
    with pytest.raises(NotFound):
        e.start("handle", {})
    with pytest.raises(TransitionConflict, match="cannot be deactivated"):
        e.definitions.set_active("object", "Ticket", None, "dora")
    with pytest.raises(NotFound):
        e.definitions.set_active("orchestration", "handle", 9, "dora")
    e.definitions.set_active("orchestration", "handle", 2, "dora")
    rec3 = e.create_record("Ticket", {"subject": "z"})
    assert e.list_runs(record_id=rec3["id"])[0].version == 2
    with e.store.read() as tx:
        audited = [(ev["type"], ev["actor"], ev["data"]["version"])
                   for ev in tx.events_txn(types=["definition_activated", "definition_deactivated"])]
    assert audited == [("definition_activated", "dora", 1), ("definition_deactivated", "dora", None),
                       ("definition_activated", "dora", 2)]


def test_delete_record_refuses_while_a_run_works_on_it(harness) -> None:
    harness.deploy_text(QUEUE_FLOW)
    e = harness.engine
    rec = e.create_record("Ticket", {"subject": "x"})
    with pytest.raises(TransitionConflict, match="cancel them first"):
        e.delete_record(rec["id"])
    run = e.list_runs(record_id=rec["id"])[0]
    e.cancel_run(run.id, "test")
    with pytest.raises(TransitionConflict, match="version"):
        e.delete_record(rec["id"], expected_version=99)
    e.delete_record(rec["id"], actor="olga")
    with pytest.raises(NotFound):
        e.get_record(rec["id"])
    assert e.count_records("Ticket") == 0


REFS = """
kind: object
name: Account
fields: {name: {type: string}}
---
kind: object
name: Contact
fields:
  account: {type: ref, object: Account}
  later: {type: ref, object: Account, check: false}
"""


def test_delete_record_refuses_while_a_checked_ref_names_it(harness) -> None:
    """Deleting an Account a Contact's ref field names would leave the Contact naming a
    record that is gone (and refused on its next write): refused, naming the Contact; a
    ``check: false`` field does not hold its record."""
    harness.deploy_text(REFS)
    e = harness.engine
    a, b = (e.create_record("Account", {"name": n}) for n in ("a", "b"))
    named = e.create_record("Contact", {"account": a["id"]})
    e.create_record("Contact", {"later": b["id"]})
    with pytest.raises(TransitionConflict, match=f"named by Contact {named['id']} \\(account\\)"):
        e.delete_record(a["id"])
    assert e.get_record(a["id"])["id"] == a["id"]  # nothing deleted
    e.delete_record(b["id"])  # only a check: false field names it
    e.update_record(named["id"], {"account": None})
    e.delete_record(a["id"])
    assert e.count_records("Account") == 0


def test_complete_many_commits_the_good_and_returns_the_bad_as_errors(harness) -> None:
    """One bad form and one unknown item among good ones: the good commit together, the
    bad come back as their errors and change nothing."""
    harness.deploy_text(QUEUE_FLOW)
    e = harness.engine
    for i in range(3):
        e.create_record("Ticket", {"subject": f"t{i}"})
    harness.work()
    a, b, c = (i["id"] for i in e.list_work(queue="support"))
    results = e.complete_many([(a, "ann", {"reply": "one"}), (b, "ann", {}),
                               ("wi_missing", "ann", {"reply": "x"}), (c, "ann", {"reply": "three"})])
    assert [type(r).__name__ for r in results] == ["dict", "ValidationError", "NotFound", "dict"]
    assert list(results[1].fields) == ["reply"]
    assert {i: e.get_work_item(i)["status"] for i in (a, b, c)} == {
        a: "completed", b: "open", c: "completed"}
    with e.store.read() as tx:
        completed = tx.events_txn(types=["work_item_completed"])
    assert sorted(ev["data"]["work_item"] for ev in completed) == sorted([a, c])
    # All good: one transaction, no savepoints needed.
    e.create_record("Ticket", {"subject": "t3"})
    harness.work()
    (d,) = (i["id"] for i in e.list_work(queue="support") if i["id"] != b)
    assert [r["status"] for r in e.complete_many([(d, "ann", {"reply": "four"})])] == ["completed"]
