"""The offline extractor's typed patterns (``baton.ai.extract``) on texts in several
languages and formats, and the structured-answer checks language-model providers use."""

from __future__ import annotations

from typing import Any

import pytest

from baton.ai.extract import extract, parse_amount, parse_date
from baton.ai.provider import (
    Category,
    FieldSpec,
    InvalidAnswer,
    check_classification,
    check_extraction,
    structured,
)

F = FieldSpec

GERMAN = """Hallo zusammen,
meine Bestellnummer: A-12345 vom 3. Juni 2024 ist nicht angekommen.
Der Betrag von 1.234,56 € wurde abgebucht. Siehe https://www.acme-motors.de/orders?id=5.
Kundennummer 4711

Mit freundlichen Grüßen
Hans Müller
Tel. +49 30 1234567
hans@Acme-Motors.de"""

PORTUGUESE = """Olá, o pedido nº 98-7766 de 5 de março de 2025 chegou quebrado.
Paguei R$ 2.499,90. Contato: (11) 98765-4321, maria.silva@concessionaria.com.br
Site: concessionaria.com.br"""

ENGLISH = """Hi, order #ORD-2024-0042 placed on June 3, 2024 for $1,299.00 never arrived.
Please call me at +1 (415) 555-0132. Priority: urgent
Account: ACC-778899"""


def values(text: str, fields: list[FieldSpec], patterns: dict[str, str] | None = None
           ) -> dict[str, Any]:
    return {k: v.value for k, v in extract(text, fields, patterns or {}).items()}


def test_german_message_with_labels_dates_amounts_and_signature() -> None:
    got = values(GERMAN, [F("order_number", labels=("Bestellnummer",)), F("order_date", "date"),
                          F("amount", "decimal"), F("website", "url"), F("email", "email"),
                          F("customer_number", "int", labels=("Kundennummer",)),
                          F("phone", "phone"), F("name", labels=("Gruß",))])
    assert got == {"order_number": "A-12345", "order_date": "2024-06-03", "amount": "1234.56",
                   "website": "https://www.acme-motors.de/orders?id=5",
                   "email": "hans@acme-motors.de", "customer_number": 4711,
                   "phone": "+49 30 1234567"}


def test_portuguese_message() -> None:
    got = values(PORTUGUESE, [F("order", labels=("pedido",)), F("date", "date"),
                              F("amount", "decimal"), F("phone", "phone"), F("email", "email"),
                              F("site", "url")])
    assert got == {"order": "98-7766", "date": "2025-03-05", "amount": "2499.90",
                   "phone": "(11) 98765-4321", "email": "maria.silva@concessionaria.com.br",
                   "site": "concessionaria.com.br"}


def test_english_message_with_patterns_and_choices() -> None:
    fields = [F("order", pattern="order"), F("account", pattern=r"(ACC-\d{6})"),
              F("placed", "date"), F("amount", "decimal"), F("phone", "phone"),
              F("priority", "choice", choices=("urgent", "normal")),
              F("quantity", "int", labels=("qty",))]
    got = extract(ENGLISH, fields, {"order": r"ORD-\d{4}-\d{4}"})
    assert {k: v.value for k, v in got.items()} == {
        "order": "ORD-2024-0042", "account": "ACC-778899", "placed": "2024-06-03",
        "amount": "1299.00", "phone": "+1 (415) 555-0132", "priority": "urgent"}
    assert got["amount"].how == "amount USD" and got["order"].how == "pattern"
    assert ENGLISH[got["account"].start:].startswith("ACC-778899")


@pytest.mark.parametrize(("raw", "iso"), [
    ("2024-06-03", "2024-06-03"), ("03.06.2024", "2024-06-03"), ("3.6.24", "2024-06-03"),
    ("30/06/2024", "2024-06-30"), ("06/30/2024", "2024-06-30"), ("June 3, 2024", "2024-06-03"),
    ("3rd March 2024", "2024-03-03"), ("3. Juni 2024", "2024-06-03"),
    ("3 de junho de 2024", "2024-06-03"), ("1er janvier 2025", "2025-01-01"),
    ("15 de diciembre de 2023", "2023-12-15"), ("12 mrt 2024", "2024-03-12"),
    ("31.02.2024", None), ("2024-13-01", None),
])
def test_dates(raw: str, iso: str | None) -> None:
    assert parse_date(raw) == iso


@pytest.mark.parametrize(("raw", "amount"), [
    ("1.234,56", "1234.56"), ("1,234.56", "1234.56"), ("1 234,5", "1234.5"), ("99", "99"),
    ("1.000", "1000"), ("12,50", "12.50"), ("1'250.75", "1250.75"),
])
def test_amounts(raw: str, amount: str) -> None:
    assert str(parse_amount(raw)) == amount


@pytest.mark.parametrize(("text", "currency", "amount"), [
    ("total EUR 15,00 due", "EUR", "15.00"), ("costs 12,50 € per month", "EUR", "12.50"),
    ("£3.20 only", "GBP", "3.20"), ("CHF 1'250.75", "CHF", "1250.75"),
])
def test_amounts_with_currencies(text: str, currency: str, amount: str) -> None:
    got = extract(text, [F("price", "decimal")], {})["price"]
    assert (got.value, got.how) == (amount, f"amount {currency}")


def test_not_found_and_not_guessed() -> None:
    got = values("nothing useful here, call 2024-06-03", [
        F("email", "email"), F("phone", "phone"), F("name"), F("site", "url"),
        F("kind", "choice", choices=("billing",))])
    assert got == {}  # a date is not a phone number; a free string is never guessed


def test_structured_answers_are_checked_and_retried_once() -> None:
    cats = [Category("billing"), Category("technical")]
    assert check_classification({"category": "billing", "confidence": 0.8, "rationale": "x"},
                                cats) == []
    assert check_classification({"category": "sales", "confidence": 2}, cats) == [
        "category 'sales' is not one of billing, technical",
        "confidence 2 is not a number from 0 to 1",
        "rationale is missing (a text saying why)"]
    fields = [F("when", "date"), F("n", "int"), F("kind", "choice", choices=("a", "b")),
              F("code", pattern=r"[A-Z]{3}")]
    assert check_extraction({"fields": {"when": {"value": "2024-02-30"}, "n": {"value": "3"},
                                        "kind": {"value": "c"}, "code": {"value": "abc"},
                                        "extra": {"value": 1}}}, fields) == [
        "unknown field 'extra'", "when: expected a date YYYY-MM-DD, got '2024-02-30'",
        "n: expected a whole number, got '3'", "kind: 'c' is not one of a, b",
        "code: 'abc' does not match '[A-Z]{3}'"]
    asked: list[str | None] = []
    answers = iter([{"category": "sales"}, {"category": "billing", "confidence": 0.7,
                                            "rationale": "invoice"}])

    def ask(correction: str | None) -> Any:
        asked.append(correction)
        return next(answers)

    answer, tries = structured(ask, lambda a: check_classification(a, cats))
    assert tries == 2 and answer["category"] == "billing"
    assert asked[0] is None and asked[1] is not None and "not one of billing" in asked[1]
    with pytest.raises(InvalidAnswer) as exc:
        structured(lambda _c: {"category": "sales"}, lambda a: check_classification(a, cats))
    assert not exc.value.retryable and "after a retry" in str(exc.value)
