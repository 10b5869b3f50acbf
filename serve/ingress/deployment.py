"""The ingress deployment: the only one with HTTP routes.

Each replica builds its state (`chorus.ingress.replica.Replica`: personality store, sample service,
engine board, router) and then its FastAPI app around it (`create_app`), which Ray Serve
asks for through `__serve_build_asgi_app__`. Engines are reached through the deployment
handles the app builder passed in.
"""

import asyncio
from collections.abc import Mapping

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle
from starlette.routing import Route

from chorus.auth.sources import KeySources
from chorus.ingress import errors
from chorus.ingress.api import ErrorOut
from chorus.ingress.handles import RetryingHandle
from chorus.ingress.middleware.auth import AuthMiddleware
from chorus.ingress.middleware.body_limit import BodyLimitMiddleware
from chorus.ingress.middleware.request_id import RequestIdMiddleware
from chorus.ingress.middleware.server_spans import ServerSpans
from chorus.ingress.middleware.spend import QuotaMiddleware
from chorus.ingress.replica import IngressConfig, Replica
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
)
from chorus.ingress.uploads import FORM_OVERHEAD
from chorus.speech.replicas import ReplicaCount, Replicas, ReplicaSource
from chorus.speech.router import EngineBoard
from deployments.base import EngineId

DESCRIPTION = (
    "Text-to-speech for voice personalities. Every speech answer names the engine that spoke "
    "(`X-Chorus-Provider`), the engines tried before it (`X-Chorus-Fallback`), whether the audio "
    "came from the cache (`X-Chorus-Cache`: hit, miss, partial or bypass) and the time it took "
    "(`X-Chorus-Latency-Ms`)."
)


def create_app(replica: Replica, *, behind_serve_proxy: bool = False) -> FastAPI:
    """The app; `behind_serve_proxy` when Ray Serve's proxy answers with `X-Request-Id`."""
    app = FastAPI(title="Chorus", version="0.1.0", description=DESCRIPTION)
    app.state.replica = replica
    errors.install(app)
    routers = [module.router for module in (speech, clone, personalities, samples, providers, stats, cache, keys, dashboard)]
    for router in routers:
        # Invalid input is `ErrorOut` (`chorus.ingress.errors`), not FastAPI's default list of errors;
        # a route documenting its own 422 keeps it.
        app.include_router(router, responses={422: {"model": ErrorOut, "description": "Invalid request."}})
    # Added innermost first. The request id wraps everything, so every refusal carries it;
    # keys are checked, then counted against their rate, before the body limit reads a
    # byte of the body.
    app.add_middleware(
        BodyLimitMiddleware,
        limit=replica.config.max_body_bytes,
        multipart_limit=replica.config.samples.max_upload_bytes + FORM_OVERHEAD,
        refuse=errors.error_response,
    )
    app.add_middleware(QuotaMiddleware, quotas=replica.quotas, refuse=errors.quota_refusal)
    # The routes as declared (FastAPI keeps included routers nested), then its own
    # (/docs, /openapi.json), which need admin.
    declared = [route for router in routers for route in router.routes]
    own = [route for route in app.routes if isinstance(route, Route)]
    if replica.keys is not None:
        app.add_middleware(AuthMiddleware, routes=declared + own, ring=replica.keys, refuse=errors.error_response)
    app.add_middleware(RequestIdMiddleware, behind_serve_proxy=behind_serve_proxy)
    # Outermost: every request has its server span, refusals included.
    app.add_middleware(ServerSpans, tracer_provider=replica.tracing.provider, routes=declared + own)
    return app


def serve_replica_counts(engines: Mapping[EngineId, DeploymentHandle]) -> ReplicaSource:
    """Reads each engine deployment's replicas from Serve's controller (`serve.status()`)."""
    names = {engine: (handle.app_name, handle.deployment_name) for engine, handle in engines.items()}

    def read() -> dict[EngineId, ReplicaCount]:
        applications = serve.status().applications
        counts = {}
        for engine, (app, deployment) in names.items():
            status = applications.get(app)
            if status is not None and deployment in status.deployments:
                counts[engine] = ReplicaCount.from_states(status.deployments[deployment].replica_states)
        return counts

    return read


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
@serve.ingress()
class Ingress:
    def __init__(self, engines: dict[EngineId, DeploymentHandle], config: IngressConfig | dict) -> None:
        config = IngressConfig.model_validate(config)
        # A call whose replica dies is sent once more (to a live replica) before the router
        # counts the engine as failed.
        handles = {engine: RetryingHandle(handle) for engine, handle in engines.items()}
        replicas = Replicas(serve_replica_counts(engines), refresh_s=config.status_refresh_s)
        self.replica = Replica(config, EngineBoard(handles, refresh_s=config.status_refresh_s), replicas=replicas)
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._watchers = [loop.create_task(self.replica.store.watch(self._stop)),
                          loop.create_task(self.replica.stats.run(self._stop))]
        if self.replica.cache is not None:  # drops made through other replicas reach this one's memory
            self._watchers.append(loop.create_task(self.replica.cache.follow_drops(self._stop)))
        if config.auth is not None and self.replica.keys is not None:
            # Loaded before the first request; kept current while the replica lives.
            sources = KeySources(config.auth, self.replica.keys)
            sources.load()
            self._watchers.append(loop.create_task(sources.watch(self._stop)))

    def __serve_build_asgi_app__(self) -> FastAPI:
        return create_app(self.replica, behind_serve_proxy=True)

    def __del__(self) -> None:
        self._stop.set()
        self.replica.tracing.shutdown()  # sends what is still batched
