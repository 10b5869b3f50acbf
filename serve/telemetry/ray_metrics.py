"""Ray metrics from completed spans: a span processor that turns each ingress replica's
`chorus.speech` and `chorus.engine.attempt` spans into `ray.util.metrics` counters,
histograms and a gauge, so the figures appear on Ray's Prometheus endpoint (and in the Ray
dashboard) beside Serve's own metrics. Ray prefixes every name with `ray_`:
`chorus_requests_total` is scraped as `ray_chorus_requests_total`.

One instance per replica's tracer provider (`add_span_processor`); the metric objects are
its own, not module globals, so two processors in one process never share state.
`ray.util.metrics` also works outside a Ray worker (records go nowhere), which keeps the
ingress testable without Ray."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from types import ModuleType, SimpleNamespace
from typing import NamedTuple

import ray.util.metrics
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from deployments import spans

# TTS latency: a cached or short Piper utterance takes tens of milliseconds, a long cloned
# utterance on a busy GPU tens of seconds; roughly geometric steps keep every decade resolved.
LATENCY_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 60.0)
# First audio of a stream: one sentence, so finer at the low end.
TIME_TO_FIRST_AUDIO_BUCKETS_S: tuple[float, ...] = (0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)

NONE = "none"
"""Tag value when a span lacks the attribute: a speech no engine spoke, an attempt without error."""

class QuotaReading(NamedTuple):
    engine: str
    voice_class: str
    used: int
    """Characters billed this calendar month."""


QuotaSource = Callable[[], Iterable[QuotaReading | tuple[str, str, int]]]
"""The cloud-quota meter's last known counts, read on every utterance's end: must not block."""


class RayMetrics(SpanProcessor):
    """Counts what the spans say happened. `metrics` is the namespace the metric classes come
    from (`ray.util.metrics`; tests pass recording subclasses)."""

    def __init__(self, quota_source: QuotaSource | None = None, *,
                 metrics: ModuleType | SimpleNamespace | None = None) -> None:
        m = metrics or ray.util.metrics
        speech_tags = ("engine", "personality", "outcome")
        spoken_tags = ("engine", "personality")
        self.requests = m.Counter(
            "chorus_requests_total", "Utterances asked for, by the engine that spoke ('none' when none did) "
            "and the outcome (ok, failed, bad_input, cancelled).", tag_keys=speech_tags)
        self.attempts = m.Counter(
            "chorus_engine_attempts_total", "Engines tried for an utterance, by outcome (ok, skipped, "
            "unavailable, failed, timeout) and error type.", tag_keys=(*speech_tags, "error_type"))
        self.latency = m.Histogram(
            "chorus_request_latency_seconds", "Utterance latency, from the route asking to the last audio.",
            boundaries=list(LATENCY_BUCKETS_S), tag_keys=speech_tags)
        self.first_audio = m.Histogram(
            "chorus_time_to_first_audio_seconds", "Streams: time until the first audio chunk.",
            boundaries=list(TIME_TO_FIRST_AUDIO_BUCKETS_S), tag_keys=spoken_tags)
        self.characters = m.Counter(
            "chorus_characters_total", "Characters spoken (successful utterances).", tag_keys=spoken_tags)
        self.cache_hits = m.Counter(
            "chorus_cache_hits_total", "Utterances answered from the cache.", tag_keys=spoken_tags)
        self.quota_used = m.Gauge(
            "chorus_quota_used_characters", "Cloud engines: characters billed this UTC month, by voice class.",
            tag_keys=("engine", "voice_class"))
        self._quota_source = quota_source
        # Live speech spans by span id: an attempt span carries no personality, its parent does
        # (and the parent is still open when the attempt ends).
        self._speeches: dict[int, Span] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if span.name == spans.SPEECH:
            self._speeches[span.context.span_id] = span

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == spans.SPEECH:
            self._speeches.pop(span.context.span_id, None)
            self._speech(span)
        elif span.name == spans.ATTEMPT:
            self._attempt(span)
        self._refresh_quota()

    def _speech(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        spoken = {"engine": str(attrs.get(spans.ENGINE, NONE)), "personality": str(attrs.get(spans.PERSONALITY, NONE))}
        tags = {**spoken, "outcome": str(attrs.get(spans.OUTCOME, NONE))}
        self.requests.inc(1, tags)
        if span.start_time is not None and span.end_time is not None:
            self.latency.observe((span.end_time - span.start_time) / 1e9, tags)
        if tags["outcome"] != "ok":
            return
        ttfa_ms = attrs.get(spans.TIME_TO_FIRST_AUDIO_MS)
        if isinstance(ttfa_ms, int | float):
            self.first_audio.observe(ttfa_ms / 1000, spoken)
        characters = attrs.get(spans.CHARACTERS)
        if isinstance(characters, int) and characters > 0:  # Ray refuses a counter step <= 0
            self.characters.inc(characters, spoken)
        if attrs.get(spans.CACHE) == "hit":
            self.cache_hits.inc(1, spoken)

    def _attempt(self, span: ReadableSpan) -> None:
        attrs = span.attributes or {}
        parent = self._speeches.get(span.parent.span_id) if span.parent is not None else None
        personality = (parent.attributes or {}).get(spans.PERSONALITY, NONE) if parent is not None else NONE
        self.attempts.inc(1, {
            "engine": str(attrs.get(spans.ENGINE, NONE)),
            "personality": str(personality),
            "outcome": str(attrs.get(spans.OUTCOME, NONE)),
            "error_type": str(attrs.get(spans.ERROR_TYPE, NONE)),
        })

    def _refresh_quota(self) -> None:
        if self._quota_source is None:
            return
        for engine, voice_class, used in self._quota_source():
            self.quota_used.set(used, {"engine": engine, "voice_class": voice_class})

    def shutdown(self) -> None:
        self._speeches.clear()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True  # Ray's metrics agent exports on its own schedule; nothing is buffered here
