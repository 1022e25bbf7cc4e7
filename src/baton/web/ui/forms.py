"""Public intake forms (``kind: intake_form``): ``/forms/NAME`` for people outside.

No login: anyone who has the address may submit, so each submission is guarded three ways.
**CSRF** by double submit, as the login form is: showing the form sets a cookie (path
``/forms``) holding a random token that the form repeats; a POST whose token does not
match is refused (403), so another site cannot submit in a visitor's name. A **rate
limit** per client address and form (the form's ``rate_limit`` per minute, the address
read through the trusted proxies): one more is answered 429 with ``Retry-After``. A
submission that is refused (a typo: 422) does not count against it, so a visitor who
corrects a mistake is not locked out; refused ones have an allowance of their own, larger
(:data:`REFUSED_FACTOR` times), which bounds a client that only sends rubbish. And the
**record write** is the one every create goes through: the object type's field checks
(a refusal shows each field's reason next to it, 422), its record triggers, its audit
event, with ``form:NAME`` as the actor.

A submission that made its record is answered **303** (Post/Redirect/Get) to
``/forms/NAME?sent=REF&check=SIG``, the thanks page: a reload of it reads nothing and
files nothing. ``SIG`` signs the form and the reference with the visitor's CSRF cookie,
so the page is shown only to the browser that sent the form (for as long as its cookie
lasts); anyone else who has the address gets the empty form. And each showing of the form
carries a **submission token**, its idempotency key (per browser: hashed with the
cookie), claimed in the transaction that writes the record: the same form sent again
(Back and Send, a double click) files nothing new and goes to the same thanks page; sent
again with other values, it says so (409) and a new token lets the visitor send it as
another. A client that POSTs directly gets the 303 too: the reference is in ``Location``.

The limiter lives in the serving process (several ``baton serve`` processes behind a
balancer each allow the rate), which bounds a client's pace without a table write per
submission.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import re
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from baton.definitions.intake_form import IntakeFormDefinition
from baton.definitions.model import ObjectTypeDefinition
from baton.errors import IdempotencyKeyTaken, NotFound, ValidationError
from baton.intake.forms import asked, form_record, question_of
from baton.runtime.idempotency import IdempotencyClaim, fingerprint
from baton.web.committer import committer_of
from baton.web.security import CSRF_FIELD, client_address, engine_of, secure_cookies
from baton.web.ui.base import render
from baton.web.ui.work import form_data, form_values

router = APIRouter()

FORM_CSRF_COOKIE = "baton_form_csrf"
FORM_CSRF_TTL = 2 * 60 * 60  # seconds a form stays usable
WINDOW = timedelta(minutes=1)
REFUSED_FACTOR = 5  # refused submissions allowed per minute: this times the rate, at least
REFUSED_AT_LEAST = 20  # ... this many
SUBMISSION_FIELD = "submission-token"  # (a hyphen: no object type's field is named so)
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,64}\Z")
SWEEP_EVERY = 16  # submissions per sweep of expired idempotency keys (see _sweep)
_CLAIMED = itertools.count(1)  # (next() on it is atomic under the GIL)


class RateLimiter:
    """Per (form, client address), in this process: the submissions of the last minute that
    made a record (at most the form's rate) and the refused ones (a larger allowance)."""

    def __init__(self) -> None:
        self._made: dict[tuple[str, str], deque[datetime]] = {}
        self._refused: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def refused_limit(limit: int) -> int:
        return max(REFUSED_AT_LEAST, REFUSED_FACTOR * limit)

    def admit(self, key: tuple[str, str], limit: int, now: datetime) -> int | None:
        """None when one more may be tried now (and counted as made: :meth:`refund` when it
        made nothing); else seconds until it may."""
        with self._lock:
            made = self._window(self._made, key, now)
            refused = self._window(self._refused, key, now)
            waits = [w[0] + WINDOW - now for w, most in ((made, limit),
                                                       (refused, self.refused_limit(limit)))
                     if len(w) >= most]
            if waits:
                return max(1, int(max(waits).total_seconds()) + 1)
            made.append(now)
            if len(self._made) > 100_000:  # forget idle clients rather than grow
                for seen in (self._made, self._refused):
                    for k in [k for k, v in seen.items() if not v or now - v[-1] >= WINDOW]:
                        del seen[k]
            return None

    def refund(self, key: tuple[str, str], admitted: datetime, now: datetime) -> None:
        """The submission admitted at ``admitted`` made nothing (refused, or sent before):
        it counts against the refused allowance instead."""
        with self._lock:
            made = self._made.get(key)
            if made is not None and admitted in made:
                made.remove(admitted)
            self._window(self._refused, key, now).append(now)

    @staticmethod
    def _window(seen: dict[tuple[str, str], deque[datetime]], key: tuple[str, str],
                now: datetime) -> deque[datetime]:
        times = seen.setdefault(key, deque())
        while times and now - times[0] >= WINDOW:
            times.popleft()
        return times


@dataclass(frozen=True)
class Question:
    """One field of the page, as ``_form.html`` draws it."""

    name: str
    type: str
    required: bool
    choices: tuple[str, ...]
    scale: int | None
    label: str
    help: str | None
    also: tuple[str, ...]


def _questions(form: IntakeFormDefinition, obj: ObjectTypeDefinition) -> list[Question]:
    out = []
    for a in asked(form, obj):
        q, spec = a.question, a.spec
        label = q.label or spec.label or q.field.replace("_", " ").capitalize()
        out.append(Question(q.field, spec.type, a.required, spec.choices, spec.scale, label,
                            q.help, q.also))
    return out


def _lookup(request: Request, name: str) -> tuple[IntakeFormDefinition, ObjectTypeDefinition]:
    eng = engine_of(request)
    form = eng.definitions.intake_forms().get(name)
    obj = eng.definitions.object_types().get(form.object) if form is not None else None
    if form is None or obj is None:
        raise NotFound("form", name)
    return form, obj


def _title(form: IntakeFormDefinition) -> str:
    return form.label or form.name.replace("_", " ").capitalize()


def _page(request: Request, form: IntakeFormDefinition, questions: list[Question],
          values: Mapping[str, Any], errors: Mapping[str, str], *, status: int = 200,
          error: str | None = None, headers: dict[str, str] | None = None,
          submission: str | None = None, note: str | None = None) -> Response:
    token = request.cookies.get(FORM_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = render(request, "intake_form.html", None, {
        "form": form, "title": _title(form), "questions": questions, "values": values,
        "errors": errors, "error": error, "note": note, "form_csrf": token,
        "submission_field": SUBMISSION_FIELD,
        "submission": submission or secrets.token_urlsafe(18)}, status=status, headers=headers)
    response.set_cookie(FORM_CSRF_COOKIE, token, max_age=FORM_CSRF_TTL, path="/forms",
                        httponly=True, samesite="strict", secure=secure_cookies(request))
    return response


def _signature(cookie: str, form: str, reference: str) -> str:
    """What makes a thanks URL this browser's: the form and reference signed with its
    CSRF cookie (random, HttpOnly), 128 bits."""
    digest = hmac.new(cookie.encode(), f"thanks\x1f{form}\x1f{reference}".encode(),
                      hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:16]).decode().rstrip("=")


def _thanks_url(form: str, reference: str, cookie: str) -> str:
    return f"/forms/{form}?" + urlencode({"sent": reference,
                                         "check": _signature(cookie, form, reference)})


_LIMITER_LOCK = threading.Lock()


def _limiter(request: Request) -> RateLimiter:
    """The app's limiter (one per served app: per process), made on first use."""
    with _LIMITER_LOCK:
        limiter = getattr(request.app.state, "intake_form_limiter", None)
        if limiter is None:
            limiter = RateLimiter()
            request.app.state.intake_form_limiter = limiter
        return limiter


@router.get("/forms/{name}")
def show_form(request: Request, name: str, sent: str | None = None,
              check: str | None = None) -> Response:
    """The empty form; with ``sent`` and ``check`` (where a submission goes: 303), its
    thanks page, to the browser that sent it only. It reads no record: only what the URL
    says is shown, and nothing is filed."""
    form, obj = _lookup(request, name)
    cookie = request.cookies.get(FORM_CSRF_COOKIE) or ""
    if sent is not None or check is not None:
        if cookie and sent and check and hmac.compare_digest(
                check.encode(), _signature(cookie, form.name, sent).encode()):
            return render(request, "intake_form_thanks.html", None, {
                "title": _title(form), "thanks": form.thanks or "Thank you: we received it.",
                "reference": sent, "form": form}, headers={"Cache-Control": "no-store"})
        return _page(request, form, _questions(form, obj), {}, {}, note=(
            "The confirmation of a sent form is shown only in the browser that sent it, "
            "for two hours."))
    return _page(request, form, _questions(form, obj), {}, {})


@router.post("/forms/{name}")
async def submit_form(request: Request, name: str) -> Response:
    # async only to read the posted form; what reads or writes the database (the form's
    # definition, the record) runs in a request thread, never on the event loop, where a
    # wait for the database (the write lock, a hung server) would hold every request
    form, obj = await run_in_threadpool(_lookup, request, name)
    posted = await form_data(request)
    return await run_in_threadpool(_submit, request, form, obj, posted)


def _claim(request: Request, form: IntakeFormDefinition, cookie: str, submission: str,
           values: Mapping[str, Any]) -> IdempotencyClaim:
    """The submission token as an idempotency key of ``form:NAME``: hashed with the
    browser's cookie, so a token seen elsewhere says nothing about this browser's."""
    key = hashlib.sha256(f"{cookie}\x1f{submission}".encode()).hexdigest()[:48]
    asked_for = {k: v for k, v in values.items() if isinstance(v, str)}
    return IdempotencyClaim(f"form:{form.name}", f"form-{key}", "POST", request.url.path,
                            fingerprint("POST", request.url.path, asked_for), "record")


def _submit(request: Request, form: IntakeFormDefinition, obj: ObjectTypeDefinition,
            posted: FormData) -> Response:
    questions = _questions(form, obj)
    values = {q.name: posted.get(q.name) for q in questions}
    expected = request.cookies.get(FORM_CSRF_COOKIE) or ""
    sent = posted.get(CSRF_FIELD)
    if not expected or not isinstance(sent, str) or not hmac.compare_digest(sent, expected):
        return _page(request, form, questions, values, {}, status=403,
                     error="The form had expired or did not come from this site: "
                           "check what you wrote and send it again.")
    given = posted.get(SUBMISSION_FIELD)
    submission = given if isinstance(given, str) and _TOKEN.fullmatch(given) else None
    eng = engine_of(request)
    limiter, client, admitted = _limiter(request), (form.name, client_address(request)), \
        eng.clock.now()
    wait = limiter.admit(client, form.rate_limit, admitted)
    if wait is not None:
        return _page(request, form, questions, values, {}, status=429, submission=submission,
                     error=f"Too many submissions from your address: try again in {wait} s.",
                     headers={"Retry-After": str(wait)})
    claim = _claim(request, form, expected, submission, values) if submission else None
    data, parsed = form_values([{"name": q.name, "type": q.type} for q in questions], posted)
    record, errors = form_record(form, obj, data, parsed)
    if not errors:
        try:
            created = eng.create_record(form.object, record, actor=f"form:{form.name}",
                                        idempotency=claim)
        except ValidationError as exc:  # what only the write can check (refs, locks)
            for field, reason in exc.fields.items():
                errors.setdefault(question_of(form, field), reason)
        except IdempotencyKeyTaken:  # this form was sent before (Back and Send, two clicks)
            limiter.refund(client, admitted, eng.clock.now())
            assert claim is not None
            return _sent_before(request, form, questions, values, expected, claim, submission)
        else:
            thanks = _thanks_url(form.name, created["id"], expected)
            if claim is not None and next(_CLAIMED) % SWEEP_EVERY == 0:
                _sweep(request, claim, thanks)
            return RedirectResponse(thanks, status_code=303)
    limiter.refund(client, admitted, eng.clock.now())
    names = {q.name for q in questions}
    stray = {k: v for k, v in errors.items() if k not in names}
    return _page(request, form, questions, values, {k: v for k, v in errors.items() if k in names},
                 status=422, submission=submission,
                 error="Some of what you wrote is not valid: see below."
                 + ("" if not stray else " " + "; ".join(f"{k}: {v}" for k, v in stray.items())))


def _sweep(request: Request, claim: IdempotencyClaim, thanks: str) -> None:
    """Keep this submission's answer as the API keeps one, which sweeps a batch of expired
    keys (a form's among them: nothing else would), after the answer, in the next group
    commit. Every :data:`SWEEP_EVERY`-th submission only: a batch is 100 keys, so they
    cannot pile up, and a submission pays no second write (measured: +4 ms each on SQLite
    when every one did it)."""
    answer = {"status": 303, "headers": {"Location": thanks}, "body": None}
    keys = engine_of(request).idempotency
    committer_of(request).defer(
        lambda tx: keys.keep_response_txn(tx, claim.principal, claim.key, answer))


def _sent_before(request: Request, form: IntakeFormDefinition, questions: list[Question],
                 values: Mapping[str, Any], cookie: str, claim: IdempotencyClaim,
                 submission: str | None) -> Response:
    """This showing of the form was sent already: the same values go to the same thanks
    page (nothing new filed); other values are shown again, with a new token, to be sent
    as another submission if that is what the visitor means."""
    kept = engine_of(request).idempotency.lookup(claim.principal, claim.key)
    if kept is not None and kept.resource_id is not None:
        if kept.fingerprint == claim.fingerprint:
            return RedirectResponse(_thanks_url(form.name, kept.resource_id, cookie),
                                    status_code=303)
        return _page(request, form, questions, values, {}, status=409, error=(
            f"This form was sent already (your reference: {kept.resource_id}), with other "
            "values. To send what is below as another submission, press Send again."))
    return _page(request, form, questions, values, {}, status=409, submission=submission, error=(
        "This form is being sent already: wait a moment, then reload the page to check "
        "before you send it again."))
