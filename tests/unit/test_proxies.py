"""The client address and https, through proxies: forwarding headers are believed only
from the configured trusted proxies."""

from __future__ import annotations

from starlette.requests import Request

from baton.web.proxies import client_address, cookie_secure, is_https

PROXIES = ("10.0.0.5/32", "10.1.0.0/16")


def request(peer: str, headers: dict[str, str] | None = None, scheme: str = "http") -> Request:
    return Request({"type": "http", "method": "GET", "path": "/", "scheme": scheme,
                    "query_string": b"", "server": ("baton", 80), "client": (peer, 50000),
                    "headers": [(k.lower().encode(), v.encode())
                                for k, v in (headers or {}).items()]})


def test_forwarding_headers_from_an_untrusted_peer_are_ignored() -> None:
    spoofed = {"X-Forwarded-For": "198.51.100.1", "Forwarded": "for=198.51.100.2;proto=https",
               "X-Forwarded-Proto": "https"}
    for trusted in ((), PROXIES):
        r = request("203.0.113.9", spoofed)
        assert client_address(r, trusted) == "203.0.113.9"
        assert is_https(r, trusted) is False
        assert cookie_secure(r, None, trusted) is False


def test_a_trusted_proxy_names_the_client() -> None:
    r = request("10.0.0.5", {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"})
    assert client_address(r, PROXIES) == "198.51.100.7"
    assert is_https(r, PROXIES) and cookie_secure(r, None, PROXIES)
    assert cookie_secure(r, False, PROXIES) is False  # BATON_COOKIE_SECURE=0 wins
    assert cookie_secure(request("203.0.113.9"), True, ()) is True  # =1 too


def test_through_a_chain_the_client_is_the_right_most_untrusted_hop() -> None:
    # the client wrote 1.2.3.4 itself; the outer proxy (trusted, 10.1.2.3) appended the
    # address it saw; the inner proxy (the peer) appended the outer one
    r = request("10.0.0.5", {"X-Forwarded-For": "1.2.3.4, 198.51.100.7, 10.1.2.3"})
    assert client_address(r, PROXIES) == "198.51.100.7"
    assert client_address(r, ("10.0.0.5/32",)) == "10.1.2.3"  # the outer one is not trusted


def test_the_forwarded_header_wins_and_is_parsed() -> None:
    r = request("10.0.0.5", {
        "Forwarded": 'for=1.2.3.4;proto=http, for="[2001:db8::17]:4711";proto=https',
        "X-Forwarded-For": "9.9.9.9"})
    assert client_address(r, PROXIES) == "2001:db8::17"
    assert is_https(r, PROXIES) is True
    r = request("10.0.0.5", {"Forwarded": "for=192.0.2.60:8080;proto=http"}, scheme="https")
    assert client_address(r, PROXIES) == "192.0.2.60"
    assert is_https(r, PROXIES) is False  # the proxy says the browser used http


def test_no_header_from_a_trusted_proxy_means_the_proxy_itself() -> None:
    r = request("10.0.0.5", scheme="https")
    assert client_address(r, PROXIES) == "10.0.0.5"
    assert is_https(r, PROXIES) is True
