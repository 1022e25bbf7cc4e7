"""Idempotency-Key on the POSTs that create (records, runs) and on the action POSTs (a work
item's completion, a run's cancel...): a retry within 24 hours does nothing more and gets
the first answer; the key commits with what it created or changed, or not at all.
And request bodies refuse fields they do not know (422 naming them)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from baton.clock import VirtualClock
from baton.runtime.idempotency import IdempotencyClaim, fingerprint
from baton.store import schema
from tests.api.conftest import FLAKY, Api, assert_problem

RECORDS = "/api/objects/Case/records"
CASE = {"data": {"subject": "Invoice 42 is wrong", "origin": "Web"}}


def key(k: str) -> dict[str, str]:
    return {"Idempotency-Key": k}


def counts(api: Api) -> tuple[int, int]:
    return api.engine.count_records("Case"), api.engine.count_runs()


def test_a_retried_record_create_replays_the_first_answer_and_creates_nothing(api: Api) -> None:
    first = api.post("opal", RECORDS, CASE, headers=key("case-1"))
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers
    before = counts(api)
    assert before == (1, 1)  # the Case and the triage run its create trigger started

    again = api.post("opal", RECORDS, CASE, headers=key("case-1"))
    assert again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]
    assert counts(api) == before
    # The first answer, even after the record changed.
    api.patch("opal", first.headers["Location"], {"data": {"subject": "changed"}})
    assert api.post("opal", RECORDS, CASE, headers=key("case-1")).json() == first.json()
    # Without a key every POST creates.
    assert api.post("opal", RECORDS, CASE).status_code == 201
    assert api.post("opal", RECORDS, CASE).status_code == 201
    assert api.engine.count_records("Case") == 3


def test_a_retried_run_start_replays_the_first_answer_and_starts_nothing(api: Api) -> None:
    assert api.post("dee", "/api/definitions/deploy",
                    {"files": {"flaky.yaml": FLAKY}}).status_code == 200
    start = {"orchestration": "flaky_job", "input": {"n": 1}}
    first = api.post("opal", "/api/runs", start, headers=key("run-1"))
    assert first.status_code == 201, first.text
    again = api.post("opal", "/api/runs", start, headers=key("run-1"))
    assert (again.status_code, again.json()) == (201, first.json())
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"] == f"/api/runs/{first.json()['id']}"
    assert api.engine.count_runs(orchestration="flaky_job") == 1


def test_the_same_key_for_another_request_is_a_422(api: Api) -> None:
    assert api.post("opal", RECORDS, CASE, headers=key("k")).status_code == 201
    other = {"data": {**CASE["data"], "subject": "another case"}}
    body = assert_problem(api.post("opal", RECORDS, other, headers=key("k")), 422,
                          "header.Idempotency-Key")
    assert "another request" in body["detail"] and body["type"].endswith("idempotency-key-reused")
    # Another path with the same key is another request too.
    assert_problem(api.post("opal", "/api/objects/Account/records", {"data": {"name": "A"}},
                            headers=key("k")), 422, "header.Idempotency-Key")
    # Key order and spacing do not make another request.
    same = api.client.post(RECORDS, content='{"data": {"origin": "Web",  "subject": '
                                            '"Invoice 42 is wrong"}}',
                           headers=api.auth("opal") | key("k") |
                           {"content-type": "application/json"})
    assert same.status_code == 201 and same.headers["Idempotent-Replayed"] == "true"
    assert counts(api) == (1, 1)
    assert api.engine.count_records("Account") == 0


def test_keys_are_per_user(api: Api) -> None:
    a = api.post("opal", RECORDS, CASE, headers=key("shared"))
    b = api.post("root", RECORDS, CASE, headers=key("shared"))
    assert a.status_code == b.status_code == 201
    assert "Idempotent-Replayed" not in b.headers and a.json()["id"] != b.json()["id"]
    assert api.engine.count_records("Case") == 2


def test_a_key_expires_after_24_hours(api: Api) -> None:
    first = api.post("opal", RECORDS, CASE, headers=key("daily"))
    api.clock.advance(timedelta(hours=23, minutes=59))
    assert api.post("opal", RECORDS, CASE, headers=key("daily")).json() == first.json()
    api.clock.advance(timedelta(minutes=2))
    later = api.post("opal", RECORDS, CASE, headers=key("daily"))
    assert later.status_code == 201 and "Idempotent-Replayed" not in later.headers
    assert later.json()["id"] != first.json()["id"]
    assert api.engine.count_records("Case") == 2
    # ... and the new use is the one a retry replays from now on.
    assert api.post("opal", RECORDS, CASE, headers=key("daily")).json() == later.json()


def test_expired_keys_are_swept(api: Api) -> None:
    for i in range(3):
        api.post("opal", RECORDS, CASE, headers=key(f"old-{i}"))
    api.clock.advance(timedelta(hours=25))
    api.post("opal", RECORDS, CASE, headers=key("new"))
    with api.engine.store.read() as tx:
        assert [tx.idempotency_key_txn("opal", f"old-{i}") for i in range(3)] == [None] * 3
        assert tx.idempotency_key_txn("opal", "new") is not None


def test_a_failed_request_does_not_use_up_its_key(api: Api) -> None:
    # Refused by the service (inside the creating transaction) ...
    assert_problem(api.post("opal", RECORDS, {"data": {"origin": "Fax"}}, headers=key("fix")),
                   422, "data.subject")
    # ... or by the request's validation (before it).
    assert_problem(api.post("opal", RECORDS, {**CASE, "dta": {}}, headers=key("fix")), 422, "dta")
    with api.engine.store.read() as tx:
        assert tx.idempotency_key_txn("opal", "fix") is None
    fixed = api.post("opal", RECORDS, CASE, headers=key("fix"))
    assert fixed.status_code == 201 and "Idempotent-Replayed" not in fixed.headers
    assert api.engine.count_records("Case") == 1


def test_a_malformed_key_is_a_422(api: Api) -> None:
    for bad in ["x" * 256, " padded", "tab\there"]:
        assert_problem(api.post("opal", RECORDS, CASE, headers=key(bad)), 422,
                       "header.Idempotency-Key")
    latin = api.client.post(RECORDS, json=CASE,
                            headers=api.auth("opal") | {"Idempotency-Key": "caf\xe9".encode("latin-1")})
    assert_problem(latin, 422, "header.Idempotency-Key")
    assert api.post("opal", RECORDS, CASE, headers=key("x" * 255)).status_code == 201
    assert api.engine.count_records("Case") == 1


def _claim(api: Api, k: str, body: dict[str, Any]) -> IdempotencyClaim:
    return IdempotencyClaim("opal", k, "POST", RECORDS, fingerprint("POST", RECORDS, body),
                            "record")


def test_an_answer_lost_after_commit_is_rebuilt_from_the_record(api: Api) -> None:
    """The server committed the record and its key, then died before keeping the answer
    (what a kill -9 mid-request does): the retry answers from the record, creating nothing."""
    view = api.engine.create_record("Case", CASE["data"], actor="opal",
                                    idempotency=_claim(api, "lost", CASE))
    retry = api.post("opal", RECORDS, CASE, headers=key("lost"))
    assert retry.status_code == 201 and retry.headers["Idempotent-Replayed"] == "true"
    assert retry.json()["id"] == view["id"] and retry.headers["Location"].endswith(view["id"])
    assert counts(api) == (1, 1)


class Repeat:
    """Ids that repeat one already taken: the record's insert fails after the key's."""

    def __init__(self, taken: str) -> None:
        self.taken = taken

    def new(self, prefix: str) -> str:
        return self.taken


def test_the_key_commits_with_the_record_or_not_at_all(api: Api) -> None:
    taken = api.post("opal", RECORDS, CASE).json()["id"]
    api.engine.records.ids = Repeat(taken)
    with pytest.raises(IntegrityError):
        api.engine.create_record("Case", CASE["data"], actor="opal",
                                 idempotency=_claim(api, "doomed", CASE))
    with api.engine.store.read() as tx:
        assert tx.idempotency_key_txn("opal", "doomed") is None
    assert api.engine.count_records("Case") == 1


def test_concurrent_retries_create_once(api: Api) -> None:
    answers: list[Any] = []
    go = threading.Barrier(4)

    def send() -> None:
        go.wait()
        answers.append(api.post("opal", RECORDS, CASE, headers=key("race")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code for a in answers] == [201] * 4, [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum("Idempotent-Replayed" in a.headers for a in answers) == 3
    assert counts(api) == (1, 1)


@pytest.mark.parametrize(("path", "body", "field"), [
    (RECORDS, {**CASE, "colour": "red"}, "colour"),
    ("/api/runs", {"orchestration": "x", "inputs": {}}, "inputs"),
    ("/api/definitions/validate", {"files": {"a.yaml": "kind: x"}, "dry": True}, "dry"),
    ("/api/users", {"name": "zed", "roles": ["agent"], "admin": True}, "admin"),
])
def test_unknown_top_level_fields_are_a_422_naming_them(sqlite_api: Api, path: str,
                                                        body: dict[str, Any], field: str) -> None:
    problem = assert_problem(sqlite_api.post("root", path, body), 422, field)
    assert "Extra inputs are not permitted" in problem["detail"]


def test_an_unknown_field_in_an_update_is_a_422(sqlite_api: Api) -> None:
    rec = sqlite_api.post("opal", RECORDS, CASE).json()
    assert_problem(sqlite_api.patch("opal", f"/api/records/{rec['id']}",
                                    {"data": {"subject": "x"}, "verison": 1}), 422, "verison")
    assert sqlite_api.get("opal", f"/api/records/{rec['id']}").json()["version"] == 1


def test_the_header_is_documented(sqlite_api: Api) -> None:
    spec = sqlite_api.client.get("/openapi.json").json()
    for path in (RECORDS.replace("Case", "{object_type}"), "/api/runs"):
        op = spec["paths"][path]["post"]
        assert any(p["name"] == "Idempotency-Key" and p["in"] == "header"
                   for p in op["parameters"]), op["parameters"]
        assert "Idempotent-Replayed" in op["responses"]["201"]["headers"]
    body = spec["components"]["schemas"]["RecordData"]
    assert body["additionalProperties"] is False


# ---- the action POSTs: a retry does nothing more and replays the first answer -------------
RUNS = """
kind: orchestration
name: keyed_wait
trigger: {type: autolaunched}
stages:
  - name: only
    steps: [{name: docs, type: pause, signal: docs_received}]
---
kind: orchestration
name: keyed_doomed
trigger: {type: autolaunched}
stages:
  - name: only
    steps: [{name: boom, type: background, flow: api_tests.boom, on_failure: fail_run}]
"""


@dataclass(frozen=True)
class Act:
    """One action POST as a test sends it: ``who`` posts ``body`` to ``path``; ``other``
    (path, body) is another request, refused with the same key; a repeat without a key
    answers ``plain`` (None: not checked; 409 mostly: it was done)."""

    who: str
    path: str
    body: Any
    other: tuple[str, Any]
    plain: int | None = 409


Made = tuple[str, str]  # what a setup made: its path (the actions' prefix), who acts on it


def _on(setup: Callable[[Api], Made], verb: str, body: Any = None, *,
        other: tuple[str, Any], plain: int | None = 409,
        who: str | None = None) -> Callable[[Api], Act]:
    """The action ``verb`` on what ``setup`` makes (by ``who``, else whom it says);
    ``other``: another request (a verb on the same thing, or a path of its own) and its
    body."""
    def make(api: Api) -> Act:
        base, by = setup(api)
        path = other[0] if other[0].startswith("/") else f"{base}/{other[0]}"
        return Act(who or by, f"{base}/{verb}", body, (path, other[1]), plain)
    return make


def _item(api: Api) -> Made:
    return f"/api/work/{api.item_of(api.new_case()['id'])['id']}", "ann"


def _claimed(api: Api) -> Made:
    path, who = _item(api)
    assert api.post(who, f"{path}/claim").status_code == 200
    return path, who


def _offered(api: Api) -> Made:
    from tests.api.test_work_offers import OFFERS, lead

    api.engine.deploy(texts={"offers.yaml": OFFERS}, actor="setup")
    item = lead(api)
    return f"/api/work/{item['id']}", item["assignee"]


def _approval(api: Api) -> Made:
    from tests.api.test_delegation import QUOTES

    api.engine.deploy(texts={"quotes.yaml": QUOTES}, actor="setup")
    rec = api.engine.create_record("Quote", {"amount": 5, "approver": "user:ann"},
                                   actor="user:cyd")
    api.work()
    (item,) = [i for i in api.engine.list_work(record_id=rec["id"]) if i["step"] == "manager"]
    return f"/api/work/{item['id']}", "cyd"  # (who submitted it recalls it)


def _run(api: Api, orchestration: str, **input: Any) -> str:
    api.engine.deploy(texts={"keyed.yaml": RUNS, "flaky.yaml": FLAKY}, actor="setup")
    run_id = api.engine.start(orchestration, input, actor="opal").id
    api.work()
    return run_id


def _waiting(api: Api) -> Made:
    return f"/api/runs/{_run(api, 'keyed_wait')}", "opal"


def _failed(api: Api) -> Made:
    run_id = _run(api, "keyed_doomed")
    assert api.engine.get_run(run_id).status.value == "failed"
    return f"/api/runs/{run_id}", "opal"


def _fallout(api: Api) -> Made:
    run_id = _run(api, "flaky_job", n=1)
    assert [f["id"] for f in api.engine.list_fallout() if f["run_id"] == run_id] == [
        f"{run_id}:boom"]
    return f"/api/fallout/{run_id}:boom", "opal"


def _incident(api: Api) -> Made:
    from tests.costly import GADGETS

    api.engine.deploy(texts={"gadgets.yaml": GADGETS}, actor="setup")
    rec = api.engine.create_record("Gadget", {"label": "g"}, actor="opal")
    (inc,) = api.engine.list_incidents(record_id=rec["id"])
    return f"/api/incidents/{inc['id']}", "opal"


def _order(api: Api) -> Made:
    from tests.api.test_plans import _order as order

    return f"/api/plans/{order(api, 'ROUTER')}", "opal"


def _amended(api: Api) -> Made:
    path, who = _order(api)
    api.engine.create_record("ShopLine", {"order": path.rsplit("/", 1)[1], "product": "CABLE"})
    return path, who


def _defined(api: Api) -> Made:
    api.engine.deploy(texts={"keyed.yaml": RUNS, "flaky.yaml": FLAKY}, actor="setup")
    return "/api/definitions/orchestration/keyed_wait", "dee"


WHY, OTHER_WHY = {"reason": "asked by the customer"}, {"reason": "another reason"}
ACTIONS: dict[str, Callable[[Api], Act]] = {
    "work claim": _on(_item, "claim", other=("release", None)),
    "work release": _on(_claimed, "release", other=("claim", None)),
    "work accept": _on(_offered, "accept", other=("decline", None)),
    # (declined, the item is offered to the next one: a repeat does not see it)
    "work decline": _on(_offered, "decline", other=("accept", None), plain=404),
    "work complete": _on(_claimed, "complete", {"data": {"resolution": "close"}},
                         other=("complete", {"data": {"resolution": "escalate"}})),
    "work recall": _on(_approval, "recall", other=("release", None)),
    "work reassign": _on(_item, "reassign", {"to": "queue:tier2"},
                         other=("reassign", {"to": "group:billing"}), plain=None, who="opal"),
    "run cancel": _on(_waiting, "cancel", WHY, other=("cancel", OTHER_WHY)),
    "run resume": _on(_failed, "resume", WHY, other=("resume", OTHER_WHY)),
    "run signal": _on(_waiting, "signal", {"name": "docs_received", "data": {"ok": True}},
                      other=("signal", {"name": "docs_received"})),
    "fallout retry": _on(_fallout, "retry", WHY, other=("retry", OTHER_WHY)),
    "fallout skip": _on(_fallout, "skip", WHY, other=("retry", WHY)),
    "fallout complete": _on(_fallout, "complete", {**WHY, "data": {"done": True}},
                            other=("complete", {**WHY, "data": {"done": False}})),
    # (retried while its record is still broken, an incident stays open: a repeat without
    # a key evaluates it again, 200 with one attempt more, which a replay does not)
    "incident retry": _on(_incident, "retry", WHY, other=("dismiss", WHY), plain=200),
    "incident dismiss": _on(_incident, "dismiss", WHY, other=("dismiss", OTHER_WHY)),
    "plan cancel": _on(_order, "cancel", WHY, other=("cancel", OTHER_WHY)),
    # (amended again without a key, nothing differs: 200, applied false)
    "plan amend": _on(_amended, "amend", other=("amend", {"dry_run": True}), plain=200),
    "definition deactivate": _on(_defined, "deactivate", other=("activate", {"version": 1}),
                                 plain=200),
    "definition activate": _on(_defined, "activate", {"version": 1},
                               other=("deactivate", None), plain=200),
    "unlock a login": _on(lambda api: ("/api/users/zed", "root"), "unlock",
                          other=("/api/users/zoe/unlock", None), plain=200),
    "unlock an address": _on(lambda api: ("/api/addresses/10.0.0.9", "root"), "unlock",
                             other=("/api/addresses/10.0.0.8/unlock", None), plain=200),
}


@pytest.fixture(scope="module")
def one_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """One SQLite Api for the table of actions (each sets up what it acts on)."""
    a = Api(f"sqlite:///{tmp_path_factory.mktemp('actions') / 'baton.db'}", VirtualClock())
    yield a
    a.close()


def _events(api: Api) -> int:
    with api.engine.store.read() as tx:
        return int(tx.conn.execute(select(func.count()).select_from(schema.events)).scalar_one())


@pytest.mark.parametrize("action", list(ACTIONS))
def test_a_retried_action_does_nothing_more_and_replays_the_first_answer(
        one_api: Api, action: str) -> None:
    api = one_api
    act = ACTIONS[action](api)
    k = key(f"{action}-1")
    first = api.post(act.who, act.path, act.body, headers=k)
    assert first.status_code == 200, (action, first.text)
    assert "Idempotent-Replayed" not in first.headers
    done = _events(api)
    again = api.post(act.who, act.path, act.body, headers=k)
    assert (again.status_code, again.json()) == (200, first.json()), action
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _events(api) == done, action  # (every action is audited: none was done again)
    # The same key for another request (another body, or another path): 422, nothing done.
    assert_problem(api.post(act.who, act.other[0], act.other[1], headers=k), 422,
                   "header.Idempotency-Key")
    assert _events(api) == done, action
    if act.plain is not None:  # ... where a repeat without the key acts again (refused)
        assert api.post(act.who, act.path, act.body).status_code == act.plain, action
    # Another user's same key is theirs: not a replay of this one's answer.
    if act.who != "root":
        assert "Idempotent-Replayed" not in api.post("root", act.path, act.body,
                                                     headers=k).headers


def test_every_action_post_honours_the_key(sqlite_api: Api) -> None:
    """The OpenAPI document: each POST takes the header and documents the replay, but for
    the two that do not read it (validate changes nothing; a callback has no user)."""
    spec = sqlite_api.client.get("/openapi.json").json()
    posts = {path: op["post"] for path, op in spec["paths"].items() if "post" in op}
    unread = {"/api/definitions/validate", "/api/callbacks/{token}"}
    for path, op in posts.items():
        names = {p["name"] for p in op.get("parameters", ()) if p["in"] == "header"}
        assert ("Idempotency-Key" in names) is (path not in unread), path
        if path in unread:
            continue
        assert "Honoured by every POST that creates something" in next(
            p["description"] for p in op["parameters"] if p["name"] == "Idempotency-Key")
        answered = op["responses"].get("200") or op["responses"]["201"]
        if path != "/api/tokens":  # (refused, not replayed: its secret is not kept)
            assert "Idempotent-Replayed" in answered["headers"], path
    assert {p.rsplit("/", 1)[1] for p in posts if "{" in p and p not in unread} == {
        "claim", "release", "accept", "decline", "complete", "recall", "reassign", "cancel",
        "resume", "signal", "retry", "skip", "dismiss", "amend", "activate", "deactivate",
        "unlock", "records", "{target}"}
    # ... and seven creates (a bundle's import one), the next item, validate and the callbacks
    assert len(posts) == len(ACTIONS) + 10


def _action_claim(who: str, k: str, path: str, body: Any) -> IdempotencyClaim:
    return IdempotencyClaim(who, k, "POST", path, fingerprint("POST", path, body), "work_item")


def test_an_action_s_key_commits_with_it_or_not_at_all(api: Api) -> None:
    """On both databases: an action refused inside its transaction (after the key was
    claimed there) leaves the key free; one committed whose answer was lost (the server
    died before keeping it) is answered from what it acted on, doing nothing more."""
    item = api.item_of(api.new_case()["id"])
    path, done = f"/api/work/{item['id']}/complete", {"data": {"resolution": "close"}}
    assert api.post("bob", f"/api/work/{item['id']}/claim").status_code == 404  # not his
    assert api.post("opal", f"/api/work/{item['id']}/claim").status_code == 200
    # ann's completion is refused in the transaction (opal has it): her key stays free
    assert_problem(api.post("ann", path, done, headers=key("done")), 409)
    assert api.post("opal", f"/api/work/{item['id']}/release").status_code == 200
    assert_problem(api.post("ann", path, {"data": {"resolution": "maybe"}},
                            headers=key("done")), 422, "data.resolution")
    with api.engine.store.read() as tx:
        assert tx.idempotency_key_txn("ann", "done") is None
    # ... then committed with its key, the answer never kept (as a kill -9 would leave it)
    api.engine.complete(item["id"], "ann", done["data"],
                        idempotency=_action_claim("ann", "done", path, done))
    retry = api.post("ann", path, done, headers=key("done"))
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true"
    body = retry.json()
    assert (body["id"], body["status"], body["completed_by"]) == (item["id"], "completed", "ann")
    assert body["run"]["id"] == item["run_id"] and body["data"] == {"resolution": "close"}
    assert api.post("ann", path, done, headers=key("done")).json() == body  # kept now
    events = [e for e in api.engine.run_events(item["run_id"]) if e["type"] == "work_item_completed"]
    assert len(events) == 1


def test_concurrent_retries_of_an_action_do_it_once(api: Api) -> None:
    """Four requests with one key at once: one completes the item, the others wait for it
    and answer what it did (PostgreSQL: on the key's row; SQLite: its one writer)."""
    item = api.item_of(api.new_case()["id"])
    path = f"/api/work/{item['id']}/complete"
    answers: list[Any] = []
    go = threading.Barrier(4)

    def send() -> None:
        go.wait()
        answers.append(api.post("ann", path, {"data": {"resolution": "close"}},
                                headers=key("race")))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
    assert sum("Idempotent-Replayed" in a.headers for a in answers) == 3
    # (a duplicate that waited may answer before the first kept its answer: from the item
    # as it is then, the same completion)
    assert len({(b["id"], b["status"], b["version"], b["completed_by"], b["run"]["id"])
                for b in (a.json() for a in answers)}) == 1
    events = api.engine.run_events(item["run_id"])
    assert [e["type"] for e in events].count("work_item_completed") == 1


# ---- an action committed with its key, its answer lost: the retry rebuilds it ------------
@dataclass(frozen=True)
class Lost:
    """An action its service did with the request's key claimed (as the endpoint has it
    done), its answer never kept: ``setup`` makes what it acts on; ``do(api, id, claim)``
    acts, answering what the endpoint would have; ``model``: the endpoint's response model;
    ``now(api, id)``: what a GET shows of the thing acted on, as the answer has it;
    ``shows(answer)`` is ``expect`` once the workers ran; ``stable``: the answer stays the
    first one's (what the action made does not move on)."""

    setup: Callable[[Api], Made]
    verb: str
    resource: str
    do: Callable[[Api, str, IdempotencyClaim], dict[str, Any]]
    model: Callable[[], type[Any]]
    now: Callable[[Api, str], Any]
    shows: Callable[[dict[str, Any]], Any]
    expect: Any
    stable: bool = True


def _step_of(run: dict[str, Any], name: str) -> str:
    (status,) = [s["status"] for s in run["steps"] if s["name"] == name]
    return str(status)


def _run_model() -> type[Any]:
    from baton.web.api.runs import RunDetail

    return RunDetail


def _incident_model() -> type[Any]:
    from baton.web.api.incidents import Incident

    return Incident


def _canceled_model() -> type[Any]:
    from baton.web.api.plans import Canceled

    return Canceled


def _run_now(api: Api, id: str) -> Any:
    return api.get("opal", f"/api/runs/{id.partition(':')[0]}").json()


def _plan_now(api: Api, id: str) -> Any:
    plan = api.get("opal", f"/api/plans/{id}").json()
    assert plan["status"] == "canceled", plan
    comp = plan["compensation"]
    return {"order_id": id, "run_id": plan["run_id"], "compensation_run_id": comp["run_id"],
            "rollbacks": [s["name"] for s in comp["steps"]]}


def _resolve(action: str) -> Callable[[Api, str, IdempotencyClaim], dict[str, Any]]:
    return lambda api, id, claim: api.engine.run_detail(api.engine.resolve_fallout(
        id, action, reason=WHY["reason"], actor="opal", idempotency=claim))


LOST: dict[str, Lost] = {
    "run cancel": Lost(
        _waiting, "cancel", "run",
        lambda api, id, claim: api.engine.run_detail(api.engine.cancel_run(
            id, WHY["reason"], actor="opal", idempotency=claim)),
        _run_model, _run_now, lambda b: (b["status"], _step_of(b, "docs")),
        ("canceled", "canceled")),
    # (retried, the step fails again: the answer is the run as it is, in fallout again)
    "fallout retry": Lost(_fallout, "retry", "run", _resolve("retry"), _run_model, _run_now,
                          lambda b: (b["status"], _step_of(b, "boom"), _step_of(b, "after_boom")),
                          ("in_progress", "fallout", "not_started"), stable=False),
    # (skipped, the step after it ran and the run completed)
    "fallout skip": Lost(_fallout, "skip", "run", _resolve("skip"), _run_model, _run_now,
                         lambda b: (b["status"], _step_of(b, "boom"), _step_of(b, "after_boom")),
                         ("completed", "skipped", "completed"), stable=False),
    "incident dismiss": Lost(
        _incident, "dismiss", "incident",
        lambda api, id, claim: api.engine.dismiss_incident(
            id, reason=WHY["reason"], actor="opal", idempotency=claim),
        _incident_model, lambda api, id: api.get("opal", f"/api/incidents/{id}").json(),
        lambda b: b["status"], "dismissed"),
    "plan cancel": Lost(
        _order, "cancel", "plan",
        lambda api, id, claim: api.engine.plans.cancel(id, WHY["reason"], "opal",
                                                       idempotency=claim),
        _canceled_model, _plan_now, lambda b: bool(b["rollbacks"]), True),
}


def _lost_answer_is_rebuilt(api: Api, action: str) -> None:
    """``action`` committed with its key, its answer never kept (what a kill -9 between the
    commit and keeping it leaves), then the workers ran: the retry answers 200, replayed,
    from the thing as it is now, and does nothing more (its events counted)."""
    lost = LOST[action]
    base, who = lost.setup(api)
    path, k, id = f"{base}/{lost.verb}", f"lost {action}", base.rsplit("/", 1)[1]
    claim = IdempotencyClaim(who, k, "POST", path, fingerprint("POST", path, WHY),
                             lost.resource)
    first = lost.model().model_validate(lost.do(api, id, claim)).model_dump(mode="json")
    with api.engine.store.read() as tx:
        kept = tx.idempotency_key_txn(who, k)
    assert kept is not None and kept["response"] is None and kept["resource_id"], kept
    api.work()
    done = _events(api)
    retry = api.post(who, path, WHY, headers=key(k))
    assert retry.status_code == 200, (action, retry.text)
    assert retry.headers["Idempotent-Replayed"] == "true"
    body = retry.json()
    assert body == lost.now(api, id), action
    assert lost.shows(body) == lost.expect, (action, body)
    assert (body == first) is lost.stable, action
    assert _events(api) == done, action  # (every action is audited: none was done again)
    again = api.post(who, path, WHY, headers=key(k))  # (kept now: the same answer)
    assert (again.status_code, again.json()) == (200, body), action
    assert again.headers["Idempotent-Replayed"] == "true"
    assert _events(api) == done, action


@pytest.mark.parametrize("action", list(LOST))
def test_a_lost_action_answer_is_rebuilt_from_what_it_acted_on(one_api: Api,
                                                               action: str) -> None:
    _lost_answer_is_rebuilt(one_api, action)


def test_lost_action_answers_are_rebuilt_on_postgresql(pg_url: str) -> None:
    api = Api(pg_url, VirtualClock())
    try:
        for action in ("fallout skip", "plan cancel"):
            _lost_answer_is_rebuilt(api, action)
    finally:
        api.close()
