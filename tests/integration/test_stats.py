"""Statistics on the real Serve app: two ingress replicas sharing one real `redis-server`,
a scripted sequence of requests (spoken, falling back, failing; three personalities), then
an ingress restart (a redeploy): `GET /v1/stats` gives exactly the counts, successes,
failures, characters and fallbacks of what was asked, from either replica and after the
restart. Needs the spans of deployments/spans.py (the tracing part of issue 12)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.redis_server import redis_server
from tests.support.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

MISSING_PIPER = {"enabled": True, "voice": "en_US-missing-medium"}
GOOGLE = {"enabled": True, "voice": "en-US-Neural2-D"}
SPECS = {
    "joe": {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}},
    # Piper cannot speak it: Google does.
    "broken": {"activeProvider": "piper", "fallbackChain": ["google_tts"],
               "providers": {"piper": MISSING_PIPER, "google_tts": GOOGLE}},
    # Nothing can: 503.
    "lost": {"activeProvider": "piper", "providers": {"piper": MISSING_PIPER}},
}
TEN = "Ten chars."
TWELVE = "Hello there."
# (personality, text, status) in order.
SCRIPT = [("joe", TEN, 200), ("broken", TWELVE, 200), ("lost", TEN, 503), ("joe", TEN, 200), ("broken", TWELVE, 200)]


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


def deploy(chorus: ChorusApp, google: GoogleTTSServer, redis_url: str) -> None:
    two = {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}
    chorus.deploy(
        engines={"piper": {"timeout_s": 30},
                 "google_tts": {"timeout_s": 10, "config": {"endpoint": google.base_url, "anonymous": True,
                                                            "voices_refresh_s": 1}}},
        deployments={"Ingress": {"autoscaling_config": two}}, redis_url=redis_url,
    )
    for name, spec in SPECS.items():
        chorus.write(name, spec)
    for name in SPECS:
        chorus.wait_for(name)


def play(chorus: ChorusApp) -> None:
    with chorus.client() as c:
        for name, text, status in SCRIPT:
            r = c.post(f"/v1/personalities/{name}/speech", json={"text": text})
            assert r.status_code == status, (name, r.text)


def expected(rounds: int) -> dict[str, Any]:
    """What `rounds` plays of SCRIPT add up to."""
    return {
        "personalities": {
            "joe": {"requests": 2 * rounds, "successes": 2 * rounds, "failures": {}, "characters": 20 * rounds,
                    "fallbacksTo": {}},
            "broken": {"requests": 2 * rounds, "successes": 2 * rounds, "failures": {}, "characters": 24 * rounds,
                       "fallbacksTo": {"google_tts": 2 * rounds}},
            "lost": {"requests": rounds, "successes": 0, "failures": {"failed": rounds}, "characters": 0,
                     "fallbacksTo": {}},
        },
        "engines": {
            "piper": {"successes": 2 * rounds, "characters": 20 * rounds, "fallbacksTo": {"google_tts": 2 * rounds}},
            "google_tts": {"requests": 2 * rounds, "successes": 2 * rounds, "failures": {},
                           "characters": 24 * rounds, "fallbacksTo": {}},
        },
    }


def seen(body: dict[str, Any]) -> dict[str, Any]:
    want = expected(1)
    return {part: {name: {f: body[part].get(name, {}).get(f) for f in want[part][name]} for name in want[part]}
            for part in want}


def figures_settle(chorus: ChorusApp, rounds: int, timeout: float = 15) -> dict[str, Any]:
    """Polls `GET /v1/stats` (either replica answers; each flushes about every second)
    until it shows `rounds` plays of the script; the last body."""
    deadline = time.monotonic() + timeout
    with chorus.client() as c:
        while True:
            body = c.get("/v1/stats", params={"window": "5m"}).json()
            if seen(body) == expected(rounds) or time.monotonic() > deadline:
                return body
            time.sleep(0.25)


def test_two_replicas_and_a_restart_count_exactly(chorus: ChorusApp, google: GoogleTTSServer,
                                                  redis_url: str) -> None:
    deploy(chorus, google, redis_url)
    play(chorus)
    body = figures_settle(chorus, 1)
    assert seen(body) == expected(1)
    # Piper was reached (or skipped) once per utterance it was planned for: joe x2, broken x2, lost.
    piper = body["engines"]["piper"]
    assert piper["requests"] + piper.get("skipped", 0) == 5
    assert sum(piper["failures"].values()) == piper["requests"] - piper["successes"]
    assert body["personalities"]["joe"]["latencyMs"]["p50"] is not None

    # The same figures from every replica, more than once (the requests spread over both).
    with chorus.client() as c:
        for _ in range(6):
            assert seen(c.get("/v1/stats", params={"window": "5m"}).json()) == expected(1)

    deploy(chorus, google, redis_url)  # a redeploy: new ingress replicas, same Redis
    assert seen(figures_settle(chorus, 1, timeout=5)) == expected(1)
    play(chorus)
    assert seen(figures_settle(chorus, 2)) == expected(2)
