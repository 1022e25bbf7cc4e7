"""``task: match``'s fuzzy matching (``baton.ai.match``): URLs, domains, e-mail domains and
names in a text against candidate records; signatures do not decide."""

from __future__ import annotations

from baton.ai.match import host, match, text_hosts

ACCOUNTS = [
    {"id": "a1", "name": "Autohaus Schmidt GmbH", "domain": "autohaus-schmidt.de",
     "website": "https://www.autohaus-schmidt.de"},
    {"id": "a2", "name": "Lisboa Motors Lda", "domain": "lisboamotors.pt", "website": None},
    {"id": "a3", "name": "Bayview Cars Inc.", "domain": "bayviewcars.com",
     "website": "http://bayviewcars.com/"},
    {"id": "a4", "name": "Baton Dealer Support", "domain": "baton.example", "website": None},
]
FIELDS = ["domain", "name", "website"]


def test_hosts() -> None:
    assert host("https://www.Acme-Motors.de:8443/shop?x=1") == "acme-motors.de"
    assert host("Jane.Doe@Sales.Acme.com") == "sales.acme.com"
    assert text_hosts("see www.bayviewcars.com/offers, mail jo@gmail.com or "
                      "sales@lisboamotors.pt") == ["bayviewcars.com", "lisboamotors.pt"]


def test_by_url_in_the_text() -> None:
    (best, *_) = match("Our invoice portal at https://autohaus-schmidt.de/rechnung is down",
                       ACCOUNTS, FIELDS, min_score=85)
    assert (best.record_id, best.score, best.evidence) == ("a1", 100.0, "autohaus-schmidt.de")


def test_by_email_domain_and_by_name_with_typos() -> None:
    (by_mail,) = match("please reply to joao@lisboamotors.pt", ACCOUNTS, FIELDS, min_score=85)
    assert (by_mail.record_id, by_mail.matched_on) == ("a2", "domain")
    (by_name,) = match("this is about the dealer Bayveiw Cars in Oakland", ACCOUNTS, FIELDS,
                       min_score=80)
    assert (by_name.record_id, by_name.matched_on) == ("a3", "name")


def test_several_accounts_and_none() -> None:
    found = match("Two dealers: autohaus-schmidt.de and bayviewcars.com need new logins",
                  ACCOUNTS, FIELDS, min_score=85)
    assert [c.record_id for c in found] == ["a1", "a3"]
    assert match("nothing here about any dealer", ACCOUNTS, FIELDS, min_score=85) == []


def test_signature_only_when_the_new_text_says_nothing() -> None:
    new = "Please check the order for bayviewcars.com"
    signature = "--\nAgent, Baton Dealer Support, baton.example"
    found = match(new, ACCOUNTS, FIELDS, min_score=85, fallback=f"{new}\n{signature}")
    assert [c.record_id for c in found] == ["a3"]  # the support desk's own signature: no
    found = match("Please check my order", ACCOUNTS, FIELDS, min_score=85,
                  fallback="Please check my order\n--\nJoe, Bayview Cars Inc.")
    assert [c.record_id for c in found] == ["a3"]
