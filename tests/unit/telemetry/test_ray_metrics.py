"""The Ray metrics span processor, without Ray: spans made with the OpenTelemetry SDK (the
vocabulary of deployments/spans.py) through a TracerProvider carrying the processor. The
metric classes are Ray's own, subclassed only to remember what they were given, so Ray's
checks (every tag key present, string values, counter steps > 0) run outside a worker too."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections import Counter as Tally
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import pytest
import ray.util.metrics
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from chorus.telemetry.ray_metrics import (
    LATENCY_BUCKETS_S,
    TIME_TO_FIRST_AUDIO_BUCKETS_S,
    QuotaReading,
    RayMetrics,
)
from deployments import spans

Tags = tuple[tuple[str, str], ...]


def key(tags: dict[str, str]) -> Tags:
    return tuple(sorted(tags.items()))


class RecordingCounter(ray.util.metrics.Counter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.totals: Tally[Tags] = Tally()

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        super().inc(value, tags)
        self.totals[key(tags or {})] += value


class RecordingHistogram(ray.util.metrics.Histogram):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.values: dict[Tags, list[float]] = {}

    def observe(self, value: float, tags: dict[str, str] | None = None) -> None:
        super().observe(value, tags)
        self.values.setdefault(key(tags or {}), []).append(value)


class RecordingGauge(ray.util.metrics.Gauge):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last: dict[Tags, float] = {}

    def set(self, value: float | None, tags: dict[str, str] | None = None) -> None:
        super().set(value, tags)
        self.last[key(tags or {})] = value


RECORDING = SimpleNamespace(Counter=RecordingCounter, Histogram=RecordingHistogram, Gauge=RecordingGauge)


def tags(**kv: str) -> Tags:
    return key(kv)


class Replica:
    """One ingress replica's tracer provider with the processor, as `Replica` will own it."""

    def __init__(self, **kwargs: Any) -> None:
        self.metrics = RayMetrics(metrics=RECORDING, **kwargs)
        self.provider = TracerProvider()
        self.provider.add_span_processor(self.metrics)
        self.tracer: Tracer = self.provider.get_tracer("test")

    @contextmanager
    def speech(self, personality: str, characters: int, **attrs: Any) -> Iterator[Any]:
        with self.tracer.start_as_current_span(spans.SPEECH, attributes={
            spans.PERSONALITY: personality, spans.CHARACTERS: characters, **attrs,
        }) as span:
            yield span

    def attempt(self, engine: str, position: int, outcome: str, error_type: str | None = None) -> None:
        attrs: dict[str, Any] = {spans.ENGINE: engine, spans.FALLBACK_POSITION: position, spans.OUTCOME: outcome}
        if error_type:
            attrs[spans.ERROR_TYPE] = error_type
        with self.tracer.start_as_current_span(spans.ATTEMPT, attributes=attrs):
            pass


def test_a_fallback_counts_the_request_once_and_every_attempt() -> None:
    r = Replica()
    with r.speech("joe", 12) as speech:
        r.attempt("piper", 0, "unavailable", "EngineUnavailableError")
        r.attempt("google_tts", 1, "ok")
        speech.set_attributes({spans.ENGINE: "google_tts", spans.OUTCOME: "ok"})
    m = r.metrics
    assert m.requests.totals == {tags(engine="google_tts", personality="joe", outcome="ok"): 1}
    assert m.attempts.totals == {
        tags(engine="piper", personality="joe", outcome="unavailable", error_type="EngineUnavailableError"): 1,
        tags(engine="google_tts", personality="joe", outcome="ok", error_type="none"): 1,
    }
    assert m.characters.totals == {tags(engine="google_tts", personality="joe"): 12}
    (latency,) = m.latency.values[tags(engine="google_tts", personality="joe", outcome="ok")]
    assert 0 <= latency < 1
    assert m.first_audio.values == {} and m.cache_hits.totals == {}


def test_a_speech_no_engine_spoke_is_tagged_none_and_counts_no_characters() -> None:
    r = Replica()
    with r.speech("joe", 30) as speech:
        r.attempt("piper", 0, "failed", "EngineFailedError")
        speech.set_attribute(spans.OUTCOME, "failed")
    with r.speech("ann", 5) as speech:
        speech.set_attribute(spans.OUTCOME, "bad_input")
    m = r.metrics
    assert m.requests.totals == {
        tags(engine="none", personality="joe", outcome="failed"): 1,
        tags(engine="none", personality="ann", outcome="bad_input"): 1,
    }
    assert m.characters.totals == {}
    assert set(m.latency.values) == set(m.requests.totals)


def test_streams_time_to_first_audio_and_cache_hits() -> None:
    r = Replica()
    for ttfa_ms, cache in ((180, "miss"), (40.5, "hit")):
        with r.speech("joe", 3, **{spans.ENGINE: "piper", spans.OUTCOME: "ok", spans.STREAM: True,
                                   spans.TIME_TO_FIRST_AUDIO_MS: ttfa_ms, spans.CACHE: cache}):
            pass
    joe = tags(engine="piper", personality="joe")
    assert r.metrics.first_audio.values == {joe: [0.18, 0.0405]}
    assert r.metrics.cache_hits.totals == {joe: 1}
    assert r.metrics.characters.totals == {joe: 6}


def test_an_empty_text_adds_no_characters() -> None:
    """Ray refuses a counter step of 0: the processor must not pass one."""
    r = Replica()
    with r.speech("joe", 0, **{spans.ENGINE: "piper", spans.OUTCOME: "ok"}):
        pass
    assert r.metrics.characters.totals == {}
    assert sum(r.metrics.requests.totals.values()) == 1


def test_other_spans_are_ignored() -> None:
    r = Replica()
    with r.tracer.start_as_current_span("GET /v1/providers"):
        pass
    with r.tracer.start_as_current_span(spans.SYNTHESIZE, attributes={spans.ENGINE: "piper"}):
        pass
    assert r.metrics.requests.totals == {} and r.metrics.attempts.totals == {}


def test_quota_gauge_follows_the_meter_on_every_utterance() -> None:
    readings = [[QuotaReading("google_tts", "neural", 1200), ("azure_tts", "neural", 40)]]
    r = Replica(quota_source=lambda: readings[-1])
    with r.speech("joe", 4, **{spans.ENGINE: "piper", spans.OUTCOME: "ok"}):
        pass
    assert r.metrics.quota_used.last == {
        tags(engine="google_tts", voice_class="neural"): 1200, tags(engine="azure_tts", voice_class="neural"): 40,
    }
    readings.append([QuotaReading("google_tts", "neural", 1500)])
    with r.speech("joe", 4, **{spans.ENGINE: "piper", spans.OUTCOME: "ok"}):
        pass
    assert r.metrics.quota_used.last[tags(engine="google_tts", voice_class="neural")] == 1500


def test_without_a_meter_the_gauge_is_never_set() -> None:
    r = Replica()
    with r.speech("joe", 4, **{spans.ENGINE: "piper", spans.OUTCOME: "ok"}):
        pass
    assert r.metrics.quota_used.last == {}


def test_each_processor_has_its_own_metrics() -> None:
    a, b = Replica(), Replica()
    with a.speech("joe", 4, **{spans.ENGINE: "piper", spans.OUTCOME: "ok"}):
        pass
    assert sum(a.metrics.requests.totals.values()) == 1
    assert b.metrics.requests.totals == {}
    assert a.metrics.requests is not b.metrics.requests


def test_real_ray_metrics_work_outside_a_ray_worker() -> None:
    """The default: `ray.util.metrics` itself, no Ray started (a fresh interpreter: this
    test session may have started Ray). A span must never fail on it."""
    code = textwrap.dedent("""
        import ray
        from opentelemetry.sdk.trace import TracerProvider
        from chorus.telemetry.ray_metrics import RayMetrics
        from deployments import spans

        assert not ray.is_initialized()
        metrics = RayMetrics(quota_source=lambda: [("ibm_watson", "standard", 10)])
        provider = TracerProvider()
        provider.add_span_processor(metrics)
        tracer = provider.get_tracer("test")
        with tracer.start_as_current_span(spans.SPEECH, attributes={
                spans.PERSONALITY: "joe", spans.CHARACTERS: 3, spans.ENGINE: "piper", spans.OUTCOME: "ok",
                spans.TIME_TO_FIRST_AUDIO_MS: 12, spans.CACHE: "hit"}):
            with tracer.start_as_current_span(spans.ATTEMPT, attributes={spans.ENGINE: "piper", spans.OUTCOME: "ok"}):
                pass
        assert isinstance(metrics.requests, ray.util.metrics.Counter) and not ray.is_initialized()
        print("spans recorded")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "spans recorded" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS_S, TIME_TO_FIRST_AUDIO_BUCKETS_S])
def test_buckets_increase_and_cover_tts_latencies(buckets: tuple[float, ...]) -> None:
    assert list(buckets) == sorted(set(buckets)) and buckets[0] > 0
    assert buckets[0] <= 0.05 and buckets[-1] >= 10
