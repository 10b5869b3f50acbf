"""No websocket reaches the app. No route takes one, and the key check, the rate and the body
cap are written for HTTP: a websocket passing them untouched would be a way around all three
the day a route (or a mount) accepted one. Closed with 1008 (policy violation) before the
app sees it."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send


class RefuseWebsockets:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "this server takes no websockets"})
            return
        await self.app(scope, receive, send)
