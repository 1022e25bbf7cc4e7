"""Intake over HTTP: systems post e-mail to a mailbox or answers to an intake form; a
record's messages and attachments are read, and an attachment downloaded, by who may read
records.

``POST /api/intake/{target}``, when ``target`` is a ``kind: mailbox``, takes the same path as
SMTP and ``.eml`` files (:meth:`~baton.intake.service.IntakeService.accept`): a raw RFC 822
message (``Content-Type: message/rfc822``) as it is, or a message as JSON fields built into
one. When ``target`` is a ``kind: intake_form`` (and no mailbox has that name), it takes the
form's answers as JSON (``{"data": {...}}``) and makes the record the public page would
make (:func:`~baton.intake.forms.form_record`: the form's ``set`` values, ``also`` fields,
the same checks), with the caller as the actor and without the page's per-address rate
limit (the caller is authenticated). It needs the ``records:write`` permission (it creates
and updates records: the same people may do it by hand), and takes an ``Idempotency-Key``
like every create.

``GET /api/intake/refused`` lists the mail intake refused or could not take (every way in:
SMTP, IMAP, ``.eml`` files, this API), newest first, for who may read records (what a
refusal shows of a message, its sender and subject, is what its record would show).
"""

from __future__ import annotations

import base64
import binascii
import email.errors
import email.policy
import hashlib
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from baton.auth.roles import Permission
from baton.definitions.intake_form import IntakeFormDefinition
from baton.errors import NotFound
from baton.errors import ValidationError as FieldErrors
from baton.intake.forms import form_record
from baton.intake.mail import MailError
from baton.intake.service import Accepted
from baton.runtime.idempotency import IdempotencyClaim
from baton.web.api.common import (
    After,
    ExactNumbers,
    Limit,
    Offset,
    Page,
    RequestBody,
    page,
    page_of,
    start_of,
    under,
)
from baton.web.committer import committer_of
from baton.web.idempotency import REPLAY_HEADERS, Answer, IdempotencyKey, idempotent
from baton.web.problems import ProblemError, problem_responses
from baton.web.security import Principal, engine_of, need

router = APIRouter(tags=["Intake"], route_class=ExactNumbers)

READ = Depends(need(Permission.RECORDS_READ))
WRITE = Depends(need(Permission.RECORDS_WRITE))
RecordId = Annotated[str, Path(min_length=1, max_length=40)]
AttachmentId = Annotated[str, Path(min_length=1, max_length=40)]
IntakeName = Annotated[str, Path(min_length=1, max_length=200,
                                 description="a kind: mailbox, or a kind: intake_form")]
MAX_MESSAGE = 25_000_000  # bytes of a posted message (the body as sent, attachments included)
RFC822 = "message/rfc822"


# A file name is one line: no control characters nor what Python's e-mail headers take for
# line breaks (the attachment's Content-Disposition header could not be written: a 500).
FILENAME = r"^[^\x00-\x1f\x7f\x85\u2028\u2029]+$"


class FormAttachment(BaseModel):
    filename: str = Field(min_length=1, max_length=255, pattern=FILENAME,
                          description="one line: no control characters")
    content_type: str = Field(default="application/octet-stream", max_length=200,
                              pattern=r"^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*/"
                                      r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]*$")
    content_base64: str = Field(description="the file's bytes, base64")


# An id, with or without the < > it has in a header: no spaces, no control characters nor
# what Python's e-mail headers take for line breaks (U+001C-U+001F, U+0085, U+2028/9, which
# a schema's \s does not cover).
_ID = r"[^<>\s\x00-\x1f\x7f\x85\u2028\u2029]+"
MESSAGE_ID = rf"^(?:{_ID}|<{_ID}>)$"


class IntakeForm(RequestBody):
    """A message as fields; the mailbox maps them to the record as it maps an e-mail's."""

    subject: str = Field(default="", max_length=2_000)
    body: str = Field(default="", max_length=1_000_000,
                      description="the text; quoted history and a signature are cut from "
                                  "new_text as in an e-mail")
    sender: str = Field(min_length=3, max_length=320,
                        pattern=r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+$",
                        description="the sender's e-mail address (ASCII)")
    sender_name: str = Field(default="", max_length=200)
    message_id: str | None = Field(default=None, max_length=500, pattern=MESSAGE_ID,
                                   description="your id for the message (with or without "
                                               "the < > of its header): sent twice, it is "
                                               "taken once; default: a new one")
    in_reply_to: str | None = Field(default=None, max_length=500, pattern=MESSAGE_ID,
                                    description="the message_id this answers (with or "
                                                "without < >, as in an In-Reply-To header): "
                                                "it goes on that message's record instead of "
                                                "making a case")
    attachments: list[FormAttachment] = Field(default_factory=list, max_length=50)


class FormAnswers(RequestBody):
    """Answers to an intake form's questions, by the field each question fills."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "data": {"subject": "Invoice twice", "email": "ana@dealer-one.example",
                 "message": "Invoice 4411 was charged twice.", "topic": "billing"}}]})

    data: dict[str, Any] = Field(max_length=500, description="question (field) -> answer, "
                                 "typed as the object type's field (a decimal as a string)")


class FormIntakeOut(BaseModel):
    outcome: str = Field(description="created: the form's record")
    form: str
    object_type: str
    record_id: str


class RawMessage(BaseModel):
    """What an idempotency key remembers of a raw message (its fingerprint)."""

    sha256: str


NOTES = ("what intake noted reading the message, as its record's timeline says: its body "
         "cut to what is kept, a multipart read as text, an attachment stored as another type "
         "than it was sent as (empty for messages stored before these were kept)")


class AttachmentNote(BaseModel):
    filename: str
    status: str = Field(description="stored | refused")
    reason: str | None = Field(description="why it was refused")


class IntakeOut(BaseModel):
    outcome: str = Field(description="created (a new record) | threaded (a reply, added to its "
                                     "record) | ignored (automatic mail: no case) | duplicate "
                                     "(this Message-ID was taken before: nothing changed)")
    id: str | None = Field(description="the stored message")
    message_id: str
    mailbox: str
    record_id: str | None
    subject: str
    sender: str
    reason: str | None = Field(description="why it was ignored")
    attachments: list[AttachmentNote]
    notes: list[str] = Field(description=NOTES)


class AttachmentOut(BaseModel):
    id: str
    message: str = Field(description="the stored message it came with")
    record_id: str | None
    filename: str
    content_type: str
    size: int
    sha256: str
    status: str = Field(description="stored | refused (not kept: the mailbox's attachments "
                                    "policy refused its type or size)")
    reason: str | None
    text: bool = Field(description="text was read from it (for AI steps)")
    text_error: str | None
    url: str | None = Field(description="where to download it (stored ones)")
    received_at: str


class MessageOut(BaseModel):
    id: str
    message_id: str
    mailbox: str
    outcome: str
    via: str
    received_at: str
    sender: str
    subject: str
    sent_at: str | None
    in_reply_to: str | None
    automatic: str | None
    new_text: str
    body: str
    attachments: list[AttachmentOut]
    notes: list[str] = Field(description=NOTES)


class RefusalImap(BaseModel):
    account: str = Field(description="user@host:port/folder")
    folder: str
    uidvalidity: int
    uid: int


class RefusalOut(BaseModel):
    id: str
    refused_at: str
    mailbox: str | None = Field(description="the mailbox it was for (null: none could be "
                                            "told, e.g. an SMTP message refused at MAIL FROM)")
    via: str = Field(description="smtp | imap | eml | api")
    outcome: str = Field(description="refused (its record's object type refuses what it holds) "
                                     "| unreadable (not an e-mail intake can read) | too_large "
                                     "| failed (an error of its own: the database refusing its "
                                     "values, or a bug met on its content)")
    reason: str
    message_id: str | None
    sender: str | None
    subject: str | None = Field(description="its start")
    size: int | None = Field(description="bytes, as received or as announced")
    raw_sha256: str | None = Field(description="of the bytes received (never the body)")
    imap: RefusalImap | None = Field(description="where an IMAP message stays")
    remedy: str = Field(description="how to get it in once the cause is mended")


FORM_EXAMPLE = {"subject": "Invoice 4411 is wrong", "sender": "ana@dealer-one.example",
                "sender_name": "Ana Costa",
                "body": "Hello,\n\nthe invoice 4411 charges twice.\n\nAna"}
RAW_EXAMPLE = ("From: Ana Costa <ana@dealer-one.example>\r\nTo: support@baton.example\r\n"
               "Subject: Invoice 4411 is wrong\r\nMessage-ID: <4411@dealer-one.example>\r\n"
               "\r\nHello,\r\n\r\nthe invoice 4411 charges twice.\r\n")


def _inlined(model: type[BaseModel]) -> dict[str, Any]:
    """A model's JSON schema with its nested models written in place (a request body given
    by ``openapi_extra`` does not add them to the document's components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return walk(defs[ref.rsplit("/", 1)[1]])
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(schema)  # type: ignore[no-any-return]


INTAKE_BODY = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"anyOf": [_inlined(IntakeForm), _inlined(FormAnswers)]},
                         "example": FORM_EXAMPLE},
    RFC822: {"schema": {"type": "string", "format": "binary"}, "example": RAW_EXAMPLE}}}}


@router.get("/intake/refused", response_model=Page[RefusalOut],
            operation_id="listIntakeRefusals",
            summary="Mail intake refused, newest first",
            description="Every way in (SMTP, IMAP, `.eml` files, this API): when, the "
                        "mailbox, the sender, subject and Message-ID as the message said "
                        "them, why, and for IMAP where the message stays; never its body. "
                        "Each says how to get the message in once the cause is mended. "
                        "Kept: the newest 10,000, for 90 days. Needs `records:read`.",
            responses=problem_responses(401, 403, 422))
def list_refusals(request: Request,
                  mailbox: Annotated[str | None, Query(min_length=1, max_length=200)] = None,
                  limit: Limit = 50, offset: Offset = 0, after: After = None,
                  _: Principal = READ) -> dict[str, Any]:
    tag = f"refused:{mailbox or ''}"
    start = start_of(tag, after, offset)
    items, total = engine_of(request).intake.refusals(mailbox, limit, start)
    return page(items, total, limit, start, tag)


@router.post("/intake/{target}", response_model=IntakeOut, status_code=200,
             summary="Send a message to a mailbox, or answers to an intake form",
             description="To a `kind: mailbox`: a raw e-mail (`Content-Type: message/rfc822`) "
                         "or a message as JSON fields, taken as the SMTP listener takes mail: "
                         "a new case, a reply on its case (`in_reply_to`), automatic mail "
                         "stored without a case, or a duplicate of a Message-ID taken before "
                         "(200). To a `kind: intake_form`: the form's answers as JSON "
                         "(`{\"data\": {...}}`), making the record its public page would "
                         "make (201; refusals name `body.data.QUESTION`). Needs "
                         "`records:write`. With an `Idempotency-Key`, a retry takes nothing "
                         "and answers as the first request was answered.",
             openapi_extra=INTAKE_BODY,
             responses={200: {"description": "Taken by the mailbox", "headers": REPLAY_HEADERS},
                        201: {"description": "The form's record created", "model": FormIntakeOut,
                              "headers": {**REPLAY_HEADERS,
                                          "Location": {"description": "the record",
                                                       "schema": {"type": "string"}}}},
                        **problem_responses(400, 401, 403, 404, 413, 415, 422)})
async def post_intake(request: Request, target: IntakeName,
                      idempotency_key: IdempotencyKey = None,
                      principal: Principal = WRITE) -> JSONResponse:
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    eng = engine_of(request)
    form_def = None
    boxes = eng.definitions.mailboxes()
    if target not in boxes:
        forms = eng.definitions.intake_forms()
        form_def = forms.get(target)
        if form_def is None:
            raise NotFound("mailbox or intake form", target,
                           f"mailboxes: {', '.join(sorted(boxes)) or 'none'}; intake forms: "
                           f"{', '.join(sorted(forms)) or 'none'}")
    if form_def is not None:
        if kind != "application/json":  # (declared for the path: a mailbox takes it)
            message = (f"intake form {target!r} takes its answers as application/json "
                       f"({{\"data\": {{...}}}}), not {kind or 'a body without Content-Type'}")
            raise ProblemError(422, "Invalid input", message, slug="validation",
                               errors=[{"field": "body", "message": message}])
        raw = await _read(request)
        return await run_in_threadpool(_answer_form, request, form_def, raw, idempotency_key,
                                       principal)
    if kind not in (RFC822, "application/json"):
        raise ProblemError(415, "Unsupported media type",
                           f"send {RFC822} (a raw e-mail) or application/json (a form), "
                           f"got {kind or 'no Content-Type'}", slug="unsupported-media-type")
    raw = await _read(request, eng.intake.limits.max_message_bytes)
    form: IntakeForm | None = None
    if kind == "application/json":
        try:
            form = IntakeForm.model_validate_json(raw)
        except ValidationError as exc:
            raise ProblemError(422, "Invalid input", "the form is not valid",
                               slug="validation",
                               errors=[{"field": ".".join(["body", *map(str, e["loc"])]),
                                        "message": e["msg"]} for e in exc.errors()]) from exc
        raw = _build(form, eng.ids.new("api"), format_datetime(eng.clock.now()))
    fingerprinted: BaseModel = form if form is not None else RawMessage(
        sha256=hashlib.sha256(raw).hexdigest())

    def take(claim: IdempotencyClaim | None) -> Answer:
        try:
            # The record's fields come from the message: a refusal names them under body.
            with under("body"):
                got = eng.intake.accept(raw, via="api", mailbox=target, actor=principal.name,
                                        claim=claim)
        except MailError as exc:
            raise ProblemError(422, "Not an e-mail", str(exc), slug="validation",
                               errors=[{"field": "body", "message": str(exc)}]) from exc
        return _answer(got)

    def rebuild(row_id: str) -> Answer:
        return _answer(Accepted.of_row(eng.intake.message(row_id)))

    # (The work is synchronous, as the other creates are: this endpoint is async only to
    # read the body with a size cap, so the blocking part goes to a thread.)
    return await run_in_threadpool(idempotent, request, principal, idempotency_key, "message",
                                   fingerprinted, IntakeOut, 200, take, rebuild)


def _answer_form(request: Request, form: IntakeFormDefinition, raw: bytes,
                 idempotency_key: str | None, principal: Any) -> JSONResponse:
    """Answers to an intake form (``kind: intake_form``) from a system: the record the
    public page would make, refused question by question as the page refuses them."""
    eng = engine_of(request)
    try:
        answers = FormAnswers.model_validate_json(raw)
    except ValidationError as exc:
        raise ProblemError(422, "Invalid input", f"the answers to form {form.name!r} are not "
                           "valid", slug="validation",
                           errors=[{"field": ".".join(["body", *map(str, e["loc"])]),
                                    "message": e["msg"]} for e in exc.errors()]) from exc
    obj = eng.definitions.object_types().get(form.object)
    if obj is None:  # (deploy refuses a form of an unknown type; one retired since)
        raise NotFound("object type", form.object, f"intake form {form.name!r} makes them")
    record, problems = form_record(form, obj, answers.data)
    if problems:
        raise FieldErrors(f"answers to form {form.name!r}",
                          {f"body.data.{q}": m for q, m in problems.items()})
    rename = {t: f"body.data.{q.field}" for q in form.fields for t in (q.field, *q.also)}

    def out(record_id: str) -> Answer:
        return ({"outcome": "created", "form": form.name, "object_type": form.object,
                 "record_id": record_id}, {"Location": f"/api/records/{record_id}"})

    def create(claim: IdempotencyClaim | None) -> Answer:
        def create_txn(tx: Any) -> dict[str, Any]:
            return eng.records.create_txn(tx, form.object, [record], principal.name, claim,
                                          eng.clock.now())[0]

        with under("body.data", rename):  # what only the write checks (refs, locks)
            view = committer_of(request).submit(create_txn)
        return out(str(view["id"]))

    return idempotent(request, principal, idempotency_key, "record", answers, FormIntakeOut,
                      201, create, out)


async def _read(request: Request, most: int = MAX_MESSAGE) -> bytes:
    size = 0
    chunks: list[bytes] = []
    async for chunk in request.stream():
        size += len(chunk)
        if size > most:
            raise ProblemError(413, "Content too large",
                               f"a message may have at most {most} bytes",
                               slug="too-large")
        chunks.append(chunk)
    raw = b"".join(chunks)
    if b"\x00" in raw:  # (no database stores NUL in text; no e-mail has one outside base64)
        raise ProblemError(422, "Invalid input", "the message contains NUL bytes",
                           slug="validation", errors=[{"field": "body", "message": "NUL byte"}])
    if not raw.strip():
        raise ProblemError(422, "Invalid input", "the body is empty", slug="validation",
                           errors=[{"field": "body", "message": "empty"}])
    return raw


def _build(form: IntakeForm, new_id: str, date: str) -> bytes:
    """The form as an e-mail, so every way in parses the same way."""
    msg = EmailMessage(policy=email.policy.SMTPUTF8)
    try:
        msg["From"] = Address(display_name=form.sender_name, addr_spec=form.sender)
    except (ValueError, IndexError, email.errors.HeaderParseError) as exc:
        raise ProblemError(422, "Invalid input", f"sender {form.sender!r} is not an e-mail "
                           "address", slug="validation",
                           errors=[{"field": "body.sender", "message": str(exc)[:200]}]) from exc
    # A subject is one line: what e-mail takes for a line break (not only CR and LF) is a
    # space in it, as a mail client would fold it.
    msg["Subject"] = " ".join(form.subject.splitlines())
    for header, field, value in (("Message-ID", "message_id", form.message_id),
                                 ("In-Reply-To", "in_reply_to", form.in_reply_to)):
        if header == "Message-ID" and not value:
            value = f"{new_id}@intake.baton"
        if not value:
            continue
        if value.startswith("<"):  # (as a header has it: the pattern checked it ends in >)
            value = value[1:-1]
        try:
            msg[header] = f"<{value}>"
        except (ValueError, email.errors.HeaderParseError) as exc:  # (the pattern says why)
            raise ProblemError(422, "Invalid input", f"{field} {value!r} cannot be an e-mail "
                               "header", slug="validation",
                               errors=[{"field": f"body.{field}",
                                        "message": str(exc)[:200]}]) from exc
    msg["Date"] = date
    msg.set_content(form.body or "")
    for i, a in enumerate(form.attachments):
        try:
            data = base64.b64decode(a.content_base64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProblemError(422, "Invalid input", f"attachment {i} is not valid base64",
                               slug="validation",
                               errors=[{"field": f"body.attachments.{i}.content_base64",
                                        "message": "expected base64"}]) from exc
        major, minor = a.content_type.split("/", 1)
        msg.add_attachment(data, maintype=major, subtype=minor, filename=a.filename)
    try:
        # SMTPUTF8: an address or id outside ASCII is written as UTF-8 (RFC 6532), as an
        # internationalised mail server would deliver it; the parser reads it back.
        return msg.as_bytes()
    except (ValueError, UnicodeError) as exc:
        raise ProblemError(422, "Invalid input", f"the form makes no e-mail: {exc}",
                           slug="validation",
                           errors=[{"field": "body", "message": str(exc)[:200]}]) from exc


def _answer(got: Accepted) -> Answer:
    headers = {"Location": f"/api/records/{got.record_id}"} if got.record_id else {}
    return got.as_dict(), headers


PAGED = ("A page, as every list answers: `items`, with `total`, and `next` to pass as "
         "`after` for the next page (null on the last). **Breaking change:** this list "
         "used to answer a bare JSON array of all of them; a client that read the array "
         "reads `items` now, and follows `next` past the first `limit` (default 50).")


@router.get("/records/{record_id}/messages", response_model=Page[MessageOut],
            summary="A record's messages, oldest first",
            description="Each with its new text (no quoted history, no signature), the full "
                        f"body, and its attachments (stored and refused). {PAGED}",
            responses=problem_responses(401, 403, 404, 422))
def record_messages(request: Request, record_id: RecordId, limit: Limit = 50,
                    offset: Offset = 0, after: After = None,
                    _: Principal = READ) -> dict[str, Any]:
    tag = f"messages:{record_id}"
    start = start_of(tag, after, offset)
    return page_of(engine_of(request).intake.messages(record_id), limit, start, tag)


@router.get("/records/{record_id}/attachments", response_model=Page[AttachmentOut],
            summary="A record's attachments",
            description="Stored ones have a `url` to download them; refused ones say why. "
                        f"{PAGED}",
            responses=problem_responses(401, 403, 404, 422))
def record_attachments(request: Request, record_id: RecordId, limit: Limit = 50,
                       offset: Offset = 0, after: After = None,
                       _: Principal = READ) -> dict[str, Any]:
    tag = f"attachments:{record_id}"
    start = start_of(tag, after, offset)
    return page_of(engine_of(request).intake.attachments(record_id), limit, start, tag)


@router.get("/attachments/{attachment_id}", summary="Download an attachment",
            description="Needs `records:read`. Always a download (`Content-Disposition: "
                        "attachment`, the file name made safe), never shown inline.",
            response_class=Response,
            responses={200: {"description": "The file, with the type its message declared",
                             "content": {"*/*": {"schema": {"type": "string",
                                                            "format": "binary"}}}},
                       **problem_responses(401, 403, 404, 422)})
def download(request: Request, attachment_id: AttachmentId,
             _: Principal = READ) -> Response:
    a = engine_of(request).intake.attachment(attachment_id, content=True)
    # Content-Type as the message declared it, without a charset added (Starlette would
    # add utf-8 to text/*, which a Latin-1 file is not).
    return Response(bytes(a["content"]), headers={
        "Content-Type": a["content_type"],
        "Content-Disposition": content_disposition(a["filename"]),
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, max-age=0",
        "ETag": f'"{a["sha256"]}"'})


def content_disposition(filename: str) -> str:
    """``attachment`` with an ASCII fallback name and the real one (RFC 6266 / 5987)."""
    ascii_name = "".join(c if c.isascii() and c.isprintable() and c not in '"\\;' else "_"
                         for c in filename) or "attachment"
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"
