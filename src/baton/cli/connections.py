"""``baton connections``: the connections a project defines or has deployed, and a check
that one works (it connects, authenticates and, for MCP, lists the tools).

The MCP SDK and the HTTP client are imported by the commands that use them, so that
``baton`` itself starts as fast as before.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from baton.cli import complete
from baton.cli.output import console, err_console, print_json, table
from baton.errors import BatonError, Issue, NotFound

if TYPE_CHECKING:  # (the definitions' model loads with the command that reads them)
    from baton.definitions.model import ConnectionDefinition, LoadedDefinition

connections_app = typer.Typer(
    no_args_is_help=True,
    help="Connections to other systems: list them; check that one works.")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _state() -> Any:
    from baton.cli.context import state

    return state


def project_connections(paths: Sequence[Path]) -> dict[str, tuple[ConnectionDefinition, str]]:
    """The connections the files under ``paths`` define (those that are valid): name ->
    (definition, file)."""
    from baton.definitions.loader import check_definitions
    from baton.definitions.model import ConnectionDefinition

    docs, _issues = check_definitions(list(paths), known_flows=None)
    return {d.name: (d.definition, d.file) for d in docs
            if d.kind == "connection" and isinstance(d.definition, ConnectionDefinition)}


def _deployed(eng: Any, name: str) -> ConnectionDefinition | None:
    from baton.definitions.model import ConnectionDefinition

    try:
        conn = eng.definitions.connection(name)
    except NotFound:
        return None
    return conn if isinstance(conn, ConnectionDefinition) else None


def _target(conn: ConnectionDefinition) -> str:
    from baton.connections.mcp import redact_url

    if conn.type == "http":
        return redact_url(conn.base_url or "")
    if conn.transport == "stdio":
        return "stdio: " + " ".join([conn.command or "", *conn.args])
    return "http: " + redact_url(conn.url or "")


@connections_app.command("list")
def connections_list(as_json: JsonOpt = False) -> None:
    """The connections of the project's definitions/ folder and those deployed."""
    st = _state()
    found: dict[str, dict[str, Any]] = {}
    definitions_dir = st.project().definitions_dir
    if definitions_dir.exists():
        for name, (conn, file) in project_connections([definitions_dir]).items():
            found[name] = _row(conn) | {"file": file, "deployed": None}
    eng = st.engine()
    for row in eng.definitions.list_versions("connection"):
        if not row.active:
            continue
        active = _deployed(eng, row.name)
        if active is None:
            continue
        found.setdefault(row.name, _row(active) | {"file": None})["deployed"] = row.version
    rows = [found[n] for n in sorted(found)]
    if as_json:
        print_json(rows)
        return
    table("Connections", ["name", "type", "target", "auth", "deployed", "file"],
          [[r["name"], r["type"], r["target"], r["auth"] or "-",
            f"v{r['deployed']}" if r["deployed"] else "no", r["file"] or ""] for r in rows])


def _row(conn: ConnectionDefinition) -> dict[str, Any]:
    return {"name": conn.name, "type": conn.type, "target": _target(conn),
            "auth": conn.auth.type if conn.auth is not None else None}


@connections_app.command("check")
def connections_check(
    name: Annotated[str, typer.Argument(help="The connection's name", autocompletion=complete.connections)],
    deployed: Annotated[bool, typer.Option(
        "--deployed", help="Check the deployed version (default: the project's file if it "
                           "defines NAME, else the deployed one)")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Connect and authenticate; for an MCP connection, list its tools and their input
    schemas; for an HTTP connection, send GET to its base_url and report the status."""
    from baton.cli.commands import fail

    st = _state()
    conn = None
    definitions_dir = st.project().definitions_dir
    if not deployed and definitions_dir.exists():
        conn = project_connections([definitions_dir]).get(name, (None, ""))[0]
    if conn is None:
        conn = _deployed(st.engine(), name)
    if conn is None:
        fail(f"no connection {name!r} in {definitions_dir} nor deployed "
             "(baton connections list shows them)")
    settings = st.settings()
    from baton.connections.secrets import Secrets

    secrets = Secrets(settings.secrets_env, settings.secrets_file)
    started = time.perf_counter()
    try:
        if conn.type == "mcp":
            result = _check_mcp(conn, secrets, settings.project_dir)
        else:
            result = _check_http(conn, secrets, settings.project_dir)
    except BatonError as exc:
        if as_json:
            print_json({"name": name, "type": conn.type, "target": _target(conn), "ok": False,
                        "error": str(exc)})
            raise typer.Exit(1) from None
        fail(f"connection {name!r} ({_target(conn)}): {exc}")
    result = {"name": name, "type": conn.type, "target": _target(conn), "ok": True,
              "ms": int((time.perf_counter() - started) * 1000), **result}
    if as_json:
        print_json(result)
        return
    console.print(f"[green]ok[/green]: {name} ({result['target']}) answered in "
                  f"{result['ms']} ms", highlight=False)
    if conn.type == "mcp":
        table(f"Tools of {name}", ["tool", "arguments (* required)", "description"],
              [[t["name"], signature(t["input_schema"]),
                (t["description"] or "").strip().splitlines()[0] if t["description"] else ""]
               for t in result["tools"]])
    else:
        console.print(f"GET {result['url']} → HTTP {result['status']}", highlight=False)


def signature(schema: dict[str, Any]) -> str:
    """An input schema as a short line: ``domain: string*, limit: integer``."""
    props = schema.get("properties") if isinstance(schema, dict) else None
    if not isinstance(props, dict) or not props:
        return "(none)"
    required = set(schema.get("required") or ())
    parts = []
    for arg, spec in props.items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        if isinstance(kind, list):
            kind = "|".join(str(k) for k in kind)
        parts.append(f"{arg}: {kind}{'*' if arg in required else ''}")
    return ", ".join(parts)


def _check_mcp(conn: ConnectionDefinition, secrets: Any, project_dir: str | None
               ) -> dict[str, Any]:
    from baton.connections.mcp import McpSessions, endpoint

    sessions = McpSessions()
    try:
        tools = sessions.list_tools(endpoint(conn, secrets.resolve, project_dir))
    finally:
        sessions.close()
    return {"tools": [{"name": t.name, "description": t.description,
                       "input_schema": dict(t.input_schema)} for t in tools]}


def _check_http(conn: ConnectionDefinition, secrets: Any, project_dir: str | None
                ) -> dict[str, Any]:
    """GET base_url through the connection's client (its headers, auth — OAuth2 too —,
    TLS and timeouts), as a callout would send it."""
    import uuid

    from baton.connections.calls import HttpRequest
    from baton.connections.http import HttpConnections

    client = HttpConnections(secrets, project_dir)
    try:
        response = client.call(conn, HttpRequest("GET", "", f"check-{uuid.uuid4().hex}"))
    finally:
        client.close()
    return {"url": response.summary.url, "status": response.status}


def mcp_schema_check(eng: Any, paths: Sequence[Path]) -> tuple[list[Issue], list[Issue], int]:
    """``baton validate``'s second pass: the ``mcp`` steps of the valid orchestrations under
    ``paths`` against the tools their servers list. Returns (problems, steps not checked
    with why, steps checked)."""
    from baton.connections.checks import check_mcp_steps
    from baton.connections.mcp import McpSessions
    from baton.connections.secrets import Secrets
    from baton.definitions.loader import check_definitions
    from baton.definitions.model import ConnectionDefinition
    from baton.steps.mcp import MCP

    docs, _issues = check_definitions(
        list(paths), known_flows=None, deployed_objects=eng.definitions.object_types(),
        deployed_connections=eng.definitions.connection_types())
    if not _has_mcp_steps(docs, MCP.name):
        return [], [], 0
    local = {d.name: d.definition for d in docs
             if d.kind == "connection" and isinstance(d.definition, ConnectionDefinition)}
    settings = eng.settings
    secrets = Secrets(settings.secrets_env, settings.secrets_file)
    sessions = McpSessions()
    try:
        found = check_mcp_steps(docs, lambda n: local.get(n) or _deployed(eng, n),
                                secrets.resolve, settings.project_dir, sessions)
    finally:
        sessions.close()
    return found.issues, found.warnings, found.checked


def _has_mcp_steps(docs: Sequence[LoadedDefinition], type_name: str) -> bool:
    from baton.definitions.model import OrchestrationDefinition

    return any(step.type == type_name for d in docs
               if isinstance(d.definition, OrchestrationDefinition)
               for stage in d.definition.stages for step in stage.steps)


def print_warnings(warnings: Sequence[Issue]) -> None:
    for w in warnings:
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(w))}", highlight=False)
