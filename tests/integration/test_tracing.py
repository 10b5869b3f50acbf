"""Traces across deployments: the real Ray Serve app, exporting through the OTEL_* variables
(as `chorus serve` passes them) to a real OpenTelemetry Collector on loopback. A request
whose Piper voice is missing falls back to Google TTS (a local server speaking its REST
protocol); the collector must get one trace: the HTTP span, `chorus.speech`, an attempt
per engine, and each engine's span from inside its own deployment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from deployments import spans
from deployments.tracing import ingress_tracing
from tests.support.chorus_app import ChorusApp
from tests.support.otel_collector import Collector, ReceivedSpan, otel_collector
from tests.support.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

ROUTE = "/v1/personalities/{name}/speech"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Collector]:
    with otel_collector(tmp_path_factory.mktemp("otelcol")) as c:
        yield c


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer, collector: Collector) -> ChorusApp:
    chorus.deploy(
        engines={"piper": {"timeout_s": 30},
                 "google_tts": {"timeout_s": 10, "config": {"endpoint": google.base_url, "anonymous": True}}},
        # Batches leave every 200 ms instead of 5 s, so the test waits less.
        environ={"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "200"},
    )
    chorus.write("broken", {"activeProvider": "piper", "fallbackChain": ["google_tts"],
                            "providers": {"piper": {"voice": "en_US-missing-medium"},
                                          "google_tts": {"voice": "en-US-Neural2-D"}}})
    chorus.wait_for("broken")
    return chorus


def one_trace(collector: Collector, trace_id: str) -> list[ReceivedSpan]:
    """The trace's spans once all are in. Each process exports its own batches, and the HTTP
    span ends last (after the response is sent), so the engines' spans may arrive before it."""
    def complete(received: list[ReceivedSpan]) -> bool:
        names = [s.name for s in received if s.trace_id == trace_id]
        return names.count(spans.SYNTHESIZE) == 2 and f"POST {ROUTE}" in names

    return [s for s in collector.wait_for(complete) if s.trace_id == trace_id]


def test_a_fallback_is_one_trace_from_the_http_span_into_each_engine(app: ChorusApp, collector: Collector) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/broken/speech", json={"text": "Thank you for your help."})
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "google_tts"

    def spoke(received: list[ReceivedSpan]) -> bool:
        return any(s.name == spans.SPEECH and s.attributes.get(spans.PERSONALITY) == "broken" for s in received)

    (speech,) = [s for s in collector.wait_for(spoke) if s.name == spans.SPEECH]
    trace = one_trace(collector, speech.trace_id)
    by_name: dict[str, list[ReceivedSpan]] = {}
    for s in trace:
        by_name.setdefault(s.name, []).append(s)
    (http,) = by_name[f"POST {ROUTE}"]
    assert http.kind == "Server" and http.parent_id == ""
    assert (http.attributes["http.request.method"], http.attributes["http.route"],
            http.attributes["http.response.status_code"]) == ("POST", ROUTE, 200)
    assert speech.parent_id == http.span_id
    assert (speech.attributes[spans.ENGINE], speech.attributes[spans.OUTCOME]) == ("google_tts", "ok")
    attempts = {a.attributes[spans.ENGINE]: a for a in by_name[spans.ATTEMPT]}
    assert set(attempts) == {"piper", "google_tts"}
    assert all(a.parent_id == speech.span_id for a in attempts.values())
    piper, google = attempts["piper"].attributes, attempts["google_tts"].attributes
    assert (piper[spans.OUTCOME], piper[spans.FALLBACK_POSITION], piper[spans.ERROR_TYPE]) == \
        ("unavailable", 0, "EngineUnavailableError")
    assert (google[spans.OUTCOME], google[spans.FALLBACK_POSITION]) == ("ok", 1)
    assert google[spans.AUDIO_SECONDS] > 0.5 and google[spans.REAL_TIME_FACTOR] > 0
    # Each engine's span, from inside its deployment: another process, under its attempt.
    inside = {s.attributes[spans.ENGINE]: s for s in by_name[spans.SYNTHESIZE]}
    assert inside["piper"].parent_id == attempts["piper"].span_id
    assert inside["piper"].attributes[spans.ERROR_TYPE] == "EngineUnavailableError"
    assert inside["google_tts"].parent_id == attempts["google_tts"].span_id
    assert inside["google_tts"].attributes[spans.AUDIO_SECONDS] == pytest.approx(google[spans.AUDIO_SECONDS])
    ingress_instance = http.resource["service.instance.id"]
    assert {s.resource["service.instance.id"] for s in inside.values()}.isdisjoint({ingress_instance})
    assert {s.resource["service.name"] for s in trace} == {"chorus"}
    assert len({s.trace_id for s in trace}) == 1


def test_an_incoming_traceparent_is_continued_into_the_engines(app: ChorusApp, collector: Collector) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/broken/speech", json={"text": "Hello again."},
                   headers={"traceparent": f"00-{TRACE_ID}-{CALLER_SPAN}-01"})
    assert r.status_code == 200, r.text
    trace = one_trace(collector, TRACE_ID)
    (http,) = [s for s in trace if s.name == f"POST {ROUTE}"]
    assert http.parent_id == CALLER_SPAN
    assert {s.name for s in trace} == {f"POST {ROUTE}", spans.SPEECH, spans.ATTEMPT, spans.SYNTHESIZE}


def test_the_collector_decodes_what_a_replica_exports(collector: Collector, tmp_path: Path) -> None:
    """The OTLP path alone, without Ray: typed attributes arrive as they were set."""
    tracing = ingress_tracing({"OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_SERVICE_NAME": "probe"})
    with tracing.tracer.start_as_current_span("probe", attributes={"n": 3, "x": 1.5, "ok": True, "s": "a b"}):
        pass
    tracing.shutdown()
    received = collector.wait_for(lambda got: any(s.name == "probe" for s in got), timeout=10)
    (probe,) = [s for s in received if s.name == "probe"]
    assert probe.attributes == {"n": 3, "x": 1.5, "ok": True, "s": "a b"}
    assert probe.resource["service.name"] == "probe"
