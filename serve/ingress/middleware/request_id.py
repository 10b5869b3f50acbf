"""`X-Request-Id` on every answer, the same id the error handlers log (`chorus.ingress.errors`).

Behind Ray Serve's HTTP proxy (how the ingress always runs) the proxy owns the header: it
keeps the caller's id or makes one, puts it on the request and appends it to every answer,
so the app only reads it (answering too would send the header twice). Served directly
(`create_app` under any other ASGI server, the unit tests) this middleware does the same:
a well-formed incoming id is kept, otherwise a fresh one is made.
"""

from __future__ import annotations

import re
import uuid

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
# Tokens only: an id is echoed into a header and the logs, so nothing that could split a
# line or a header, or pass for another field, is kept as it came.
_WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,128}")


def _as_token(text: str) -> str:
    return text if _WELL_FORMED.fullmatch(text) else re.sub(
        r"[^A-Za-z0-9._-]", lambda m: "".join(f"%{b:02X}" for b in m.group().encode()), text)


def request_id(conn: HTTPConnection) -> str:
    """The id of this request ("-" outside `RequestIdMiddleware`)."""
    return conn.scope.get("state", {}).get("request_id", "-")


def id_header(conn: HTTPConnection) -> dict[str, str]:
    """The header for an answer sent around the middleware (Starlette's last-resort 500):
    nothing when the proxy adds it."""
    answers = conn.scope.get("state", {}).get("request_id_answered", False)
    return {HEADER: request_id(conn)} if answers else {}


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp, *, behind_serve_proxy: bool) -> None:
        self.app, self.answer = app, not behind_serve_proxy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = HTTPConnection(scope).headers.get(HEADER, "")
        if self.answer:
            rid = incoming if _WELL_FORMED.fullmatch(incoming) else uuid.uuid4().hex
        else:
            # The proxy answers with the caller's id as it came, so the logs name that one,
            # but only as a token: anything else percent-escaped, so an id such as
            # "x, key admin]" cannot pass for another field of the line.
            rid = _as_token(incoming[:128]) if incoming else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"], state["request_id_answered"] = rid, self.answer
        if not self.answer:
            await self.app(scope, receive, send)
            return

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        await self.app(scope, receive, send_with_id)
