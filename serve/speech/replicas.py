"""How many replicas serve each engine (`GET /v1/providers`), as Serve's controller counts
them. Asking is a blocking call to the controller, so it runs in a worker thread, at most
once per `refresh_s` however often the counts are read; readers get the last counts at once
(only the very first wait, having nothing to go on)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from pydantic import BaseModel, Field

from deployments.base import EngineId

log = logging.getLogger(__name__)


class ReplicaCount(BaseModel):
    running: int = Field(description="Replicas serving requests.")
    starting: int = Field(0, description="Replicas starting, updating or recovering.")
    stopping: int = Field(0, description="Replicas draining or stopping (scale-down, redeploy).")

    @classmethod
    def from_states(cls, states: Mapping[str, int]) -> ReplicaCount:
        """From Serve's `replica_states` (state name -> count)."""
        return cls(running=states.get("RUNNING", 0),
                   starting=sum(states.get(s, 0) for s in ("STARTING", "UPDATING", "RECOVERING")),
                   stopping=states.get("STOPPING", 0))


ReplicaSource = Callable[[], Mapping[EngineId, ReplicaCount]]
"""Reads the counts now (blocking): the Ingress passes one reading `serve.status()`."""


class Replicas:
    def __init__(self, source: ReplicaSource | None = None, refresh_s: float = 5.0) -> None:
        self.source = source
        self.refresh_s = refresh_s
        self._counts: dict[EngineId, ReplicaCount] = {}
        self._read_at: float | None = None
        self._reading: asyncio.Task[None] | None = None

    async def counts(self) -> Mapping[EngineId, ReplicaCount]:
        """The last counts; empty where nothing can count them (outside Ray Serve)."""
        if self.source is None:
            return {}
        stale = self._read_at is None or time.monotonic() - self._read_at > self.refresh_s
        if stale and (self._reading is None or self._reading.done()):
            self._reading = asyncio.get_running_loop().create_task(self._read(self.source))
        if self._read_at is None:
            # Shielded: a reader that goes away must not cancel the read the others wait for.
            await asyncio.shield(self._reading)  # type: ignore[arg-type]
        return self._counts

    async def _read(self, source: ReplicaSource) -> None:
        try:
            self._counts = dict(await asyncio.to_thread(source))
        except Exception as err:  # the controller busy or restarting: keep what was known
            log.warning("replica counts unavailable: %s", err)
        self._read_at = time.monotonic()
