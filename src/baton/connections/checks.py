"""Checks that need the other system: an ``mcp`` step's tool and argument names against the
tools its server lists (``baton validate``), when the server can be reached.

A server that cannot be reached (not running, refused auth, a missing secret) is not an
error of the definitions: it is a warning saying the step was not checked, and why.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from baton.connections.mcp import McpError, McpSessions, ToolInfo, endpoint
from baton.definitions.checks import suggest
from baton.definitions.model import (
    ConnectionDefinition,
    LoadedDefinition,
    OrchestrationDefinition,
    SecretRef,
)
from baton.errors import BatonError, Issue

STEP_TYPE = "mcp"


@dataclass
class ToolCheck:
    """What checking the steps against their servers found."""

    issues: list[Issue] = field(default_factory=list)  # the server says the step is wrong
    warnings: list[Issue] = field(default_factory=list)  # a step that could not be checked
    checked: int = 0  # steps checked against a server


def check_mcp_steps(docs: Iterable[LoadedDefinition],
                    connection: Callable[[str], ConnectionDefinition | None],
                    secret: Callable[[SecretRef], str], project_dir: str | None,
                    sessions: McpSessions) -> ToolCheck:
    """Check every ``mcp`` step of the orchestrations in ``docs``; each connection's server
    is asked for its tools once."""
    out = ToolCheck()
    tools: dict[str, list[ToolInfo] | str] = {}  # connection -> its tools, or why not
    for doc in docs:
        defn = doc.definition
        if not isinstance(defn, OrchestrationDefinition):
            continue
        for si, stage in enumerate(defn.stages):
            for ti, step in enumerate(stage.steps):
                if step.type != STEP_TYPE:
                    continue
                path = f"stages[{si}].steps[{ti}]"
                name = str(step.options.get("connection"))
                if name not in tools:
                    tools[name] = _list_tools(name, connection, secret, project_dir, sessions)
                found = tools[name]
                if isinstance(found, str):
                    out.warnings.append(Issue(doc.file, step.line, path,
                                              f"tool and arguments not checked: {found}"))
                    continue
                out.checked += 1
                for message in _step_problems(name, step.options, found):
                    out.issues.append(Issue(doc.file, step.line, path, message))
    return out


def _list_tools(name: str, connection: Callable[[str], ConnectionDefinition | None],
                secret: Callable[[SecretRef], str], project_dir: str | None,
                sessions: McpSessions) -> list[ToolInfo] | str:
    conn = connection(name)
    if conn is None:
        return f"connection '{name}' is neither in these files nor deployed"
    try:
        return sessions.list_tools(endpoint(conn, secret, project_dir))
    except McpError as exc:
        return f"the server of connection '{name}' could not be reached ({exc})"
    except BatonError as exc:  # a secret that cannot be resolved here
        return f"connection '{name}' cannot be used here ({exc})"


def _step_problems(conn: str, options: Mapping[str, Any], tools: list[ToolInfo]) -> list[str]:
    tool = str(options.get("tool"))
    by_name = {t.name: t for t in tools}
    info = by_name.get(tool)
    if info is None:
        listed = ", ".join(sorted(by_name)) or "none"
        hint = suggest(tool, by_name)
        message = (f"tool: the server of connection '{conn}' has no tool '{tool}'{hint} "
                   f"(its tools: {listed})")
        return [message]
    args = dict(options.get("arguments") or {})
    if isinstance(options.get("idempotency_argument"), str):
        args[options["idempotency_argument"]] = None  # (Baton sets it: the call's key)
    known = info.argument_names()
    problems = []
    for arg in args:
        if known and arg not in known:
            problems.append(f"arguments.{arg}: tool '{tool}' has no argument '{arg}'"
                            f"{suggest(arg, known)} (its arguments: {', '.join(known)})")
    for req in info.required():
        if req not in args:
            problems.append(f"arguments: tool '{tool}' requires the argument '{req}'")
    return problems
