"""Who a work item may be given to, and the names of who acts on it: the checks
:class:`~baton.work.service.WorkService` makes of what its callers pass (the API, the CLI,
the Work Guide and the Python API all go through it).

A reassignment's target is ``user:NAME``, ``group:NAME`` or ``queue:NAME`` (NAME as the
directory spells names). A **user** must be in the directory once it has people in it (a
project without users yet acts unchecked, as ``baton work claim --user`` does), and active:
a deactivated person's item would wait for someone who cannot sign in. A **group** must be
known:

* the directory names it: someone is in it, active or not. A group whose people are all
  deactivated (or away) right now is still a group: a manager may park work there while its
  people are off, and it is in their Work Guide when they are back;
* or a deployed definition names it: an active routing rule draws its candidates from it,
  an active orchestration's step assigns to it (literally, or through an inline routing
  rule) or reassigns to it from an SLA action, or the item's own run's definition does
  (the version the run is pinned to, a plan's generated definition).

Any other group is a typo or one that no longer exists: the item would be in nobody's
Work Guide, so it is refused with the groups that are known. A **queue** is checked the
same way (``baton.work.service``): someone is in it, or a deployed definition names it, so
a definition's queue may hold work before anyone joins it, and a typo is refused. Names an
``assign`` expression spells out (``="x" ? "eu_desk" : "us_desk"``) count as named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from baton.auth.directory import NAME_RE
from baton.definitions.checks import describe, suggest
from baton.definitions.model import AssigneeKind, OrchestrationDefinition
from baton.errors import NotFound, ValidationError
from baton.expressions import is_expression
from baton.steps.interactive import resolve_resource
from baton.work.items import ASSIGNEE_KINDS

if TYPE_CHECKING:
    from baton.runtime.definitions import DefinitionRepo
    from baton.store.ports import Transaction

TARGET = "expected user:NAME, group:NAME or queue:NAME"
SHOWN = 20  # known groups an error lists (then how many more)


def acting_name(value: object, field: str, what: str) -> str:
    """``value`` as the name of who acts on an item (claims, completes, reassigns it...).

    Raises:
        ValidationError: (``what``, naming ``field``) when it is not a string, is empty or
            blank, or has spaces around it: the item would be claimed or completed by
            nobody, or by a name no one signs in as.
    """
    if not isinstance(value, str):
        problem = f"expected the name of who acts, got {describe(value)}"
    elif not value.strip():
        problem = "is empty: give the name of who acts"
    elif value[0].isspace() or value[-1].isspace():
        problem = f"{value!r} has spaces around it: give the name as the directory has it"
    else:
        return value
    raise ValidationError(what, {field: problem})


def parse_target(to: object) -> tuple[str, str]:
    """``user:NAME``, ``group:NAME`` or ``queue:NAME`` as (kind, name): its spelling only.

    Raises:
        ValidationError: ("reassign", naming ``to``) when it is anything else.
    """
    if not isinstance(to, str):
        raise ValidationError("reassign", {"to": f"{TARGET}, got {describe(to)}"})
    kind, _, name = to.partition(":")
    if kind not in ASSIGNEE_KINDS or not name:
        raise ValidationError("reassign", {"to": f"{TARGET}, got {to!r}"})
    if not NAME_RE.fullmatch(name):
        raise ValidationError("reassign", {"to": (
            f"{name!r} is not a {kind} name: use letters, digits, _ . @ - (at most 200, "
            "starting with a letter or digit)")})
    return kind, name


def unknown_group(name: str, known: set[str]) -> ValidationError:
    """The error for a group neither the directory nor a definition names."""
    names = sorted(known)
    if not names:
        listed = ("no group is known yet: put people in one (`baton users add|update "
                  "--group`) or name it in a definition")
    else:
        more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
        listed = f"known groups: {', '.join(names[:SHOWN])}{more}"
    return ValidationError("reassign", {"to": (
        f"there is no group {name!r}{suggest(name, names)}: nobody is in it and no deployed "
        f"definition names it, so the item would be in no one's Work Guide; {listed}")})


def groups_named(defn: OrchestrationDefinition) -> set[str]:
    """The groups an orchestration names: its steps assign to them (a literal group or
    resource, an inline routing rule), the routing rules it uses draw from them, or an
    SLA action reassigns to them. (A group an expression computes is not known here.)"""
    out = {rule.pool for rule in defn.routings.values() if rule.pool_kind == "group"}
    for stage in defn.stages:
        for step in stage.steps:
            given = step.assign
            if given is not None and given.rule is not None:
                if given.rule.pool_kind == "group":
                    out.add(given.rule.pool)
            elif given is not None and not is_expression(given.value):
                if given.kind is AssigneeKind.GROUP:
                    out.add(given.value)
                elif given.kind is AssigneeKind.RESOURCE:
                    resolved = resolve_resource(given.value)
                    if resolved is not None and resolved[0] == "group":
                        out.add(resolved[1])
            sla = step.options.get("sla")
            for key in ("on_jeopardy", "on_overdue"):
                action = sla.get(key) if isinstance(sla, Mapping) else None
                to = action.get("reassign") if isinstance(action, Mapping) else None
                kind, _, name = to.partition(":") if isinstance(to, str) else ("", "", "")
                if kind == "group" and name:
                    out.add(name)
    return out


def deployed_groups_txn(tx: Transaction, definitions: DefinitionRepo,
                        run_id: str | None) -> set[str]:
    """The groups the deployed definitions name (read in the caller's transaction): the
    active orchestrations' and routing rules', and those of run ``run_id``'s definition."""
    definitions.refresh(tx)
    out: set[str] = set()
    for defn in definitions.active_orchestrations():
        out |= groups_named(defn)
    for row in tx.list_definitions_txn("routing"):
        rule = definitions.routing_rule(row.name) if row.active else None
        if rule is not None and rule.pool_kind == "group":
            out.add(rule.pool)
    run = tx.get_run_txn(run_id) if run_id else None
    if run is not None:
        try:
            pinned, _ = definitions.orchestration(run["orchestration"], run["version"], tx)
        except NotFound:  # (its plan is gone: nothing more to learn from it)
            return out
        out |= groups_named(pinned)
    return out
