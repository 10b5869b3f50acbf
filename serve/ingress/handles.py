"""Engine calls survive a replica that dies under them.

A replica actor can die with requests in flight (a crash, an OOM kill, a lost node, Serve
replacing it). Its callers get `RayActorError` (`ActorDiedError`, `ActorUnavailableError`)
although the engine itself is fine: its other replicas, or the one Serve starts instead,
would have spoken. So such a call is sent once more to the same deployment, which routes
it to a live replica; a second death is the router's to handle (next engine).

Synthesis has no side effects, so repeating it is safe. A stream that dies part way
resumes with the same request and skips the chunks already given: the engine contract
(`deployments.base.TTSEngine.stream`) yields one chunk per sentence, so the sentences are
the same and the listener hears each once. Only replica deaths are retried; an engine's
own errors (`EngineError`, timeouts) are the router's as before.

`RetryingHandle` wraps a Serve `DeploymentHandle` with the surface the router uses
(`chorus.speech.router.EngineHandle`).
"""

from __future__ import annotations

import logging
from collections.abc import Generator
from typing import Any

from ray.exceptions import RayActorError

log = logging.getLogger(__name__)


class RetryingHandle:
    def __init__(self, handle: Any, *, streaming: bool = False) -> None:
        self._handle = handle
        self._streaming = streaming

    @property
    def status(self) -> _Method:
        return _Method(self._handle.status, streaming=self._streaming)

    @property
    def synthesize(self) -> _Method:
        return _Method(self._handle.synthesize, streaming=self._streaming)

    @property
    def stream(self) -> _Method:
        return _Method(self._handle.stream, streaming=self._streaming)

    def options(self, *, stream: bool) -> RetryingHandle:
        return RetryingHandle(self._handle.options(stream=stream), streaming=stream)


class _Method:
    def __init__(self, method: Any, *, streaming: bool) -> None:
        self._method = method
        self._streaming = streaming

    def remote(self, *args: Any) -> _Response | _Stream:
        return _Stream(self._method, args) if self._streaming else _Response(self._method, args)


class _Response:
    """A `DeploymentResponse` sent again once if its replica died: awaitable, `cancel()`."""

    def __init__(self, method: Any, args: tuple[Any, ...]) -> None:
        self._method, self._args = method, args
        self._response = method.remote(*args)

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            return await self._response
        except RayActorError as err:
            log.warning("engine replica died during a call (%s); sending it once more", type(err).__name__)
            self._response = self._method.remote(*self._args)
            return await self._response

    def cancel(self) -> None:
        self._response.cancel()


class _Stream:
    """A `DeploymentResponseGenerator` resumed once if its replica died: async iterator,
    `cancel()`. The chunks the dead replica gave are skipped in the repeat."""

    def __init__(self, method: Any, args: tuple[Any, ...]) -> None:
        self._method, self._args = method, args
        self._gen = method.remote(*args)
        self._given = 0
        self._skip = 0
        self._retried = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self._gen.__anext__()
            except RayActorError as err:
                if self._retried:
                    raise
                log.warning("engine replica died during a stream after %d chunks (%s); resuming once",
                            self._given, type(err).__name__)
                self._retried = True
                self._gen = self._method.remote(*self._args)
                self._skip = self._given
                continue
            if self._skip:
                self._skip -= 1
                continue
            self._given += 1
            return chunk

    def cancel(self) -> None:
        self._gen.cancel()
