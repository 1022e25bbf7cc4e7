"""Whether a claim on a user's work item by someone else still stands.

A user's item is claimed by someone else only as the user's delegate (an approval, while
the delegation is in force: :class:`~baton.auth.directory.Delegation`). The claim stands
while the claimer still acts for the assignee; it no longer does once

* the assignee's delegation ended (``--no-delegate``), names someone else now, or is out
  of its dates today (UTC);
* the claimer is deactivated, no longer has a role with the ``work`` permission, or is no
  longer a user.

Such a claim is not released by itself (nothing happens when a date passes): it is judged
when someone acts on the item. The stale claimer may no longer complete it (they may
release it); the assignee, or whoever is her delegate now, may claim it (takes it back,
audited with the reason) or complete it straight away. Should the claimer act for the
assignee again before that (the delegation comes back), their claim stands again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from baton.auth.directory import APPROVAL, delegation_of
from baton.auth.roles import Permission, permissions
from baton.engine.status import WorkItemStatus

_CLAIMED = WorkItemStatus.CLAIMED.value
TAKEN_FROM = "taken_back_from"  # a take-back's claim event: whose claim it ended


def held_for_another(item: Mapping[str, Any]) -> bool:
    """Is ``item`` a user's item that someone else claimed (as their delegate)?"""
    claimer = item.get("claimed_by")
    return bool(item.get("status") == _CLAIMED and item.get("assignee_kind") == "user"
                and claimer and claimer != item.get("assignee"))


def claim_gone(item: Mapping[str, Any], claimer: Mapping[str, Any] | None,
               assignee: Mapping[str, Any] | None, today: str) -> str | None:
    """Why the claim on ``item`` no longer stands, said of its claimer as a relative clause
    ("whose delegation from dora ended", "who is deactivated"), or None while it stands
    (or when the item is not :func:`held_for_another`). ``claimer`` and ``assignee`` are
    their user rows as stored now (None: no such user); ``today`` is YYYY-MM-DD (UTC)."""
    if not held_for_another(item):
        return None
    return not_acting_for(item, str(item["claimed_by"]), claimer, assignee, today)


def not_acting_for(item: Mapping[str, Any], name: str, row: Mapping[str, Any] | None,
                   assignee: Mapping[str, Any] | None, today: str) -> str | None:
    """Why ``name`` (their user row: ``row``) does not act for the user ``item`` is assigned
    to (whose row is ``assignee``) as their delegate today, as a relative clause about
    them; None when they do: an approval, a delegation to them in force, and they are an
    active user whose roles give ``work``."""
    whose = item["assignee"]
    if row is None:
        return "who is no longer a user"
    if not row["active"]:
        return "who is deactivated"
    roles = row["roles"] or ()
    if Permission.WORK not in permissions(roles):
        return f"who may no longer work items ({', '.join(sorted(roles)) or 'no role'})"
    if item.get("step_type") != APPROVAL:  # (only approvals are delegated)
        return f"who does not act for {whose} on this item"
    delegation = delegation_of(assignee) if assignee is not None else None
    if delegation is None:
        return f"whose delegation from {whose} ended"
    if delegation.to != name:
        return f"who is no longer {whose}'s delegate ({delegation.to} is)"
    if delegation.until is not None and today > delegation.until:
        return f"whose delegation from {whose} ran until {delegation.until}"
    if delegation.start is not None and today < delegation.start:
        return f"whose delegation from {whose} is not in force until {delegation.start}"
    return None


def taken_back(item: Mapping[str, Any], user: str, why: str) -> dict[str, str]:
    """The claim event's data when ``user`` takes ``item`` over from its stale claimer:
    who had it, and why (their ``reason``, as the timelines show it)."""
    verb = "taken back" if user == item["assignee"] else "taken over"
    return {TAKEN_FROM: item["claimed_by"], "reason": f"{verb} from {item['claimed_by']}, {why}"}


def rows_by_name(rows: list[dict[str, Any]]) -> dict[str, Mapping[str, Any]]:
    return {r["name"]: r for r in rows}
