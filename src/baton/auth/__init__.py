"""People: users with roles, their groups and queues, API tokens and UI sessions."""

from baton.auth.directory import Directory, User
from baton.auth.roles import ROLES, Permission, require

__all__ = ["ROLES", "Directory", "Permission", "User", "require"]
