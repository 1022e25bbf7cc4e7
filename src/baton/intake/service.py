"""E-mail to records: every way in (SMTP, ``.eml`` files, IMAP) ends here.

:meth:`IntakeService.accept` takes a message's bytes and, in ONE transaction, stores the
message once (by its Message-ID) with what it did:

* ``created``: a new record of the mailbox's object type, its fields filled from the mail
  as the mailbox maps them; record triggers start the case's run in the same transaction;
* ``threaded``: the message answers one already stored (``In-Reply-To`` or ``References``):
  it goes on that record's timeline (``message_received``) and counts as an update of the
  record (its ``last_message`` field, if the mailbox maps one, else an update without field
  changes), so ``on: update`` triggers fire and the record's runs look again;
* ``ignored``: automatic mail (an auto-reply, a bounce…) that the mailbox does not turn
  into cases; stored, so it is visible and not taken again;
* ``duplicate``: the Message-ID is already stored: nothing changes (an SMTP client's
  retry, the same file imported twice).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from baton.clock import Clock, iso
from baton.definitions.model import MailboxDefinition
from baton.errors import BatonError, NotFound, TransitionConflict, ValidationError
from baton.ids import IdGenerator
from baton.intake.mail import Mail, parse
from baton.records.service import RecordService
from baton.rows import audit_event
from baton.runtime import jobs
from baton.runtime.definitions import DefinitionRepo
from baton.store.ports import Transaction
from baton.store.sql import SqlStore

TIMELINE_TEXT = 2_000  # characters of a reply's new text on the timeline event


@dataclass(frozen=True)
class Accepted:
    """What intake did with one message."""

    outcome: str  # created | threaded | ignored | duplicate
    message_id: str
    mailbox: str
    record_id: str | None
    subject: str
    sender: str
    reason: str | None = None  # why it was ignored (the automatic-mail reason)

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "message_id": self.message_id, "mailbox": self.mailbox,
                "record_id": self.record_id, "subject": self.subject, "sender": self.sender,
                "reason": self.reason}


class IntakeService:
    def __init__(self, store: SqlStore, definitions: DefinitionRepo, records: RecordService,
                 clock: Clock, ids: IdGenerator, wake: Callable[[], None]) -> None:
        self.store = store
        self.definitions = definitions
        self.records = records
        self.clock = clock
        self.ids = ids
        self.wake = wake

    # ---- which mailbox -------------------------------------------------------------------
    def mailbox_for(self, recipients: Sequence[str], name: str | None = None
                    ) -> MailboxDefinition:
        """The mailbox named ``name``, else the one whose addresses include a recipient,
        else the only mailbox there is."""
        boxes = self.definitions.mailboxes()
        if name is not None:
            if name not in boxes:
                raise NotFound("mailbox", name,
                               f"deployed mailboxes: {', '.join(sorted(boxes)) or 'none'}")
            return boxes[name]
        wanted = [r.lower() for r in recipients]
        for box in sorted(boxes.values(), key=lambda b: b.name):
            if any(a in box.addresses for a in wanted):
                return box
        if len(boxes) == 1:
            return next(iter(boxes.values()))
        if not boxes:
            raise NotFound("mailbox", "for this message",
                           "deploy a kind: mailbox definition to receive e-mail")
        raise NotFound("mailbox", f"for {', '.join(wanted) or 'no recipient'}",
                       f"no mailbox lists these addresses (mailboxes: {', '.join(sorted(boxes))})")

    def accepts(self, recipient: str) -> bool:
        """Would a message to ``recipient`` find a mailbox (the SMTP listener's RCPT check)?"""
        boxes = self.definitions.mailboxes()
        address = recipient.lower()
        if any(address in b.addresses for b in boxes.values()):
            return True
        return len(boxes) == 1 and not next(iter(boxes.values())).addresses

    # ---- accept ---------------------------------------------------------------------------
    def accept(self, raw: bytes, *, via: str, recipients: Sequence[str] = (),
               mailbox: str | None = None, actor: str | None = None) -> Accepted:
        """Take one message (raises :class:`~baton.intake.mail.MailError` if it is not one)."""
        mail = parse(raw)
        # The envelope's recipients (SMTP) decide; a file's own To and Cc otherwise.
        box = self.mailbox_for(list(recipients) or [*mail.to, *mail.cc], mailbox)
        try:
            return self._accept(mail, raw, box, via, actor)
        except TransitionConflict:
            # Delivered twice at once: the other delivery stored it (this one rolled back).
            with self.store.read() as tx:
                seen = tx.find_messages_txn([mail.message_id])
            if not seen:
                raise
            return Accepted("duplicate", mail.message_id, seen[0]["mailbox"],
                            seen[0]["record_id"], mail.subject, mail.sender)

    def _accept(self, mail: Mail, raw: bytes, box: MailboxDefinition, via: str,
                actor: str | None) -> Accepted:
        who = actor or f"mail:{mail.sender or 'unknown'}"
        now_dt = self.clock.now()
        with self.store.write() as tx:
            known = {m["message_id"]: m for m in tx.find_messages_txn(
                [mail.message_id, *mail.thread_ids])}
            if mail.message_id in known:
                seen = known[mail.message_id]
                return Accepted("duplicate", mail.message_id, seen["mailbox"], seen["record_id"],
                                mail.subject, mail.sender)
            parent = next((known[t] for t in mail.thread_ids
                           if t in known and known[t]["record_id"]), None)
            if mail.automatic and box.automatic == "ignore":
                self._store_txn(tx, mail, box, raw, via, None, "ignored", now_dt)
                return Accepted("ignored", mail.message_id, box.name, None, mail.subject,
                                mail.sender, mail.automatic)
            if parent is not None:
                record_id = parent["record_id"]
                self._thread_txn(tx, mail, box, record_id, who, now_dt)
                self._store_txn(tx, mail, box, raw, via, record_id, "threaded", now_dt)
                return Accepted("threaded", mail.message_id, box.name, record_id, mail.subject,
                                mail.sender)
            (record,) = self.records.create_txn(tx, box.object, [self._fields(mail, box)], who,
                                                None, now_dt)
            self._store_txn(tx, mail, box, raw, via, record["id"], "created", now_dt)
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "message_received", who, iso(now_dt), record["id"], None,
                _timeline(mail, via, box))])
        self.wake()
        return Accepted("created", mail.message_id, box.name, record["id"], mail.subject,
                        mail.sender)

    def _fields(self, mail: Mail, box: MailboxDefinition) -> dict[str, Any]:
        values = {"subject": mail.subject, "body": mail.body, "new_text": mail.new_text,
                  "sender": mail.sender, "sender_name": mail.sender_name,
                  "sent_at": mail.date, "message_id": mail.message_id}
        return {field: values[role] for role, field in box.fields.items()
                if role in values and values[role] not in (None, "")}

    def _thread_txn(self, tx: Transaction, mail: Mail, box: MailboxDefinition, record_id: str,
                    who: str, now_dt: Any) -> None:
        """A reply: on the record's timeline, and an update of the record."""
        now = iso(now_dt)
        row = self.records.get_row_txn(tx, record_id)
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "message_received", who, now, record_id, None, _timeline(mail, "reply", box))])
        field = box.fields.get("last_message")
        if field is not None and mail.new_text:
            try:
                self.records.update_txn(tx, row, {field: mail.new_text}, who, now_dt,
                                        exclude_run=None)
                return
            except ValidationError:
                pass  # (a text too long for the field, say: still an update without changes)
        for run_id in tx.active_run_ids_for_record_txn(record_id):
            tx.enqueue_job_txn(jobs.EVALUATE, run_id,
                               dict(jobs.EvaluatePayload(reason="message_received")), now, now)
        self.records.fire_triggers_txn(tx, row, row, "update", now_dt, who)

    def _store_txn(self, tx: Transaction, mail: Mail, box: MailboxDefinition, raw: bytes,
                   via: str, record_id: str | None, outcome: str, now_dt: Any) -> None:
        tx.insert_message_txn({
            "id": self.ids.new("msg"), "message_id": mail.message_id, "mailbox": box.name,
            "record_id": record_id, "outcome": outcome, "received_at": iso(now_dt), "via": via,
            "sender": mail.sender, "subject": mail.subject, "sent_at": mail.date,
            "in_reply_to": mail.in_reply_to, "thread": list(mail.thread_ids),
            "automatic": mail.automatic, "new_text": mail.new_text, "body": mail.body,
            "attachments": [{"filename": a.filename, "content_type": a.content_type,
                             "size": a.size, "sha256": a.sha256} for a in mail.attachments],
            "raw_sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw)})

    def messages(self, record_id: str) -> list[dict[str, Any]]:
        with self.store.read() as tx:
            return tx.record_messages_txn(record_id)


def _timeline(mail: Mail, via: str, box: MailboxDefinition) -> dict[str, Any]:
    return {"mailbox": box.name, "message_id": mail.message_id, "via": via,
            "from": mail.sender, "subject": mail.subject,
            "text": mail.new_text[:TIMELINE_TEXT],
            "attachments": [a.filename for a in mail.attachments]}


class IntakeError(BatonError):
    """Intake refused a message (outside parsing: no mailbox, a refused recipient…)."""
