"""Engines in the test process, behind the handle surface the router uses.

`LocalHandle` gives an engine object the part of a Ray Serve `DeploymentHandle` that
`chorus.speech.router.EngineHandle` names: `.remote()` starts the call at once and returns an
awaitable (or, on `.options(stream=True)`, an async iterator), both with `cancel()`, and
an engine's error arrives wrapped as Ray wraps it (a `RayTaskError` that is also an
instance of the original). `ScriptedEngine` is a `TTSEngine` whose answers, failures and
delays a test sets, and which records what it was asked.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import AsyncIterator, Awaitable, Generator
from typing import Any

import numpy as np
from ray.exceptions import RayTaskError

from deployments.base import (
    AudioChunk,
    AudioResult,
    Capabilities,
    EngineId,
    EngineStatus,
    Health,
    Sentence,
    SynthesisRequest,
    TTSEngine,
    VoiceInfo,
    WordSpan,
    split_sentences,
    spoken_words,
)
from deployments.settings import ENGINE_SETTINGS


def _as_ray_raises(method: str, err: Exception) -> Exception:
    tb = "".join(traceback.format_exception(err))
    return RayTaskError(method, tb, err).as_instanceof_cause()


class LocalResponse:
    """A `DeploymentResponse`: the call runs as a task from `.remote()` on."""

    def __init__(self, method: str, call: Awaitable[Any], handle: LocalHandle) -> None:
        self._method = method
        self._task = asyncio.ensure_future(call)
        self._handle = handle

    def __await__(self) -> Generator[Any, None, Any]:
        return self._result().__await__()

    async def _result(self) -> Any:
        try:
            return await self._task
        except Exception as err:
            raise _as_ray_raises(self._method, err) from None

    def cancel(self) -> None:
        self._handle.cancelled.append(self._method)
        self._task.cancel()


class LocalStream:
    """A `DeploymentResponseGenerator` over the engine's async generator."""

    def __init__(self, method: str, chunks: AsyncIterator[Any], handle: LocalHandle) -> None:
        self._method = method
        self._chunks = chunks
        self._handle = handle

    def __aiter__(self) -> LocalStream:
        return self

    async def __anext__(self) -> Any:
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            raise
        except Exception as err:
            raise _as_ray_raises(self._method, err) from None

    def cancel(self) -> None:
        self._handle.cancelled.append(self._method)


class LocalMethod:
    def __init__(self, handle: LocalHandle, name: str) -> None:
        self._handle = handle
        self._name = name

    def remote(self, *args: Any) -> LocalResponse | LocalStream:
        call = getattr(self._handle.engine, self._name)(*args)
        if self._handle.streaming:
            return LocalStream(self._name, call, self._handle)
        return LocalResponse(self._name, call, self._handle)


class LocalHandle:
    def __init__(self, engine: Any, *, streaming: bool = False, cancelled: list[str] | None = None) -> None:
        self.engine = engine
        self.streaming = streaming
        # methods whose calls the caller cancelled, shared by the handle's options()
        self.cancelled: list[str] = [] if cancelled is None else cancelled

    def options(self, *, stream: bool) -> LocalHandle:
        return LocalHandle(self.engine, streaming=stream, cancelled=self.cancelled)

    def __getattr__(self, name: str) -> LocalMethod:
        if name.startswith("_"):
            raise AttributeError(name)
        return LocalMethod(self, name)


class ScriptedEngine(TTSEngine):
    """Speaks a tone as long as the text (10 ms a character), one chunk per sentence
    when streaming. Set `error` to fail every call (a stream: at chunk `fail_at`),
    `delay_s` to answer late, `stall_at` to make a stream hang before that chunk,
    `status_error` to make its status call fail, `status_gate` to hold status calls until
    it is set. It counts its status calls and the chunks it has sent."""

    def __init__(
        self, engine: EngineId, *, languages: tuple[str, ...] = ("en",), voices: tuple[str, ...] = (),
        max_characters: int = 1000, sample_rate: int = 16_000, variant: str | None = None,
    ) -> None:
        self.engine_id = engine  # type: ignore[misc]
        self.languages = list(languages)
        self.voices = [VoiceInfo(id=v, languages=list(languages), sample_rate=sample_rate) for v in voices]
        self.max_characters = max_characters
        self.sample_rate = sample_rate
        self.variant = variant
        self.model_identity = f"scripted {engine} v1"  # a test changes it to play new weights
        self.healthy: Health = Health(healthy=True)
        self.error: Exception | None = None
        self.fail_at = 0
        self.delay_s = 0.0
        self.seconds_per_character = 0.01  # how long the audio of a text is
        self.amplitude = 8000  # how loud its tone is (of 32767)
        self.word_timings = True  # reports when its words are heard, when asked (as Piper does)
        self.says_sentences = True  # reports what each chunk says (as Piper does; XTTS does not)
        self.stall_at: int | None = None
        self.status_error: Exception | None = None
        self.status_gate: asyncio.Event | None = None
        self.status_calls = 0
        self.chunks_sent = 0
        self.requests: list[SynthesisRequest] = []

    def said(self, sentence: str, pcm: bytes, request: SynthesisRequest) -> Sentence:
        """The sentence as the engine reports it; with timestamps asked for and `word_timings`
        on, its words one after another, each as long as its characters (its own durations)."""
        words = None
        if request.timestamps and self.word_timings:
            words, at = [], 0.0
            for token in spoken_words(sentence):
                length = len(token) * self.seconds_per_character
                words.append(WordSpan(text=token, start=at, end=at + length))
                at += length + self.seconds_per_character  # the space after it
        return Sentence(text=sentence, samples=len(pcm) // 2, words=words)

    def pcm(self, text: str) -> bytes:
        t = np.arange(int(self.sample_rate * self.seconds_per_character * len(text))) / self.sample_rate
        return (self.amplitude * np.sin(2 * np.pi * 440 * t)).astype("<i2").tobytes()

    async def capabilities(self) -> Capabilities:
        return Capabilities(
            engine=self.engine_id, languages=self.languages, voices=self.voices, streaming=True,
            # clones exactly when the real engine does
            cloning_window=ENGINE_SETTINGS[self.engine_id].cloning_window, max_characters=self.max_characters, sample_rate=self.sample_rate,
            model_identity=self.model_identity,
        )

    async def health(self) -> Health:
        return self.healthy

    async def status(self) -> EngineStatus:
        self.status_calls += 1
        if self.status_gate is not None:
            await self.status_gate.wait()
        if self.status_error is not None:
            raise self.status_error
        return await super().status()

    async def synthesize(self, request: SynthesisRequest) -> AudioResult:
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        # Sentence by sentence, as Piper speaks (and says what each one says and how long it is).
        texts = split_sentences(request.text) or [request.text]
        sentences = [self.pcm(s) for s in texts]
        return AudioResult(pcm=b"".join(sentences), sample_rate=self.sample_rate, variant=self.variant,
                           sentences=[self.said(t, p, request) for t, p in zip(texts, sentences, strict=True)])

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        self.requests.append(request)
        await asyncio.sleep(self.delay_s)
        for index, sentence in enumerate(split_sentences(request.text)):
            if self.error is not None and index >= self.fail_at:
                raise self.error
            if self.stall_at is not None and index >= self.stall_at:
                await asyncio.Event().wait()  # never set: an engine that hangs
            self.chunks_sent += 1
            pcm = self.pcm(sentence)
            yield AudioChunk(pcm=pcm, sample_rate=self.sample_rate, variant=self.variant, index=index,
                             sentences=[self.said(sentence, pcm, request)] if self.says_sentences else [])
