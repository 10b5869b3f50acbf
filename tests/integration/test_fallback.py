"""The router's fallback semantics against real engines: Piper, and the Google TTS engine
talking to a local server that speaks Google's REST protocol (with real Piper speech)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.servers.google_tts import GoogleTTSServer
from tests.support.speech import word_error_rate

pytestmark = pytest.mark.ray

MISSING_PIPER = {"enabled": True, "voice": "en_US-missing-medium"}
GOOGLE = {"enabled": True, "voice": "en-US-Neural2-D"}
GOOGLE_TIMEOUT_S = 3.0


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer) -> ChorusApp:
    chorus.deploy(engines={
        "piper": {"timeout_s": 30},
        "google_tts": {"timeout_s": GOOGLE_TIMEOUT_S,
                       "config": {"endpoint": google.base_url, "anonymous": True, "voices_refresh_s": 1}},
    })
    specs = {
        "broken": {"activeProvider": "piper", "fallbackChain": ["google_tts"],
                   "providers": {"piper": MISSING_PIPER, "google_tts": GOOGLE}},
        "cloudy": {"activeProvider": "google_tts", "fallbackChain": ["piper"],
                   "providers": {"google_tts": GOOGLE, "piper": STEADY_PIPER}},
        "local": {"activeProvider": "piper", "fallbackChain": ["google_tts"],
                  "languages": {"primary": "en", "supported": ["en", "es"]},
                  "providers": {"piper": STEADY_PIPER, "google_tts": {"voice": "es-ES-Neural2-A"}}},
        "off": {"activeProvider": "google_tts", "fallbackChain": ["piper"],
                "providers": {"google_tts": {**GOOGLE, "enabled": False}, "piper": STEADY_PIPER}},
    }
    for name, spec in specs.items():
        chorus.write(name, spec)
    for name in specs:
        chorus.wait_for(name)
    return chorus


@pytest.fixture(autouse=True)
def fresh_google(google: GoogleTTSServer) -> Iterator[None]:
    google.reset()
    yield
    google.reset()


def synth_requests(server: GoogleTTSServer) -> int:
    return sum(r.path.endswith("text:synthesize") for r in server.requests)


def test_failing_active_engine_hands_over_to_the_next(app: ChorusApp, google: GoogleTTSServer, ear) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/broken/speech", json={"text": "Thank you for your help."})
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "google_tts"
    fallback = r.headers["x-chorus-fallback"]
    assert fallback.startswith("piper;outcome=unavailable;reason=")
    assert "en_US-missing-medium" in fallback and "not loaded" in fallback
    assert synth_requests(google) == 1
    assert word_error_rate("Thank you for your help.", ear.hear(r.content)) <= 0.25


def test_streaming_falls_back_before_the_first_chunk(app: ChorusApp, google: GoogleTTSServer) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/broken/speech", json={"text": "One. Two. Three.", "stream": True})
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts"
    assert "piper;outcome=unavailable" in r.headers["x-chorus-fallback"]
    assert r.content[:4] == b"RIFF"
    assert synth_requests(google) == 1  # the whole piece in one call, never one a sentence


def test_timeout_moves_on(app: ChorusApp, google: GoogleTTSServer) -> None:
    google.knobs.delay_s = GOOGLE_TIMEOUT_S * 2
    with app.client() as c:
        r = c.post("/v1/personalities/cloudy/speech", json={"text": "Please open the door."})
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "piper"
    assert r.headers["x-chorus-fallback"] == (
        f'google_tts;outcome=timeout;reason="no audio within {GOOGLE_TIMEOUT_S:g} s"'
    )


def test_every_engine_failing_is_503_with_each_reason(app: ChorusApp, google: GoogleTTSServer) -> None:
    google.knobs.delay_s = GOOGLE_TIMEOUT_S * 2  # the voice list still answers within its probe limit
    with app.client() as c:
        r = c.post("/v1/personalities/broken/speech", json={"text": "Please open the door."})
        streamed = c.post("/v1/personalities/broken/speech", json={"text": "Please open the door.", "stream": True})
    assert r.status_code == 503 and streamed.status_code == 503
    body = r.json()
    assert [(a["engine"], a["outcome"]) for a in body["attempts"]] == [("piper", "unavailable"), ("google_tts", "timeout")]
    assert "en_US-missing-medium" in body["attempts"][0]["reason"]
    assert body["attempts"][1]["reason"] == f"no audio within {GOOGLE_TIMEOUT_S:g} s"
    assert "no engine could speak this" in body["detail"]
    assert streamed.json()["attempts"] == body["attempts"]


def test_bad_input_is_not_retried_elsewhere(app: ChorusApp, google: GoogleTTSServer) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/local/speech", json={"text": "....."})
    assert r.status_code == 422 and "nothing speakable" in r.json()["detail"]
    assert synth_requests(google) == 0


def test_engine_that_cannot_speak_the_language_is_skipped(app: ChorusApp, google: GoogleTTSServer) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/local/speech", json={"text": "Hola amigo.", "language": "es"})
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "google_tts"
    assert r.headers["x-chorus-fallback"] == (
        "piper;outcome=skipped;reason=\"voice 'en_US-joe-medium' does not speak 'es'\""
    )
    sent = json.loads(google.last("text:synthesize").body)
    assert sent["voice"]["name"] == "es-ES-Neural2-A" and sent["voice"]["languageCode"] == "es-ES"


def test_disabled_engine_is_skipped_and_explicit_provider_goes_first(app: ChorusApp, google: GoogleTTSServer) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/off/speech", json={"text": "Hello."})
        assert r.headers["x-chorus-provider"] == "piper"
        assert r.headers["x-chorus-fallback"] == 'google_tts;outcome=skipped;reason="disabled for this personality"'
        assert synth_requests(google) == 0
        r = c.post("/v1/personalities/local/speech", json={"text": "Hello.", "provider": "google_tts", "language": "es"})
        assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts"


def test_unhealthy_engine_is_skipped_until_it_recovers(app: ChorusApp, google: GoogleTTSServer) -> None:
    google.knobs.force_status = 403
    google.knobs.force_message = "API key not valid"
    with app.client() as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            google_status = next(p for p in c.get("/v1/providers").json()["providers"] if p["engine"] == "google_tts")
            if not google_status["health"]["healthy"]:
                break
            time.sleep(0.5)
        assert "credentials rejected" in google_status["health"]["reason"]
        requests_before = synth_requests(google)
        r = c.post("/v1/personalities/cloudy/speech", json={"text": "Hello."})
        assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
        # The provider's words stay in the log (and with admins, in /v1/providers).
        assert 'google_tts;outcome=skipped;reason="unhealthy"' in r.headers["x-chorus-fallback"]
        assert synth_requests(google) == requests_before

        google.reset()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            r = c.post("/v1/personalities/cloudy/speech", json={"text": "Hello."})
            if r.headers["x-chorus-provider"] == "google_tts":
                break
            time.sleep(0.5)
        assert r.headers["x-chorus-provider"] == "google_tts" and "x-chorus-fallback" not in r.headers
