"""Composing the e-mails Baton queues: a step's ``notify`` (SLA) message and a work
item's assignment notice. The one place either is built.

Both run inside the caller's transaction (``*_txn``): recipients are resolved from the
directory by reading that transaction only, and the result is an ``email`` job payload
(an outbox row that commits or rolls back with the rest) plus the audit event that says
so; or, when nobody can be reached, an ``email_skipped`` event and no job. Neither
fails. Sending happens later on a worker (``baton.work.notify.send_email``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from baton.engine.events import SendEmail
from baton.engine.state import Run
from baton.rows import AuditEvent, WorkItem, audit_event
from baton.runtime.jobs import EmailPayload
from baton.work.notify import assignment_message, resolve_recipients

if TYPE_CHECKING:
    from baton.auth.directory import Directory, User
    from baton.settings import Settings
    from baton.store.ports import Transaction


def step_email_txn(tx: Transaction, directory: Directory | None, run: Run, cmd: SendEmail, now: str,
                   settings: Settings) -> tuple[AuditEvent, EmailPayload | None]:
    """A step's ``notify`` message: its audit event and ``email`` job (None: skipped)."""
    assignee = None
    if "assignee" in cmd.to:
        item = tx.find_work_item_txn(run.id, cmd.step, cmd.iteration)
        if item is not None and item["assignee_kind"] == "user":
            assignee = item["assignee"]
            # The directory's address first; settings.user_emails is the fallback.
            users = directory.members_txn(tx, "user", assignee) \
                if directory is not None and "@" not in assignee else []
            if users and users[0].email:
                assignee = users[0].email
    recipients, unresolved = resolve_recipients(cmd.to, assignee, settings)
    data: dict[str, Any] = {"step": cmd.step, "subject": cmd.subject,
                            "recipients": recipients, "unresolved": unresolved}
    if not recipients:
        return audit_event("email_skipped", "system", now, run.record_id, run.id, data), None
    text = "\n".join([
        cmd.subject, "",
        f"Run:       {cmd.run_id}",
        f"Step:      {cmd.step} (iteration {cmd.iteration})",
        f"SLA:       {cmd.sla_status.replace('_', ' ')}",
        f"Due:       {cmd.due_at or '-'}",
        f"Record:    {cmd.record_id or '-'}",
    ])
    job: EmailPayload = {"recipients": recipients, "subject": cmd.subject, "text": text,
           "record_id": run.record_id, "step": cmd.step}
    return audit_event("email_queued", "system", now, run.record_id, run.id, data), job


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
    job: EmailPayload = {"recipients": recipients, "subject": subject, "text": text,
                         "html": html_body,
           "link": f"/work/{item['id']}", "work_item": item["id"],
           "record_id": item["record_id"], "step": item["step"]}
    return audit_event("email_queued", "system", now, item["record_id"], item["run_id"],
                       data), job


def _delegate_txn(tx: Transaction, directory: Directory | None, item: WorkItem,
                  members: list[User], now: str) -> User | None:
    """The active delegate of a user-assigned approval's approver, when the delegation is
    in force on ``now``'s day (UTC): told of the approval as Salesforce tells delegated
    approvers."""
    from baton.auth.directory import APPROVAL

    if directory is None or item["assignee_kind"] != "user" or not members \
            or item.get("step_type") != APPROVAL:
        return None
    delegation = members[0].delegation
    if delegation is None or not delegation.in_force(now[:10]):
        return None
    found = directory.members_txn(tx, "user", delegation.to)
    return found[0] if found else None
