"""What the speech routes and `/v1/clone` share: a request checked into an `Utterance`,
spoken under its `chorus.speech` span, and answered with its audio and `X-Chorus-*` headers."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from opentelemetry import trace

from chorus.auth.keys import ApiKey
from chorus.common.safe_text import header_value
from chorus.ingress import events
from chorus.ingress.api import AllFailedOut, ErrorOut, SpeechWithTimestamps
from chorus.ingress.deps import is_admin
from chorus.ingress.errors import ChorusHTTPError
from chorus.ingress.middleware.auth import caller_name
from chorus.ingress.middleware.request_id import request_id
from chorus.ingress.replica import Replica
from chorus.personalities import Personality
from chorus.quotas.callers import Charge
from chorus.speech import encoding, loudness
from chorus.speech import span as speech_span
from chorus.speech import timestamps as timing
from chorus.speech.attempts import Attempt, Routed, RoutedStream
from chorus.speech.utterance import Utterance
from deployments.base import AudioChunk, AudioFormat, EngineId, VoiceSampleRef, language_matches

log = logging.getLogger(__name__)

SPEECH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {t.split(";")[0]: {} for t in encoding.MEDIA_TYPES.values()}, "description": "The audio."},
    404: {"model": ErrorOut, "description": "Unknown personality."},
    413: {"model": ErrorOut, "description": "Text over the limit."},
    415: {"model": ErrorOut, "description": "Body is not JSON."},
    422: {"model": ErrorOut, "description": "Invalid request."},
    429: {"model": ErrorOut, "description": "Over a rate limit or character budget; `limit` names it, "
          "`Retry-After` says when to retry."},
    503: {"model": AllFailedOut, "description": "Every engine failed; `attempts` says why."},
}
def fallback_header(attempts: list[Attempt]) -> str:
    """RFC 8941 structured-field list: `piper;outcome=failed;reason="..."`, with the
    reasons clients may see (`Attempt.reason`), in visible ASCII."""
    items = []
    for a in attempts:
        reason = header_value(a.reason).replace("\\", "\\\\").replace('"', '\\"')
        items.append(f'{header_value(a.engine)};outcome={a.outcome};reason="{reason}"')
    return ", ".join(items)


def chorus_headers(routed: Routed, started: float, admin: bool) -> dict[str, str]:
    """`X-Chorus-Cache` goes to admins only: to anyone else it would say whether some other
    caller had this voice say this text before."""
    headers = {
        "X-Chorus-Provider": header_value(routed.engine),
        "X-Chorus-Latency-Ms": f"{(time.perf_counter() - started) * 1000:.1f}",
    }
    if admin:
        headers["X-Chorus-Cache"] = routed.cache
    if routed.variant:  # the engine's word: a model variant's name
        headers["X-Chorus-Variant"] = header_value(routed.variant)
    if routed.attempts:
        headers["X-Chorus-Fallback"] = fallback_header(routed.attempts)
    return headers


def log_fallback(request: Request, routed: Routed) -> None:
    """The whole story of the engines passed over, which clients see only in short."""
    if any(a.outcome != "skipped" for a in routed.attempts):
        log.info("%s spoke after: %s [request %s, key %s]", routed.engine,
                 "; ".join(f"{a.engine} {a.outcome} ({a.detail})" for a in routed.attempts),
                 request_id(request), caller_name(request))


# How fast speech goes at speed 1, for estimating an answer's length before synthesis:
# faster than any engine here speaks, so an estimate never refuses what would fit.
SPOKEN_CHARACTERS_PER_SECOND = 14


def check_audio_length(replica: Replica, text: str, speed: float) -> None:
    limit = replica.config.max_audio_seconds
    estimate = len(text) / SPOKEN_CHARACTERS_PER_SECOND / speed
    if estimate > limit:
        raise ChorusHTTPError(
            413, f"{len(text)} characters at speed {speed:g} would be about {estimate:.0f} s of audio; the limit is "
            f"{limit:g} s: send the text in parts, or faster", extra={"limit_seconds": limit},
        )


def check_text(replica: Replica, text: str, param: str = "text") -> None:
    if not text.strip():
        raise ChorusHTTPError(422, "text is empty", param=param)
    limit = replica.config.max_text_characters
    if len(text) > limit:
        raise ChorusHTTPError(413, f"text has {len(text)} characters; the limit is {limit}", extra={"limit": limit})


def check_language(personality: Personality, language: str | None) -> str:
    langs = personality.spec.languages
    if language is None:
        return langs.primary
    if not language_matches(language, langs.all()):
        raise ChorusHTTPError(
            422, f"personality {personality.name!r} does not speak {language!r} (supported: {langs.all()})",
            param="language",
        )
    return language


def check_provider(personality: Personality, provider: EngineId | None) -> None:
    if provider is not None and personality.spec.providers.get(provider) is None:
        raise ChorusHTTPError(
            422, f"provider {provider!r} is not configured for personality {personality.name!r} "
            f"(configured: {personality.spec.providers.configured()})", param="provider",
        )


def no_store(request: Request) -> bool:
    """The caller said `Cache-Control: no-store`: nothing of its request is read from or
    kept in the audio cache."""
    directives = request.headers.get("cache-control", "").lower().split(",")
    return any(d.strip() == "no-store" for d in directives)


def checked_utterance(
    replica: Replica, personality: Personality, text: str, *, language: str | None = None,
    provider: EngineId | None = None, fmt: AudioFormat = AudioFormat.wav, stream: bool = False,
    speed: float = 1.0, samples: list[VoiceSampleRef] | None = None, text_param: str = "text", cache: bool = True,
    caller: ApiKey | None = None, format_param: str = "format", timestamps: bool = False,
) -> Utterance:
    """A speech request checked against its personality and the ingress's limits; `caller`
    is the key that asked (`chorus.ingress.middleware.auth.caller`)."""
    check_text(replica, text, param=text_param)
    check_audio_length(replica, text, speed)
    language = check_language(personality, language)
    check_provider(personality, provider)
    if stream and fmt not in encoding.STREAMABLE:
        raise ChorusHTTPError(
            422, f"streaming sends {', '.join(sorted(encoding.STREAMABLE))}, not {fmt.value}", param=format_param
        )
    return Utterance(personality=personality, text=text, language=language, provider=provider, speed=speed,
                     samples=samples, format=fmt, stream=stream, cache=cache, timestamps=timestamps,
                     caller=caller.name if caller is not None else None)


async def speak(request: Request, replica: Replica, utterance: Utterance, *, sample_rate: int | None = None,
                charge: Charge | None = None, sse: bool = False) -> Response:
    """Route the utterance and answer with its audio (resampled to `sample_rate` if given,
    else to the format's own rate if it has one), as server-sent events if `sse` (a stream),
    all under one `chorus.speech` span (`chorus.speech.span`); `charge` (the caller's
    `Spend.synthesis`) learns what engines were sent."""
    span = speech_span.start(replica.tracing.tracer, utterance)
    try:
        # Current while routing, so the router's attempt spans are its children.
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            response = await _speak(request, replica, utterance, span, sample_rate, charge, sse)
    except BaseException as err:
        speech_span.end(span, err)
        raise
    if not utterance.stream:  # a stream's span ends with its body
        speech_span.end(span)
    return response


async def _speak(request: Request, replica: Replica, utterance: Utterance, span: trace.Span,
                 sample_rate: int | None, charge: Charge | None, sse: bool) -> Response:
    started = time.perf_counter()
    fmt = utterance.format
    sample_rate = sample_rate or encoding.default_rate(fmt)
    if utterance.stream:
        routed = await replica.router.stream(utterance, charge)
        speech_span.spoke(span, routed.engine, routed.cache, started)
        log_fallback(request, routed)
        encoder = encoding.StreamEncoder(fmt, routed.sample_rate, sample_rate)
        loud = utterance.personality.spec.loudness
        level = loudness.StreamLevel(routed.sample_rate, loud.target_lufs, loud.true_peak_db) if loud.enabled else None
        body = speech_span.until_done(span, _stream_body(routed, encoder, level), routed.chunks)
        headers = chorus_headers(routed, started, is_admin(request, replica))
        if sse:
            timed = events.Timing(replica.aligner, utterance.language, utterance.text) if utterance.timestamps else None
            return StreamingResponse(
                events.speech_events(body, routed, encoder, characters=len(utterance.text), timing=timed),
                media_type="text/event-stream",
                headers=headers | {"Cache-Control": "no-cache", "X-Chorus-Audio-Type": encoder.media_type()},
            )
        return StreamingResponse((data async for data, _ in body), media_type=encoder.media_type(), headers=headers)
    routed_audio = await replica.router.synthesize(utterance, charge)
    speech_span.spoke(span, routed_audio.engine, routed_audio.cache)
    log_fallback(request, routed_audio)
    audio = routed_audio.audio
    loud = utterance.personality.spec.loudness
    if loud.enabled:
        levelled = await asyncio.to_thread(loudness.level, audio.pcm, audio.sample_rate, loud.target_lufs,
                                           loud.true_peak_db)
        audio = audio.model_copy(update={"pcm": levelled})
    rate = sample_rate or audio.sample_rate
    body = await encoding.encode_off_loop(audio.pcm, audio.sample_rate, fmt, rate)
    headers = chorus_headers(routed_audio, started, is_admin(request, replica))
    if routed_audio.verdict is not None and (verify := utterance.personality.spec.verify) is not None:
        headers["X-Chorus-Verify"] = routed_audio.verdict.header(verify)
    if utterance.timestamps:
        timed = await timing.timestamps(audio, utterance.text, utterance.language, replica.aligner)
        answer = SpeechWithTimestamps(audio=base64.b64encode(body).decode(), format=fmt, sample_rate=rate,
                                      engine=routed_audio.engine, **dict(timed))
        return JSONResponse(answer.model_dump(mode="json"), headers=headers)
    return Response(body, media_type=encoding.media_type(fmt, rate), headers=headers)


async def _stream_body(routed: RoutedStream, encoder: encoding.StreamEncoder, level: loudness.StreamLevel | None,
                       ) -> AsyncIterator[tuple[bytes, AudioChunk | None]]:
    """The stream's bytes, each with the chunk it was made of (None: the header, the tail),
    levelled (`level`; measured afresh from the chunk where another engine carried the
    stream on, so its voice is met at the stream's level) before they are encoded."""
    if header := encoder.header():
        yield header, None
    switches = 0
    async for chunk in routed.chunks:
        if level is not None and len(routed.end.switches) > switches:
            switches = len(routed.end.switches)
            level.restart()
        pcm = await asyncio.to_thread(level.feed, chunk.pcm) if level is not None else chunk.pcm
        # Unchanged PCM goes out as it came; resampling and G.711 are ~1 ms a sentence, in line.
        yield encoder.feed(pcm), chunk
    if level is not None and (held := level.close()):  # the limiter's last milliseconds
        yield encoder.feed(held), None
    if tail := encoder.close():
        yield tail, None
