"""Hand-made trace spans, named and attributed as in deployments/spans.py, for the statistics
tests: one `chorus.speech` per utterance with its `chorus.engine.attempt` children, which end
before it (as the router's do)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from deployments import spans

NS = 1_000_000_000


@dataclass
class Try:
    engine: str
    outcome: str
    ms: float = 100.0
    characters: int = 0
    audio_seconds: float | None = None
    rtf: float | None = None
    error_type: str | None = None
    cache: str | None = None  # the router's lookup: hit, partial or miss
    verify: str | None = None  # its verification: passed, failed or unverified


@dataclass
class Said:
    personality: str
    outcome: str
    tries: list[Try] = field(default_factory=list)
    ms: float = 150.0
    characters: int = 0
    engine: str | None = None  # who spoke
    ttfa_ms: float | None = None
    cache: str | None = None
    error_type: str | None = None
    key: str | None = None  # the API key's name


class SpanMaker:
    """A tracer whose completed spans go to `processor`; `say` makes one utterance's spans
    ending at `end_s` (epoch seconds)."""

    def __init__(self, processor: SpanProcessor) -> None:
        provider = TracerProvider()
        provider.add_span_processor(processor)
        self.tracer = provider.get_tracer("tests")

    def say(self, said: Said, end_s: float) -> None:
        end = int(end_s * NS)
        start = end - int(said.ms * 1e6)
        attrs: dict[str, Any] = {spans.PERSONALITY: said.personality, spans.OUTCOME: said.outcome,
                                 spans.CHARACTERS: said.characters, spans.LANGUAGE: "en", spans.FORMAT: "wav",
                                 spans.STREAM: said.ttfa_ms is not None}
        for name, value in ((spans.ENGINE, said.engine), (spans.TIME_TO_FIRST_AUDIO_MS, said.ttfa_ms),
                            (spans.CACHE, said.cache), (spans.ERROR_TYPE, said.error_type),
                            (spans.KEY, said.key)):
            if value is not None:
                attrs[name] = value
        speech = self.tracer.start_span(spans.SPEECH, start_time=start, attributes=attrs)
        context = trace.set_span_in_context(speech)
        t = start
        for position, tried in enumerate(said.tries):
            a: dict[str, Any] = {spans.ENGINE: tried.engine, spans.OUTCOME: tried.outcome,
                                 spans.FALLBACK_POSITION: position, spans.CHARACTERS: tried.characters}
            for name, value in ((spans.AUDIO_SECONDS, tried.audio_seconds), (spans.REAL_TIME_FACTOR, tried.rtf),
                                (spans.ERROR_TYPE, tried.error_type), (spans.CACHE, tried.cache),
                                (spans.VERIFY_OUTCOME, tried.verify)):
                if value is not None:
                    a[name] = value
            attempt = self.tracer.start_span(spans.ATTEMPT, context=context, start_time=t, attributes=a)
            t += int(tried.ms * 1e6)
            attempt.end(end_time=min(t, end))
        speech.end(end_time=end)


# A scripted sequence: fallbacks, a skip, failures, two personalities.
SCRIPT = [
    Said("joe", "ok", [Try("piper", "ok", 100, 10, 2.0, 0.5)], ms=120, characters=10, engine="piper"),
    Said("joe", "ok", [Try("piper", "unavailable", 5, 12, error_type="EngineUnavailableError"),
                       Try("google_tts", "ok", 300, 12, 3.0, 0.2)], ms=320, characters=12, engine="google_tts"),
    Said("ann", "failed", [Try("piper", "skipped"),
                           Try("google_tts", "timeout", 1000, 7, error_type="EngineTimeoutError")],
         ms=1010, characters=7, error_type="EnginesFailed"),
    Said("joe", "bad_input", [Try("piper", "failed", 2, 400, error_type="TextTooLongError")], characters=400),
    Said("ann", "ok", [Try("piper", "ok", 50, 5, 1.0, 0.1, cache="hit")], ms=60, characters=5, engine="piper",
         ttfa_ms=40, cache="hit"),
]
