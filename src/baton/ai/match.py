"""``task: match``: which record of an object type a text is about, by fuzzy matching.

The text gives *keys*: the URLs and bare domains in it, the domains of its e-mail addresses,
and its words and short phrases. Each candidate record's configured fields are compared with
them with ``rapidfuzz``: a field that holds a URL, a domain or an e-mail address is reduced to
its registrable host ("https://www.Acme-Motors.de/shop" -> "acme-motors.de") and compared
with the text's hosts; any other field (a name) is compared with the text's words by
``partial_ratio`` of the normalised name against the text (so "ACME Motors GmbH" is found in
"...our dealer Acme Motors in Berlin..."), after dropping legal forms (GmbH, Ltd, Inc...).

Signatures must not decide: the caller passes the message's *new* text (the reply without
quoted history and signature, :func:`baton.intake.mail.split_reply`) first; the signature
and quotes are only searched when the new text matched nothing.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from baton.ai.extract import DOMAIN, EMAIL, URL

LEGAL_FORMS = re.compile(r"\b(gmbh|ag|kg|ohg|ltd|llc|inc|corp|co|sa|sas|sarl|srl|spa|bv|nv|"
                         r"ltda|s\.a\.|plc|oy|ab|as|aps|e\.k\.)\b\.?", re.IGNORECASE)
_HOST_FIELD = re.compile(r"^(https?://|www\.)|^[^\s@]+@[^\s@]+$|^[\w-]+(\.[\w-]+)+(/\S*)?$",
                         re.IGNORECASE)
_FREE_MAIL = frozenset({
    "gmail.com", "googlemail.com", "outlook.com", "hotmail.com", "live.com", "yahoo.com",
    "icloud.com", "me.com", "gmx.de", "gmx.net", "web.de", "t-online.de", "aol.com",
    "protonmail.com", "proton.me", "uol.com.br", "bol.com.br", "orange.fr", "free.fr",
    "yahoo.de", "yahoo.fr", "hotmail.de", "hotmail.fr"})


@dataclass(frozen=True)
class Candidate:
    record_id: str
    score: float  # 0..100
    matched_on: str  # the field that matched
    value: str  # its value on the record
    evidence: str  # what in the text it matched


@runtime_checkable
class RecordScanner(Protocol):
    """Reads the candidates: every record of an object type, only the named fields."""

    def scan(self, object_type: str, fields: Sequence[str]) -> list[Mapping[str, Any]]: ...


def host(value: str) -> str:
    """The host of a URL, a bare domain or an e-mail address, lower case, without
    ``www.``, a port or a path ("" when there is none)."""
    v = value.strip().lower()
    if "@" in v and "://" not in v:
        v = v.rsplit("@", 1)[1]
    v = re.sub(r"^[a-z][a-z0-9+.-]*://", "", v)
    v = re.split(r"[/:?#\s]", v, maxsplit=1)[0]
    return v.removeprefix("www.").strip(".")


def fold(text: str) -> str:
    """Lower case, accents off, punctuation as spaces, legal forms dropped."""
    t = unicodedata.normalize("NFKD", text)
    t = "".join(c for c in t if not unicodedata.combining(c)).lower()
    t = LEGAL_FORMS.sub(" ", t)
    return re.sub(r"[^\w]+", " ", t).strip()


def text_hosts(text: str) -> list[str]:
    """The hosts a text names: its URLs, bare domains and e-mail domains (free-mail
    domains such as gmail.com left out: they say nothing about the account), in order."""
    seen: list[str] = []
    for regex in (URL, EMAIL, DOMAIN):
        for m in regex.finditer(text):
            h = host(m.group(0).rstrip(".,;:!?"))
            if h and "." in h and h not in seen and h not in _FREE_MAIL:
                seen.append(h)
    return seen


def match(text: str, candidates: Sequence[Mapping[str, Any]], fields: Sequence[str],
          *, min_score: float, fallback: str = "") -> list[Candidate]:
    """The candidates scoring at least ``min_score`` (best first, one entry per record:
    its best field). ``fallback`` (the signature and quoted history) is searched only when
    ``text`` matched nothing."""
    found = _match(text, candidates, fields, min_score)
    if not found and fallback.strip():
        found = _match(fallback, candidates, fields, min_score)
    return found


def _match(text: str, candidates: Sequence[Mapping[str, Any]], fields: Sequence[str],
           min_score: float) -> list[Candidate]:
    from rapidfuzz import fuzz

    if not text.strip():
        return []
    hosts = text_hosts(text)
    folded = fold(text)
    best: dict[str, Candidate] = {}
    for rec in candidates:
        rid = str(rec["id"])
        for name in fields:
            raw = rec.get(name)
            if raw is None or not str(raw).strip():
                continue
            value = str(raw)
            if _HOST_FIELD.match(value.strip()):
                want = host(value)
                if not want or not hosts:
                    continue
                score, evidence = max(((fuzz.ratio(want, h), h) for h in hosts),
                                      key=lambda p: p[0])
            else:
                want = fold(value)
                if len(want) < 3:
                    continue
                alignment = fuzz.partial_ratio_alignment(want, folded)
                if alignment is None:
                    continue
                score = alignment.score
                evidence = folded[alignment.dest_start:alignment.dest_end]
                if len(want) < 6 and not re.search(rf"(?<!\w){re.escape(want)}(?!\w)", folded):
                    score = min(score, 80.0)  # a short name must appear as a word
            if score >= min_score and (rid not in best or score > best[rid].score):
                best[rid] = Candidate(rid, round(float(score), 1), name, value, evidence)
    return sorted(best.values(), key=lambda c: (-c.score, c.record_id))
