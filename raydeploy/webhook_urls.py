"""Where a webhook may be sent: http(s) URLs whose host resolves only to public addresses (an SSRF guard).

raydeploy runs beside the cluster's secrets and, often, a cloud's metadata service (169.254.169.254).
Whoever may add a webhook must not be able to make raydeploy post to those, or to anything else on the
machine's own networks, so a URL is refused when ANY address its host name resolves to is loopback,
link-local, private, multicast, reserved or unspecified, unless the endpoint was added with
`--allow-private` (a receiver on your own network, or a test on loopback). The check runs when an
endpoint is added and again before every delivery, which then connects only to addresses it checked, so a
name that resolves elsewhere later (DNS rebinding) is caught too.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

SCHEMES = {"http": 80, "https": 443}


class UrlRefused(Exception):
    """The URL cannot be a webhook's; the message names the setting and the fix."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect (ADDRESSES in the resolver's order, PORT), what to ask for there (HOST, PATH)."""

    scheme: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]


def split(url: str) -> tuple[str, str, int, str]:
    """SCHEME, HOST, PORT and PATH (with its query) of URL; UrlRefused when it is not an http(s) URL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as error:
        raise UrlRefused(
            f"webhook url {url!r} is not a URL ({error}); give one like https://hooks.example.com/x"
        ) from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise UrlRefused(
            f"webhook url {url!r}: give an http:// or https:// URL with a host, like https://hooks.example.com/x"
        )
    if parts.username or parts.password:
        raise UrlRefused(
            f"webhook url {url!r} carries a user or password: the endpoint's secret signs the body instead"
        )
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return parts.scheme, parts.hostname, port or SCHEMES[parts.scheme], path


def not_public(address: str) -> str | None:
    """Why ADDRESS is no public address (loopback, link-local, ...), or None when it is one."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    for kind in ("loopback", "link_local", "private", "multicast", "reserved", "unspecified"):
        if getattr(ip, f"is_{kind}"):
            return kind.replace("_", "-")
    return None if ip.is_global else "not globally routable"


def resolve(host: str, port: int) -> list[str]:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise UrlRefused(f"webhook host {host!r} does not resolve ({error}); check the URL's host name") from None
    return list(dict.fromkeys(entry[4][0] for entry in found))


def checked(url: str, allow_private: bool) -> Target:
    """URL's target, every address of its host checked; UrlRefused naming the address and the fix."""
    scheme, host, port, path = split(url)
    addresses = resolve(host, port)
    if not allow_private:
        for address in addresses:
            why = not_public(address)
            if why is not None:
                raise UrlRefused(
                    f"webhook url {url!r}: {host} resolves to {address}, a {why} address; raydeploy refuses to post "
                    "to its own machine's networks unless the endpoint allows it (--allow-private, API "
                    '"allow_private": true)'
                )
    return Target(scheme, host, port, path, tuple(addresses))
