"""An engine's full queue on the real Serve app: the Google engine (talking to a local server
that speaks Google's REST protocol, each answer 1.5 s late) with one request at a time and one
waiting (`max_ongoing_requests`, `max_queued_requests`), sent a burst. Serve refuses the rest
at the handle (`BackPressureError`); Chorus must take that as load: the next engine speaks, or
the answer is a 503 in Chorus's own shape inviting a retry, and the engine's circuit and health
are untouched (two failures would open the circuit)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from chorus.speech.attempts import BUSY
from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

GOOGLE = {"enabled": True, "voice": "en-US-Neural2-D"}
BURST = 6
BUSY_FALLBACK = f'google_tts;outcome=unavailable;reason="{BUSY}"'


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer) -> ChorusApp:
    chorus.deploy(
        engines={"piper": {"timeout_s": 30},
                 "google_tts": {"timeout_s": 20, "config": {"endpoint": google.base_url, "anonymous": True}}},
        deployments={"google_tts": {"max_ongoing_requests": 1, "max_queued_requests": 1}},
        circuit_breaker={"failures": 2, "cool_down_s": 300},
    )
    chorus.write("cloudy", {"activeProvider": "google_tts", "fallbackChain": ["piper"],
                            "providers": {"google_tts": GOOGLE, "piper": STEADY_PIPER}})
    chorus.write("solo", {"activeProvider": "google_tts", "providers": {"google_tts": GOOGLE}})
    chorus.wait_for("cloudy")
    chorus.wait_for("solo")
    return chorus


@pytest.fixture(autouse=True)
def slow_google(google: GoogleTTSServer) -> Iterator[None]:
    google.reset()
    google.knobs.delay_s = 1.5
    yield
    google.reset()


async def burst(url: str, name: str, bodies: list[dict[str, object]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return list(await asyncio.gather(*(client.post(f"/v1/personalities/{name}/speech", json=body)
                                           for body in bodies)))


def google_circuit(app: ChorusApp) -> dict[str, object]:
    with app.client() as c:
        (google,) = [p for p in c.get("/v1/providers").json()["providers"] if p["engine"] == "google_tts"]
    return {"circuit": google["circuit"]["state"], "failures": google["circuit"]["failures"],
            "healthy": google["health"]["healthy"]}


async def test_a_full_queue_hands_over_to_the_next_engine(app: ChorusApp) -> None:
    answers = await burst(app.url, "cloudy", [{"text": "Please open the door."}] * BURST)
    assert [r.status_code for r in answers] == [200] * BURST
    spoke = sorted(r.headers["x-chorus-provider"] for r in answers)
    # One speaking, one waiting: the others were refused at once and Piper spoke them.
    assert spoke.count("google_tts") <= 2 and spoke.count("piper") >= BURST - 2, spoke
    assert {r.headers.get("x-chorus-fallback") for r in answers if r.headers["x-chorus-provider"] == "piper"} == {
        BUSY_FALLBACK}
    assert google_circuit(app) == {"circuit": "closed", "failures": 0, "healthy": True}
    with app.client() as c:  # alone, the active engine speaks again
        r = c.post("/v1/personalities/cloudy/speech", json={"text": "Thank you for your help."})
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts"


async def test_no_engine_but_a_busy_one_is_a_503_inviting_a_retry(app: ChorusApp) -> None:
    bodies = [{"text": "Please open the door.", "stream": i % 2 == 1} for i in range(BURST)]
    answers = await burst(app.url, "solo", bodies)
    refused = [(body, r) for body, r in zip(bodies, answers, strict=True) if r.status_code != 200]
    assert 1 <= BURST - len(refused) <= 2
    assert {body["stream"] for body, _ in refused} == {False, True}, [r.status_code for r in answers]
    for _, r in refused:
        # Chorus's answer, not Serve's text (cancelling a refused stream call raised Serve's
        # error again, which reached the proxy as if the Ingress's own queue were full).
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["attempts"] == [{"engine": "google_tts", "outcome": "unavailable", "reason": BUSY}]
    assert google_circuit(app) == {"circuit": "closed", "failures": 0, "healthy": True}
