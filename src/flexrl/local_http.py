"""What flex-rl's HTTP servers share (``POST /instruction`` of ``flexrl run``, and ``flexrl serve``): the port
range, loopback addresses, and the check that keeps web pages out.

A web page open in a browser on this machine can send requests to 127.0.0.1: a ``text/plain`` POST goes out
without a CORS preflight, and with DNS rebinding (a name of the page's own site that later resolves to
127.0.0.1) the page can read the answers too. Browsers send ``Origin`` with such requests and always send
``Host``, the name the page used; curl, httpx and the openai client send no Origin and the loopback address
they connect to. So :func:`cross_site_refusal` refuses a foreign ``Origin`` and, on a loopback server, a
``Host`` that is not a loopback host. This module imports nothing from flex-rl, so every package may use it.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Sequence

_LOOPBACK_NAMES = ("localhost",)
_AUTHORITY = re.compile(r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9.\-]+))(?::[0-9]{1,5})?")
"""``host[:port]`` as in a Host header or an origin; an IPv6 address in brackets."""
_ORIGIN_SCHEMES = ("http", "https")
_LOOPBACK_ORIGINS = "http(s)://127.0.0.1, http(s)://localhost or http(s)://[::1], with any port"
_LOOPBACK_HOSTS = "127.0.0.1, localhost or [::1], with any port"


def check_port(port: object, name: str = "port", optional: bool = False) -> None:
    """Raise ValueError (one line) unless ``port`` is a TCP port number, or None when ``optional``.

    Args:
        port: the value to check.
        name: the setting's name, for the message (e.g. ``http_port``).
        optional: whether None (no server) is allowed.
    """
    if optional and port is None:
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        allowed = "0 to 65535 (0: any free port)" + (", or null (no server)" if optional else "")
        raise ValueError(f"{name}={port!r}; allowed: {allowed}")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an IP address, no port) only accepts connections from this machine."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_loopback_host(authority: str) -> bool:
    """Whether a Host header (``host[:port]``, e.g. ``127.0.0.1:8000`` or ``[::1]``) names this machine."""
    match = _AUTHORITY.fullmatch(authority)
    if match is None:
        return False
    if match["ipv6"] is not None:
        try:
            return ipaddress.IPv6Address(match["ipv6"]).is_loopback
        except ValueError:
            return False
    return is_loopback(match["name"])


def is_loopback_origin(origin: str) -> bool:
    """Whether an Origin header is a page served from this machine (``http://localhost:3000``; not ``null``)."""
    scheme, separator, authority = origin.partition("://")
    return bool(separator) and scheme.lower() in _ORIGIN_SCHEMES and is_loopback_host(authority)


def cross_site_refusal(origins: Sequence[str], hosts: Sequence[str], check_origin: bool = True,
                       check_host: bool = True) -> str | None:
    """Why a request with these headers may come from a web page and must be refused (403), or None.

    Args:
        origins: the request's Origin headers (none: not sent, as by curl, httpx and the openai client).
        hosts: its Host headers (none: not sent, which no browser does).
        check_origin: refuse an Origin that is not a loopback origin (a page of another site).
        check_host: refuse a Host that is not a loopback host (DNS rebinding); for servers bound to a
            loopback address, which are reached by no other name.

    Returns:
        One line naming the header, its value and what is allowed; None when the request may be served.
    """
    if check_origin and origins and (len(origins) > 1 or not is_loopback_origin(origins[0])):
        return (f"Origin {_shown(origins)} is refused: web pages of other sites may not call this server; "
                f"allowed: no Origin, or {_LOOPBACK_ORIGINS}")
    if check_host and hosts and (len(hosts) > 1 or not is_loopback_host(hosts[0])):
        return (f"Host {_shown(hosts)} is refused: this server listens on a loopback address and answers only "
                f"to its names (against DNS rebinding); allowed: {_LOOPBACK_HOSTS}")
    return None


def _shown(values: Sequence[str], limit: int = 60) -> str:
    text = repr(values[0] if len(values) == 1 else list(values))
    return text if len(text) <= limit else text[: limit - 3] + "..."
