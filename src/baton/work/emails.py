"""Composing the e-mails Baton queues: a step's ``notify`` (SLA) message and a work
item's assignment notice. The one place either is built.

Both run inside the caller's transaction (``*_txn``): recipients are resolved from the
directory by reading that transaction only, and the result is an ``email`` job payload
(an outbox row that commits or rolls back with the rest) plus the audit event that says
so; or, when nobody can be reached, an ``email_skipped`` event and no job. Neither
fails. Sending happens later on a worker (``baton.work.notify.send_email``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from baton.engine.events import SendEmail
from baton.engine.state import Run
from baton.rows import AuditEvent, WorkItem, audit_event
from baton.runtime.jobs import EmailPayload
from baton.work.notify import assignment_message, resolve_recipients, when_text

if TYPE_CHECKING:
    from baton.auth.directory import Directory, User
    from baton.settings import Settings
    from baton.store.ports import Transaction


def step_email_txn(tx: Transaction, directory: Directory | None, run: Run, cmd: SendEmail, now: str,
                   settings: Settings) -> tuple[AuditEvent, EmailPayload | None]:
    """A step's ``notify`` message: its audit event and ``email`` job (None: skipped).

    ``assignee`` means whoever works the step's item: its user, who claimed it (a group or
    queue item's claimer, a delegate's claim), and the approver's delegate while the
    delegation is in force (as the assignment e-mail tells them)."""
    people: list[str] = []
    if "assignee" in cmd.to:
        item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
        if item is not None:
            people = _working_txn(tx, directory, item, now)
    recipients, unresolved = resolve_recipients(cmd.to, people, settings)
    data: dict[str, Any] = {"step": cmd.step, "subject": cmd.subject,
                            "recipients": recipients, "unresolved": unresolved}
    if not recipients:
        return audit_event("email_skipped", "system", now, run.record_id, run.id, data), None
    text = "\n".join([
        cmd.subject, "",
        f"Run:       {cmd.run_id}",
        f"Step:      {cmd.step} (iteration {cmd.iteration})",
        f"SLA:       {cmd.sla_status.replace('_', ' ')}",
        f"Due:       {when_text(cmd.due_at)}",
        f"Record:    {cmd.record_id or '-'}",
    ])
    job: EmailPayload = {"recipients": recipients, "subject": cmd.subject, "text": text,
           "record_id": run.record_id, "step": cmd.step}
    return audit_event("email_queued", "system", now, run.record_id, run.id, data), job


def _working_txn(tx: Transaction, directory: Directory | None, item: Mapping[str, Any],
                 now: str) -> list[str]:
    """Who works ``item`` now, each as an address (the directory's, or the name as it
    is, for ``settings.user_emails`` or an address): its user (not a group or queue, whose
    members are not all on it), its claimer, the user's delegate on an approval."""
    names: list[str] = []
    if item["assignee_kind"] == "user":
        names.append(item["assignee"])
    if item.get("status") == "claimed" and item.get("claimed_by") \
            and item["claimed_by"] not in names:
        names.append(str(item["claimed_by"]))
    if directory is None:
        return names
    out: list[str] = []
    for name in names:
        users = directory.members_txn(tx, "user", name) if "@" not in name else []
        out.append(users[0].email if users and users[0].email else name)
        if name == item["assignee"] and item["assignee_kind"] == "user":
            delegate = _delegate_txn(tx, directory, item, users, now)
            if delegate is not None and delegate.name not in names and delegate.email:
                out.append(delegate.email)
    return list(dict.fromkeys(out))


def assignment_email_txn(tx: Transaction, directory: Directory | None, item: WorkItem, now: str,
                         previous: str | None = None,
                         ) -> tuple[AuditEvent, EmailPayload | None]:
    """Who is told about ``item`` (its user, or every active member of its group or
    queue, with an e-mail address), and the ``email`` job; or an ``email_skipped`` event
    saying why nobody could be."""
    kind, name = item["assignee_kind"], item["assignee"]
    members = directory.members_txn(tx, kind, name) if directory else []
    recipients: list[str] = []
    for user in members:
        if user.email and user.email not in recipients:
            recipients.append(user.email)
    data: dict[str, Any] = {"work_item": item["id"], "step": item["step"],
                            "assignee": f"{kind}:{name}", "notification": "assignment"}
    delegate = _delegate_txn(tx, directory, item, members, now)
    if delegate is not None:  # an approval goes to the approver's delegate too
        data["delegate"] = delegate.name
        if delegate.email and delegate.email not in recipients:
            recipients.append(delegate.email)
    if not recipients:
        if kind == "user":
            why = (f"user {name!r} has no e-mail address" if members
                   else f"user {name!r} is not an active user of the directory")
        elif members:
            why = (f"{kind} {name!r}: none of its {len(members)} active member(s) has an "
                   "e-mail address")
        else:
            why = f"{kind} {name!r} has no active members"
        return audit_event("email_skipped", "system", now, item["record_id"], item["run_id"],
                           {**data, "reason": why}), None
    record = tx.get_record_txn(item["record_id"]) if item["record_id"] else None
    subject, text, html_body = assignment_message(
        item, record["object_type"] if record else None, previous)
    data.update(subject=subject, recipients=recipients)
    job = cast(EmailPayload, {"recipients": recipients, "subject": subject, "text": text,
                              "html": html_body, "link": f"/work/{item['id']}",
                              "work_item": item["id"], "assignee": f"{kind}:{name}",
                              "record_id": item["record_id"], "step": item["step"]})
    return audit_event("email_queued", "system", now, item["record_id"], item["run_id"],
                       data), job


def _delegate_txn(tx: Transaction, directory: Directory | None, item: Mapping[str, Any],
                  members: list[User], now: str) -> User | None:
    """The active delegate of a user-assigned approval's approver, when the delegation is
    in force on ``now``'s day (UTC): told of the approval as Salesforce tells delegated
    approvers."""
    from baton.auth.directory import APPROVAL
    from baton.auth.roles import Permission

    if directory is None or item["assignee_kind"] != "user" or not members \
            or item.get("step_type") != APPROVAL:
        return None
    delegation = members[0].delegation
    if delegation is None or not delegation.in_force(now[:10]):
        return None
    found = directory.members_txn(tx, "user", delegation.to)  # (active users only)
    # Told only if they may act on it: a delegate since made a designer may not.
    return found[0] if found and found[0].can(Permission.WORK) else None


def stale_assignment(item: Mapping[str, Any] | None, payload: Mapping[str, Any]) -> str | None:
    """Why the assignment e-mail ``payload`` is not to be sent any more, now that its work
    item is ``item`` (as stored when the worker is about to send it; None: gone): the item
    was completed or canceled, or given to someone else, since it was queued (a mail
    server down for minutes, a backlog). None: send it. (Not an assignment e-mail: None.)
    """
    if not payload.get("work_item"):
        return None
    if item is None:
        return f"work item {payload['work_item']} is gone"
    if item["status"] not in ("open", "claimed"):
        return f"work item {item['id']} is {item['status']} already"
    was, now = payload.get("assignee"), f"{item['assignee_kind']}:{item['assignee']}"
    if was and was != now:
        return (f"work item {item['id']} was given to {now.replace(':', ' ', 1)} since "
                f"({was.replace(':', ' ', 1)} before)")
    return None
