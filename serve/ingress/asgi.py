"""The ingress's FastAPI app around one replica's state: its routers, its error handlers and
the middleware stack, in the order every request passes it."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from starlette.requests import HTTPConnection
from starlette.routing import Route
from starlette.types import Scope

from chorus.ingress import errors
from chorus.ingress.api import ErrorOut
from chorus.ingress.middleware.auth import AuthMiddleware, presented_key
from chorus.ingress.middleware.body_limit import BodyLimitMiddleware
from chorus.ingress.middleware.loopback import LoopbackOnly
from chorus.ingress.middleware.request_id import RequestIdMiddleware
from chorus.ingress.middleware.server_spans import ServerSpans
from chorus.ingress.middleware.spend import QuotaMiddleware
from chorus.ingress.middleware.websockets import RefuseWebsockets
from chorus.ingress.replica import Replica
from chorus.ingress.routes import (
    cache,
    clone,
    dashboard,
    keys,
    personalities,
    providers,
    samples,
    speech,
    stats,
    voices,
)
from chorus.ingress.uploads import FORM_OVERHEAD

DESCRIPTION = (
    "Text-to-speech for voice personalities. Every speech answer names the engine that spoke "
    "(`X-Chorus-Provider`), the engines tried before it (`X-Chorus-Fallback`), whether the audio "
    "came from the cache (`X-Chorus-Cache`: hit, miss, partial or bypass), the time it took "
    "(`X-Chorus-Latency-Ms`) and, for a personality that verifies its speech, what the recognizer "
    "heard (`X-Chorus-Verify`)."
)


def create_app(replica: Replica, *, behind_serve_proxy: bool = False) -> FastAPI:
    """The app; `behind_serve_proxy` when Ray Serve's proxy answers with `X-Request-Id`."""
    # No redirect to the slashed or unslashed path: a 307 would tell a key without the scope
    # that a route exists, with a Location built from the caller's Host.
    app = FastAPI(title="Chorus", version="0.1.0", description=DESCRIPTION, redirect_slashes=False)
    app.state.replica = replica
    errors.install(app)
    routers = [module.router for module in (speech, voices, clone, personalities, samples, providers, stats, cache, keys, dashboard)]
    for router in routers:
        # Invalid input is `ErrorOut` (`chorus.ingress.errors`), not FastAPI's default list of errors;
        # a route documenting its own 422 keeps it.
        app.include_router(router, responses={422: {"model": ErrorOut, "description": "Invalid request."}})
    # The routes as declared (FastAPI keeps included routers nested), then its own
    # (/docs, /openapi.json), which need admin.
    declared = [route for router in routers for route in router.routes]
    own = [route for route in app.routes if isinstance(route, Route)]
    # Added innermost first. The request id wraps everything, so every refusal carries it;
    # keys are checked, then counted against their rate, before the body limit reads a
    # byte of the body.
    app.add_middleware(
        BodyLimitMiddleware,
        routes=declared + own,
        limit=replica.config.max_body_bytes,
        upload_limit=replica.config.samples.max_upload_bytes + FORM_OVERHEAD,
        refuse=errors.error_response,
    )
    app.add_middleware(QuotaMiddleware, quotas=replica.quotas, refuse=errors.quota_refusal)
    if replica.keys is not None:
        assert replica.config.auth is not None  # keys are on exactly when auth is configured
        app.add_middleware(AuthMiddleware, routes=declared + own, ring=replica.keys, refuse=errors.error_response,
                           quotas=replica.quotas, failed_per_minute=replica.config.auth.failed_per_minute)
    elif not replica.config.insecure_no_auth:
        app.add_middleware(LoopbackOnly, refuse=errors.error_response)
    app.add_middleware(RequestIdMiddleware, behind_serve_proxy=behind_serve_proxy)
    # Outermost: every request has its server span, refusals included.
    app.add_middleware(ServerSpans, tracer_provider=replica.tracing.provider, routes=declared + own,
                       trusted=_holds_a_key(replica))
    app.add_middleware(RefuseWebsockets)
    return app


def _holds_a_key(replica: Replica) -> Callable[[Scope], bool]:
    """Whether a request comes from a caller whose trace context Chorus continues: one
    presenting a valid key, or anyone with keys off (then only this machine reaches it)."""
    ring = replica.keys
    if ring is None:
        return lambda scope: True

    def trusted(scope: Scope) -> bool:
        key = presented_key(HTTPConnection(scope))
        return key is not None and ring.lookup(key) is not None

    return trusted
