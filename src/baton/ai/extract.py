"""The offline extractor: typed patterns over a text, no model.

Each field is found in one of three ways, the first that finds something wins:

1. its own ``pattern`` (a regular expression, or the name of one of the step's
   ``patterns``; with a group, the first group is the value);
2. after a label: the field's name ("order_number" reads "order number") or one of its
   ``labels`` ("Bestellnummer"), followed by ``:``, ``#`` or ``-``, then a value of the field's
   type ("Order number: A-12345", "Kundennummer 4711");
3. the first value of its type anywhere in the text (e-mails, URLs, phone numbers, dates,
   amounts; a ``choice`` by its name as a word). Strings and whole numbers are never
   guessed this way: only a label or a pattern finds them.

Dates are read as ISO (2024-06-03), day first with dots (03.06.2024), with slashes (day first
unless the first number cannot be a day... or a month: 06/30/2024 is month first), and with
month names in English, German, French, Spanish, Portuguese and Dutch ("3 June 2024",
"June 3, 2024", "3. Juni 2024", "3 de junho de 2024"). Amounts take a currency sign or code
on either side and either decimal mark ("€ 1.234,56", "1,234.56 USD", "R$ 99,90").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date
from decimal import Decimal, InvalidOperation

from baton.ai.provider import FieldSpec, Found

EXTRACTOR_MODEL = "baton-offline-patterns/1"

EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
URL = re.compile(r"(?:https?://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
DOMAIN = re.compile(r"(?<![@\w.-])(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,24}"
                    r"(?:/[^\s<>\"')\]]*)?(?![\w@-])", re.IGNORECASE)
PHONE = re.compile(r"(?<![\w+(/-])(?:\+|00)?\(?\d[\d\s().\-/]{5,18}\d(?!\w)")

MONTHS = {
    # English, German, French, Spanish, Portuguese, Dutch (full names and common short forms)
    1: "january jan januar janv janvier enero ene janeiro jan januari",
    2: "february feb februar fév fev février fevrier febrero fevereiro februari",
    3: "march mar märz maerz mär mars marzo março marco maart mrt",
    4: "april apr avril avr abril",
    5: "may mai mayo maio mei",
    6: "june jun juni juin junio junho",
    7: "july jul juli juillet juil julio julho",
    8: "august aug août aout agosto ago augustus",
    9: "september sep sept septembre septiembre setembro set",
    10: "october oct oktober okt octobre octubre outubro out",
    11: "november nov novembre noviembre novembro",
    12: "december dec dezember dez décembre decembre diciembre dic dezembro",
}
_MONTH = {name: n for n, names in MONTHS.items() for name in names.split()}
_MONTH_RE = "|".join(sorted((re.escape(m) for m in _MONTH), key=len, reverse=True))
DATE_ISO = re.compile(r"(?<!\d)(\d{4})-(\d{1,2})-(\d{1,2})(?!\d)")
DATE_NUM = re.compile(r"(?<![\d.])(\d{1,2})([./])(\d{1,2})\2(\d{4}|\d{2})(?![\d])")
DATE_DMY = re.compile(rf"(?<!\w)(\d{{1,2}})(?:st|nd|rd|th|er|º)?\.?\s+(?:de\s+)?({_MONTH_RE})\.?"
                      rf",?\s+(?:de\s+)?(\d{{4}})(?!\d)", re.IGNORECASE)
DATE_MDY = re.compile(rf"(?<!\w)({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})(?!\d)",
                      re.IGNORECASE)

_CURRENCY = {"€": "EUR", "$": "USD", "£": "GBP", "r$": "BRL", "us$": "USD", "chf": "CHF",
             "eur": "EUR", "usd": "USD", "gbp": "GBP", "brl": "BRL", "sek": "SEK",
             "nok": "NOK", "dkk": "DKK", "pln": "PLN", "jpy": "JPY", "¥": "JPY", "euro": "EUR",
             "euros": "EUR", "reais": "BRL", "dollars": "USD"}
_CUR_RE = r"R\$|US\$|€|\$|£|¥|\b(?:EUR|USD|GBP|BRL|CHF|SEK|NOK|DKK|PLN|JPY|euros?|reais|dollars)\b"
_NUM_RE = r"\d{1,3}(?:[.,' ]\d{3})+(?:[.,]\d{1,2})?|\d+(?:[.,]\d{1,2})?"
AMOUNT = re.compile(rf"(?P<c1>{_CUR_RE})\s?(?P<n1>{_NUM_RE})(?!\d)|"
                    rf"(?<![\d.,])(?P<n2>{_NUM_RE})\s?(?P<c2>{_CUR_RE})", re.IGNORECASE)
NUMBER = re.compile(r"(?<![\w.,])-?\d+(?![\w]|[.,]\d)")
_TRAILING = ".,;:!?"


def extract(text: str, fields: Sequence[FieldSpec], patterns: Mapping[str, str]
            ) -> dict[str, Found]:
    """The fields found in ``text`` (a missing field is not in the answer)."""
    out: dict[str, Found] = {}
    for f in fields:
        got = find_field(text, f, patterns)
        if got is not None:
            out[f.name] = got
    return out


def find_field(text: str, f: FieldSpec, patterns: Mapping[str, str]) -> Found | None:
    regex = patterns.get(f.pattern or "", f.pattern) if f.pattern else patterns.get(f.name)
    if regex:
        return _by_pattern(text, f, re.compile(regex, re.IGNORECASE | re.MULTILINE))
    finder = FINDERS[f.type]
    label = _by_label(text, f, finder)
    if label is not None:
        return label
    if f.type in ("string", "int"):
        return None  # free text and bare numbers: after a label or by a pattern, never guessed
    return finder(text, 0, f)


def _by_pattern(text: str, f: FieldSpec, regex: re.Pattern[str]) -> Found | None:
    for m in regex.finditer(text):
        group = 1 if m.re.groups else 0
        raw = m.group(group)
        if raw is None:
            continue
        value = _typed(f, raw.strip())
        if value is not None:
            return Found(value, raw.strip(), m.start(group), "pattern")
    return None


def _labels(f: FieldSpec) -> list[str]:
    return [f.name.replace("_", " "), *f.labels]


def _by_label(text: str, f: FieldSpec, finder: Finder) -> Found | None:
    for label in _labels(f):
        words = [re.escape(w) for w in re.split(r"[\s_-]+", label.strip()) if w]
        if not words:
            continue
        rx = re.compile(r"(?<!\w)" + r"[\s_-]*".join(words)
                        + r"(?:\s*(?:no\.?|nr\.?|number|n[º°o]\.?))?\s*[:#=-]?\s*", re.IGNORECASE)
        for m in rx.finditer(text):
            rest = text[m.end():]
            line_end = rest.find("\n")
            line = rest if line_end < 0 else rest[:line_end]
            if f.type == "string":
                value = _string_after_label(line)
                if value:
                    return Found(value, value, m.end(), f"after '{m.group(0).strip()}'")
                continue
            got = finder(text[:m.end() + len(line)], m.end(), f)
            if got is not None and got.start - m.end() <= 3:
                return Found(got.value, got.text, got.start, f"after '{m.group(0).strip()}'")
    return None


Finder = Callable[[str, int, FieldSpec], Found | None]


def _string_after_label(line: str) -> str:
    """A string field's value after its label: an identifier (a first word with a digit:
    "A-12345") alone, else the rest of the sentence ("Hans Müller")."""
    line = line.strip()
    first = re.match(r"[^\s,;]+", line)
    if first is not None and re.search(r"\d", first.group(0)):
        return first.group(0).rstrip(_TRAILING)
    return re.split(r"[.;!?](?:\s|$)", line, maxsplit=1)[0].strip().rstrip(_TRAILING).strip()


def _first(regex: re.Pattern[str], convert: Callable[[re.Match[str]], object | None], how: str
           ) -> Finder:
    def find(text: str, start: int, f: FieldSpec) -> Found | None:
        for m in regex.finditer(text, start):
            value = convert(m)
            if value is not None:
                return Found(value, m.group(0).rstrip(_TRAILING), m.start(), how)
        return None
    return find


def _url_or_domain(text: str, start: int, f: FieldSpec) -> Found | None:
    m = URL.search(text, start)
    if m is not None:
        raw = m.group(0).rstrip(_TRAILING)
        return Found(raw, raw, m.start(), "url")
    for m in DOMAIN.finditer(text, start):
        raw = m.group(0).rstrip(_TRAILING)
        if "." in raw.split("/")[0] and not raw.split("/")[0].split(".")[-1].isdigit():
            return Found(raw, raw, m.start(), "domain")
    return None


def _phone(m: re.Match[str]) -> str | None:
    raw = m.group(0).strip()
    digits = re.sub(r"\D", "", raw)
    if not 7 <= len(digits) <= 15 or _looks_like_date(raw):
        return None
    if raw.count("/") > 1 or raw.count(".") > 1 and " " not in raw:
        return None  # 12.05.2024-like numbers and dotted amounts are not phones
    return re.sub(r"\s+", " ", raw)


def _looks_like_date(raw: str) -> bool:
    return bool(DATE_ISO.fullmatch(raw) or DATE_NUM.fullmatch(raw))


def _date(m: re.Match[str]) -> str | None:
    return parse_date(m.group(0))


def _find_date(text: str, start: int, f: FieldSpec) -> Found | None:
    best: Found | None = None
    for regex in (DATE_ISO, DATE_NUM, DATE_DMY, DATE_MDY):
        for m in regex.finditer(text, start):
            value = parse_date(m.group(0))
            if value is not None:
                if best is None or m.start() < best.start:
                    best = Found(value, m.group(0), m.start(), "date")
                break
    return best


def parse_date(raw: str) -> str | None:
    """An ISO date from one of the formats above, or None."""
    y: int
    try:
        if m := DATE_ISO.fullmatch(raw):
            y, mo, d = int(m.group(1)), int(m.group(2)), int(m.group(3))
        elif m := DATE_NUM.fullmatch(raw):
            a, b, y = int(m.group(1)), int(m.group(3)), int(m.group(4))
            if y < 100:
                y += 2000
            # day first (most of the world), unless that cannot be a date: 06/30/2024
            d, mo = (a, b) if b <= 12 or m.group(2) == "." else (b, a)
        elif m := DATE_DMY.fullmatch(raw):
            d, mo, y = int(m.group(1)), _MONTH[m.group(2).lower()], int(m.group(3))
        elif m := DATE_MDY.fullmatch(raw):
            mo, d, y = _MONTH[m.group(1).lower()], int(m.group(2)), int(m.group(3))
        else:
            return None
        return date(y, mo, d).isoformat()
    except ValueError:
        return None


def parse_amount(number: str) -> Decimal | None:
    """``1.234,56`` / ``1,234.56`` / ``1 234,5`` / ``99`` as a Decimal: the last ``.`` or ``,``
    followed by one or two digits is the decimal mark; the other marks group thousands."""
    s = number.replace("'", "").replace(" ", "")
    m = re.search(r"[.,](\d{1,2})$", s)
    if m is not None:
        whole = re.sub(r"[.,]", "", s[:m.start()])
        s = f"{whole}.{m.group(1)}"
    else:
        s = re.sub(r"[.,]", "", s)
    try:
        return Decimal(s)
    except InvalidOperation:
        return None


def _find_amount(text: str, start: int, f: FieldSpec) -> Found | None:
    for m in AMOUNT.finditer(text, start):
        cur = (m.group("c1") or m.group("c2")).lower()
        value = parse_amount(m.group("n1") or m.group("n2"))
        if value is not None:
            return Found(str(value), m.group(0), m.start(), f"amount {_CURRENCY.get(cur, cur)}")
    # a bare number (after a label, usually)
    for m in re.finditer(_NUM_RE, text[start:]):
        value = parse_amount(m.group(0))
        if value is not None:
            return Found(str(value), m.group(0), start + m.start(), "number")
    return None


def _find_choice(text: str, start: int, f: FieldSpec) -> Found | None:
    best: Found | None = None
    for choice in f.choices:
        m = re.compile(r"(?<!\w)" + re.escape(choice).replace(r"\_", "[ _]").replace(r"\ ", r"\s+")
                       + r"(?!\w)", re.IGNORECASE).search(text, start)
        if m is not None and (best is None or m.start() < best.start):
            best = Found(choice, m.group(0), m.start(), "choice")
    return best


def _typed(f: FieldSpec, raw: str) -> object | None:
    """A pattern's match as a value of the field's type (None when it is not one)."""
    if f.type == "int":
        digits = re.sub(r"[\s.,']", "", raw)
        return int(digits) if re.fullmatch(r"-?\d+", digits) else None
    if f.type == "decimal":
        m = re.search(_NUM_RE, raw)
        amount = parse_amount(m.group(0)) if m else None
        return str(amount) if amount is not None else None
    if f.type == "date":
        return parse_date(raw)
    if f.type == "email":
        return raw.lower() if EMAIL.fullmatch(raw) else None
    if f.type == "choice":
        for choice in f.choices:
            if choice.lower() == raw.lower():
                return choice
        return None
    return raw


FINDERS: dict[str, Finder] = {
    "string": lambda text, start, f: None,
    "int": _first(NUMBER, lambda m: int(m.group(0)), "number"),
    "decimal": _find_amount,
    "date": _find_date,
    "email": _first(EMAIL, lambda m: m.group(0).lower(), "e-mail"),
    "url": _url_or_domain,
    "phone": _first(PHONE, _phone, "phone"),
    "choice": _find_choice,
}
