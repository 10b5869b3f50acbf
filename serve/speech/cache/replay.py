"""A cached answer streamed: the PCM in chunks, behind the surface of an engine's stream
(an async iterator with `cancel()`), so the router treats both alike."""

from __future__ import annotations

from deployments.base import AudioChunk, AudioResult

CHUNK_S = 0.5  # small enough that a client starts playing at once, large enough to be few


class Replay:
    def __init__(self, audio: AudioResult) -> None:
        self._audio = audio
        self._step = max(2, int(audio.sample_rate * CHUNK_S) * 2)  # bytes: s16le, whole samples
        self._offset = 0
        self._index = 0

    def __aiter__(self) -> Replay:
        return self

    async def __anext__(self) -> AudioChunk:
        if self._offset >= len(self._audio.pcm):
            raise StopAsyncIteration
        pcm = self._audio.pcm[self._offset:self._offset + self._step]
        self._offset += self._step
        self._index += 1
        return AudioChunk(pcm=pcm, sample_rate=self._audio.sample_rate, variant=self._audio.variant,
                          index=self._index - 1)

    def cancel(self) -> None:
        """Nothing runs elsewhere to stop."""
