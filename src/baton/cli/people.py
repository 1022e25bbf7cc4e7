"""``baton users`` and ``baton tokens``: the people who use the API and the web UI."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from baton.cli import complete
from baton.cli.output import console, print_json, table

users_app = typer.Typer(no_args_is_help=True, help="Users, their roles, groups and queues.")
tokens_app = typer.Typer(no_args_is_help=True, help="API tokens (shown once, stored hashed).")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
RoleOpt = Annotated[list[str] | None, typer.Option("--role", "-r", help="admin, designer, operator or agent (repeat for more)")]
GroupOpt = Annotated[list[str] | None, typer.Option("--group", "-g", help="A group the user belongs to (repeatable)")]
QueueOpt = Annotated[list[str] | None, typer.Option("--queue", "-q", help="A queue the user works (repeatable)")]
NameArg = Annotated[str, typer.Argument(help="User name (letters, digits, _ . @ -)")]
UserArg = Annotated[str, typer.Argument(help="User name", autocompletion=complete.users)]
EmailOpt = Annotated[str | None, typer.Option("--email", "-e", help="E-mail address (assignment notices go there)")]
DisplayNameOpt = Annotated[str | None, typer.Option("--display-name", help="The name people see (default: the user name)")]
CLI_ACTOR = "cli"  # who the audit trail says made a change from the command line (as elsewhere)


def _engine() -> Any:
    from baton.cli.context import state

    return state.engine()


def _read_password(prompt: bool, stdin: bool) -> str | None:
    if stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if prompt:
        return str(typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    return None


def _show(user: Any, as_json: bool, verb: str) -> None:
    if as_json:
        print_json(user.to_json())
        return
    console.print(f"{verb + ' ' if verb else ''}user [bold]{user.name}[/bold]: roles {', '.join(sorted(user.roles))}"
                  + (f"; groups {', '.join(sorted(user.groups))}" if user.groups else "")
                  + (f"; queues {', '.join(sorted(user.queues))}" if user.queues else "")
                  + (f"; e-mail {user.email}" if user.email else "")
                  + (f"; delegate {delegation_text(user)}" if user.delegation else "")
                  + ("" if user.has_password else "; no password (API tokens only)"))


def delegation_text(user: Any) -> str:
    """``bob (2026-12-01 to 2026-12-24)``: who acts on the user's approvals, and when."""
    d = user.delegation
    if d is None:
        return ""
    when = (f" (from {d.start} to {d.until})" if d.start and d.until
            else f" (from {d.start})" if d.start else f" (until {d.until})" if d.until else "")
    return f"{d.to}{when}"


@users_app.command("add")
def users_add(
    name: NameArg,
    role: RoleOpt = None,
    group: GroupOpt = None,
    queue: QueueOpt = None,
    email: EmailOpt = None,
    display_name: DisplayNameOpt = None,
    password: Annotated[bool, typer.Option("--password", help="Prompt for a password (for the web UI)")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the password from standard input")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Add a user: `baton users add alice --role agent --queue tier1 --email alice@example.com --password`."""
    secret = _read_password(password, password_stdin)
    user = _engine().directory.add_user(name, roles=role or [], groups=group or [], queues=queue or [],
                                        email=email, password=secret, display_name=display_name,
                                        actor=CLI_ACTOR)
    _show(user, as_json, "added")


@users_app.command("update")
def users_update(
    name: UserArg,
    role: RoleOpt = None,
    group: GroupOpt = None,
    queue: QueueOpt = None,
    email: EmailOpt = None,
    display_name: DisplayNameOpt = None,
    active: Annotated[bool | None, typer.Option("--active/--inactive", help="Deactivate to lock the user out")] = None,
    password: Annotated[bool, typer.Option("--password", help="Prompt for a new password")] = False,
    password_stdin: Annotated[bool, typer.Option("--password-stdin", help="Read the new password from standard input")] = False,
    delegate: Annotated[str | None, typer.Option("--delegate", help="Who may act on this user's approvals for them (audited as on behalf of this user)")] = None,
    delegate_from: Annotated[str | None, typer.Option("--from", help="The delegation starts on this date (YYYY-MM-DD, UTC)")] = None,
    delegate_until: Annotated[str | None, typer.Option("--until", help="The delegation ends after this date (YYYY-MM-DD, UTC, inclusive)")] = None,
    no_delegate: Annotated[bool, typer.Option("--no-delegate", help="End the delegation")] = False,
    skill: Annotated[list[str] | None, typer.Option("--skill", help="Add a skill, with a level 1-5 or none: brand:ford=3, lang:pt (repeatable)")] = None,
    remove_skill: Annotated[list[str] | None, typer.Option("--remove-skill", help="Remove a skill (repeatable)")] = None,
    capacity: Annotated[list[str] | None, typer.Option("--capacity", help="Most open routed items: 5, none (no limit), or per queue or group: support=2 (repeatable)")] = None,
    availability: Annotated[str | None, typer.Option("--availability", help="available, away or offline")] = None,
    calendar: Annotated[str | None, typer.Option("--calendar", help="Working hours: a deployed calendar's name, or none")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a user; --role, --group and --queue replace the lists they name. --skill,
    --capacity, --availability and --calendar change their routing profile (and route
    what waits for them). `baton users update ann --delegate bob --until 2026-12-24`: bob
    may decide ann's approvals until that day (--from/--until alone change the current
    delegation's dates). A change of the delegation is audited (`baton users show ann`
    lists them)."""
    if no_delegate and (delegate is not None or delegate_from or delegate_until):
        raise typer.BadParameter("--no-delegate ends the delegation: give no --delegate, "
                                 "--from or --until with it")
    secret = _read_password(password, password_stdin)
    eng = _engine()
    directory = (role, group, queue, email, display_name, active, secret, delegate,
                 delegate_from, delegate_until, True if no_delegate else None)
    routing = (skill, remove_skill, capacity, availability, calendar)
    if any(v is not None for v in directory) or not any(v is not None for v in routing):
        user = eng.directory.update_user(
            name, roles=role, groups=group, queues=queue, email=email,
            display_name=display_name, active=active, password=secret,
            delegate="" if no_delegate else delegate, delegate_from=delegate_from,
            delegate_until=delegate_until, actor=CLI_ACTOR)
        _show(user, as_json and not any(v is not None for v in routing), "updated")
    if any(v is not None for v in routing):
        from baton.work.team import profile_change

        change = profile_change(skills=skill or [], remove=remove_skill or [],
                                capacity=capacity or [], availability=availability,
                                calendar=calendar)
        profile = eng.team.update(name, change, "cli")
        if as_json:
            print_json(profile.to_json())
        else:
            _show_profile(profile)


def _show_profile(p: Any) -> None:
    skills = ", ".join(f"{k}={v}" if v is not None else k for k, v in sorted(p.skills.items()))
    caps = ", ".join(f"{q}={c}" for q, c in sorted(p.queue_capacity.items()))
    console.print(f"routing profile of [bold]{p.name}[/bold]: {p.availability}; load {p.load}/"
                  f"{p.capacity if p.capacity is not None else 'no limit'}"
                  + (f" ({caps})" if caps else "") + (f"; skills {skills}" if skills else "")
                  + (f"; calendar {p.calendar}" if p.calendar else ""))


@users_app.command("team")
def users_team(as_json: JsonOpt = False) -> None:
    """Every person's routing profile: availability, load against capacity, skills, and
    per queue the items waiting, the oldest wait, routed in the last hour, median time to
    assignment."""
    eng = _engine()
    people, figures = eng.team.everyone(), eng.team.figures()
    if as_json:
        print_json({"people": [p.to_json() for p in people], "queues": figures})
        return
    table("Team", ["name", "availability", "load", "capacity", "skills", "calendar"],
          [[p.name, p.availability if p.active and p.may_work else
            f"{p.availability} (inactive)" if not p.active else
            f"{p.availability} (may not work items)", str(p.load), "-" if p.capacity is None else str(p.capacity),
            ", ".join(f"{k}={v}" if v is not None else k for k, v in sorted(p.skills.items())),
            p.calendar or ""] for p in people])
    if figures:
        table("Queues", ["queue", "waiting", "oldest wait (s)", "routed last hour",
                         "median to assignment (s)"],
              [[f["queue"], str(f["waiting"]), str(f["oldest_wait_s"] or ""),
                str(f["routed_last_hour"]), str(f["median_to_assignment_s"] or "")]
               for f in figures])


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """Every user with roles, groups and queues."""
    users = _engine().directory.list_users()
    if as_json:
        print_json([u.to_json() for u in users])
        return
    table("Users", ["name", "roles", "groups", "queues", "e-mail", "active", "delegate"],
          [[u.name, ", ".join(sorted(u.roles)), ", ".join(sorted(u.groups)),
            ", ".join(sorted(u.queues)), u.email or "", "yes" if u.active else "no",
            delegation_text(u)] for u in users])


@users_app.command("show")
def users_show(name: UserArg, as_json: JsonOpt = False) -> None:
    """One user, and who gave whom approval power: the latest changes of the user's
    delegation and of the delegations naming them as delegate (who made each, when, the
    delegate and dates before and after), newest first."""
    directory = _engine().directory
    user = directory.get_user(name)
    history = directory.delegation_history(name)
    if as_json:
        print_json(user.to_json() | {"has_password": user.has_password,
                                     "delegation_history": [c.to_json() for c in history]})
        return
    _show(user, False, "")
    if user.acting_for:
        console.print(f"acts today for: {', '.join(sorted(user.acting_for))}")
    if not history:
        console.print("delegation history: no changes recorded")
        return
    table(f"Delegation history of {name} (newest first)", ["at", "by", "change"],
          [[c.at, c.actor, c.describe()] for c in history])


@users_app.command("unlock")
def users_unlock(
    name: Annotated[str | None, typer.Argument(help="The account (user name) to unlock")] = None,
    address: Annotated[str | None, typer.Option("--address", help="Unlock a client address instead")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Lift a login lockout and forget the failed attempts: `baton users unlock alice`
    (or `baton users unlock --address 203.0.113.7`). Audited as `login_unlocked`."""
    if (name is None) == (address is None):
        raise typer.BadParameter("give a user NAME or --address, one of them")
    kind = "account" if name is not None else "address"
    target = name if name is not None else address
    assert target is not None
    lifted = _engine().directory.throttle.unlock(kind, target, actor="cli")
    if as_json:
        from baton.clock import iso

        print_json({"kind": kind, "target": target, "was_locked": lifted is not None,
                    "locked_until": iso(lifted.until) if lifted else None})
        return
    what = f"account {target}" if kind == "account" else f"address {target}"
    console.print(f"{what} unlocked" + (f" (it was locked until {lifted.until.isoformat()})"
                                         if lifted else " (it was not locked)"))


@tokens_app.command("create")
def tokens_create(user: Annotated[str, typer.Argument(help="The user the token acts as", autocompletion=complete.users)], label: Annotated[str, typer.Option("--label", help="What the token is for")] = "",
                  as_json: JsonOpt = False) -> None:
    """Create an API token for USER. The secret is printed once; only its hash is kept.

    Examples:
      baton tokens create admin --label "nightly export"
    """
    info, secret = _engine().directory.create_token(user, label)
    if as_json:
        print_json({"id": info.id, "user": info.user_name, "label": info.label, "token": secret})
        return
    console.print(f"token [bold]{info.id}[/bold] for {info.user_name} (shown once, keep it safe):")
    print(secret)


@tokens_app.command("list")
def tokens_list(user: Annotated[str | None, typer.Argument(help="Only this user's tokens", autocompletion=complete.users)] = None, as_json: JsonOpt = False) -> None:
    """API tokens (never their secrets)."""
    rows = [_token_row(i) for i in _engine().directory.list_tokens(user)]
    if as_json:
        print_json(rows)
        return
    table("API tokens", ["id", "user", "label", "created", "last used", "revoked"],
          [[r["id"], r["user"], r["label"], r["created_at"], r["last_used_at"] or "",
            r["revoked_at"] or ""] for r in rows])


def _token_row(i: Any) -> dict[str, Any]:
    """A token as ``tokens list --json`` and ``tokens revoke --json`` print it."""
    return {"id": i.id, "user": i.user_name, "label": i.label, "created_at": i.created_at,
            "last_used_at": i.last_used_at, "revoked_at": i.revoked_at}


@tokens_app.command("revoke")
def tokens_revoke(token_id: Annotated[str, typer.Argument(help="Token id, as `baton tokens list` prints it")],
                  as_json: JsonOpt = False) -> None:
    """Revoke a token: requests with it get 401 from now on."""
    info = _engine().directory.revoke_token(token_id)
    if as_json:
        print_json(_token_row(info))
        return
    console.print(f"token {info.id} of {info.user_name} revoked at {info.revoked_at}")
