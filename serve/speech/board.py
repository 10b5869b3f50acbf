"""The engines as the router sees them: the handle protocol (what it uses of a Ray Serve
`DeploymentHandle`, so it runs without Ray too) and the board, one recent status snapshot
of every engine that all readers share."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from chorus.speech.attempts import EngineBusy, describe
from deployments.base import EngineId, EngineStatus, Health

log = logging.getLogger(__name__)


class EngineMethod(Protocol):
    def remote(self, *args: Any) -> Any:
        """A `DeploymentResponse` (awaitable, `cancel()`) or, on a streaming handle, a
        `DeploymentResponseGenerator` (async iterator, `cancel()`). A call the engine's
        full queue refused raises `EngineBusy` (`chorus.ingress.handles` turns Serve's
        `BackPressureError` into it)."""
        ...


class EngineHandle(Protocol):
    """What the router uses of a Ray Serve `DeploymentHandle` to an engine deployment
    (`deployments.base.TTSEngine`): the board and router take any object with this
    surface, so they can be exercised without Ray."""

    @property
    def status(self) -> EngineMethod: ...
    @property
    def synthesize(self) -> EngineMethod: ...
    @property
    def stream(self) -> EngineMethod: ...
    def options(self, *, stream: bool) -> EngineHandle: ...


class EngineBoard:
    """Handles to the deployed engines and a recent view of their status.

    Every reader (each request's plan, `GET /v1/providers`, `/readyz`) gets the last known
    statuses at once. Once they are older than `refresh_s`, the first reader to notice
    starts one refresh in the background and the others join it, so the engines are asked
    at most once per interval however often the board is read, and no request waits for
    a slow status call; only the very first readers wait, having nothing to go on."""

    def __init__(self, handles: Mapping[EngineId, EngineHandle], refresh_s: float = 5.0) -> None:
        self.handles = dict(handles)
        self.refresh_s = refresh_s
        self._statuses: dict[EngineId, EngineStatus] = {}
        self._refreshed_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self.checked_at: datetime | None = None
        """When the engines were last asked (what `GET /v1/providers` shows is that old)."""

    async def statuses(self) -> dict[EngineId, EngineStatus]:
        if self._refreshed_at is None:
            return await self.refresh()
        if time.monotonic() - self._refreshed_at > self.refresh_s:
            self._refresh_once()
        return self._statuses

    async def refresh(self) -> dict[EngineId, EngineStatus]:
        """Ask the engines now (or join the refresh under way) and return what they said."""
        # Shielded: a reader that goes away must not cancel the refresh the others wait for.
        await asyncio.shield(self._refresh_once())
        return self._statuses

    def _refresh_once(self) -> asyncio.Task[None]:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh())
        return self._refreshing

    async def _refresh(self) -> None:
        async def one(engine: EngineId, handle: EngineHandle) -> EngineStatus | None:
            try:
                return await asyncio.wait_for(as_coroutine(handle.status.remote()), timeout=10)
            except EngineBusy as err:  # its queue full: busy, not unhealthy; what it last said stands
                log.info("status of %s not asked: %s", engine, err)
                return self._statuses.get(engine)
            except Exception as err:
                log.warning("status of %s failed: %s", engine, err)
                previous = self._statuses.get(engine)
                if previous is None:
                    return None
                reason = f"status check failed: {describe(err)}"
                return previous.model_copy(update={"health": Health(healthy=False, reason=reason)})

        results = await asyncio.gather(*(one(e, h) for e, h in self.handles.items()))
        self._statuses = {e: s for e, s in zip(self.handles, results, strict=True) if s is not None}
        self._refreshed_at = time.monotonic()
        self.checked_at = datetime.now(UTC)


async def as_coroutine(x: Any) -> Any:
    """`x` (any awaitable, a Ray `DeploymentResponse` too) as a coroutine, for `asyncio.wait_for`."""
    return await x
