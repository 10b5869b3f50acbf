"""With API keys off, the ingress answers this machine only, and only pages it served.

Keys off means every caller is an admin, which `chorus.auth.exposure` allows on loopback
only. A loopback port is still reachable from a browser on this machine: a page elsewhere can
rebind its own name to 127.0.0.1 (then its requests are same-origin and carry its name in
`Host`) or post a form across sites (a CORS "simple" request, never preflighted). So:
- a `Host` that is not a loopback address or `localhost` is answered 421 (misdirected);
- an `Origin` that is not one (a page from another site) is answered 403.
Requests without `Origin` (curl, the CLI, Python clients) and the dashboard's own (its
origin is this server's) pass. Not installed with keys on, nor with `insecure_no_auth`
(a guard in front answers to other names).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from chorus.auth.exposure import is_loopback

Refusal = Callable[..., Response]
"""Builds the refusal: `(request, status, detail, code=...)`, `chorus.ingress.errors.error_response`."""


def _host_name(host: str) -> str:
    """`127.0.0.1:8000` -> `127.0.0.1`, `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class LoopbackOnly:
    def __init__(self, app: ASGIApp, *, refuse: Refusal) -> None:
        self.app, self.refuse = app, refuse

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        host = conn.headers.get("host", "")
        origin = conn.headers.get("origin")
        if not is_loopback(_host_name(host)):
            response = self.refuse(Request(scope), 421, "with API keys off this server answers only to "
                                   "127.0.0.1, ::1 or localhost", code="misdirected_request")
        elif origin is not None and not is_loopback(urlsplit(origin).hostname or ""):
            response = self.refuse(Request(scope), 403, "with API keys off this server takes no requests "
                                   "from pages of other sites", code="foreign_origin")
        else:
            await self.app(scope, receive, send)
            return
        await response(scope, receive, send)
