"""Traces without Ray: the ingress app (`create_app`) over a `Replica` with its own tracer
provider, engines in process (tests/support/engine_handles.py), spans caught in memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chorus.auth.keys import KeyEntry
from chorus.auth.scopes import Scope
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from deployments import spans, tracing
from deployments.base import EngineUnavailableError
from deployments.local_model import ConditioningCache
from deployments.tracing import TracingConfigError, TracingSettings, ingress_tracing, traced_engine
from tests.support.access_calls import KEYS
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine

ROUTE = "/v1/personalities/{name}/speech"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"

# piper fails, azure_tts is not deployed (skipped), google_tts speaks.
ANN = {
    "activeProvider": "piper",
    "fallbackChain": ["azure_tts", "google_tts"],
    "languages": {"primary": "en"},
    "providers": {"piper": {}, "azure_tts": {}, "google_tts": {"variant": "neural2"}},
}


class Everything(SpanProcessor):
    """What an in-process processor (statistics, metrics, quotas) sees: every ended span."""

    def __init__(self) -> None:
        self.ended: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.ended.append(span)


@traced_engine
class TracedEngine(ScriptedEngine):
    """A scripted engine with the span every engine deployment gets."""


class Traced:
    def __init__(self, root: Path, environ: dict[str, str] | None = None, *, keys: bool = False) -> None:
        (root / "personalities").mkdir()
        (root / "personalities" / "ann.yaml").write_text(yaml.safe_dump(personality("ann", ANN)))
        self.piper = TracedEngine("piper", languages=("en",))
        self.piper.error = EngineUnavailableError("voice missing", "piper")
        self.google = TracedEngine("google_tts", languages=("en",), sample_rate=24_000, variant="neural2")
        config = IngressConfig(personalities={"directory": root / "personalities"},
                               samples={"directory": root / "samples"}, timeouts={"piper": 5, "google_tts": 5},
                               auth={} if keys else None)
        board = EngineBoard({"piper": LocalHandle(self.piper), "google_tts": LocalHandle(self.google)})
        self.replica = Replica(config, board, tracing=ingress_tracing(environ or {}))
        if self.replica.keys is not None:
            self.replica.keys.replace("test", [KeyEntry(name="speaker", key=KEYS[Scope.SPEAK], scopes=[Scope.SPEAK]).api_key()])
        self.everything = Everything()
        self.exported = InMemorySpanExporter()
        self.replica.add_span_processor(self.everything)
        # The SDK's export path: like the OTLP exporter's batch processor, only sampled spans.
        self.replica.add_span_processor(SimpleSpanProcessor(self.exported))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.replica)),
                                        base_url="http://127.0.0.1")

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exported.get_finished_spans() if s.name == name]


@pytest.fixture
def engine_spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The engines' tracer as if OTEL_EXPORTER_OTLP_ENDPOINT were set in their process."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "engine_tracer", lambda: provider.get_tracer("engine"))
    yield exporter


@pytest.fixture
async def traced(tmp_path: Path) -> AsyncIterator[Traced]:
    t = Traced(tmp_path)
    async with t.client:
        yield t


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_fallback_is_one_trace_http_speech_and_an_attempt_per_engine(
    traced: Traced, engine_spans: InMemorySpanExporter
) -> None:
    r = await traced.client.post("/v1/personalities/ann/speech", json={"text": "Hello there."})
    assert r.status_code == 200, r.text
    (http,) = [s for s in traced.exported.get_finished_spans() if s.name == f"POST {ROUTE}"]
    assert attrs(http) | {"http.request.method": "POST", "http.route": ROUTE, "http.response.status_code": 200} \
        == attrs(http)
    (speech,) = traced.named(spans.SPEECH)
    assert speech.parent is not None and speech.parent.span_id == http.context.span_id
    assert attrs(speech) == {
        spans.PERSONALITY: "ann", spans.LANGUAGE: "en", spans.CHARACTERS: 12, spans.FORMAT: "wav",
        spans.STREAM: False, spans.ENGINE: "google_tts", spans.OUTCOME: "ok", spans.CACHE: "miss",
    }
    attempts = sorted(traced.named(spans.ATTEMPT), key=lambda s: attrs(s)[spans.FALLBACK_POSITION])
    assert [(attrs(a)[spans.ENGINE], attrs(a)[spans.OUTCOME]) for a in attempts] == [
        ("piper", "unavailable"), ("azure_tts", "skipped"), ("google_tts", "ok")]
    piper, azure, google = (attrs(a) for a in attempts)
    assert piper[spans.ERROR_TYPE] == "EngineUnavailableError" and piper[spans.CHARACTERS] == 12
    assert spans.ERROR_TYPE not in azure and spans.CHARACTERS not in azure
    assert google[spans.VARIANT] == "neural2" and google[spans.CHARACTERS] == 12
    assert (piper[spans.CACHE], google[spans.CACHE]) == ("miss", "miss") and spans.CACHE not in azure
    assert google[spans.AUDIO_SECONDS] == pytest.approx(0.12)  # 10 ms a character
    assert google[spans.REAL_TIME_FACTOR] > 0
    for attempt in attempts:
        assert attempt.parent is not None and attempt.parent.span_id == speech.context.span_id
        assert attempt.end_time is not None and speech.end_time is not None and attempt.end_time <= speech.end_time
    # Inside the engines, under the attempt that called them, in the same trace.
    by_engine = {attrs(s)[spans.ENGINE]: s for s in engine_spans.get_finished_spans()}
    assert set(by_engine) == {"piper", "google_tts"}
    assert by_engine["piper"].parent.span_id == attempts[0].context.span_id  # type: ignore[union-attr]
    assert attrs(by_engine["piper"])[spans.ERROR_TYPE] == "EngineUnavailableError"
    engine = by_engine["google_tts"]
    assert engine.name == spans.SYNTHESIZE and engine.parent.span_id == attempts[2].context.span_id  # type: ignore[union-attr]
    assert attrs(engine)[spans.AUDIO_SECONDS] == pytest.approx(0.12) and attrs(engine)[spans.REAL_TIME_FACTOR] > 0
    trace_ids = {s.context.trace_id for s in [*traced.exported.get_finished_spans(), *by_engine.values()]}
    assert trace_ids == {http.context.trace_id}


async def test_an_attempts_real_time_factor_is_its_wall_time_per_second_of_audio(traced: Traced) -> None:
    """RTF = the attempt's seconds / its audio's seconds: at least the engine's own delay's
    share, at most the whole attempt span's."""
    traced.google.delay_s = 0.06
    r = await traced.client.post("/v1/personalities/ann/speech", json={"text": "Hello there."})
    assert r.status_code == 200, r.text
    (google,) = [a for a in traced.named(spans.ATTEMPT) if attrs(a)[spans.ENGINE] == "google_tts"]
    assert google.end_time is not None and google.start_time is not None
    audio_s, wall_s = attrs(google)[spans.AUDIO_SECONDS], (google.end_time - google.start_time) / 1e9
    assert audio_s == pytest.approx(0.12)
    assert 0.06 / audio_s <= attrs(google)[spans.REAL_TIME_FACTOR] <= wall_s / audio_s


async def test_a_stream_span_ends_with_the_stream_and_times_its_first_audio(
    traced: Traced, engine_spans: InMemorySpanExporter
) -> None:
    traced.google.delay_s = 0.05  # its first audio comes 50 ms after the call, at the earliest
    r = await traced.client.post("/v1/personalities/ann/speech",
                                 json={"text": "One sentence. And another.", "stream": True})
    assert r.status_code == 200, r.text
    (speech,) = traced.named(spans.SPEECH)
    assert attrs(speech)[spans.STREAM] is True and attrs(speech)[spans.ENGINE] == "google_tts"
    assert speech.end_time is not None and speech.start_time is not None
    assert 50 <= attrs(speech)[spans.TIME_TO_FIRST_AUDIO_MS] <= (speech.end_time - speech.start_time) / 1e6
    (google,) = [a for a in traced.named(spans.ATTEMPT) if attrs(a)[spans.ENGINE] == "google_tts"]
    # Both sentences' audio: the attempt stayed open until the stream ended, and ended first.
    assert attrs(google)[spans.OUTCOME] == "ok"
    assert attrs(google)[spans.AUDIO_SECONDS] == pytest.approx(0.01 * len("One sentence.And another."))
    assert google.end_time is not None and speech.end_time is not None and google.end_time <= speech.end_time
    (engine,) = [s for s in engine_spans.get_finished_spans() if attrs(s)[spans.ENGINE] == "google_tts"]
    assert attrs(engine)[spans.AUDIO_SECONDS] == pytest.approx(attrs(google)[spans.AUDIO_SECONDS])


async def test_every_engine_failing_is_a_failed_speech(traced: Traced) -> None:
    traced.google.error = EngineUnavailableError("down", "google_tts")
    r = await traced.client.post("/v1/personalities/ann/speech", json={"text": "Hello."})
    assert r.status_code == 503
    (speech,) = traced.named(spans.SPEECH)
    assert attrs(speech)[spans.OUTCOME] == "failed" and spans.ENGINE not in attrs(speech)
    (http,) = [s for s in traced.exported.get_finished_spans() if s.name == f"POST {ROUTE}"]
    assert attrs(http)["http.response.status_code"] == 503


async def test_an_incoming_traceparent_is_continued(traced: Traced) -> None:
    r = await traced.client.post("/v1/personalities/ann/speech", json={"text": "Hello."},
                                 headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"})
    assert r.status_code == 200
    (http,) = [s for s in traced.exported.get_finished_spans() if s.name == f"POST {ROUTE}"]
    assert f"{http.context.trace_id:032x}" == TRACE_ID
    assert http.parent is not None and f"{http.parent.span_id:016x}" == PARENT_ID
    assert {s.context.trace_id for s in traced.exported.get_finished_spans()} == {http.context.trace_id}
    # The answer names its trace and the server span, so a caller can link to it.
    assert r.headers["traceresponse"] == f"00-{TRACE_ID}-{http.context.span_id:016x}-01"


async def test_what_the_sampler_drops_is_recorded_for_processors_but_not_exported(tmp_path: Path) -> None:
    t = Traced(tmp_path, {"OTEL_TRACES_SAMPLER": "always_off"})
    async with t.client:
        r = await t.client.post("/v1/personalities/ann/speech", json={"text": "Hello."})
    assert r.status_code == 200
    assert t.exported.get_finished_spans() == ()
    assert int(r.headers["traceresponse"].rsplit("-", 1)[1], 16) & 1 == 0  # not sampled: no viewer has it
    names = sorted(s.name for s in t.everything.ended)
    assert names == sorted([f"POST {ROUTE}", spans.SPEECH, spans.ATTEMPT, spans.ATTEMPT, spans.ATTEMPT])
    # The engines are told the trace is not sampled, so they drop it too.
    flags = t.google.requests[0].trace_context["traceparent"].rsplit("-", 1)[1]
    assert int(flags, 16) & 1 == 0  # W3C's sampled bit


def test_nothing_is_exported_without_the_endpoint() -> None:
    assert TracingSettings.from_environment({}).make_exporter() is None
    assert ingress_tracing({}).provider._active_span_processor._span_processors == ()
    settings = TracingSettings.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318/"})
    exporter = settings.make_exporter()
    assert isinstance(exporter, HttpExporter) and exporter._endpoint == "http://127.0.0.1:4318/v1/traces"
    grpc = TracingSettings.from_environment({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
                                             "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})
    assert isinstance(grpc.make_exporter(), GrpcExporter)
    assert settings.service_name == "chorus"
    assert ingress_tracing({"OTEL_SERVICE_NAME": "tts"}).provider.resource.attributes["service.name"] == "tts"


def test_a_setting_chorus_cannot_honour_is_refused_by_name() -> None:
    with pytest.raises(TracingConfigError, match="protocol"):
        TracingSettings.from_environment({"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json"})
    with pytest.raises(TracingConfigError, match="sampler"):
        TracingSettings.from_environment({"OTEL_TRACES_SAMPLER": "jaeger_remote"})


def test_traced_engines_still_pickle_for_ray() -> None:
    """A class whose module name is bound to its deployment goes to Ray by value, with the
    tracing wrappers: they must hold nothing that cannot be pickled."""
    from ray import cloudpickle

    from deployments.google_tts import GoogleTTSEngine
    from deployments.piper import PiperEngine

    for deployment in (PiperEngine, GoogleTTSEngine):
        cloudpickle.loads(cloudpickle.dumps(deployment.func_or_class))


async def test_the_key_name_is_on_the_speech_span_and_refusals_have_their_route(tmp_path: Path) -> None:
    t = Traced(tmp_path, keys=True)
    async with t.client:
        refused = await t.client.post("/v1/personalities/ann/speech", json={"text": "Hello."})
        spoken = await t.client.post("/v1/personalities/ann/speech", json={"text": "Hello."},
                                     headers={"x-api-key": KEYS[Scope.SPEAK]})
    assert (refused.status_code, spoken.status_code) == (401, 200)
    (speech,) = t.named(spans.SPEECH)
    assert attrs(speech)[spans.KEY] == "speaker"
    codes = sorted(attrs(s)["http.response.status_code"] for s in t.named(f"POST {ROUTE}"))
    assert codes == [200, 401]


async def test_a_cloning_engine_notes_its_conditioning_cache_on_the_engine_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    cache: ConditioningCache[str, int] = ConditioningCache(4)
    for _ in range(2):
        with provider.get_tracer("engine").start_as_current_span(spans.SYNTHESIZE):
            await cache.get("samples", lambda: 1)
    assert [attrs(s)[spans.CONDITIONING_CACHE] for s in exporter.get_finished_spans()] == ["miss", "hit"]


async def test_with_keys_on_only_a_callers_valid_key_continues_its_trace(tmp_path: Path) -> None:
    """Security audit L-2: a stranger's `traceparent` steered sampling (`-01` to load the
    exporter, `-00` to hide) and its trace id reached the logs of refused requests."""
    t = Traced(tmp_path, {"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, keys=True)
    theirs = {"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"}
    async with t.client:
        stranger = await t.client.post("/v1/personalities/ann/speech", json={"text": "Hello."}, headers=theirs)
        wrong = await t.client.post("/v1/personalities/ann/speech", json={"text": "Hello."},
                                    headers={**theirs, "x-api-key": "chorus_" + "x" * 43})
        keyed = await t.client.post("/v1/personalities/ann/speech", json={"text": "Hello."},
                                    headers={**theirs, "x-api-key": KEYS[Scope.SPEAK]})
    assert (stranger.status_code, wrong.status_code, keyed.status_code) == (401, 401, 200)
    # Not continued: a trace of Chorus's own, which this sampler never samples.
    for refused in (stranger, wrong):
        trace_id, flags = refused.headers["traceresponse"].split("-")[1::2]
        assert trace_id != TRACE_ID and int(flags, 16) & 1 == 0
    assert keyed.headers["traceresponse"].split("-")[1] == TRACE_ID
    assert {f"{s.context.trace_id:032x}" for s in t.exported.get_finished_spans()} == {TRACE_ID}
