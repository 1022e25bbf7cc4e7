"""Who is on the other end, and over what: the client address and https, through proxies.

A request's ``Forwarded`` (RFC 7239) or ``X-Forwarded-For`` / ``X-Forwarded-Proto`` headers
are believed only when the peer that sent it is one of the configured trusted proxies
(``BATON_TRUSTED_PROXIES``); anyone else could write them. Through a chain of proxies, the
client is the right-most address that is not a trusted proxy (each proxy appends the
address it saw, and only what trusted proxies appended can be believed).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from fastapi import Request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(n, strict=False) for n in trusted)


def _is_trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in networks)


def _forwarded_elements(header: str) -> list[dict[str, str]]:
    """``Forwarded: for=192.0.2.6;proto=https, for="[2001:db8::1]:4711"`` as one dict per hop."""
    hops: list[dict[str, str]] = []
    for element in header.split(","):
        pairs: dict[str, str] = {}
        for pair in element.split(";"):
            key, sep, value = pair.partition("=")
            if sep:
                pairs[key.strip().lower()] = value.strip().strip('"')
        hops.append(pairs)
    return hops


def _node_address(node: str) -> str:
    """The address of a ``for=`` node: no brackets, no port."""
    if node.startswith("["):
        return node[1:].partition("]")[0]
    host, sep, port = node.rpartition(":")
    return host if sep and port.isdigit() and host.count(":") == 0 else node


def _trusted_peer(request: Request, trusted: tuple[str, ...]) -> tuple[str, tuple[Network, ...]]:
    peer = request.client.host if request.client else ""
    return peer, _networks(trusted)


def client_address(request: Request, trusted: tuple[str, ...]) -> str:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the right-most
    untrusted hop its forwarding headers name."""
    peer, networks = _trusted_peer(request, trusted)
    if not networks or not _is_trusted(peer, networks):
        return peer
    forwarded = request.headers.get("forwarded")
    if forwarded:
        hops = [_node_address(h.get("for", "")) for h in _forwarded_elements(forwarded)]
    else:
        hops = [h.strip() for h in request.headers.get("x-forwarded-for", "").split(",")]
    hops = [h for h in hops if h]
    for hop in reversed(hops):
        if not _is_trusted(hop, networks):
            return hop
    return hops[0] if hops else peer


def is_https(request: Request, trusted: tuple[str, ...]) -> bool:
    """Did the client use https: the request's own scheme, or, from a trusted proxy, the
    protocol the nearest proxy says it received."""
    peer, networks = _trusted_peer(request, trusted)
    if networks and _is_trusted(peer, networks):
        forwarded = request.headers.get("forwarded")
        if forwarded:
            proto = _forwarded_elements(forwarded)[-1].get("proto")
        else:
            sent = request.headers.get("x-forwarded-proto", "")
            proto = sent.split(",")[-1].strip() or None
        if proto:
            return proto.lower() == "https"
    return request.url.scheme == "https"


def cookie_secure(request: Request, setting: bool | None, trusted: tuple[str, ...]) -> bool:
    """Mark a cookie ``Secure``: as configured, or (``auto``) when the client used https."""
    return setting if setting is not None else is_https(request, trusted)
