"""Engine calls survive a replica that dies under them.

A replica actor can die with requests in flight (a crash, an OOM kill, a lost node, Serve
replacing it). Its callers get `RayActorError` (`ActorDiedError`, `ActorUnavailableError`)
although the engine itself is fine: its other replicas, or the one Serve starts instead,
would have spoken. So such a call is sent once more to the same deployment, which routes
it to a live replica; a second death is the router's to handle (next engine).

Synthesis has no side effects, so repeating it is safe. A stream that dies part way
resumes where it stopped, and the listener hears each sentence once: when its chunks said
which sentences they spoke (`AudioChunk.sentences`: Piper, the cloud engines), the repeat
asks for the rest of the text only, so its first chunk comes as soon as any other (redoing
what was heard would leave the stream silent that long, and a long stream past the router's
chunk timeout); otherwise (XTTS, StyleTTS2: model steps) it repeats the same request and
skips as many chunks as were given, which the engine yields the same for the same request.
Only replica deaths are retried; an engine's own errors (`EngineError`, timeouts) are the
router's as before.

A call refused by the engine's full queue (Serve's `BackPressureError`: no replica saw it)
raises `EngineBusy`, the router's own type for it, so that load is never taken for a fault
and Serve's error never leaves the ingress: raised from a stream's body, the proxy would
take it for the Ingress's own queue being full.

`RetryingHandle` wraps a Serve `DeploymentHandle` with the surface the router uses
(`chorus.speech.router.EngineHandle`, and the recognizer's `hear` and `align`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Generator
from typing import Any

from ray.exceptions import RayActorError, RayError
from ray.serve.exceptions import BackPressureError, RayServeException

from chorus.speech.attempts import EngineBusy
from chorus.speech.sentences import rest_of
from deployments.base import AudioChunk, SynthesisRequest

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

    @property
    def hear(self) -> _Method:  # the recognizer's (`chorus.recognition.deployment`): as safe to repeat
        return _Method(self._handle.hear, streaming=self._streaming)

    @property
    def align(self) -> _Method:
        return _Method(self._handle.align, streaming=self._streaming)

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
            try:
                return await self._response
            except RayActorError as err:
                log.warning("engine replica died during a call (%s); sending it once more", type(err).__name__)
                self._response = self._method.remote(*self._args)
                return await self._response
        except BackPressureError as err:
            raise _busy(err) from None

    def cancel(self) -> None:
        _cancel(self._response)


class _Stream:
    """A `DeploymentResponseGenerator` resumed once if its replica died: async iterator,
    `cancel()`. What the dead replica gave is not given again."""

    def __init__(self, method: Any, args: tuple[Any, ...]) -> None:
        self._method, self._args = method, args
        self._gen = method.remote(*args)
        self._given = 0
        self._said: list[str] | None = []  # the sentences given, while every chunk told them
        self._skip = 0
        self._retried = False

    def __aiter__(self) -> _Stream:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self._gen.__anext__()
            except BackPressureError as err:
                raise _busy(err) from None
            except RayActorError as err:
                if self._retried:
                    raise
                self._retried = True
                self._resume(err)
                continue
            if self._skip:
                self._skip -= 1
                continue
            self._given += 1
            sentences = chunk.sentences if isinstance(chunk, AudioChunk) else []
            if not sentences:
                self._said = None
            elif self._said is not None:
                self._said.extend(s.text for s in sentences)
            return chunk

    def _resume(self, err: RayActorError) -> None:
        request = self._args[0] if self._args else None
        rest = rest_of(request.text, self._said) if isinstance(request, SynthesisRequest) and self._said else None
        if rest is not None:
            log.warning("engine replica died during a stream after %d chunks (%s); resuming once with the "
                        "%d characters not yet spoken", self._given, type(err).__name__, len(rest))
            if not rest:  # all of it was given: nothing to ask again
                self._gen = _Nothing()
                return
            self._gen = self._method.remote(request.model_copy(update={"text": rest}), *self._args[1:])
            return
        log.warning("engine replica died during a stream after %d chunks (%s); resuming once",
                    self._given, type(err).__name__)
        self._gen = self._method.remote(*self._args)
        self._skip = self._given

    def cancel(self) -> None:
        _cancel(self._gen)


def _cancel(call: Any) -> None:
    """Cancel a Serve call. One that was never sent (its queue full, no replica to take it)
    raises that error again from `cancel()`; it was raised where the call was awaited, and
    there is nothing to cancel, so it must not replace what the canceller is handling."""
    try:
        call.cancel()
    except (RayServeException, RayError) as err:
        log.debug("cancelling a call that was never sent: %s", err)


def _busy(err: BackPressureError) -> EngineBusy:
    return EngineBusy(err.message, retry_after_s=max(1, math.ceil(err.retry_after_s or 1)))


class _Nothing:
    """A stream with nothing left in it."""

    async def __anext__(self) -> Any:
        raise StopAsyncIteration

    def cancel(self) -> None:
        pass
