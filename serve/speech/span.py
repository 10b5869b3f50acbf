"""The `chorus.speech` span: one utterance a speech route asked for, child of the HTTP server
span, parent of the router's attempt spans. A stream's span ends when its last byte is sent
(or the client leaves), not when the route returns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from opentelemetry.trace import Span, Status, StatusCode, Tracer

from chorus.speech.attempts import AllEnginesFailed
from chorus.speech.cache.lookup import CacheOutcome
from chorus.speech.utterance import Utterance
from deployments import spans
from deployments.base import BadInputError, EngineId


def start(tracer: Tracer, utterance: Utterance) -> Span:
    attributes: dict[str, str | int | bool] = {
        spans.PERSONALITY: utterance.personality.name,
        spans.LANGUAGE: utterance.language,
        spans.CHARACTERS: len(utterance.text),
        spans.FORMAT: utterance.format.value,
        spans.STREAM: utterance.stream,
    }
    if utterance.caller is not None:
        attributes[spans.KEY] = utterance.caller
    return tracer.start_span(spans.SPEECH, attributes=attributes)


def spoke(span: Span, engine: EngineId, cache: CacheOutcome, started: float | None = None) -> None:
    """Who spoke and what the cache answered (`hit` counts in the statistics); for a
    stream, `started` gives the time its first audio took."""
    span.set_attribute(spans.ENGINE, engine)
    if cache != "bypass":
        span.set_attribute(spans.CACHE, cache)
    if started is not None:
        span.set_attribute(spans.TIME_TO_FIRST_AUDIO_MS, (time.perf_counter() - started) * 1000)


def outcome(error: BaseException | None) -> spans.SpeechOutcome:
    if error is None:
        return "ok"
    if isinstance(error, BadInputError):
        return "bad_input"
    if isinstance(error, asyncio.CancelledError | GeneratorExit):
        return "cancelled"
    # AllEnginesFailed, and anything unforeseen (a 500): the caller got no audio.
    return "failed"


def end(span: Span, error: BaseException | None = None) -> None:
    said = outcome(error)
    span.set_attribute(spans.OUTCOME, said)
    if error is not None:
        span.set_attribute(spans.ERROR_TYPE, type(error).__name__)
        if said == "failed":
            why = "every engine failed" if isinstance(error, AllEnginesFailed) else type(error).__name__
            span.set_status(Status(StatusCode.ERROR, why))
    span.end()


async def until_done(span: Span, body: AsyncIterator[bytes], chunks: AsyncGenerator[Any, None]) -> AsyncIterator[bytes]:
    """A stream's body that ends the span when the stream does. `chunks` (the router's) is
    closed first, so the attempt span ends before this one."""
    error: BaseException | None = None
    try:
        async for data in body:
            yield data
    except BaseException as err:
        error = err
        raise
    finally:
        await chunks.aclose()
        end(span, error)
