"""Resolve secret references (``env:NAME``, ``file:NAME``) at call time, in the worker.

A connection holds references only (:class:`~baton.definitions.model.SecretRef`); the value
is looked up here when a call is about to be made and handed to the HTTP/MCP client, never
stored, logged or put into an error. Every message of :class:`SecretError` names the
reference, never a value.

``file:NAME`` reads key ``NAME`` of the secrets file ``baton.toml`` names
(``[secrets] file = "secrets.toml"``, relative to the project folder): a TOML file of
``NAME = "value"`` lines, refused unless only its owner may read it (mode 0600 or stricter).
It is re-read when it changes, so a rotated secret takes effect without a restart.
"""

from __future__ import annotations

import stat
import threading
import tomllib
from collections.abc import Mapping
from pathlib import Path

from baton.definitions.model import OWN_SETTINGS_PREFIX, SecretRef
from baton.errors import BatonError

__all__ = ["SecretError", "Secrets"]


class SecretError(BatonError):
    """A secret reference that cannot be resolved (says which, and why; never a value)."""


class Secrets:
    """Looks secret references up.

    Args:
        environ: where ``env:`` references are read, at each lookup (the entry point passes
            the process environment through :attr:`baton.settings.Settings.secrets_env`).
        file: the secrets file for ``file:`` references; None: there is none.
    """

    def __init__(self, environ: Mapping[str, str], file: str | Path | None = None) -> None:
        self._environ = environ
        self.file = Path(file) if file is not None else None
        self._lock = threading.Lock()
        self._cache: tuple[tuple[int, int, int], dict[str, str]] | None = None

    def resolve(self, ref: SecretRef) -> str:
        """The value ``ref`` points to, or :class:`SecretError`."""
        if ref.source == "env":
            if ref.name.upper().startswith(OWN_SETTINGS_PREFIX):  # (a version stored before
                # validation refused it: never sent anywhere)
                raise SecretError(f"secret {ref}: one of Baton's own settings "
                                  f"({OWN_SETTINGS_PREFIX}*) cannot be read by a connection")
            value = self._environ.get(ref.name)
            if not value:
                raise SecretError(f"secret {ref}: the environment variable {ref.name} is not "
                                  "set (or empty) in the worker's environment")
            return value
        if ref.source == "file":
            values = self._file_values(ref)
            if ref.name not in values:
                raise SecretError(f"secret {ref}: {self.file} has no key {ref.name!r}")
            return values[ref.name]
        raise SecretError(f"secret {ref}: unknown source {ref.source!r} (env or file)")

    def _file_values(self, ref: SecretRef) -> dict[str, str]:
        if self.file is None:
            raise SecretError(f"secret {ref}: no secrets file is configured "
                              '(baton.toml: [secrets] file = "secrets.toml")')
        try:
            st = self.file.stat()
        except OSError as exc:
            raise SecretError(f"secret {ref}: cannot read the secrets file {self.file}: "
                              f"{exc.strerror}") from None
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise SecretError(
                f"secret {ref}: the secrets file {self.file} may be read by others "
                f"(mode {stat.S_IMODE(st.st_mode):04o}); it is used only when its mode is 0600 "
                f"or stricter (chmod 600 {self.file})")
        key = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            try:
                data = tomllib.loads(self.file.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError) as exc:
                raise SecretError(f"secret {ref}: cannot read the secrets file {self.file}: "
                                  f"{type(exc).__name__}") from None
            except tomllib.TOMLDecodeError:
                # The decoder's message may quote the line, which may hold a secret.
                raise SecretError(f"secret {ref}: the secrets file {self.file} is not valid "
                                  'TOML (NAME = "value" lines)') from None
            values = {k: v for k, v in data.items() if isinstance(v, str)}
            self._cache = (key, values)
            return values
