"""The worker's side of :class:`baton.steps.base.Connections`: deployed connections by
name and their secrets, resolved at call time (nothing here is stored or logged)."""

from __future__ import annotations

from collections.abc import Callable

from baton.connections.secrets import Secrets
from baton.definitions.model import ConnectionDefinition, SecretRef
from baton.settings import Settings


class WorkerConnections:
    """Connections for the step types of one worker process.

    Args:
        lookup: the active version of a connection by name (the definitions repository's
            ``connection``; raises ``NotFound`` for an unknown name).
        secrets: where secret references are resolved.
        project_dir: the project folder (relative paths of connections); None: the cwd.
    """

    def __init__(self, lookup: Callable[[str], ConnectionDefinition], secrets: Secrets,
                 project_dir: str | None = None) -> None:
        self._lookup = lookup
        self._secrets = secrets
        self.project_dir = project_dir

    @classmethod
    def from_settings(cls, lookup: Callable[[str], ConnectionDefinition],
                      settings: Settings) -> WorkerConnections:
        return cls(lookup, Secrets(settings.environ, settings.secrets_file),
                   settings.project_dir)

    def connection(self, name: str) -> ConnectionDefinition:
        return self._lookup(name)

    def secret(self, ref: SecretRef) -> str:
        return self._secrets.resolve(ref)
