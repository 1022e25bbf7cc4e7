"""Public intake forms (``kind: intake_form``): ``/forms/NAME`` for people outside.

No login: anyone who has the address may submit, so each submission is guarded three ways.
**CSRF** by double submit, as the login form is: showing the form sets a cookie (path
``/forms``) holding a random token that the form repeats; a POST whose token does not
match is refused (403), so another site cannot submit in a visitor's name. A **rate
limit** per client address and form (the form's ``rate_limit`` per minute, the address
read through the trusted proxies): one more is answered 429 with ``Retry-After``. And the
**record write** is the one every create goes through: the object type's field checks
(a refusal shows each field's reason next to it, 422), its record triggers, its audit
event, with ``form:NAME`` as the actor.

The limiter lives in the serving process (several ``baton serve`` processes behind a
balancer each allow the rate), which bounds a client's pace without a table write per
submission.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from baton.definitions.intake_form import IntakeFormDefinition
from baton.definitions.model import ObjectTypeDefinition
from baton.errors import NotFound, ValidationError
from baton.intake.forms import asked, form_record, question_of
from baton.web.security import CSRF_FIELD, client_address, engine_of, secure_cookies
from baton.web.ui.base import render
from baton.web.ui.work import form_data, form_values

router = APIRouter()

FORM_CSRF_COOKIE = "baton_form_csrf"
FORM_CSRF_TTL = 2 * 60 * 60  # seconds a form stays usable
WINDOW = timedelta(minutes=1)


class RateLimiter:
    """Submissions per (form, client address) in the last minute, in this process."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], deque[datetime]] = {}
        self._lock = threading.Lock()

    def admit(self, key: tuple[str, str], limit: int, now: datetime) -> int | None:
        """None when one more is allowed now (and counted); else seconds until it is."""
        with self._lock:
            times = self._seen.setdefault(key, deque())
            while times and now - times[0] >= WINDOW:
                times.popleft()
            if len(times) >= limit:
                return max(1, int((times[0] + WINDOW - now).total_seconds()) + 1)
            times.append(now)
            if len(self._seen) > 100_000:  # forget idle clients rather than grow
                for k in [k for k, v in self._seen.items() if not v or now - v[-1] >= WINDOW]:
                    del self._seen[k]
            return None


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


def _page(request: Request, form: IntakeFormDefinition, questions: list[Question],
          values: Mapping[str, Any], errors: Mapping[str, str], *, status: int = 200,
          error: str | None = None, headers: dict[str, str] | None = None) -> Response:
    token = request.cookies.get(FORM_CSRF_COOKIE) or secrets.token_urlsafe(24)
    title = form.label or form.name.replace("_", " ").capitalize()
    response = render(request, "intake_form.html", None, {
        "form": form, "title": title, "questions": questions, "values": values,
        "errors": errors, "error": error, "form_csrf": token}, status=status, headers=headers)
    response.set_cookie(FORM_CSRF_COOKIE, token, max_age=FORM_CSRF_TTL, path="/forms",
                        httponly=True, samesite="strict", secure=secure_cookies(request))
    return response


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
def show_form(request: Request, name: str) -> Response:
    """The empty form."""
    form, obj = _lookup(request, name)
    return _page(request, form, _questions(form, obj), {}, {})


@router.post("/forms/{name}")
async def submit_form(request: Request, name: str) -> Response:
    # async only to read the posted form; what reads or writes the database (the form's
    # definition, the record) runs in a request thread, never on the event loop, where a
    # wait for the database (the write lock, a hung server) would hold every request
    form, obj = await run_in_threadpool(_lookup, request, name)
    posted = await form_data(request)
    return await run_in_threadpool(_submit, request, form, obj, posted)


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
    eng = engine_of(request)
    limiter = _limiter(request)
    wait = limiter.admit((form.name, client_address(request)), form.rate_limit, eng.clock.now())
    if wait is not None:
        return _page(request, form, questions, values, {}, status=429,
                     error=f"Too many submissions from your address: try again in {wait} s.",
                     headers={"Retry-After": str(wait)})
    data, parsed = form_values([{"name": q.name, "type": q.type} for q in questions], posted)
    record, errors = form_record(form, obj, data, parsed)
    if not errors:
        try:
            created = eng.create_record(form.object, record, actor=f"form:{form.name}")
        except ValidationError as exc:  # what only the write can check (refs, locks)
            for field, reason in exc.fields.items():
                errors.setdefault(question_of(form, field), reason)
        else:
            return render(request, "intake_form_thanks.html", None, {
                "title": form.label or form.name.replace("_", " ").capitalize(),
                "thanks": form.thanks or "Thank you: we received it.",
                "reference": created["id"], "form": form}, status=201)
    names = {q.name for q in questions}
    stray = {k: v for k, v in errors.items() if k not in names}
    return _page(request, form, questions, values, {k: v for k, v in errors.items() if k in names},
                 status=422, error="Some of what you wrote is not valid: see below."
                 + ("" if not stray else " " + "; ".join(f"{k}: {v}" for k, v in stray.items())))
