"""Roles and what each may do: one table, read by the API, the UI and the CLI.

``admin`` may do everything; ``designer`` owns definitions; ``operator`` runs, fallout,
records and reassigning work, and supervises routing (the Team page: everyone's
availability, capacity and skills); ``agent`` works items assigned to them, their groups or
their queues (that scope is checked per item by :meth:`User.may_work`).
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING

from baton.errors import PermissionDenied

if TYPE_CHECKING:
    from baton.auth.directory import User

ROLES = ("admin", "designer", "operator", "agent")


class Permission(str, Enum):
    DEFINITIONS_READ = "definitions:read"
    DEFINITIONS_WRITE = "definitions:write"  # validate, deploy, activate, deactivate
    RECORDS_READ = "records:read"
    RECORDS_WRITE = "records:write"
    RUNS_READ = "runs:read"
    RUNS_WRITE = "runs:write"  # start, cancel, resume, signal
    FALLOUT = "fallout"  # list and resolve
    WORK = "work"  # list, claim and complete items in one's own scope
    WORK_ALL = "work:all"  # see every item, reassign
    USERS = "users"  # manage users and other people's tokens
    TEAM = "team"  # supervise routing: everyone's availability, capacity, skills; the Team page


P = Permission
GRANTS: dict[str, frozenset[Permission]] = {
    "admin": frozenset(P),
    "designer": frozenset({P.DEFINITIONS_READ, P.DEFINITIONS_WRITE, P.RUNS_READ, P.RECORDS_READ}),
    "operator": frozenset({P.DEFINITIONS_READ, P.RECORDS_READ, P.RECORDS_WRITE, P.RUNS_READ,
                           P.RUNS_WRITE, P.FALLOUT, P.WORK, P.WORK_ALL, P.TEAM}),
    "agent": frozenset({P.WORK}),
}


def permissions(roles: frozenset[str] | set[str] | tuple[str, ...]) -> frozenset[Permission]:
    out: set[Permission] = set()
    for role in roles:
        out |= GRANTS.get(role, frozenset())
    return frozenset(out)


def require(user: User, permission: Permission) -> None:
    if permission not in user.permissions:
        roles = ", ".join(sorted(user.roles)) or "no role"
        raise PermissionDenied(
            f"user {user.name!r} ({roles}) may not do this: it needs the "
            f"'{permission.value}' permission ({_who_has(permission)})")


def _who_has(permission: Permission) -> str:
    roles = [r for r in ROLES if permission in GRANTS[r]]
    return "roles: " + ", ".join(roles)
