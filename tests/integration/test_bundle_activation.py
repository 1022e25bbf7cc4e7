"""A bundle's activations (``baton import``) go through the checks an activation or a deploy
makes (:meth:`baton.runtime.definitions.DefinitionRepo.set_active`): a routing rule bound to
a queue another active rule holds, a version that does not fit the object types, an object
type the active definitions reading it would not fit, a rule naming a category its
classifier cannot answer. Judged on the state the import leaves (what it activates and
deactivates together), when it is planned (``--dry-run`` says it) and again when it is
applied, under the definitions lock (a write committed in between is seen); refused whole,
nothing written, each problem located in the bundle entry it comes from. What a version's
steps name (a connection, a child orchestration) must be active after it, as a deploy
refuses one naming what is not deployed. A bundled user created or changed by another
process since the plan: refused too, naming them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from baton import Engine
from baton.ai.trained import read_csv, train
from baton.errors import DefinitionError, TransitionConflict
from baton.runtime.bundle import apply_import, plan_import
from tests.integration.test_ai_leftovers import NO_ARRIVAL, ORCH
from tests.integration.test_ai_train import ROWS, write_csv

RULE = """kind: routing
name: {name}
{bound}from: {{queue: tier1}}
strategy: round_robin
"""
TICKET = """kind: object
name: Ticket
fields:
  subject: {{type: string, required: true}}
  {note}: {{type: string}}
"""
WATCH = """kind: orchestration
name: {name}
trigger: {{type: record, object: Ticket, on: [create]}}
stages:
  - name: s
    steps:
      - {{name: look, type: pause, signal: go, when: '=record.{note} != ""'}}
"""


def _entry(kind: str, name: str, source: str, *, active: bool = True,
           version: int = 1) -> dict[str, Any]:
    return {"kind": kind, "name": name, "version": version, "active": active,
            "file": f"{name}.yaml", "source": source}


def _bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"manifest.json": {"format": 1}, "definitions.json": list(entries)}


def _state(eng: Engine) -> tuple[int, list[tuple[str, str, int, bool]], int]:
    """The definitions generation, every version (kind, name, version, active) and the
    imports recorded: what a refused import must leave as it was."""
    with eng.store.read() as tx:
        gen = tx.definitions_generation_txn()
        imported = len(tx.events_txn(types=["bundle_imported"]))
    rows = sorted((r.kind, r.name, r.version, r.active)
                  for r in eng.definitions.list_versions())
    return gen, rows, imported


def _refused(eng: Engine, bundle: dict[str, Any], plan: Any = None) -> list[Any]:
    """The issues refusing ``bundle`` (``plan``: one made earlier, applied now), checked
    to have written nothing."""
    before = _state(eng)
    with pytest.raises(DefinitionError) as refused:
        apply_import(eng, plan if plan is not None else plan_import(eng, bundle), "test")
    assert _state(eng) == before, "a refused import writes nothing"
    return list(refused.value.issues)


def _active(eng: Engine) -> dict[tuple[str, str], int]:
    return {(r.kind, r.name): r.version for r in eng.definitions.list_versions() if r.active}


def test_a_rule_bound_to_a_queue_an_active_rule_holds_is_refused_unless_the_bundle_frees_it(
        db_url: str) -> None:
    bound = "for_queue: true\n"
    second = _entry("routing", "second", RULE.format(name="second", bound=bound))
    first_text = RULE.format(name="first", bound=bound)
    with Engine(db_url) as eng, Engine(db_url) as other:
        plan = plan_import(eng, _bundle(second))  # (no rule holds tier1 yet)
        other.deploy(texts={"first.yaml": first_text})  # (another process, before the apply)
        for made in (plan, None):  # applied as planned; planned again (a dry run says it)
            (issue,) = _refused(eng, _bundle(second), made)
            assert (issue.file, issue.line, issue.path) == (
                "definitions/routing/second/v1.yaml", 3, "for_queue")
            assert issue.message == (
                "queue 'tier1' already has a routing rule: 'first' is deployed and active "
                "(one rule per queue: deactivate it, or deploy it without for_queue, first)")

        # The state after counts: the bundle deactivates 'first' (its text as deployed
        # here) while it activates 'second'.
        freed = _bundle(second, _entry("routing", "first", first_text, active=False))
        apply_import(eng, plan_import(eng, freed), "test")
        active = _active(eng)
        assert active.get(("routing", "second")) == 1 and ("routing", "first") not in active

        # An entry is one version of one definition; one version of each is active at most.
        other_v2 = {**second, "version": 2,
                    "source": second["source"].replace("round_robin", "least_loaded")}
        (issue,) = _refused(eng, _bundle(second, other_v2))
        assert (issue.file, issue.message) == (
            "definitions/routing/second/v2.yaml",
            "routing 'second' has two active versions in the bundle (v1 and v2): one at most")
        two = RULE.format(name="third", bound="") + "---\n" + RULE.format(name="fourth", bound="")
        (issue,) = _refused(eng, _bundle(_entry("routing", "third", two)))
        assert issue.message == ("the text defines 2 definitions (routing 'third', routing "
                                 "'fourth'), not one")


def test_object_types_and_their_readers_are_judged_together_and_again_when_applied(
        db_url: str) -> None:
    v1, v2 = TICKET.format(note="old_note"), TICKET.format(note="new_note")
    watch_v2 = WATCH.format(name="watch", note="new_note")
    together = _bundle(_entry("object", "Ticket", v2), _entry("orchestration", "watch", watch_v2))
    with Engine(db_url) as eng, Engine(db_url) as other:
        eng.deploy(texts={"t.yaml": v1, "w.yaml": WATCH.format(name="watch", note="old_note")})

        # Ticket v2 alone would break 'watch' (active here, reading old_note) ...
        (issue,) = _refused(eng, _bundle(_entry("object", "Ticket", v2)))
        assert issue.file == "w.yaml" and "old_note" in issue.message
        assert "(in orchestration 'watch' v1, deployed and active, which the new version of " \
               "Ticket would break" in issue.message, issue.message
        # ... with watch v2 reading new_note, the two fit each other: planned.
        plan = plan_import(eng, together)

        # Another process deploys an orchestration reading old_note (it fits Ticket v1):
        # applied now, the import would break it. Refused; planned again, refused too.
        other.deploy(texts={"a.yaml": WATCH.format(name="audit", note="old_note")})
        for made in (plan, None):
            (issue,) = _refused(eng, together, made)
            assert issue.file == "a.yaml" and "old_note" in issue.message
            assert "(in orchestration 'audit' v1, deployed and active, which the new version " \
                   "of Ticket would break" in issue.message, issue.message
        other.definitions.set_active("orchestration", "audit", None, "test")
        apply_import(eng, plan_import(eng, together), "test")
        assert _active(eng)[("object", "Ticket")] == 2
        assert _active(eng)[("orchestration", "watch")] == 2

        # A version planned against Ticket v2 (it reads new_note) that Ticket no longer
        # has when it is applied (another process made v1 active again): refused.
        late = _bundle(_entry("orchestration", "late", WATCH.format(name="late", note="new_note")))
        plan = plan_import(eng, late)
        other.definitions.set_active("orchestration", "watch", None, "test")
        other.definitions.set_active("object", "Ticket", 1, "test")
        for made in (plan, None):
            issues = _refused(eng, late, made)
            assert issues and all(i.file == "definitions/orchestration/late/v1.yaml"
                                  for i in issues), issues
            assert any("new_note" in i.message for i in issues), issues
            # (planned again, its text is refused as a deploy of it would be)
            assert made is None or all(i.message.endswith(
                "(orchestration 'late' v1 of the bundle does not fit the object types active "
                "after the import)") for i in issues), issues
        assert ("orchestration", "late") not in _active(eng)


def test_a_rule_naming_a_label_the_classifier_dropped_since_the_plan_is_refused(
        db_url: str, tmp_path: Path) -> None:
    obj, flow = ORCH.split("---\n")
    bundle = _bundle(_entry("object", "Message", obj),
                     _entry("orchestration", "t_routed", flow))
    with Engine(db_url) as eng:
        texts, labels = read_csv(write_csv(tmp_path / "v1.csv", ROWS))
        train(eng.store, "banking", texts, labels, source="v1.csv", actor="test",
              now="2026-01-01T00:00:00Z")
        plan = plan_import(eng, bundle)  # (banking v1 knows card_arrival)
        texts, labels = read_csv(write_csv(tmp_path / "v2.csv", NO_ARRIVAL))
        v2 = train(eng.store, "banking", texts, labels, source="v2.csv", actor="test",
                   now="2026-01-02T00:00:00Z")
        assert v2["unknown_categories"] == []  # (nothing deployed names it)
        for made in (plan, None):
            (issue,) = _refused(eng, bundle, made)
            assert (issue.file, issue.path) == ("definitions/orchestration/t_routed/v1.yaml",
                                                "stages[0].next[0].when")
            assert issue.line == next(i for i, line in enumerate(flow.splitlines(), 1)
                                      if "card_arrival" in line)
            assert issue.message.startswith(
                "names category 'card_arrival' of ai step 'intent', which its classifier "
                "'banking' (v2, the latest) does not know"), issue.message
        assert _active(eng) == {}


KID = """kind: orchestration
name: kid
trigger: {type: autolaunched, input: {n: {type: int, required: true}}}
stages:
  - name: s
    steps:
      - {name: hold, type: pause, signal: go}
"""
BANK = "kind: connection\nname: bank\ntype: http\nbase_url: http://127.0.0.1:9\n"
PARENT = """kind: orchestration
name: parent
trigger: {type: autolaunched}
stages:
  - name: s
    steps:
      - {name: call, type: callout, connection: bank, method: POST, path: /x}
      - {name: kids, type: orchestration, orchestration: kid, input: {n: 1}}
"""


def test_what_the_steps_name_must_be_active_after_the_import(db_url: str) -> None:
    parent = _entry("orchestration", "parent", PARENT)
    where = "definitions/orchestration/parent/v1.yaml"
    after = ("(orchestration 'parent' v1 of the bundle, judged on the connections and "
             "orchestrations active after the import)")
    with Engine(db_url) as eng, Engine(db_url) as other:
        eng.deploy(texts={"bank.yaml": BANK, "kid.yaml": KID})
        # The bundle deactivates what its orchestration calls (active here: the deploy's
        # check of its text, with what is active now, passes).
        (issue,) = _refused(eng, _bundle(parent, _entry("connection", "bank", BANK,
                                                        active=False)))
        assert (issue.file, issue.path) == (where, "stages[0].steps[0].connection"), issue
        assert issue.message == f"unknown connection 'bank' {after}"
        # A new version of the child taking another input: judged with it.
        kid_v2 = KID.replace("{n: {type: int, required: true}}", "{m: {type: int, "
                             "required: true}}")
        issues = _refused(eng, _bundle(parent, _entry("orchestration", "kid", kid_v2)))
        assert issues and all(i.file == where and i.message.endswith(after)
                              and "stages[0].steps[1]" in i.path for i in issues), issues

        # Planned with 'kid' active; another process deactivates it before the apply:
        # refused, as a deploy of the text would be now (the same message, located).
        plan = plan_import(eng, _bundle(parent))
        other.definitions.set_active("orchestration", "kid", None, "test")
        with pytest.raises(DefinitionError) as deployed:
            other.deploy(texts={"parent.yaml": PARENT})
        (said,) = deployed.value.issues
        for made in (plan, None):
            (issue,) = _refused(eng, _bundle(parent), made)
            assert (issue.file, issue.path) == (where, said.path)
            assert issue.message == f"{said.message} {after}"
        # The bundle brings it back (active): imported, both active.
        apply_import(eng, plan_import(eng, _bundle(parent, _entry("orchestration", "kid",
                                                                  KID))), "test")
        active = _active(eng)
        assert active[("orchestration", "parent")] == 1
        assert active[("orchestration", "kid")] == 1


def test_a_bundled_user_created_or_changed_since_the_plan_refuses_the_import(
        db_url: str) -> None:
    bundle = {**_bundle(), "people.json": [
        {"name": "ana", "roles": ["agent"], "groups": [], "queues": ["tier1"]}]}
    with Engine(db_url) as eng, Engine(db_url) as other:
        def refused(plan: Any, message: str) -> None:
            before = _state(eng), eng.directory.get_user("ana")
            with pytest.raises(TransitionConflict) as exc:
                apply_import(eng, plan, "test")
            assert str(exc.value) == message
            assert (_state(eng), eng.directory.get_user("ana")) == before

        plan = plan_import(eng, bundle)  # (ana: added)
        other.directory.add_user("ana", roles=["admin"])
        created = ("user 'ana' was created since this import was planned: nothing was "
                   "imported; import the bundle again to plan it against them")
        refused(plan, created)
        # (created after that check read, on PostgreSQL: the insert's unique key says it,
        # the same way; as if the check had seen no 'ana' either way)
        plan.people.clear()
        refused(plan, created)
        plan = plan_import(eng, bundle)  # (ana: updated: roles, queues)
        assert [c.action for c in plan.changes] == ["update: roles, queues"]
        other.directory.update_user("ana", queues=["tier2"], display_name="Ana")
        refused(plan, "user 'ana' was changed (display_name, queues) since this import was "
                      "planned: nothing was imported; import the bundle again to plan it "
                      "against them")
        apply_import(eng, plan_import(eng, bundle), "test")
        ana = eng.directory.get_user("ana")
        assert (sorted(ana.roles), sorted(ana.queues)) == (["agent"], ["tier1"])
