"""Every request's `Spend` (`chorus.quotas.callers`): started here, counted against the caller's
key rate, and turned into the answer's `X-RateLimit-*` headers.

A pure ASGI middleware inside the key check (`chorus.ingress.middleware.auth`), so it knows the caller,
and outside the body limit, so a key over its rate is refused before its body is read. It
covers every route a key reaches, FastAPI's own (`/docs`) and unmatched paths included:
each authenticated request counts against its key's rate. The speech routes add the
personality rate and the character budgets to the same `Spend` (`SpendDep`), and the
headers name whichever window is tightest when the answer starts.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from chorus.ingress.middleware.auth import caller
from chorus.quotas.callers import LimitName, QuotaExceeded, Quotas, QuotasUnavailable, Spend, Window

Refusal = Callable[[Request, QuotaExceeded | QuotasUnavailable], Response]
"""Builds the 429 or 503 (`chorus.ingress.errors.quota_refusal`)."""


def start_spend(quotas: Quotas, conn: HTTPConnection) -> Spend:
    """This request's spend, kept in its state for the routes (`chorus.ingress.deps.SpendDep`)."""
    spend = Spend(quotas, caller(conn))
    conn.scope.setdefault("state", {})["spend"] = spend
    return spend


class QuotaMiddleware:
    def __init__(self, app: ASGIApp, *, quotas: Quotas, refuse: Refusal) -> None:
        self.app, self.quotas, self.refuse = app, quotas, refuse
        # Each key's requests under way on this replica, for its `maxConcurrent`.
        self.under_way: dict[str, int] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        spend = start_spend(self.quotas, request)
        key = spend.key
        try:
            if key is not None and key.max_concurrent is not None and self.under_way.get(key.name, 0) >= key.max_concurrent:
                raise QuotaExceeded(Window(LimitName.CONCURRENT, key.name, key.max_concurrent, "request under way",
                                           0, time.time() + 1))
            await spend.request()
        except (QuotaExceeded, QuotasUnavailable) as refused:
            await self.refuse(request, refused)(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and (window := spend.tightest()) is not None:
                MutableHeaders(scope=message).update(window.headers())
            await send(message)

        name = key.name if key is not None else None
        if name is not None:
            self.under_way[name] = self.under_way.get(name, 0) + 1
        try:
            await self.app(scope, receive, send_with_headers)
        finally:
            if name is not None:
                self.under_way[name] -= 1
                if not self.under_way[name]:
                    del self.under_way[name]
