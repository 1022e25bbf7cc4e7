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

The stored message keeps what parsing noted (``notes``: a body cut to what is kept, a
multipart read as text, an attachment stored as another type than it was sent as), as the
record's timeline says them; :meth:`IntakeService.accept`'s answer gives them too.

A part of the mail that is empty (no subject, an empty or signature-only body…) fills its
``string`` or ``text`` field with ``""``, so that a definition's expression over the field
reads an empty text rather than failing on a missing one; a part longer than its field
takes is cut to fit (the stored message keeps it whole). A message whose own parts the
object type refuses (a required field the mail leaves empty) raises
:class:`MessageRefused`: taking it again would fail again (:data:`REFUSED`). A record that
no message could make (a required field the mailbox does not fill) is the definitions'
fault, not the sender's: a plain :class:`ValidationError`, worth another try once fixed.

**Refusals are kept** (:meth:`IntakeService.note_refusal`, ``baton_intake_refusals``): a
message :meth:`IntakeService.accept` refuses (:data:`REFUSED`, or values the database
refuses) is recorded in a short transaction of its own after the refusal, with what it said
of itself (From, Subject, Message-ID: bounded; never its body, only the sha256 of its
bytes), the way in, the reason and, for IMAP, where it stays (:class:`ImapOrigin`); the
ways in record what only they meet (a message too large to be read, an IMAP poll going
past one that failed). A write that fails is logged and the refusal stands as it was.
:meth:`IntakeService.refusals` lists them for ``baton intake refused``, ``GET
/api/intake/refused`` and the Fallout page, each with what to do to get it in
(:func:`refusal_view`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses, parseaddr
from typing import Any

from baton.clock import Clock, iso
from baton.definitions.model import MailboxDefinition, ObjectTypeDefinition
from baton.errors import BatonError, NotFound, TransitionConflict, ValidationError
from baton.ids import IdGenerator
from baton.intake.attachments import Intake, decide, joined
from baton.intake.mail import Mail, MailError, parse
from baton.records.fields import MAX_STRING, MAX_TEXT
from baton.records.service import RecordService
from baton.rows import audit_event
from baton.runtime import jobs
from baton.runtime.definitions import DefinitionRepo
from baton.runtime.idempotency import IdempotencyClaim
from baton.settings import IntakeSettings
from baton.store.ports import Transaction
from baton.store.sql import SqlStore
from baton.store.sql.refusals import (
    KEEP_DAYS,
    count_refusals_txn,
    insert_refusal_txn,
    list_refusals_txn,
)

log = logging.getLogger(__name__)
TIMELINE_TEXT = 2_000  # characters of a reply's new text on the timeline event
ATTACHMENTS_TEXT = 100_000  # characters of attachment text in the attachments_text field
TEXT_TYPES = frozenset({"string", "text"})  # the field types an empty part fills with ""
HEAD_BYTES = 64 * 1024  # bytes of a refused message read for its From, Subject, Message-ID
REASON_CHARS = 2_000  # characters of a refusal's reason kept
SUBJECT_CHARS = 300  # ... of its subject


class MessageRefused(ValidationError):
    """The record a message makes does not fit its object type because of what the message
    holds (a required field whose part it leaves empty…): sending it again would not help."""


REFUSED: tuple[type[BatonError], ...] = (MailError, MessageRefused)
"""What :meth:`IntakeService.accept` raises for a message it will never take, however
often it is sent (not an e-mail; a record its object type refuses for what the message
holds): the SMTP listener answers 5xx (the sender bounces it now, with the reason), IMAP
polling goes past it. Any other error (a database locked or away, a definition that no
message can satisfy) is worth another try: 451, the next poll."""


@dataclass(frozen=True)
class ImapOrigin:
    """Where a polled message stays (an IMAP folder is read, never changed): its refusal
    says it, so that an operator can find it there."""

    account: str  # user@host:port/folder
    folder: str
    uidvalidity: int
    uid: int


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
    id: str | None = None  # the stored message's row id (msg-…); None for a lost race
    attachments: tuple[dict[str, Any], ...] = ()  # {filename, status, reason} of this message
    notes: tuple[str, ...] = ()  # what intake noted reading it (the body cut…): Mail.notes

    def as_dict(self) -> dict[str, Any]:
        return {"outcome": self.outcome, "message_id": self.message_id, "mailbox": self.mailbox,
                "record_id": self.record_id, "subject": self.subject, "sender": self.sender,
                "reason": self.reason, "id": self.id, "attachments": list(self.attachments),
                "notes": list(self.notes)}

    @classmethod
    def of_row(cls, row: dict[str, Any], outcome: str | None = None) -> Accepted:
        """What a stored message's intake was (a duplicate's answer, an idempotent replay)."""
        return cls(outcome or row["outcome"], row["message_id"], row["mailbox"],
                   row["record_id"], row["subject"], row["sender"], row["automatic"]
                   if row["outcome"] == "ignored" else None, row["id"],
                   tuple({"filename": a["filename"], "status": a.get("status", "stored"),
                          "reason": a.get("reason")} for a in row["attachments"]),
                   tuple(row.get("notes") or ()))  # (None: stored before migration 29)


class IntakeService:
    def __init__(self, store: SqlStore, definitions: DefinitionRepo, records: RecordService,
                 clock: Clock, ids: IdGenerator, wake: Callable[[], None],
                 limits: IntakeSettings | None = None) -> None:
        self.limits = limits or IntakeSettings()
        """The bounds every way in applies (``Settings.intake``): the largest message, the
        PDF reader's pages, time and memory."""
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
        else the only mailbox there is if it lists no addresses (as :meth:`accepts`: a
        mailbox that lists its addresses takes mail for those only, whichever way it comes;
        ``name`` is how a message for another address is put in it)."""
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
        if len(boxes) == 1 and not next(iter(boxes.values())).addresses:
            return next(iter(boxes.values()))
        if not boxes:
            raise NotFound("mailbox", "for this message",
                           "deploy a kind: mailbox definition to receive e-mail")
        listed = "; ".join(f"{b.name}: {', '.join(b.addresses) or 'any address'}"
                           for b in sorted(boxes.values(), key=lambda b: b.name))
        raise NotFound("mailbox", f"for {', '.join(wanted) or 'no recipient'}",
                       f"no mailbox lists these addresses ({listed}); name the mailbox to "
                       "put it in one all the same (`baton intake eml --mailbox NAME`, the "
                       "API's `mailbox`)")

    def accepts(self, recipient: str) -> bool:
        """Would a message to ``recipient`` find a mailbox (the SMTP listener's RCPT check)?"""
        boxes = self.definitions.mailboxes()
        address = recipient.lower()
        if any(address in b.addresses for b in boxes.values()):
            return True
        return len(boxes) == 1 and not next(iter(boxes.values())).addresses

    # ---- accept ---------------------------------------------------------------------------
    def accept(self, raw: bytes, *, via: str, recipients: Sequence[str] = (),
               mailbox: str | None = None, actor: str | None = None,
               claim: IdempotencyClaim | None = None,
               max_bytes: int | None = None, origin: ImapOrigin | None = None) -> Accepted:
        """Take one message (raises :class:`~baton.intake.mail.MailError` if it is not one,
        or if it is over a bound of :mod:`~baton.intake.mail`: ``max_bytes`` is its size's,
        :attr:`limits`' ``max_message_bytes`` unless given).

        ``claim``: an API request's idempotency key, claimed in the transaction that stores
        the message and bound to the stored message (``msg-…``). A message refused for
        good (:data:`REFUSED`, or values the database refuses) is recorded as refused
        (:meth:`note_refusal`; ``origin``: where an IMAP message stays) before the error
        is raised to the way in."""
        try:
            return self._accept_once(raw, via, recipients, mailbox, actor, claim, max_bytes)
        except REFUSED as exc:
            self.note_refusal(via, str(exc), raw=_bytes(raw), mailbox=mailbox,
                              recipients=recipients, origin=origin,
                              outcome="unreadable" if isinstance(exc, MailError)
                              else "refused")
            raise
        except Exception as exc:
            if self.store.refuses_data(exc):  # (its values: refused again every time)
                self.note_refusal(via, "the database refused the values it holds: "
                                  f"{first_line(exc)}", raw=_bytes(raw), mailbox=mailbox,
                                  recipients=recipients, origin=origin, outcome="failed")
            raise

    def _accept_once(self, raw: bytes, via: str, recipients: Sequence[str],
                     mailbox: str | None, actor: str | None,
                     claim: IdempotencyClaim | None, max_bytes: int | None) -> Accepted:
        if not isinstance(raw, bytes | bytearray | memoryview):
            raise MailError(f"a message is its bytes as received (RFC 5322), got "
                            f"{type(raw).__name__}: encode a text first")
        mail = parse(bytes(raw), self.limits.max_message_bytes if max_bytes is None
                     else max_bytes)
        # The envelope's recipients (SMTP) decide; a file's own To and Cc otherwise.
        box = self.mailbox_for(list(recipients) or [*mail.to, *mail.cc], mailbox)
        # Attachments are decided and their text read before the transaction (CPU work).
        kept = decide(mail.attachments, box.attachments, self.limits)
        try:
            return self._accept(mail, raw, box, via, actor, kept, claim)
        except TransitionConflict as exc:
            # Delivered twice at once: the other delivery stored it (this one rolled back).
            with self.store.read() as tx:
                seen = tx.find_messages_txn([mail.message_id])
            if not seen:
                # No other delivery: the database refused this message's row for its values
                # (a constraint, a trigger): raised as what it is, so that the ways in tell
                # it from a conflict worth another try (SMTP 554, IMAP goes past it).
                cause = exc.__cause__
                if isinstance(cause, Exception) and self.store.refuses_data(cause):
                    raise cause from None
                raise
            return Accepted.of_row(seen[0], "duplicate")

    def _accept(self, mail: Mail, raw: bytes, box: MailboxDefinition, via: str,
                actor: str | None, kept: list[Intake],
                claim: IdempotencyClaim | None) -> Accepted:
        who = actor or f"mail:{mail.sender or 'unknown'}"
        now_dt = self.clock.now()
        listed = tuple({"filename": k.attachment.filename,
                        "status": "stored" if k.stored else "refused", "reason": k.refused}
                       for k in kept)
        with self.store.write() as tx:
            if claim is not None:
                claim.claim_txn(tx, now_dt)
            known = {m["message_id"]: m for m in tx.find_messages_txn(
                [mail.message_id, *mail.thread_ids])}
            if mail.message_id in known:
                seen = known[mail.message_id]
                if claim is not None:
                    claim.bind_txn(tx, seen["id"])
                return Accepted.of_row(seen, "duplicate")
            parent = next((known[t] for t in mail.thread_ids
                           if t in known and known[t]["record_id"]), None)
            if mail.automatic and box.automatic == "ignore":
                row_id = self._store_txn(tx, mail, box, raw, via, None, "ignored", now_dt, kept)
                if claim is not None:
                    claim.bind_txn(tx, row_id)
                return Accepted("ignored", mail.message_id, box.name, None, mail.subject,
                                mail.sender, mail.automatic, row_id, listed, mail.notes)
            if parent is not None:
                record_id = parent["record_id"]
                self._thread_txn(tx, mail, box, record_id, who, now_dt, kept)
                row_id = self._store_txn(tx, mail, box, raw, via, record_id, "threaded", now_dt,
                                         kept)
                if claim is not None:
                    claim.bind_txn(tx, row_id)
                return Accepted("threaded", mail.message_id, box.name, record_id, mail.subject,
                                mail.sender, None, row_id, listed, mail.notes)
            parts = _parts(mail, kept)
            fields = _fields(parts, box, self.definitions.object_type(box.object, tx))
            try:
                (record,) = self.records.create_txn(tx, box.object, [fields], who, None, now_dt)
            except ValidationError as exc:
                raise _refused(exc, parts, box) from exc
            row_id = self._store_txn(tx, mail, box, raw, via, record["id"], "created", now_dt,
                                     kept)
            if claim is not None:
                claim.bind_txn(tx, row_id)
            tx.append_events_txn([audit_event(  # type: ignore[list-item]
                "message_received", who, iso(now_dt), record["id"], None,
                _timeline(mail, via, box, kept))])
        self.wake()
        return Accepted("created", mail.message_id, box.name, record["id"], mail.subject,
                        mail.sender, None, row_id, listed, mail.notes)

    def _thread_txn(self, tx: Transaction, mail: Mail, box: MailboxDefinition, record_id: str,
                    who: str, now_dt: Any, kept: list[Intake]) -> None:
        """A reply: on the record's timeline, and an update of the record."""
        now = iso(now_dt)
        row = self.records.get_row_txn(tx, record_id)
        tx.append_events_txn([audit_event(  # type: ignore[list-item]
            "message_received", who, now, record_id, None,
            _timeline(mail, "reply", box, kept))])
        changes: dict[str, Any] = {}
        otype = self.definitions.object_type(box.object, tx)
        field = box.fields.get("last_message")
        if field is not None and mail.new_text:
            changes[field] = _cut(otype, field, mail.new_text)
        text_field, more = box.fields.get("attachments_text"), _texts(kept)
        if text_field is not None and more:
            before = row["data"].get(text_field) if isinstance(row.get("data"), dict) else None
            changes[text_field] = _cut(otype, text_field, (f"{before}\n\n{more}" if before
                                                           else more)[:ATTACHMENTS_TEXT])
        if changes:
            try:
                self.records.update_txn(tx, row, changes, who, now_dt, exclude_run=None)
                return
            except ValidationError as exc:  # (the record's own data refused: still said)
                log.warning("reply %s to record %s: the record was not updated (%s); the "
                            "message is on its timeline", mail.message_id, record_id, exc)
        for run_id in tx.active_run_ids_for_record_txn(record_id):
            tx.enqueue_job_txn(jobs.EVALUATE, run_id,
                               dict(jobs.EvaluatePayload(reason="message_received")), now, now)
        self.records.fire_triggers_txn(tx, row, row, "update", now_dt, who)

    def _store_txn(self, tx: Transaction, mail: Mail, box: MailboxDefinition, raw: bytes,
                   via: str, record_id: str | None, outcome: str, now_dt: Any,
                   kept: list[Intake]) -> str:
        """Store the message and its attachments; the message's row id."""
        row_id = self.ids.new("msg")
        now = iso(now_dt)
        tx.insert_message_txn({
            "id": row_id, "message_id": mail.message_id, "mailbox": box.name,
            "record_id": record_id, "outcome": outcome, "received_at": iso(now_dt), "via": via,
            "sender": mail.sender, "subject": mail.subject, "sent_at": mail.date,
            "in_reply_to": mail.in_reply_to, "thread": list(mail.thread_ids),
            "automatic": mail.automatic, "new_text": mail.new_text, "body": mail.body,
            "attachments": [{"filename": k.attachment.filename,
                             "content_type": k.attachment.content_type,
                             **({"declared_type": k.attachment.declared_type}
                                if k.attachment.declared_type is not None else {}),
                             "size": k.attachment.size, "sha256": k.attachment.sha256,
                             "status": "stored" if k.stored else "refused",
                             "reason": k.refused} for k in kept],
            "raw_sha256": hashlib.sha256(raw).hexdigest(), "size": len(raw),
            "notes": list(mail.notes)})
        rows = []
        for i, k in enumerate(kept):
            a = k.attachment
            if k.stored:
                tx.put_blob_txn({"sha256": a.sha256, "size": a.size, "content": a.data,
                                 "text": k.text, "text_error": k.text_error,
                                 "created_at": now})
            rows.append({"id": self.ids.new("att"), "message": row_id, "record_id": record_id,
                         "position": i, "filename": a.filename[:255],
                         "content_type": a.content_type[:200], "size": a.size,
                         "sha256": a.sha256, "status": "stored" if k.stored else "refused",
                         "reason": k.refused, "created_at": now})
        tx.insert_attachments_txn(rows)
        return row_id

    # ---- refusals ---------------------------------------------------------------------------
    def note_refusal(self, via: str, reason: str, *, outcome: str = "refused",
                     raw: bytes | None = None, head: bytes | None = None,
                     size: int | None = None, sender: str | None = None,
                     mailbox: str | None = None, recipients: Sequence[str] = (),
                     origin: ImapOrigin | None = None) -> str | None:
        """Record that a message was refused or could not be taken (``outcome``: refused |
        unreadable | too_large | failed), in a write of its own: its id, or None when the
        write failed (logged: the refusal stands without its row). ``raw``: the message's
        bytes (its size and sha256 are kept), else ``head``: its start only (a message too
        large to be read whole); From, Subject and Message-ID are read from their first
        :data:`HEAD_BYTES` bytes. ``size``, ``sender``: as announced, when the message was
        not received (SMTP's ``MAIL FROM … SIZE=``). The mailbox: ``mailbox`` if deployed,
        else the one the recipients (or the message's To and Cc) name, else none."""
        try:
            said = _sniff(raw if raw is not None else head or b"")
            box = self._box_of(mailbox, list(recipients) or said["to"])
            now = self.clock.now()
            row = {
                "id": self.ids.new("rfs"), "refused_at": iso(now), "mailbox": box,
                "via": via[:20], "outcome": outcome[:20],
                "reason": _clean(reason, REASON_CHARS) or outcome,
                "message_id": said["message_id"],
                "sender": said["sender"] or _clean(sender or "", 320) or None,
                "subject": said["subject"],
                "size": len(raw) if raw is not None else size,
                "raw_sha256": hashlib.sha256(raw).hexdigest() if raw is not None else None,
                "account": _clean(origin.account, 700) if origin else None,
                "folder": _clean(origin.folder, 300) if origin else None,
                "uidvalidity": origin.uidvalidity if origin else None,
                "uid": origin.uid if origin else None}
            with self.store.write() as tx:
                insert_refusal_txn(tx.conn, row,
                                   expired_before=iso(now - timedelta(days=KEEP_DAYS)))
        except Exception as exc:  # noqa: BLE001 - logged: the refusal stands as it was
            log.warning("intake: a refusal (%s, %s) could not be recorded: %s", via,
                        " ".join(reason.split())[:200], first_line(exc))
            return None
        return str(row["id"])

    def _box_of(self, name: str | None, recipients: Sequence[str]) -> str | None:
        """The deployed mailbox a refused message was for, if one can be told."""
        boxes = self.definitions.mailboxes()
        if name is not None:
            return name if name in boxes else None
        try:
            return self.mailbox_for(recipients).name
        except BatonError:
            return None

    def refusals(self, mailbox: str | None = None, limit: int = 50, offset: int = 0
                 ) -> tuple[list[dict[str, Any]], int]:
        """The refusals kept, newest first (:func:`refusal_view` each), and how many are
        kept in all (of ``mailbox`` when given)."""
        with self.store.read() as tx:
            rows = list_refusals_txn(tx.conn, mailbox, limit, offset)
            total = count_refusals_txn(tx.conn, mailbox)
        return [refusal_view(r) for r in rows], total

    def count_refusals(self, since: Any = None) -> int:
        """How many refusals are kept (``since``: a datetime, those since then)."""
        with self.store.read() as tx:
            return count_refusals_txn(tx.conn, None, iso(since) if since else None)

    # ---- reading ----------------------------------------------------------------------------
    def messages(self, record_id: str) -> list[dict[str, Any]]:
        """A record's messages, oldest first, each with its attachments (ids included)."""
        with self.store.read() as tx:
            self.records.get_row_txn(tx, record_id, lock=False)  # (NotFound if unknown)
            messages = tx.record_messages_txn(record_id)
            attachments = tx.record_attachments_txn(record_id)
        by_message: dict[str, list[dict[str, Any]]] = {}
        for a in attachments:
            by_message.setdefault(a["message"], []).append(attachment_view(a))
        return [{**m, "notes": m.get("notes") or [], "attachments": by_message.get(m["id"], [])}
                for m in messages]

    def message(self, row_id: str) -> dict[str, Any]:
        """One stored message (``notes``: [] for one stored before migration 29)."""
        with self.store.read() as tx:
            row = tx.message_txn(row_id)
        if row is None:
            raise NotFound("message", row_id)
        return {**row, "notes": row.get("notes") or []}

    def attachments(self, record_id: str) -> list[dict[str, Any]]:
        """A record's attachments (stored and refused), without content."""
        with self.store.read() as tx:
            self.records.get_row_txn(tx, record_id, lock=False)
            return [attachment_view(a) for a in tx.record_attachments_txn(record_id)]

    def attachment(self, attachment_id: str, *, content: bool = False) -> dict[str, Any]:
        """One attachment with its text (and bytes): NotFound when unknown or refused (a
        refused attachment has no content to give)."""
        with self.store.read() as tx:
            row = tx.attachment_txn(attachment_id, content=content)
        if row is None or row["status"] != "stored":
            raise NotFound("attachment", attachment_id,
                           "it was refused when the message arrived: "
                           f"{row['reason']}" if row is not None else "")
        return row

    def attachments_text(self, record_id: str) -> str:
        """The text read from a record's stored attachments, each under its file name."""
        with self.store.read() as tx:
            rows = tx.record_attachments_text_txn(record_id)
        return joined([(r["filename"], r["text"]) for r in rows if r["text"]], ATTACHMENTS_TEXT)


def attachment_view(a: dict[str, Any]) -> dict[str, Any]:
    """An attachment as the API, the UI and the CLI show it."""
    stored = a["status"] == "stored"
    return {"id": a["id"], "message": a["message"], "record_id": a["record_id"],
            "filename": a["filename"], "content_type": a["content_type"], "size": a["size"],
            "sha256": a["sha256"], "status": a["status"], "reason": a["reason"],
            "text": bool(a.get("has_text")) if stored else False,
            "text_error": a.get("text_error") if stored else None,
            "url": f"/api/attachments/{a['id']}" if stored else None,
            "received_at": a["created_at"]}


def refusal_view(row: dict[str, Any]) -> dict[str, Any]:
    """A refusal as the API, the CLI and the Fallout page show it, with what to do to get
    the message in once its cause is mended (``remedy``)."""
    imap = ({"account": row["account"], "folder": row["folder"],
             "uidvalidity": row["uidvalidity"], "uid": row["uid"]}
            if row["uid"] is not None else None)
    return {"id": row["id"], "refused_at": row["refused_at"], "mailbox": row["mailbox"],
            "via": row["via"], "outcome": row["outcome"], "reason": row["reason"],
            "message_id": row["message_id"], "sender": row["sender"],
            "subject": row["subject"], "size": row["size"], "raw_sha256": row["raw_sha256"],
            "imap": imap, "remedy": _remedy(row)}


def _remedy(row: dict[str, Any]) -> str:
    box = f" --mailbox {row['mailbox']}" if row["mailbox"] else ""
    again = f"`baton intake eml FILE{box}`"
    if row["via"] == "imap":
        where = (f"UID {row['uid']} of folder {row['folder']!r} ({row['account']}, "
                 f"UIDVALIDITY {row['uidvalidity']})" if row["uid"] is not None
                 else "the mailbox's IMAP folder")
        return (f"It stays in {where}, unchanged; Baton does not look at it again. Once the "
                f"cause is mended, take it in with `baton intake imap-fetch"
                f"{box or ' --mailbox NAME'} --uid {row['uid']}`, or save it from a mail "
                f"client as an .eml file and import it with {again}.")
    if row["via"] == "smtp":
        return ("The sending server was answered with the refusal (5xx) and bounces it to "
                "its sender: it is theirs to send again once the cause is mended; or save "
                f"their copy as an .eml file and import it with {again}.")
    if row["via"] == "eml":
        return f"Mend the file, or what refused it, and import it again with {again}."
    return "The caller was answered with the refusal: it may post the message again, mended."


def _sniff(raw: bytes) -> dict[str, Any]:
    """From, Subject, Message-ID and the To/Cc addresses a message says of itself, read
    leniently from its first :data:`HEAD_BYTES` bytes (it may be anything: a refused
    message), each bounded; None (an empty list) for what cannot be read."""
    out: dict[str, Any] = {"sender": None, "subject": None, "message_id": None, "to": []}
    head = bytes(raw[:HEAD_BYTES])
    ends = [i for i in (head.find(b"\r\n\r\n"), head.find(b"\n\n")) if i >= 0]
    if ends:
        head = head[:min(ends)] + b"\n\n"
    try:
        msg = BytesHeaderParser(policy=compat32).parsebytes(head)
    except Exception:  # noqa: BLE001 - hostile bytes: nothing said of it
        return out

    def said(name: str) -> str | None:
        try:
            value = msg.get(name)
        except Exception:  # noqa: BLE001
            return None
        if value is None:
            return None
        text = str(value)[:4_000]
        try:
            decoded = str(make_header(decode_header(text)))
        except Exception:  # noqa: BLE001 - an encoded word that does not decode: as it is
            decoded = text
        return " ".join(decoded.split())

    subject, sender, mid = said("Subject"), said("From"), said("Message-ID")
    out["subject"] = _clean(subject, SUBJECT_CHARS) if subject is not None else None
    if sender:
        out["sender"] = _clean(parseaddr(sender)[1] or sender, 320) or None
    if mid:
        out["message_id"] = _clean(mid.strip().removeprefix("<").removesuffix(">"), 500) or None
    try:
        listed = getaddresses([v for v in (said("To"), said("Cc")) if v])
    except Exception:  # noqa: BLE001 - addresses that do not parse: none
        listed = []
    out["to"] = [a.lower() for _, a in listed if a][:50]
    return out


def _clean(text: str, most: int) -> str:
    """``text`` as every database stores it (no NUL, no lone surrogate), at most ``most``
    characters."""
    text = text[:most].replace("\x00", "\ufffd")
    return text.encode("utf-8", "replace").decode("utf-8")


def _bytes(raw: Any) -> bytes | None:
    return bytes(raw) if isinstance(raw, bytes | bytearray | memoryview) else None


def first_line(exc: BaseException) -> str:
    """An error in one line: the driver's message for a database error (never SQLAlchemy's
    statement and parameters: what the message holds), else the error's own."""
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _parts(mail: Mail, kept: list[Intake]) -> dict[str, Any]:
    """The parts of a new message a mailbox maps to fields (``last_message``: replies only)."""
    return {"subject": mail.subject, "body": mail.body, "new_text": mail.new_text,
            "sender": mail.sender, "sender_name": mail.sender_name, "sent_at": mail.date,
            "message_id": mail.message_id, "attachments_text": _texts(kept)}


def _fields(parts: dict[str, Any], box: MailboxDefinition, otype: ObjectTypeDefinition
            ) -> dict[str, Any]:
    """The new record's fields. An empty part fills a ``string`` or ``text`` field without
    a default with ``""``: ``record.subject + "\\n" + record.request`` then reads the subject
    of a mail without a body instead of failing on a missing ``request``. Left out: an
    empty part for a field of another type or with a default (the default applies). A part
    longer than its field takes is cut to fit (the stored message keeps it whole)."""
    out: dict[str, Any] = {}
    for role, field in box.fields.items():
        if role not in parts:
            continue
        value, spec = parts[role], otype.field(field)
        if spec is None or spec.type not in TEXT_TYPES:  # (sent_at to a datetime field…)
            if value not in (None, ""):
                out[field] = value
        elif value:  # cut to fit: a pasted log is not refused, its start is kept
            out[field] = _cut(otype, field, value)
        elif spec.default is None:
            out[field] = ""
    return out


def _cut(otype: ObjectTypeDefinition, field: str, value: str) -> str:
    """``value`` cut to what a ``string`` or ``text`` field takes (the message keeps it
    whole); any other field's value as it is (its own checks apply)."""
    spec = otype.field(field)
    if spec is None or spec.type not in TEXT_TYPES:
        return value
    return value[:spec.max_length or (MAX_STRING if spec.type == "string" else MAX_TEXT)]


def _refused(exc: ValidationError, parts: dict[str, Any], box: MailboxDefinition
             ) -> ValidationError:
    """:class:`MessageRefused` when every field ``exc`` names is one the mailbox fills from
    the message, saying which the mail left empty (what a bounce tells the sender: "subject:
    is required (the message's subject is empty)"); else ``exc`` itself (a field no part
    fills is refused for every message: the definitions' fault)."""
    mapped = {field: role for role, field in box.fields.items() if role in parts}
    if not exc.fields.keys() <= mapped.keys():
        return exc
    return MessageRefused(exc.what, {
        f: f"{why} (the message's {mapped[f].replace('_', ' ')} is empty)"
        if parts[mapped[f]] in (None, "") else why for f, why in exc.fields.items()})


def _texts(kept: list[Intake]) -> str:
    return joined([(k.attachment.filename, k.text) for k in kept if k.stored and k.text],
                  ATTACHMENTS_TEXT)


def _timeline(mail: Mail, via: str, box: MailboxDefinition, kept: list[Intake]
              ) -> dict[str, Any]:
    return {"mailbox": box.name, "message_id": mail.message_id, "via": via,
            "from": mail.sender, "subject": mail.subject,
            "text": mail.new_text[:TIMELINE_TEXT],
            "attachments": [k.attachment.filename for k in kept],
            "refused": [k.attachment.filename for k in kept if not k.stored],
            **({"notes": list(mail.notes)} if mail.notes else {})}


class IntakeError(BatonError):
    """Intake refused a message (outside parsing: no mailbox, a refused recipient…)."""
