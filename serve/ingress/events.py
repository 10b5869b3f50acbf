"""A speech stream as server-sent events, in the shape of OpenAI's `stream_format: "sse"`:
`speech.audio.delta` events carry base64 audio (the asked format, as an audio stream of it
would carry), `speech.word` events (with timestamps on) say when each word of the audio sent so
far is heard, one `speech.audio.done` ends a complete stream with its usage, and a stream that
cannot finish ends with an `error` event saying why, never with a silent cut."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from chorus.speech.aligner import Aligner
from chorus.speech.attempts import Attempt, RoutedStream, attempt_after
from chorus.speech.encoding import StreamEncoder
from chorus.speech.timestamps import Word, timestamps
from deployments.base import AudioChunk, AudioResult


class Timing:
    """Word timestamps of a stream, chunk by chunk: a chunk that says its sentences (Piper's,
    a cloud engine's piece, the cache's) is timed where it falls in the stream. A stream none
    of whose chunks says them (the cloning engines' model steps) is timed once it is whole,
    against the whole text: its words come after its last audio."""

    def __init__(self, aligner: Aligner, language: str, text: str) -> None:
        self.aligner, self.language, self.text = aligner, language, text
        self.seconds = 0.0
        self._untold: list[AudioChunk] = []  # chunks that did not say their sentences
        self._told = False  # some chunk did

    async def words(self, chunk: AudioChunk) -> list[bytes]:
        offset, self.seconds = self.seconds, self.seconds + chunk.duration_s
        if not chunk.sentences:
            self._untold.append(chunk)
            return []
        self._told = True
        timed = await timestamps(chunk, "", self.language, self.aligner, offset_s=offset)
        return _word_events(timed.words)

    async def rest(self) -> list[bytes]:
        """The words of a complete stream whose chunks never said their sentences. (Where
        some did, which text the others hold is not known: they get none.)"""
        if self._told or not self._untold:
            return []
        timed = await timestamps(AudioResult.joined(self._untold), self.text, self.language, self.aligner)
        return _word_events(timed.words)


def _word_events(words: list[Word]) -> list[bytes]:
    return [event({"type": "speech.word", **w.model_dump()}) for w in words]


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def error_event(attempt: Attempt) -> bytes:
    return event({"type": "error", "error": {
        "type": "server_error", "code": attempt.outcome, "message": f"{attempt.engine}: {attempt.reason}",
    }})


async def speech_events(body: AsyncIterator[tuple[bytes, AudioChunk | None]], routed: RoutedStream,
                        encoder: StreamEncoder, *, characters: int, timing: Timing | None = None,
                        ) -> AsyncIterator[bytes]:
    """`body` (the audio stream's bytes with their chunks, ending the speech span as it ends)
    as events; word events too if `timing`, and a `speech.engine.switch` event where another
    engine carried the stream on (`chorus.speech.router.Router.stream`)."""
    switches = 0
    try:
        async for data, chunk in body:
            for switch in routed.end.switches[switches:]:
                yield event({"type": "speech.engine.switch", "engine": switch.engine, "after": switch.after,
                             "reason": switch.reason, "audio_seconds": round(switch.at_s, 3)})
            switches = len(routed.end.switches)
            if data:
                yield event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
            if timing is not None and chunk is not None:
                for word in await timing.words(chunk):
                    yield word
    except Exception as err:  # noqa: BLE001 - the engine failed after its first chunk (the span has it)
        engine = routed.end.switches[-1].engine if routed.end.switches else routed.engine
        yield error_event(attempt_after(engine, err, None))
        return
    if routed.end.cut is not None:
        yield error_event(routed.end.cut)
        return
    if timing is not None:
        for word in await timing.rest():
            yield word
    # Chorus counts characters, not tokens: OpenAI's fields carry characters, and say so twice.
    yield event({"type": "speech.audio.done", "usage": {
        "input_tokens": characters, "output_tokens": 0, "total_tokens": characters,
        "characters": characters, "audio_seconds": round(encoder.seconds, 3), "engine": routed.engine,
    }})
