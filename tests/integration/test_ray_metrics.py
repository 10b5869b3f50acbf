"""Ray metrics on Ray's own Prometheus endpoint: the node's metrics agent serves the chorus_*
series, with their tags, next to Serve's.

Until the ingress's spans land, a Serve deployment here plays one ingress replica: it owns a
TracerProvider carrying `RayMetrics`, as `Chorus` will, and writes for each HTTP request the
spans the router writes (deployments/spans.py) for an utterance that falls back from Piper
to Google. Its requests go through Serve's proxy, so Serve counts them too."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from deployments import spans

pytestmark = pytest.mark.ray

APP = "ray-metrics-probe"
SCRAPE_DEADLINE_S = 60.0  # Ray's agent exports every few seconds; a loaded 2-core box is slower


class FallbackReplica:
    """One utterance per call, spoken by google_tts after Piper was unavailable."""

    def __init__(self) -> None:
        from opentelemetry.sdk.trace import TracerProvider

        from chorus.ray_metrics import RayMetrics

        self.provider = TracerProvider()
        self.provider.add_span_processor(RayMetrics(quota_source=lambda: [("google_tts", "neural", 1234)]))
        self.tracer = self.provider.get_tracer("probe")

    async def __call__(self, request: Any) -> str:
        personality = request.query_params["personality"]
        with self.tracer.start_as_current_span(spans.SPEECH, attributes={
            spans.PERSONALITY: personality, spans.CHARACTERS: 11, spans.STREAM: True,
        }) as speech:
            with self.tracer.start_as_current_span(spans.ATTEMPT, attributes={
                spans.ENGINE: "piper", spans.FALLBACK_POSITION: 0, spans.OUTCOME: "unavailable",
                spans.ERROR_TYPE: "EngineUnavailableError",
            }):
                pass
            with self.tracer.start_as_current_span(spans.ATTEMPT, attributes={
                spans.ENGINE: "google_tts", spans.FALLBACK_POSITION: 1, spans.OUTCOME: "ok",
            }):
                pass
            speech.set_attributes({spans.ENGINE: "google_tts", spans.OUTCOME: "ok", spans.TIME_TO_FIRST_AUDIO_MS: 120})
        return "ok"


@pytest.fixture(scope="module")
def probe(ray_session: None, chorus: Any) -> Iterator[str]:
    from ray import serve

    # Same HTTP options as every Chorus app of this session (Serve has one proxy).
    serve.start(http_options={"host": "127.0.0.1", "port": chorus.port})
    serve.run(serve.deployment(FallbackReplica, ray_actor_options={"num_cpus": 0.1}).bind(),
              name=APP, route_prefix="/probe")
    try:
        yield f"{chorus.url}/probe"
    finally:
        serve.delete(APP)


def metrics_url() -> str:
    """This node's metrics agent (Ray picks the port unless `_metrics_export_port` is given)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    port = next(n["MetricsExportPort"] for n in ray.nodes() if n["NodeID"] == node_id)
    return f"http://127.0.0.1:{port}/metrics"


SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)\{(?P<labels>.*)\} (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    out = []
    for line in text.splitlines():
        if match := SAMPLE.match(line):
            out.append((match["name"], dict(LABEL.findall(match["labels"])), float(match["value"])))
    return out


def total(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> float:
    """Sum over every series of `name` carrying `labels` (one per replica process)."""
    return sum(v for n, ls, v in found if n == name and all(ls.get(k) == want for k, want in labels.items()))


def test_chorus_series_appear_with_their_tags_next_to_serves(probe: str) -> None:
    with httpx.Client(timeout=30) as client:
        for personality in ("joe", "joe", "ann"):
            assert client.get(probe, params={"personality": personality}).text == "ok"

    wanted = {
        ("ray_chorus_requests_total", (("engine", "google_tts"), ("personality", "joe"), ("outcome", "ok"))): 2,
        ("ray_chorus_requests_total", (("engine", "google_tts"), ("personality", "ann"), ("outcome", "ok"))): 1,
        ("ray_chorus_engine_attempts_total", (("engine", "piper"), ("personality", "joe"), ("outcome", "unavailable"),
                                              ("error_type", "EngineUnavailableError"))): 2,
        ("ray_chorus_engine_attempts_total", (("engine", "google_tts"), ("personality", "ann"), ("outcome", "ok"),
                                              ("error_type", "none"))): 1,
        ("ray_chorus_characters_total", (("engine", "google_tts"), ("personality", "joe"))): 22,
        ("ray_chorus_request_latency_seconds_count", (("engine", "google_tts"), ("personality", "joe"),
                                                      ("outcome", "ok"))): 2,
        ("ray_chorus_time_to_first_audio_seconds_bucket", (("engine", "google_tts"), ("personality", "joe"),
                                                           ("le", "0.15"))): 2,
        ("ray_chorus_time_to_first_audio_seconds_bucket", (("engine", "google_tts"), ("personality", "joe"),
                                                           ("le", "0.1"))): 0,
        ("ray_chorus_quota_used_characters", (("engine", "google_tts"), ("voice_class", "neural"))): 1234,
        ("ray_serve_num_http_requests_total", (("application", APP),)): 3,
    }
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while True:
        text = urllib.request.urlopen(metrics_url(), timeout=10).read().decode()
        found = samples(text)
        got = {(name, labels): total(found, name, **dict(labels)) for name, labels in wanted}
        if got == wanted or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert got == wanted, "\n".join(line for line in text.splitlines() if "chorus_" in line or APP in line)
