"""Definitions: every deployed definition with its versions; one definition's YAML, the
validation result of that version (checked again now), a diff of two versions, and
activate/deactivate (definitions:write)."""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from baton.auth.roles import Permission
from baton.errors import BatonError, Issue, NotFound
from baton.store.base import DefinitionRow
from baton.store.sql.metrics import runs_by_stage
from baton.web.api.common import MAX_INT, project_folders, shown_file
from baton.web.diagram import orchestration_svg
from baton.web.security import Principal, engine_of
from baton.web.ui.base import page_need, render

router = APIRouter()
Reader = Annotated[Principal, Depends(page_need(Permission.DEFINITIONS_READ))]
Writer = Annotated[Principal, Depends(page_need(Permission.DEFINITIONS_WRITE))]


@router.get("/definitions")
def definitions_list(request: Request, principal: Reader) -> Response:
    rows = engine_of(request).definitions.list_versions()
    grouped: dict[tuple[str, str], list[DefinitionRow]] = {}
    for row in rows:
        grouped.setdefault((row.kind, row.name), []).append(row)
    items = [{"kind": kind, "name": name, "versions": sorted(vs, key=lambda r: r.version),
              "active": next((v.version for v in vs if v.active), None),
              "latest": max(v.version for v in vs)}
             for (kind, name), vs in sorted(grouped.items())]
    return render(request, "definitions_list.html", principal, {"definitions": items})


@router.get("/definitions/{kind}/{name}")
def definition_page(request: Request, kind: str, name: str, principal: Reader,
                    version: int | None = None, a: int | None = None,
                    b: int | None = None) -> Response:
    eng = engine_of(request)
    versions = sorted(eng.definitions.list_versions(kind, name), key=lambda r: r.version)
    if not versions:
        raise NotFound(kind, name, "see the Definitions page")
    numbers = [v.version for v in versions]
    active = next((v.version for v in versions if v.active), None)
    shown = version if version in numbers else (active or numbers[-1])
    row = next(v for v in versions if v.version == shown)
    warnings: list[Issue] = []
    issues = eng.validate_texts({row.file or f"{name}.yaml": row.source}, warnings=warnings)
    diff: list[dict[str, Any]] | None = None
    if a in numbers and b in numbers and a is not None and b is not None:
        diff = [{"text": line, "css": _diff_class(line)}
                for line in eng.definitions.diff(kind, name, a, b).splitlines()]
    diagram = None
    if kind == "orchestration" and not issues:
        try:
            defn, _ = eng.definitions.orchestration(name, shown)
        except BatonError:
            pass  # (the validation section says why)
        else:
            with eng.store.read() as tx:
                heat = runs_by_stage(tx, name, shown)
            diagram = orchestration_svg(defn, heat=heat)
    # (a deployed file's path as the API shows it: never the server's absolute path)
    folders = project_folders(request)
    files = {v.version: shown_file(v.file, folders) for v in versions}
    issues = [dataclasses.replace(i, file=shown_file(i.file, folders)) for i in issues]
    warnings = [dataclasses.replace(i, file=shown_file(i.file, folders)) for i in warnings]
    return render(request, "definition.html", principal, {
        "diagram": diagram, "files": files,
        "kind": kind, "name": name, "versions": versions, "active": active, "row": row,
        "issues": issues, "warnings": warnings, "diff": diff,
        "schedule": eng.definitions.schedules().get(name) if kind == "orchestration" else None, "a": a if a in numbers else (numbers[-2] if len(numbers) > 1 else numbers[0]),
        "b": b if b in numbers else numbers[-1], "numbers": numbers,
        "may_write": principal.user.can(Permission.DEFINITIONS_WRITE)})


@router.post("/definitions/{kind}/{name}/activate")
def activate(request: Request, kind: str, name: str, principal: Writer,
             version: Annotated[int, Form(ge=1, le=MAX_INT)]) -> Response:
    engine_of(request).definitions.set_active(kind, name, version, principal.name)
    return RedirectResponse(f"/definitions/{kind}/{name}?version={version}", status_code=303)


@router.post("/definitions/{kind}/{name}/deactivate")
def deactivate(request: Request, kind: str, name: str, principal: Writer) -> Response:
    engine_of(request).definitions.set_active(kind, name, None, principal.name)
    return RedirectResponse(f"/definitions/{kind}/{name}", status_code=303)


def _diff_class(line: str) -> str:
    if line.startswith(("+++", "---")):
        return "diff-file"
    if line.startswith("@@"):
        return "diff-hunk"
    if line.startswith("+"):
        return "diff-add"
    if line.startswith("-"):
        return "diff-del"
    return ""
