"""Request bodies are capped before anything parses them, by route.

The routes whose documented body is a multipart upload (samples, their check, `/v1/clone`)
get the uploads' cap (the sample limit plus room for the form fields,
`chorus.ingress.uploads`); every other request gets `IngressArgs.max_body_bytes`, whatever
`Content-Type` it claims (a JSON route sent `application/octet-stream` is still held to the
small cap: the type is the caller's word, the route is ours). A declared `Content-Length`
over the cap is answered 413 before the app runs; a chunked body is counted as it streams in
and refused (`BodyTooLarge`) as soon as it passes the cap, so no more than the cap is ever
held.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus.ingress.middleware.routes import matched, takes_uploads

Refusal = Callable[..., Response]
"""Builds the 413: `(request, status, detail, extra=...)`, `chorus.ingress.errors.error_response`
(passed in, like the key guard's, so error shapes stay with the error handlers)."""

class BodyTooLarge(HTTPException):
    """A request body over its cap. An HTTPException because it is raised while FastAPI
    reads the body, which passes only those on to the handlers (`chorus.ingress.errors`)."""

    def __init__(self, limit: int, declared: int | None = None) -> None:
        said = f"is {declared} bytes" if declared is not None else "grew past the limit"
        super().__init__(413, f"the request body {said}; the limit is {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute], limit: int, upload_limit: int,
                 refuse: Refusal) -> None:
        self.app, self.routes, self.limit, self.upload_limit, self.refuse = app, routes, limit, upload_limit, refuse

    def _limit_for(self, scope: Scope) -> int:
        return self.upload_limit if takes_uploads(matched(self.routes, scope)) else self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        conn = HTTPConnection(scope)
        limit = self._limit_for(scope)
        declared = conn.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            err = BodyTooLarge(limit, declared=int(declared))
            response = self.refuse(Request(scope), 413, err.detail, extra={"limit": limit})
            await response(scope, receive, send)
            return
        seen = 0

        async def capped() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # An HTTPException, so FastAPI's own body parsing passes it on to the
                    # handler in chorus.ingress.errors instead of turning it into a 400.
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, capped, send)
