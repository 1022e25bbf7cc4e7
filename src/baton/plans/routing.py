"""How a fulfillment's step templates route their work, as written: what the definitions'
routing checks (:meth:`baton.runtime.definitions.DefinitionRepo.routing_issues_txn`) judge
of a fulfillment as they do of an orchestration's steps.

A plan's step is its template's step (the engine runs it as an orchestration's step, its
routing rule looked up among the active rules when it starts), so a template whose
``assign: {routing: NAME}`` names a rule not active fails at start, in every plan, and one
routed by a rule reading a field the order lacks falls out at start: refused when the
fulfillment, the rule or the order's object type is deployed, activated, deactivated or
imported, as for an orchestration. A template's ``rollback`` is a step of the plans that
undo it (an interactive rollback routes its task as well). Its SLA actions, and a user it
assigns to, are judged as an orchestration's step's are.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from baton.definitions.checks import item, join
from baton.definitions.routing import step_assignments


def templates(data: Any) -> Iterator[tuple[str, Any]]:
    """``(path, template)`` for each step template of a fulfillment document (plain data, as
    written): a group's (``groups.ship_device[0]``) and a scenario's own
    (``scenarios[1].steps[0]``), in the document's order; shapes that are not these are
    skipped (the fulfillment's own checks report them)."""
    if not isinstance(data, dict):
        return
    groups = data.get("groups")
    for gname, steps in (groups.items() if isinstance(groups, dict) else ()):
        for j, step in enumerate(steps if isinstance(steps, list) else ()):
            yield item(join("groups", str(gname)), j), step
    scenarios = data.get("scenarios")
    for i, sc in enumerate(scenarios if isinstance(scenarios, list) else ()):
        steps = sc.get("steps") if isinstance(sc, dict) else None
        for j, step in enumerate(steps if isinstance(steps, list) else ()):
            yield item(join(item("scenarios", i), "steps"), j), step


def template_assignments(data: Any) -> Iterator[tuple[str, str, str]]:
    """``(path, kind, name)`` for each step template of a fulfillment document, and each
    template's ``rollback``, that names whom its work goes to, as
    :func:`baton.definitions.routing.step_assignments` gives them for an orchestration's
    step (``assign`` naming a routing rule, a queue or a user; an SLA action routing by a
    rule or reassigning to a queue or a user); ``path``:
    ``scenarios[0].steps[1].assign.routing``, ``groups.ship_device[0].rollback.assign.queue``."""
    for path, template in templates(data):
        if isinstance(template, dict):
            yield from step_assignments(path, template)
            yield from step_assignments(join(path, "rollback"), template.get("rollback"))
