"""The client's address for per-client limits: the peer, or X-Forwarded-For from a trusted proxy.

A header is only as trustworthy as whoever wrote it. ``X-Forwarded-For`` is believed only when
the TCP peer is one of ``MELTEMI_API_TRUSTED_PROXIES`` (default: none); from any other peer,
loopback included, it is ignored, so a client cannot pick a new address per request to escape
the rate limits or the per-address stream cap. Behind trusted proxies the client is the
right-most hop that is not itself a trusted proxy (every proxy appends the address it saw).

uvicorn rewrites the peer from the header by itself for 127.0.0.1 unless started with
``proxy_headers=False`` (api.server does); this module is the only place the header is read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.requests import HTTPConnection
from starlette.types import Scope

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

UNKNOWN = "unknown"  # no peer at all (e.g. an in-process ASGI client): one shared bucket
_MAX_HOPS = 32  # a longer header is not from a proxy chain of ours; only its tail is read


def _address(text: str) -> Address | None:
    try:
        return ipaddress.ip_address(text.strip().removeprefix("[").split("]")[0])
    except ValueError:
        return None


class ClientAddresses:
    """Turns an ASGI scope into the address its per-client limits are counted under."""

    def __init__(self, trusted_proxies: Iterable[str]) -> None:
        self.trusted: tuple[Network, ...] = tuple(
            ipaddress.ip_network(entry, strict=False) for entry in trusted_proxies
        )

    def is_trusted(self, address: Address) -> bool:
        """Return True when ``address`` is one of the configured proxies."""
        return any(address in network for network in self.trusted)

    def of(self, scope: Scope) -> str:
        """Return the client's address (normalised text) for this connection or request."""
        client = scope.get("client")
        peer_text = str(client[0]) if client else UNKNOWN
        peer = _address(peer_text)
        if peer is None:
            return peer_text
        if not self.trusted or not self.is_trusted(peer):
            return str(peer)
        values = [
            value.decode("latin-1")
            for name, value in scope.get("headers", [])
            if name.lower() == b"x-forwarded-for"
        ]
        hops = [hop for value in values for hop in value.split(",")][-_MAX_HOPS:]
        for hop in reversed(hops):
            address = _address(hop)
            if address is None:
                break  # garbage from beyond our proxies: stop at the last hop we can read
            if not self.is_trusted(address):
                return str(address)
            peer = address
        return str(peer)


def client_address(connection: HTTPConnection) -> str:
    """Return the address of a request's client under the app's trusted-proxy setting."""
    addresses: ClientAddresses | None = getattr(connection.app.state, "client_addresses", None)
    if addresses is None:  # an app without api.limits installed: the peer only
        return connection.client.host if connection.client is not None else UNKNOWN
    return addresses.of(connection.scope)
