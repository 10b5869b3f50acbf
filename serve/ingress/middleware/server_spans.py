"""The HTTP server span of every request, by OpenTelemetry's ASGI instrumentation with this
replica's provider: `http.request.method`, `http.route` (the route's template, never the
path) and `http.response.status_code`, as the stable HTTP semantic conventions name them.
An incoming `traceparent` is continued for a trusted caller (one with a valid key, or any
with keys off: loopback only), so it sees Chorus inside its own trace; anyone else's trace
headers are dropped before the instrumentation reads them, so a stranger can neither force
sampling (exporter load) nor hide its requests from it (`-00`). Every answer says which
trace it was in (`traceresponse`, W3C Trace Context Level 2), so a caller (the dashboard's
Try it) can link to it in a trace viewer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation._semconv import _StabilityMode
from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import TracerProvider
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_ROUTE = "http.route"


TRACE_HEADERS = frozenset({b"traceparent", b"tracestate", b"baggage"})


class ServerSpans(OpenTelemetryMiddleware):
    def __init__(self, app: ASGIApp, *, tracer_provider: TracerProvider, routes: list[BaseRoute],
                 trusted: Callable[[Scope], bool]) -> None:
        self.trusted = trusted
        super().__init__(
            _RouteTemplate(app, routes),
            tracer_provider=tracer_provider,
            # Ray's metrics are the figures for the dashboard; none from here.
            meter_provider=NoOpMeterProvider(),
            # Named after the method, then the route (`_RouteTemplate`): a path would make
            # one span name per personality.
            default_span_details=_method_only,
            # One span per request, not one per body chunk sent or received.
            exclude_spans=["receive", "send"],
        )
        # The stable attribute names whatever OTEL_SEMCONV_STABILITY_OPT_IN says: the
        # instrumentation reads that once per process, and the dashboards read these names.
        self._sem_conv_opt_in_mode = _StabilityMode.HTTP

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:  # type: ignore[override]
        if scope["type"] == "http" and not self.trusted(scope):
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k.lower() not in TRACE_HEADERS]}
        await super().__call__(scope, receive, send)


def _method_only(scope: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return scope.get("method", "HTTP"), {}


class _RouteTemplate:
    """Names the server span after the route the request names, before the app runs.
    FastAPI records the route only in a copy of the scope, out of a middleware's sight, so
    the app's routes (as declared, like `chorus.ingress.middleware.auth` matches them) are matched here,
    which names refusals' spans too."""

    def __init__(self, app: ASGIApp, routes: list[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        span = trace.get_current_span()  # the server span the instrumentation made current
        template = self._template(scope)
        if template and span.is_recording():
            span.set_attribute(HTTP_ROUTE, template)
            span.update_name(f"{scope.get('method', 'HTTP')} {template}")
        context = span.get_span_context()
        if not context.is_valid:
            await self.app(scope, receive, send)
            return
        traceresponse = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}".encode()

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"traceresponse", traceresponse)]}
            await send(message)

        await self.app(scope, receive, send_with_trace)

    def _template(self, scope: Scope) -> str | None:
        """The path template of the route the request matched (a wrong method still names it)."""
        partial = None
        for route in self.routes:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return getattr(route, "path_format", None)
            if match is Match.PARTIAL and partial is None:
                partial = getattr(route, "path_format", None)
        return partial
