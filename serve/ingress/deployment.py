"""The ingress deployment: the only one with HTTP routes.

Each replica builds its state (`chorus.ingress.replica.Replica`: personality store, sample service,
engine board, router) and then its FastAPI app around it (`chorus.ingress.asgi.create_app`),
which Ray Serve asks for through `__serve_build_asgi_app__`. Engines are reached through the deployment
handles the app builder passed in.
"""

import asyncio
from collections.abc import Mapping

from fastapi import FastAPI
from ray import serve
from ray.serve.handle import DeploymentHandle

from chorus.auth.sources import KeySources
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.handles import RetryingHandle
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from chorus.speech.replicas import ReplicaCount, Replicas, ReplicaSource
from deployments.base import EngineId


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
    def __init__(self, engines: dict[EngineId, DeploymentHandle], config: IngressConfig | dict,
                 recognizer: DeploymentHandle | None = None) -> None:
        config = IngressConfig.model_validate(config)
        # A call whose replica dies is sent once more (to a live replica) before the router
        # counts the engine as failed.
        handles = {engine: RetryingHandle(handle) for engine, handle in engines.items()}
        replicas = Replicas(serve_replica_counts(engines), refresh_s=config.status_refresh_s)
        self.replica = Replica(config, EngineBoard(handles, refresh_s=config.status_refresh_s), replicas=replicas,
                               recognizer=RetryingHandle(recognizer) if recognizer is not None else None)
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
