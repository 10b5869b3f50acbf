"""The check every request passes before anything reads its body: which key sent it, and
whether that key has the scope its route needs.

A pure ASGI middleware rather than a FastAPI dependency, so it also covers routes FastAPI
adds itself (`/docs`, `/openapi.json`) and mounts, and so a caller without a key is refused
before an upload is read. The route is found the way Starlette's router will find it; a
path no route matches needs only a valid key (its 404 or 405 says nothing to strangers).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus.auth.keys import ApiKey
from chorus.auth.ring import KeyRing
from chorus.auth.scopes import ANY_KEY, OPENAPI_KEY, PUBLIC
from chorus.auth.scopes import Scope as KeyScope
from chorus.ingress.middleware.routes import matched
from chorus.quotas.callers import LimitName, QuotaExceeded, Quotas, QuotasUnavailable

Refusal = Callable[..., Response]
"""Builds the error answer: `(request, status, detail, code=...)`, `chorus.ingress.errors.error_response`
(passed in, so error shapes stay the HTTP layer's and this module stays below it)."""


def caller(conn: HTTPConnection) -> ApiKey | None:
    """The key a request authenticated with (written by `AuthMiddleware`); None when keys
    are off or the route is public."""
    return conn.scope.get("state", {}).get("caller")


def identified(conn: HTTPConnection) -> ApiKey | None:
    """The key a request showed, on any route: `caller`, or a valid key sent to a public one."""
    state = conn.scope.get("state", {})
    return state.get("caller") or state.get("public_caller")


def caller_name(conn: HTTPConnection) -> str:
    """What logs call the caller: its key's name, never the key."""
    key = caller(conn)
    return key.name if key else "-"


def presented_key(conn: HTTPConnection) -> str | None:
    """The key from `x-api-key`, or `Authorization: Bearer` (what OpenAI's clients send)."""
    if key := conn.headers.get("x-api-key"):
        return key
    scheme, _, credentials = conn.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


def route_scope(route: BaseRoute) -> str:
    """What `route` needs: its `x-chorus-scope`, else `admin`."""
    extra = getattr(route, "openapi_extra", None) or {}
    return extra.get(OPENAPI_KEY, KeyScope.ADMIN.value)


class AuthMiddleware:
    """`quotas` counts the requests each client address sends without a valid key: past
    `failed_per_minute` in a minute they get 429 instead of 401 (a guess learns nothing and
    is slowed to that rate; a valid key from the same address still passes), and only the
    first of a window is logged at INFO, the rest at DEBUG, so the log cannot be flooded."""

    def __init__(self, app: ASGIApp, *, routes: list[BaseRoute], ring: KeyRing, refuse: Refusal,
                 quotas: Quotas, failed_per_minute: int) -> None:
        self.app, self.routes, self.ring, self.refuse = app, routes, ring, refuse
        self.quotas, self.failed_limit = quotas, f"{failed_per_minute}/minute"

    def _needs(self, scope: Scope) -> str:
        route = matched(self.routes, scope)
        return ANY_KEY if route is None else route_scope(route)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        needs = self._needs(scope)
        request = Request(scope)
        presented = presented_key(request)
        key = self.ring.lookup(presented) if presented else None
        if needs == PUBLIC:
            # Anyone may call it, and no key's rate counts it; a valid key still says who is
            # asking (an admin sees `/readyz`'s details).
            if key is not None:
                scope.setdefault("state", {})["public_caller"] = key
            await self.app(scope, receive, send)
            return
        if key is None:
            await self._refuse_unknown(request, presented is not None, scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = key
        if needs != ANY_KEY and not key.allows(KeyScope(needs)):
            response = self.refuse(
                request, 403, f"the key {key.name!r} lacks the {needs!r} scope this route needs",
                code="insufficient_scope",
            )
            await response(scope, receive, send)
            return
        await self.app(scope, receive, _no_store(send))

    async def _refuse_unknown(self, request: Request, presented: bool, scope: Scope, receive: Receive,
                              send: Send) -> None:
        client = request.client.host if request.client else "-"
        first = True
        try:
            window = await self.quotas.rate(LimitName.FAILED_KEYS, client, self.failed_limit)
            first = window.remaining == window.limit - 1
        except QuotaExceeded as over:
            response = self.refuse(
                request, 429, "too many requests without a valid API key from this address; retry later",
                code="too_many_failed_keys", retry_after_s=over.retry_after_s, quiet=True,
            )
            await response(scope, receive, send)
            return
        except QuotasUnavailable:
            pass  # uncounted, still refused
        said = "is not valid" if presented else "is missing"
        response = self.refuse(
            request, 401, f"the API key {said}: send it as 'x-api-key: KEY' or 'Authorization: Bearer KEY'",
            code="invalid_api_key", quiet=not first,
        )
        response.headers["WWW-Authenticate"] = 'Bearer realm="chorus"'
        await response(scope, receive, send)


def _no_store(send: Send) -> Send:
    """What a key was shown (audio, samples, personalities) is kept by no cache on the way:
    `x-api-key` is not a header shared caches know to vary on."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers.setdefault("Cache-Control", "no-store")
        await send(message)

    return sending
