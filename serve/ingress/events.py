"""A speech stream as server-sent events, in the shape of OpenAI's `stream_format: "sse"`:
`speech.audio.delta` events carry base64 audio (the asked format, as an audio stream of it
would carry), one `speech.audio.done` ends a complete stream with its usage, and a stream that
cannot finish ends with an `error` event saying why, never with a silent cut."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

from chorus.speech.attempts import Attempt, RoutedStream, attempt_after
from chorus.speech.encoding import StreamEncoder


def event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def error_event(attempt: Attempt) -> bytes:
    return event({"type": "error", "error": {
        "type": "server_error", "code": attempt.outcome, "message": f"{attempt.engine}: {attempt.reason}",
    }})


async def speech_events(body: AsyncIterator[bytes], routed: RoutedStream, encoder: StreamEncoder, *,
                        characters: int) -> AsyncIterator[bytes]:
    """`body` (the audio stream, ending the speech span as it ends) as events."""
    try:
        async for data in body:
            yield event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    except Exception as err:  # noqa: BLE001 - the engine failed after its first chunk (the span has it)
        yield error_event(attempt_after(routed.engine, err, None))
        return
    if routed.end.cut is not None:
        yield error_event(routed.end.cut)
        return
    # Chorus counts characters, not tokens: OpenAI's fields carry characters, and say so twice.
    yield event({"type": "speech.audio.done", "usage": {
        "input_tokens": characters, "output_tokens": 0, "total_tokens": characters,
        "characters": characters, "audio_seconds": round(encoder.seconds, 3), "engine": routed.engine,
    }})
