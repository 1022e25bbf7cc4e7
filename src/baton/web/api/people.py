"""People: who am I, users (the ``users`` permission), API tokens (one's own, or anyone's
with ``users``). A token's secret is in the creation response only; it is never stored."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, StrictBool, field_validator

from baton.auth.directory import EMAIL_PATTERN, HISTORY_LIMIT, NAME_PATTERN, TokenInfo, User
from baton.auth.roles import Permission, require
from baton.clock import iso
from baton.errors import NotFound
from baton.web.api.common import (
    After,
    Limit,
    Offset,
    Page,
    RequestBody,
    not_null,
    page_of,
    refuse_null,
    start_of,
)
from baton.web.idempotency import (
    REPLAY_HEADERS,
    ActionIdempotencyKey,
    Created,
    IdempotencyKey,
    RefusingIdempotencyKey,
    idempotent_action_apart,
    idempotent_apart,
    replayable,
)
from baton.web.problems import ProblemError, problem_responses
from baton.web.security import SESSION_COOKIE, Principal, current_principal, engine_of, need

router = APIRouter(tags=["People"])

USERS = Depends(need(Permission.USERS))
ME = Depends(current_principal)
Role = Literal["admin", "designer", "operator", "agent"]
UserName = Annotated[str, Path(min_length=1, max_length=200)]
Member = Annotated[str, Field(min_length=1, max_length=200, pattern=NAME_PATTERN)]
EMAIL_OR_EMPTY = f"^$|{EMAIL_PATTERN}"


class UserOut(BaseModel):
    name: str
    display_name: str
    email: str | None
    roles: list[str]
    groups: list[str]
    queues: list[str]
    active: bool
    has_password: bool
    delegate: str | None = Field(default=None, description="who may act on this user's "
                                 "approvals (audited as on behalf of this user)")
    delegate_from: str | None = Field(default=None, description="the delegation's first day")
    delegate_until: str | None = Field(default=None, description="the delegation's last day")
    acting_for: list[str] = Field(default_factory=list, description=(
        "whose approvals this user may act on today, as their delegate"))


class DelegationOut(BaseModel):
    delegate: str
    delegate_from: str | None
    delegate_until: str | None


class DelegationChangeOut(BaseModel):
    id: int = Field(description="the audit event's id")
    at: str
    actor: str = Field(description="who made the change")
    user: str = Field(description="whose delegation changed (the approver)")
    change: Literal["set", "changed", "ended"]
    before: DelegationOut | None = Field(description="the delegation before; null: none")
    after: DelegationOut | None = Field(description="the delegation after; null: none")
    reason: str | None = Field(default=None, description=(
        "why the directory ended it on its own (a user of the delegate's name was added)"))


class UserDetail(UserOut):
    delegation_history: list[DelegationChangeOut] = Field(
        default_factory=list, description=(
            f"who gave whom approval power: the latest {HISTORY_LIMIT} changes of this "
            "user's delegation and of the delegations naming them as delegate (audited as "
            "`delegation_changed`), newest first"))


class Me(UserOut):
    permissions: list[str]
    authenticated_by: Literal["token", "session"]


DATE_OR_EMPTY = r"^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}$"


class DelegationPatch(RequestBody):
    """A partial update, as a JSON merge patch (RFC 7396) reads: a field left out keeps its
    value, a field sent as null is cleared. A field that cannot be empty (roles, a name) is
    not nullable: null there is a 422 naming it, never silently ignored."""

    delegate: str | None = Field(default=None, max_length=200, pattern=f"^$|{NAME_PATTERN}",
                                 description='who may act on the approvals; null or "" ends '
                                             "the delegation")
    delegate_from: str | None = Field(default=None, pattern=DATE_OR_EMPTY, description=(
        'first day (YYYY-MM-DD, UTC); null, "" or left out with a new delegate: from now'))
    delegate_until: str | None = Field(default=None, pattern=DATE_OR_EMPTY, description=(
        'last day, inclusive (YYYY-MM-DD, UTC); null, "" or left out with a new delegate: '
        "open-ended"))

    def cleared(self, name: str) -> str | None:
        """A clearable field's value for the directory: None (left out: unchanged), or
        the text, "" when it was sent as null or "" (cleared)."""
        value: str | None = getattr(self, name)
        if value is None and name in self.model_fields_set:
            return ""
        return value


class MePatch(DelegationPatch):
    """What a user changes of their own settings: their delegate."""


class NewUser(RequestBody):
    name: str = Field(min_length=1, max_length=200, pattern=NAME_PATTERN, examples=["ann"])
    roles: list[Role] = Field(min_length=1, max_length=4)
    groups: list[Member] = Field(default_factory=list, max_length=100)
    queues: list[Member] = Field(default_factory=list, max_length=100)
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_OR_EMPTY)
    display_name: str | None = Field(default=None, min_length=1, max_length=200)
    password: str | None = Field(default=None, min_length=8, max_length=1000)


class UserPatch(DelegationPatch):
    # Not nullable (None stands for "left out"; a null sent is a 422 naming the field):
    # a user always has roles, lists (empty: []), a name, a state.
    roles: list[Role] | None = Field(default=None, min_length=1, max_length=4,
                                     json_schema_extra=not_null)
    groups: list[Member] | None = Field(default=None, max_length=100, description="[]: none",
                                        json_schema_extra=not_null)
    queues: list[Member] | None = Field(default=None, max_length=100, description="[]: none",
                                        json_schema_extra=not_null)
    email: str | None = Field(default=None, max_length=320, pattern=EMAIL_OR_EMPTY,
                              description='null or "" clears it')
    display_name: str | None = Field(default=None, min_length=1, max_length=200,
                                     json_schema_extra=not_null)
    # strict: 0 or "no" is not taken for false (lax pydantic would): a typed JSON boolean only
    active: StrictBool | None = Field(default=None, json_schema_extra=not_null,
                                      description="false signs the user out everywhere")
    password: str | None = Field(default=None, min_length=8, max_length=1000,
                                 json_schema_extra=not_null)

    _not_null = field_validator("roles", "groups", "queues", "display_name", "active",
                                "password", mode="before")(refuse_null)


class TokenOut(BaseModel):
    id: str
    user: str
    label: str
    created_at: str
    last_used_at: str | None
    revoked_at: str | None


class TokenCreated(TokenOut):
    secret: str = Field(description="shown once: send it as `Authorization: Bearer …`")


class NewToken(RequestBody):
    label: str = Field(default="", max_length=200)
    user: str | None = Field(default=None, min_length=1, max_length=200,
                             description="whose token (default: yours; others need `users`)")


def user_json(u: User) -> dict[str, Any]:
    return u.to_json() | {"has_password": u.has_password}


def token_json(t: TokenInfo) -> dict[str, Any]:
    return {"id": t.id, "user": t.user_name, "label": t.label, "created_at": t.created_at,
            "last_used_at": t.last_used_at, "revoked_at": t.revoked_at}


def own_session(request: Request, principal: Principal, name: str) -> str | None:
    """The session cookie of a user's own request about themselves (kept when a change of
    theirs ends their other sessions), else None."""
    if principal.via != "session" or principal.name != name:
        return None
    return request.cookies.get(SESSION_COOKIE)


def _for_user(principal: Principal, name: str | None) -> str:
    """Acting on someone else's tokens needs the ``users`` permission."""
    if name is not None and name != principal.name:
        require(principal.user, Permission.USERS)
        return name
    return principal.name


@router.get("/me", response_model=Me, summary="Who am I",
            responses=problem_responses(401))
def me(principal: Principal = ME) -> dict[str, Any]:
    u = principal.user
    return user_json(u) | {"permissions": sorted(p.value for p in u.permissions),
                           "authenticated_by": principal.via}


@router.get("/users", response_model=Page[UserOut], summary="List users, by name",
            responses=problem_responses(401, 403, 422))
def list_users(request: Request, limit: Limit = 50, offset: Offset = 0, after: After = None,
               _: Principal = USERS) -> dict[str, Any]:
    start = start_of("users", after, offset)
    users = [user_json(u) for u in engine_of(request).directory.list_users()]
    return page_of(users, limit, start, "users")


@router.post("/users", response_model=UserOut, status_code=201, summary="Add a user",
             description="409 when the name is taken. With an `Idempotency-Key`, a retry "
                         "adds nothing and answers as the first request was answered.",
             responses={201: {"description": "Added", "headers": REPLAY_HEADERS},
                        **problem_responses(400, 401, 403, 409, 422)})
def add_user(request: Request, body: NewUser, idempotency_key: IdempotencyKey = None,
             principal: Principal = USERS) -> JSONResponse:
    def create() -> Created:
        user = engine_of(request).directory.add_user(
            body.name, roles=body.roles, groups=body.groups, queues=body.queues,
            email=body.email, password=body.password, display_name=body.display_name,
            actor=principal.name)
        return (user_json(user), {"Location": f"/api/users/{user.name}"}), None

    return idempotent_apart(request, principal, idempotency_key, "user", body, UserOut, 201,
                            create, secrets=("password",))


@router.get("/users/{name}", response_model=UserDetail, summary="One user",
            description="The user, and `delegation_history`: who gave whom approval power "
                        "and who changed it (the latest changes of the user's delegation "
                        "and of those naming them as delegate, newest first).",
            responses=problem_responses(401, 403, 404, 422))
def get_user(request: Request, name: UserName, _: Principal = USERS) -> dict[str, Any]:
    directory = engine_of(request).directory
    user = directory.get_user(name)
    return user_json(user) | {"delegation_history": [
        c.to_json() for c in directory.delegation_history(name)]}


@router.patch("/users/{name}", response_model=UserOut, summary="Change a user",
              description="A JSON merge patch: only the fields sent change, null clears "
                          "`email` and the delegation (the other fields take no null); "
                          "`groups`/`queues` replace the lists. "
                          "A new `password`, or `active: false`, signs the user out of every "
                          "UI session (but the caller's own, when it is theirs); their API "
                          "tokens stay valid until revoked (`active: false` refuses them while "
                          "the user is inactive). A change of the delegation is audited "
                          "(`delegation_changed`: who, the delegate and dates before and "
                          "after; see `GET /api/users/{name}`).",
              responses=problem_responses(400, 401, 403, 404, 422))
def update_user(request: Request, name: UserName, body: UserPatch,
                principal: Principal = USERS) -> dict[str, Any]:
    user = engine_of(request).directory.update_user(
        name, roles=body.roles, groups=body.groups, queues=body.queues,
        email=body.cleared("email"), display_name=body.display_name, active=body.active,
        password=body.password, delegate=body.cleared("delegate"),
        delegate_from=body.cleared("delegate_from"),
        delegate_until=body.cleared("delegate_until"),
        keep_session=own_session(request, principal, name), actor=principal.name)
    return user_json(user)


@router.patch("/me", response_model=Me, summary="Change my settings",
              description="Any signed-in user names their own delegate: who may act on "
                          "their approvals, optionally between two dates (`\"\"` or null "
                          "ends it). "
                          "422 when the dates are wrong, or, for a caller who may list users "
                          "(`users` or `team`), when the delegate is not a user; anyone "
                          "else is not told which names exist: a name that is not a user's "
                          "is kept as given and acts for no one. A change is audited "
                          "(`delegation_changed`, by the caller).",
              responses=problem_responses(400, 401, 422))
def update_me(request: Request, body: MePatch, principal: Principal = ME) -> dict[str, Any]:
    user = engine_of(request).directory.update_user(
        principal.name, delegate=body.cleared("delegate"),
        delegate_from=body.cleared("delegate_from"),
        delegate_until=body.cleared("delegate_until"),
        may_list_users=principal.user.may_list_users, actor=principal.name)
    return user_json(user) | {"permissions": sorted(p.value for p in user.permissions),
                              "authenticated_by": principal.via}


class Unlocked(BaseModel):
    kind: Literal["account", "address"]
    name: str
    was_locked_until: str | None = Field(description="the lockout lifted; null: none was in force")


def _unlock(request: Request, principal: Principal, key: str | None,
            kind: Literal["account", "address"], name: str) -> JSONResponse:
    """Lift the lockout (the throttle writes in a transaction of its own: the key is
    claimed apart); a retry with the key answers what the first got."""
    def act() -> dict[str, Any]:
        lifted = engine_of(request).directory.throttle.unlock(kind, name, principal.name)
        return {"kind": kind, "name": name,
                "was_locked_until": iso(lifted.until) if lifted else None}

    return idempotent_action_apart(request, principal, key, "lockout", None, Unlocked, act)


_KEYED = (" With an `Idempotency-Key`, a retry answers as the first request was answered "
          "(the lockout it lifted).")


@router.post("/users/{name}/unlock", response_model=Unlocked, summary="Unlock a user's login",
             description="Lifts the account's lockouts earned by failed logins (its own, "
                         "and those of it from single client addresses) and forgets the "
                         "failures (audited as `login_unlocked`); `was_locked_until` is the "
                         "longest lockout lifted. The user need not exist: the name tried is "
                         "what was locked." + _KEYED,
             responses={**replayable("the lockout lifted, if any"),
                        **problem_responses(401, 403, 409, 422)})
def unlock_user(request: Request, name: UserName, idempotency_key: ActionIdempotencyKey = None,
                principal: Principal = USERS) -> JSONResponse:
    return _unlock(request, principal, idempotency_key, "account", name)


@router.post("/addresses/{address}/unlock", response_model=Unlocked,
             summary="Unlock a client address",
             description="Lifts a lockout of a client address earned by failed logins or "
                         "unknown API tokens (audited as `login_unlocked`)." + _KEYED,
             responses={**replayable("the lockout lifted, if any"),
                        **problem_responses(401, 403, 409, 422)})
def unlock_address(request: Request,
                   address: Annotated[str, Path(min_length=1, max_length=200)],
                   idempotency_key: ActionIdempotencyKey = None,
                   principal: Principal = USERS) -> JSONResponse:
    return _unlock(request, principal, idempotency_key, "address", address)


@router.post("/tokens", response_model=TokenCreated, status_code=201,
             summary="Create an API token",
             description="For yourself, or for `user` with the `users` permission. "
                         "The secret is in this response only. With an `Idempotency-Key`, "
                         "a retry creates no second token, but cannot be answered with the "
                         "first one's secret either (it is never stored): it is refused "
                         "(409, naming the token made).",
             responses={201: {"description": "Created"},
                        **problem_responses(400, 401, 403, 404, 409, 422)})
def create_token(request: Request, body: NewToken,
                 idempotency_key: RefusingIdempotencyKey = None,
                 principal: Principal = ME) -> JSONResponse:
    owner = _for_user(principal, body.user)

    def create() -> Created:
        info, secret = engine_of(request).directory.create_token(owner, body.label)
        return (token_json(info) | {"secret": secret}, {}), info.id

    return idempotent_apart(request, principal, idempotency_key, "token", body, TokenCreated,
                            201, create, refuse=_token_made)


def _token_made(token_id: str) -> ProblemError:
    """A retried token create: the first one's secret was in its answer only."""
    return ProblemError(
        409, "Token already created",
        f"this Idempotency-Key created API token {token_id} already; its secret was in that "
        "first answer only (it is never stored), so the answer cannot be given again. If it "
        f"was lost, revoke the token (DELETE /api/tokens/{token_id}) and create another "
        "with a new key", slug="idempotency-key-used")


@router.get("/tokens", response_model=Page[TokenOut], summary="List API tokens, oldest first",
            description="Yours, or `user`'s with the `users` permission.",
            responses=problem_responses(401, 403, 422))
def list_tokens(request: Request,
                user: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                limit: Limit = 50, offset: Offset = 0, after: After = None,
                principal: Principal = ME) -> dict[str, Any]:
    owner = _for_user(principal, user)
    start = start_of("tokens", after, offset)
    tokens = [token_json(t) for t in engine_of(request).directory.list_tokens(owner)]
    return page_of(tokens, limit, start, "tokens")


@router.delete("/tokens/{token_id}", response_model=TokenOut, summary="Revoke an API token",
               description="Your own, or anyone's with `users`. Revoking twice is harmless.",
               responses=problem_responses(401, 404, 422))
def revoke_token(request: Request, token_id: Annotated[str, Path(min_length=1, max_length=40)],
                 principal: Principal = ME) -> dict[str, Any]:
    d = engine_of(request).directory
    found = next((t for t in d.list_tokens() if t.id == token_id), None)
    if found is None or (found.user_name != principal.name
                         and not principal.user.can(Permission.USERS)):
        raise NotFound("API token", token_id)  # someone else's token: as if it did not exist
    return token_json(d.revoke_token(token_id))
