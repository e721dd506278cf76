"""The checks every request to a run's app passes first: who may call it, as an ASGI middleware.

On a loopback address (the default) a request that may come from a web page of another site is refused
(:func:`~flexrl.local_http.cross_site_refusal`: a foreign ``Origin``, or a ``Host`` that is not a
loopback name, as DNS rebinding sends). Off loopback the app refuses to start without a token, and every
request must carry it: ``Authorization: Bearer TOKEN``, the ``flexrl_token`` cookie (set when the page is
opened as ``/?token=TOKEN``) or a ``token`` query parameter; a state-changing request must also come from
the page's own origin. Refusals are JSON with one line in ``error``; the run hears nothing of them.
"""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

from flexrl import local_http

TOKEN_COOKIE = "flexrl_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
TOKEN_FORMS = "Authorization: Bearer TOKEN, the flexrl_token cookie (open /?token=TOKEN once) or ?token=TOKEN"


def check_exposure(host: str, token: str | None) -> None:
    """Refuse (ValueError, one line) to serve off loopback without a token.

    Args:
        host: the address the server binds.
        token: the token every request must carry (None: none).
    """
    if not local_http.is_loopback(host) and not token:
        raise ValueError(f"http_host={host!r} is reachable from other machines and needs a token; "
                         "allowed: http_token=<secret> (or FLEXRL_UI_TOKEN), or a loopback host such as 127.0.0.1")


def request_token(scope: dict, headers: Headers) -> str | None:
    """The token a request carries (header, cookie or query), if any."""
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == TOKEN_COOKIE:
            return value
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


class Guard:
    """ASGI middleware: refuse cross-site, unauthenticated and (off loopback) cross-origin writes.

    Args:
        app: the ASGI app it guards.
        loopback: whether the server is bound to a loopback address (then the Host must name it).
        token: the token every request must carry (None: none asked).
    """

    def __init__(self, app, loopback: bool = True, token: str | None = None) -> None:
        self.app, self.loopback, self.token = app, loopback, token

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status, why = self.refusal(scope)
        if why is not None:
            await JSONResponse({"accepted": False, "error": why}, status, headers={"Connection": "close"})(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def refusal(self, scope: dict) -> tuple[int, str | None]:
        """(status, one-line reason) for a request that must be refused; (0, None) to serve it."""
        headers = Headers(scope=scope)
        origins, hosts = headers.getlist("origin"), headers.getlist("host")
        if self.loopback:
            why = local_http.cross_site_refusal(origins, hosts)
            if why is not None:
                return 403, why
        elif scope["method"] not in SAFE_METHODS and origins:
            page = urlsplit(origins[0]).netloc
            if len(origins) > 1 or len(hosts) != 1 or page != hosts[0]:
                return 403, (f"Origin {origins[0][:60]!r} is refused for {scope['method']}: only this app's own "
                             f"page may change state; allowed: no Origin, or the origin of Host {hosts[:1]}")
        if self.token is not None:
            given = request_token(scope, headers)
            if given is None or not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, f"{'wrong' if given else 'missing'} token; allowed: {TOKEN_FORMS}"
        return 0, None
