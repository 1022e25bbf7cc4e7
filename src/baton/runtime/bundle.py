"""Export and import: definitions (and optionally people) moved between environments as one
``.tar.gz`` bundle — from a test system to production, or into a fresh database.

A bundle holds ``manifest.json`` (what made it), ``definitions.json`` (every exported
version: kind, name, version, whether it was active, file, YAML text) and, with
``include_people``, ``people.json`` (users with their roles, groups and queues; never a
password hash or a token: imported users set a password or get a token where they land).

Import validates everything first — every YAML text through the same loader as
``baton deploy`` (a version it does not make active as a sound definition of its kind: its
fit to the object types is judged when it is activated, as history is stored, not run),
every user's roles and names — and then writes in ONE transaction, or writes nothing. Versions are matched by content: a text the target already has (any of its
versions) is not deployed again; a new text becomes the target's next version. The bundle's
active version becomes the active one; a definition deactivated in the bundle is
deactivated. Run history, records and work are never part of a bundle.

What it makes active goes through the checks an activation (``baton definitions
activate``) and a deploy make, judged on the state the import leaves, all its activations
and deactivations together (an object type's new version and the orchestration reading its
new field fit each other): a version that does not fit the object types, an active
definition or a version runs are on that a changed object type would break, the records
stored under it, a routing rule bound to a queue another active rule holds, a rule naming a
category its ai classifier cannot answer, a step naming a connection or a child
orchestration (or an input it does not take) that is not active after the import (as a
deploy naming what is not deployed and active is refused), an active definition outside the
bundle whose steps call a connection or start an orchestration the import deactivates or
changes so that they no longer fit it (deactivate it, or import a version that fits, in the
same bundle). When planned (a dry run says
it), and again when applied, under the definitions lock: each problem located in its
bundle entry (``definitions/KIND/NAME/vN.yaml``), the whole import refused.

What the plan was worked out from is read again when it is applied: a definition's
versions, and each bundled user as it was (created, or changed, by another process since:
refused, naming the user and what changed, nothing written; planned again, it says what
the import does to them).
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy.exc import IntegrityError

from baton import __version__
from baton.auth.directory import Directory, _check_names, ended_by_new_user_txn
from baton.clock import iso
from baton.definitions.loader import _finish, check_texts, parse_text
from baton.definitions.model import LoadedDefinition, ObjectTypeDefinition
from baton.errors import BatonError, DefinitionError, Issue, TransitionConflict, ValidationError
from baton.runtime import schedules
from baton.runtime.definitions import checksum
from baton.storable import first_problem
from baton.store.migrations import LATEST

if TYPE_CHECKING:
    from baton.runtime.engine import Engine
    from baton.store.ports import Transaction

FORMAT = 1
MAX_BUNDLE_BYTES = 16 * 1024 * 1024
"""The most a bundle may unpack to (``baton import --max-bytes`` reads larger ones): a bundle
is definitions, not data, and its JSON takes up to 25 times its size once read."""
MEMBERS = ("manifest.json", "definitions.json", "people.json")
KIND_ORDER = {"object": 0, "calendar": 1, "connection": 2, "routing": 2, "orchestration": 3}  # what others refer to first


class BundleError(BatonError):
    """The file is not a bundle this Baton can read (what and where is in the message)."""


@dataclass
class Change:
    kind: str  # object | orchestration | calendar | user
    name: str
    action: str  # "new version 3" | "unchanged (v2)" | "add" | "update: roles" | ...
    writes: bool


@dataclass
class ImportPlan:
    changes: list[Change] = field(default_factory=list)
    definitions: list[dict[str, Any]] = field(default_factory=list)  # rows to insert
    activate: list[tuple[str, str, int | None]] = field(default_factory=list)
    users: list[tuple[str, dict[str, Any], bool]] = field(default_factory=list)  # (name, row, new)
    # what the bundle leaves active (its active version of each definition; an object
    # type's latest when none is), as loaded, each located in its bundle entry: judged
    # together on the state after the import (activations_issues_txn), when planned and
    # again when applied; the object types among them: their records too
    heads: list[LoadedDefinition] = field(default_factory=list)
    # the definitions generation those checks read (None: not known, applied: checked again)
    generation: int | None = None
    # (kind, name) of each definition in the bundle -> (its latest version, 0 for none; its
    # active one) in the database as planned: what its version numbers and activations were
    # worked out from (the import is refused if they no longer hold: _check_basis_txn)
    basis: dict[tuple[str, str], tuple[int, int | None]] = field(default_factory=dict)
    # each user in the bundle as the database had them when planned (None: not there):
    # what the plan's add, update or "unchanged" was worked out from (_check_people_txn)
    people: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def writes(self) -> bool:
        return any(c.writes for c in self.changes)

    @property
    def objects(self) -> list[LoadedDefinition]:
        """The object types it leaves active, as loaded (their records are checked)."""
        return [d for d in self.heads if d.kind == "object"]

    @property
    def leaving(self) -> list[tuple[str, str]]:
        """(kind, name) of the definitions it deactivates."""
        return [(kind, name) for kind, name, version in self.activate if version is None]

    def report(self, *, dry_run: bool) -> dict[str, Any]:
        """What the import changes (or would, ``dry_run``), as ``baton import --json``
        prints it and ``POST /api/bundle/import`` answers it."""
        return {"dry_run": dry_run,
                "changes": [{"kind": c.kind, "name": c.name, "change": c.action,
                             "writes": c.writes} for c in self.changes]}


# ---- export -----------------------------------------------------------------------------
def export_bundle(engine: Engine, *, include_people: bool = False,
                  all_versions: bool = False) -> bytes:
    """The bundle (gzip'd tar) of this database's definitions: the active version of each
    (the latest for one that is deactivated), or every version with ``all_versions``."""
    rows = engine.definitions.list_versions()
    projects = _project_folders(engine.settings.project_dir)
    by_name: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        by_name.setdefault((r.kind, r.name), []).append(r)
    exported = []
    for (_kind, _name), versions in sorted(by_name.items()):
        versions.sort(key=lambda r: r.version)
        head = next((v for v in versions if v.active), versions[-1])
        for v in versions if all_versions else [head]:
            exported.append({"kind": v.kind, "name": v.name, "version": v.version,
                             "active": v.active, "file": _portable(v.file, projects),
                             "source": v.source})
    members: dict[str, Any] = {"definitions.json": exported}
    if include_people:
        members["people.json"] = [
            {"name": u.name, "display_name": u.display_name, "email": u.email,
             "roles": sorted(u.roles), "groups": sorted(u.groups), "queues": sorted(u.queues),
             "active": u.active}
            for u in engine.directory.list_users()]
    members["manifest.json"] = {
        "format": FORMAT, "baton": __version__, "schema": LATEST,
        "exported_at": iso(engine.clock.now()), "all_versions": all_versions,
        "definitions": len(exported), "people": len(members.get("people.json", []))}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name in MEMBERS:
            if name in members:
                data = orjson.dumps(members[name], option=orjson.OPT_INDENT_2)
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 0
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _project_folders(project_dir: str | None) -> tuple[PurePosixPath, ...]:
    """The project folder as a deployed file's path may spell it (as given, and with its
    links resolved); none when the engine has no project."""
    if not project_dir:
        return ()
    given = Path(project_dir).absolute()
    return tuple(dict.fromkeys(PurePosixPath(p.as_posix()) for p in (given, given.resolve())))


def _portable(file: str, projects: tuple[PurePosixPath, ...]) -> str:
    """A version's file as a bundle carries it to another environment: relative to the
    project folder (``definitions/case.yaml``, where the same project keeps it there),
    else its name alone. Never the exporting machine's absolute path (its home folder,
    its user name), which names nothing where the bundle lands."""
    if not file:
        return file
    if PureWindowsPath(file).drive or file.startswith("\\"):  # C:\…, \\server\…, \…
        return PureWindowsPath(file).name
    path = PurePosixPath(posixpath.normpath(file))
    if path.is_absolute():
        for project in projects:
            if path.is_relative_to(project) and path != project:
                return path.relative_to(project).as_posix()
        return path.name
    if path.parts and (path.parts[0] == ".." or path.parts[0].startswith("~")):
        return path.name
    return path.as_posix()


# ---- import -----------------------------------------------------------------------------
class _Bounded(io.RawIOBase):
    """The bytes of a decompressing stream, refused (:class:`BundleError`) past ``limit``:
    a few KB of gzip can inflate to GBs, and the tar reader reads a long-name or pax header
    whole, whatever its size, before any member's size can be checked."""

    def __init__(self, stream: gzip.GzipFile, limit: int) -> None:
        self.stream = stream
        self.limit = limit
        self.seen = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.stream.read(min(len(view), self.limit + 1 - self.seen))
        self.seen += len(data)
        if self.seen > self.limit:
            raise BundleError(f"it unpacks to more than {self.limit:,} bytes (at most "
                              f"{self.limit:,} are read; --max-bytes to read more)")
        view[:len(data)] = data
        return len(data)


def _names(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


_PERSON_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "roles": (_names, "a list of names"), "groups": (_names, "a list of names"),
    "queues": (_names, "a list of names"),
    "email": (lambda v: isinstance(v, str), "text"),
    "display_name": (lambda v: isinstance(v, str), "text"),
    "active": (lambda v: isinstance(v, bool), "true or false")}
"""A bundled user's optional fields: whether a value fits (null always does), and what fits."""


def read_bundle(data: bytes, max_bytes: int = MAX_BUNDLE_BYTES) -> dict[str, Any]:
    """The bundle's members, checked for shape (a clear error naming what is wrong).
    ``max_bytes``: the most it may unpack to (its members and the tar's own headers)."""
    out: dict[str, Any] = {}
    try:
        unpacked = _Bounded(gzip.GzipFile(fileobj=io.BytesIO(data), mode="rb"), max_bytes)
        with tarfile.open(fileobj=io.BufferedReader(unpacked), mode="r|") as tar:
            for member in tar:
                if member.name not in MEMBERS or not member.isfile():
                    raise BundleError(f"unexpected member {member.name[:200]!r} in the bundle "
                                      f"(expected {', '.join(MEMBERS)})")
                if member.name in out:
                    raise BundleError(f"{member.name} is in the bundle twice")
                f = tar.extractfile(member)
                assert f is not None
                try:
                    out[member.name] = orjson.loads(f.read())
                except orjson.JSONDecodeError as exc:
                    raise BundleError(f"{member.name}: not JSON: {exc}") from None
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BundleError(f"not a bundle (a .tar.gz from `baton export`): {exc}") from None
    manifest = out.get("manifest.json")
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BundleError(f"manifest.json: missing, or a bundle format other than {FORMAT}")
    defs = out.get("definitions.json")
    if not isinstance(defs, list):
        raise BundleError("definitions.json: missing or not a list")
    for i, d in enumerate(defs):
        if not (isinstance(d, dict) and isinstance(d.get("kind"), str)
                and isinstance(d.get("name"), str) and isinstance(d.get("version"), int)
                and isinstance(d.get("active"), bool) and isinstance(d.get("source"), str)
                and isinstance(d.get("file", ""), str)):
            raise BundleError(f"definitions.json[{i}]: expected kind, name, version, active, "
                              "file and source")
    people = out.get("people.json", [])
    if not isinstance(people, list) or not all(
            isinstance(p, dict) and isinstance(p.get("name"), str) for p in people):
        raise BundleError("people.json: expected a list of users with a name each")
    seen: set[str] = set()
    for i, p in enumerate(people):
        # (each field of the type a user's row has: a number where a list of names goes
        # is said here, not met as a crash later)
        wrong = [f"{k}: expected {what}" for k, (fits, what) in _PERSON_FIELDS.items()
                 if p.get(k) is not None and not fits(p[k])]
        if wrong:
            raise BundleError(f"people.json[{i}] (user {p['name'][:200]!r}): "
                              + ", ".join(wrong))
        if p["name"] in seen:
            raise BundleError(f"people.json[{i}]: user {p['name'][:200]!r} is in it twice")
        seen.add(p["name"])
    for name, value in out.items():  # (what no database stores: NUL, a lone surrogate)
        problem = first_problem(value, name)
        if problem is not None:
            raise BundleError(problem[:500])
    return out


def plan_import(engine: Engine, bundle: Mapping[str, Any]) -> ImportPlan:
    """Validate the bundle against this database and work out what importing it changes.
    Raises :class:`DefinitionError` (every problem, located in the bundle) or
    :class:`ValidationError` (users) and changes nothing."""
    defs = sorted(bundle["definitions.json"],
                  key=lambda d: (KIND_ORDER.get(d["kind"], 9), d["name"], d["version"]))
    engine.definitions.refresh(now=True)  # (checked against what was deployed just now)
    plan = ImportPlan(heads=_validate_definitions(engine, defs))
    now = iso(engine.clock.now())
    with engine.store.read() as tx:
        # (first: the rows read after it are as new as it, or newer; see apply_import)
        plan.generation = tx.definitions_generation_txn()
        existing = tx.list_definitions_txn()
        users = {r["name"]: r for r in tx.user_rows_txn()}
        memberships = {name: tx.memberships_txn(name) for name in users}
        _plan_definitions(plan, defs, existing, now)
        # What the activations it makes would break, judged on the state after it, as a
        # deploy or an activation judges it (a dry run says it too).
        _check_activations_txn(engine, tx, plan, definitions=True)
    for person in bundle.get("people.json", []):
        name = person["name"]
        row = users.get(name)
        plan.people[name] = None if row is None else _person(row, memberships[name])
        _plan_user(plan, person, row, memberships.get(name, []), now)
    return plan


def _plan_definitions(plan: ImportPlan, defs: list[dict[str, Any]], existing: list[Any],
                      now: str) -> None:
    """The plan's definitions: each new text as the target's next version; the bundle's
    active version made the active one (what it was worked out from: ``basis``)."""
    have: dict[tuple[str, str], list[Any]] = {}
    for r in existing:
        have.setdefault((r.kind, r.name), []).append(r)
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for d in defs:
        grouped.setdefault((d["kind"], d["name"]), []).append(d)
    for (kind, name), versions in grouped.items():
        target = sorted(have.get((kind, name), []), key=lambda r: r.version)
        by_sum = {r.checksum: r.version for r in target}
        next_version = (target[-1].version if target else 0) + 1
        active_now = next((r.version for r in target if r.active), None)
        plan.basis[(kind, name)] = (next_version - 1, active_now)
        mapped: dict[int, int] = {}
        for d in versions:
            digest = checksum(d["source"])
            if digest in by_sum:
                mapped[d["version"]] = by_sum[digest]
                plan.changes.append(Change(kind, name, f"unchanged (v{by_sum[digest]})", False))
                continue
            plan.definitions.append({
                "kind": kind, "name": name, "version": next_version, "checksum": digest,
                "source": d["source"], "file": d.get("file") or f"{name}.yaml",
                "active": False, "deployed_at": now, "deployed_by": "import"})
            by_sum[digest] = mapped[d["version"]] = next_version
            plan.changes.append(Change(kind, name, f"new version {next_version}", True))
            next_version += 1
        bundle_active = next((d["version"] for d in versions if d["active"]), None)
        want = mapped[bundle_active] if bundle_active is not None else None
        if want is None and kind == "object":
            want = mapped[versions[-1]["version"]]  # an object type cannot be deactivated
        if want != active_now:
            plan.activate.append((kind, name, want))
            plan.changes.append(Change(kind, name, f"activate v{want}" if want is not None
                                       else "deactivate", True))


def _check_activations_txn(
        engine: Engine, tx: Transaction, plan: ImportPlan, *, definitions: bool
) -> list[tuple[LoadedDefinition, ObjectTypeDefinition, set[str]]]:
    """Refuse (:class:`DefinitionError`, every problem located in its bundle entry) what
    the plan leaves active, judged together on the state after it as ``tx`` sees the
    rest (:meth:`~baton.runtime.definitions.DefinitionRepo.activations_issues_txn`: the
    checks of an activation, of each version it makes active and the active ones it
    leaves so), and the records stored under the object types it changes, by the rules
    of a deploy. ``definitions``: False when they are the ones those were judged on.
    Returns the object types' changes (what the records become: written by the import)."""
    repo = engine.definitions
    issues = repo.activations_issues_txn(tx, plan.heads, plan.leaving, definitions=definitions,
                                         said=_said)
    changes = repo.object_changes_txn(tx, plan.objects)
    issues += repo.changes_break_txn(tx, changes, fills=True)
    if issues:
        raise DefinitionError(issues)
    return changes


def apply_import(engine: Engine, plan: ImportPlan, actor: str) -> None:
    """Write the plan in one transaction (nothing when it changes nothing)."""
    if not plan.writes:
        return
    now_dt = engine.clock.now()
    with engine.store.write() as tx:
        tx.lock_definitions_txn()  # (the definitions' writers, one at a time: as a deploy)
        _check_basis_txn(tx, plan)
        _check_people_txn(tx, plan)
        # What the plan was checked against may have changed since: the records (checked
        # again, in the transaction that changes their object types, as a deploy does),
        # the classifiers' labels, and, if another write committed (the generation moved;
        # the same, nothing did since the plan's checks read it), the other definitions.
        # Judged again here, under the definitions lock, before anything is written.
        changes = _check_activations_txn(
            engine, tx, plan,
            definitions=plan.generation is None
            or tx.definitions_generation_txn() != plan.generation)
        for row in plan.definitions:
            tx.insert_definition_txn(row)
        for kind, name, version in plan.activate:
            tx.set_active_txn(kind, name, version if version is not None else -1)
        # (a new required field's default given, a scale cut with rounding: rounded)
        engine.definitions.rewrite_records_txn(tx, changes, actor, iso(now_dt),
                                               "import of a bundle")
        for name, row, new in plan.users:
            row = dict(row)
            groups, queues = row.pop("groups"), row.pop("queues")
            if new:  # (delegations to that name made before they existed end: audited)
                tx.append_events_txn(ended_by_new_user_txn(tx, name, actor, iso(now_dt)))
                try:
                    tx.insert_user_txn(row)
                except IntegrityError:  # (created since _check_people_txn read: PostgreSQL)
                    raise TransitionConflict(_moved([f"user {name!r} was created"])) from None
            else:
                tx.update_user_txn(name, row)
            tx.set_memberships_txn(name, "group", groups)
            tx.set_memberships_txn(name, "queue", queues)
            # (what waits in their pools may be theirs now: routed after commit)
            tx.enqueue_job_txn("route", None, {"user": name}, iso(now_dt), iso(now_dt))
        # What this transaction wrote, parsed from it, in a repo of its own: the Engine's
        # index (every thread's) gets none of it before it is committed, nor ever if the
        # import is rolled back.
        written = engine.definitions.in_transaction(tx)
        for kind, name, version in plan.activate:
            if kind == "orchestration":
                defn = (written.orchestration(name, version, tx=tx)[0]
                        if version is not None else None)
                schedules.arm_txn(tx, defn, name, version, now_dt, engine.ids)
        tx.append_events_txn([{
            "at": iso(now_dt), "type": "bundle_imported", "actor": actor,
            "record_id": None, "run_id": None,
            "data": {"changes": [f"{c.kind} {c.name}: {c.action}"
                                 for c in plan.changes if c.writes]}}])
        generation = tx.definitions_generation_txn()  # (what this commits)
    # Committed: this Engine's next lookup reads the index again (rolled back: the index
    # never held any of it, nothing to do).
    engine.definitions.invalidate(generation)


def _said(doc: LoadedDefinition) -> str:
    """A head as a message names it: its bundle entry's version (the file says it)."""
    version = doc.file.rsplit("/", 1)[-1].removesuffix(".yaml")
    return f"{doc.kind} '{doc.name}' {version} of the bundle"


def _check_basis_txn(tx: Transaction, plan: ImportPlan) -> None:
    """What the plan was worked out from still holds (read under the definitions lock): a
    deploy, activation or import committed between the plan and now may have taken the
    version numbers it gives its new versions (its version 3 another text now), or
    changed the active version of a definition it leaves as it found it (the bundle's
    active one then). Refused, saying what moved, before anything is written. (A
    definition whose activation the plan makes anyway may have been activated since.)"""
    if not plan.basis:
        return
    numbered = {(d["kind"], d["name"]) for d in plan.definitions}
    activated = {(kind, name) for kind, name, _ in plan.activate}
    now: dict[tuple[str, str], tuple[int, int | None]] = {}
    for row in tx.list_definitions_txn():
        key = (row.kind, row.name)
        if key in plan.basis:
            latest, active = now.get(key, (0, None))
            now[key] = (max(latest, row.version), row.version if row.active else active)
    moved = []
    for key, (latest, active) in sorted(plan.basis.items()):
        latest_now, active_now = now.get(key, (0, None))
        what = f"{key[0]} {key[1]!r}"
        if key in numbered and latest_now != latest:
            moved.append(f"{what}: v{latest_now} is its latest version now, v{latest} was"
                         if latest else f"{what}: v{latest_now} deployed")
        elif key not in activated and active_now != active:
            moved.append(f"{what}: " + (f"v{active_now} is active now" if active_now
                                        else "none is active now") + ", "
                         + (f"v{active} was" if active else "none was"))
    if moved:
        raise TransitionConflict(
            "the definitions changed since this import was planned (" + "; ".join(moved)
            + "): nothing was imported; import the bundle again to plan it against them")


def _person(row: Mapping[str, Any], members: list[tuple[str, str]]) -> dict[str, Any]:
    """What an import sets of a user (and compares), as the database has it."""
    return {"display_name": row["display_name"], "email": row["email"],
            "roles": sorted(row["roles"]), "active": bool(row["active"]),
            "groups": sorted(n for k, n in members if k == "group"),
            "queues": sorted(n for k, n in members if k == "queue")}


def _moved(what: list[str]) -> str:
    return ("; ".join(what) + " since this import was planned: nothing was imported; "
            "import the bundle again to plan it against them")


def _check_people_txn(tx: Transaction, plan: ImportPlan) -> None:
    """The bundle's users are as the plan found them (another process may have created
    one it adds, or changed one it updates or leaves unchanged): else refused, naming
    each and what changed, before anything is written. Not made "exists now" and
    written over: what another administrator just gave them (roles, queues) would be
    replaced by what no one has seen (the plan said "add"); planned again, the changes
    say what the import does to them."""
    if not plan.people:
        return
    rows = {r["name"]: r for r in tx.user_rows_txn(list(plan.people))}
    moved = []
    for name, had in sorted(plan.people.items()):
        row = rows.get(name)
        if row is None:
            if had is not None:
                moved.append(f"user {name!r} was removed")
            continue
        if had is None:
            moved.append(f"user {name!r} was created")
            continue
        has = _person(row, tx.memberships_txn(name))
        if changed := [k for k in has if has[k] != had[k]]:
            moved.append(f"user {name!r} was changed ({', '.join(changed)})")
    if moved:
        raise TransitionConflict(_moved(moved))


def _validate_definitions(engine: Engine, defs: list[dict[str, Any]]
                          ) -> list[LoadedDefinition]:
    """Every text as ``baton deploy`` would check it: the heads (what the bundle leaves
    active: the active version of each; an object type's latest when none is, as it
    cannot be deactivated) together; the other versions (those of a definition it
    deactivates too) each as a sound definition of its kind, their fit to object types
    left to the activation that would make one active; each text defining what its
    entry says. What the heads would break here is judged with the state of the database
    (:func:`_check_activations_txn`). Returns the heads, loaded."""
    def where(d: dict[str, Any]) -> str:
        return f"definitions/{d['kind']}/{d['name']}/v{d['version']}.yaml"

    heads: dict[tuple[str, str], dict[str, Any]] = {}
    issues: list[Issue] = []
    for d in defs:
        key = (d["kind"], d["name"])
        if d["active"] and key in heads and heads[key]["active"]:
            issues.append(Issue(where(d), 1, "", f"{d['kind']} {d['name']!r} has two active "
                                f"versions in the bundle (v{heads[key]['version']} and "
                                f"v{d['version']}): one at most"))
        elif d["active"] or (d["kind"] == "object" and not heads.get(key, d)["active"]):
            heads[key] = d
    loaded, found = check_texts({where(d): d["source"] for d in heads.values()},
                                deployed_objects=engine.definitions.object_types(),
                                deployed_connections=engine.definitions.connection_types())
    issues += found
    every = list(loaded)
    for d in defs:
        if heads.get((d["kind"], d["name"])) is d:
            continue
        # A version the import does not make active is history: stored, never run (runs
        # start on the active version) until an activation, which judges it then on the
        # object types of that day. Its text must be a sound definition of its kind, not
        # fit the object types the bundle leaves active: an older version reading a field
        # dropped since (which deploy allowed) would refuse the --all-versions bundle of
        # any database whose object types changed, even imported back into itself.
        docs, found = parse_text(d["source"], where(d))
        docs_loaded, found = _finish(docs, found, None, None, unknown_objects=True)
        issues += found
        every += docs_loaded
    defined: dict[str, list[tuple[str, str]]] = {}
    for doc in every:
        defined.setdefault(doc.file, []).append((doc.kind, doc.name))
    for d in defs:
        got = defined.get(where(d), [])
        if len(got) > 1:
            issues.append(Issue(where(d), 1, "", f"the text defines {len(got)} definitions "
                                f"({', '.join(f'{k} {n!r}' for k, n in got)}), not one"))
        elif got and got[0] != (d["kind"], d["name"]):
            issues.append(Issue(where(d), 1, "", f"the text defines {got[0][0]} "
                                f"{got[0][1]!r}, not {d['kind']} {d['name']!r}"))
    if issues:
        raise DefinitionError(issues)
    return loaded


def _plan_user(plan: ImportPlan, person: Mapping[str, Any], row: Mapping[str, Any] | None,
               members: list[tuple[str, str]], now: str) -> None:
    name = person["name"]
    problems: dict[str, str] = {}
    _check_names("name", [name], problems)
    roles = Directory._check_roles(person.get("roles") or [], problems)
    groups = _check_names("groups", person.get("groups") or [], problems)
    queues = _check_names("queues", person.get("queues") or [], problems)
    email = person.get("email") or None
    if email is not None:
        Directory._check_email(email, problems)
    if problems:
        raise ValidationError(f"people.json: user {name!r}", problems)
    values = {"display_name": person.get("display_name") or name, "email": email,
              "roles": roles, "active": bool(person.get("active", True))}
    if row is None:
        plan.users.append((name, {"name": name, **values, "password_hash": None,
                                  "created_at": now, "updated_at": now,
                                  "groups": groups, "queues": queues}, True))
        plan.changes.append(Change("user", name, "add (no password: set one, or create a "
                                   "token, where it lands)", True))
        return
    had_groups = sorted(n for k, n in members if k == "group")
    had_queues = sorted(n for k, n in members if k == "queue")
    differs = [k for k, v in values.items() if (sorted(row[k]) if k == "roles" else row[k]) != v]
    differs += [k for k, new, old in (("groups", groups, had_groups), ("queues", queues, had_queues))
                if new != old]
    if not differs:
        plan.changes.append(Change("user", name, "unchanged", False))
        return
    plan.users.append((name, {**values, "updated_at": now, "groups": groups, "queues": queues},
                       False))
    plan.changes.append(Change("user", name, "update: " + ", ".join(differs), True))
