"""Ray metrics on Ray's own Prometheus endpoint: after real requests through the real app,
the node's metrics agent serves the chorus_* series with their tags, next to Serve's. The
personalities `metrics-a` and `metrics-b` ask for a Piper voice that is not loaded, so Google (a local server
speaking its REST protocol) speaks after Piper was unavailable."""

from __future__ import annotations

import re
import time
import urllib.request

import httpx
import pytest

from tests.support.chorus_app import ChorusApp
from tests.support.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

SCRAPE_DEADLINE_S = 60.0  # Ray's agent exports every few seconds; a loaded 2-core box is slower
TEXT = "Hello there."


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer) -> ChorusApp:
    chorus.deploy(engines={
        "piper": {},
        "google_tts": {"timeout_s": 10, "config": {"endpoint": google.base_url, "anonymous": True}},
    })
    for name in ("metrics-a", "metrics-b"):
        chorus.write(name, {"activeProvider": "piper", "fallbackChain": ["google_tts"],
                            "providers": {"piper": {"voice": "en_US-missing-medium"},
                                          "google_tts": {"voice": "en-US-Neural2-D"}}})
        chorus.wait_for(name)
    return chorus


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


def test_chorus_series_appear_with_their_tags_next_to_serves(app: ChorusApp) -> None:
    # Counters of this Ray session's earlier apps live on: Serve's is compared as a difference,
    # and this test's personalities are its own.
    serve_requests = ("ray_serve_num_http_requests_total",
                      (("application", "chorus"), ("route", "/v1/personalities/{name}/speech")))
    before = total(scrape(), serve_requests[0], **dict(serve_requests[1]))
    with httpx.Client(base_url=app.url, timeout=60) as client:
        for name, stream in (("metrics-a", False), ("metrics-a", True), ("metrics-b", False)):
            r = client.post(f"/v1/personalities/{name}/speech", json={"text": TEXT, "stream": stream})
            assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts", r.text

    google, ok = (("engine", "google_tts"),), (("outcome", "ok"),)
    a, b = (("personality", "metrics-a"),), (("personality", "metrics-b"),)
    wanted = {
        ("ray_chorus_requests_total", google + a + ok): 2,
        ("ray_chorus_requests_total", google + b + ok): 1,
        ("ray_chorus_engine_attempts_total", (("engine", "piper"),) + a + (("outcome", "unavailable"),
                                                                          ("error_type", "EngineUnavailableError"))): 2,
        ("ray_chorus_engine_attempts_total", google + b + ok + (("error_type", "none"),)): 1,
        ("ray_chorus_characters_total", google + a): 2 * len(TEXT),
        ("ray_chorus_request_latency_seconds_count", google + a + ok): 2,
        ("ray_chorus_time_to_first_audio_seconds_count", google + a): 1,
        serve_requests: before + 3,
    }
    # Billed by the cloud meter (en-US-Neural2-D is a neural voice): all three requests. A
    # gauge per replica process, so this replica's series is the one showing them.
    quota = ("ray_chorus_quota_used_characters", google + (("voice_class", "neural"),))
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while True:
        found = scrape()
        got = {(name, labels): total(found, name, **dict(labels)) for name, labels in wanted}
        gauges = series(found, quota[0], **dict(quota[1]))
        if (got == wanted and 3 * len(TEXT) in gauges) or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert got == wanted, {k: (got[k], v) for k, v in wanted.items() if got[k] != v}
    assert 3 * len(TEXT) in gauges, gauges


def scrape() -> list[tuple[str, dict[str, str], float]]:
    return samples(urllib.request.urlopen(metrics_url(), timeout=10).read().decode())


def series(found: list[tuple[str, dict[str, str], float]], name: str, **labels: str) -> list[float]:
    """The value of each series of `name` carrying `labels`."""
    return [v for n, ls, v in found if n == name and all(ls.get(k) == want for k, want in labels.items())]
