"""Cloning engines behind the ingress: personalities with stored samples, variants,
streaming, the conditioning cache, one-off cloning and falling back when a model is
missing. Tiny random checkpoints, loaded by the engines' production code in their own
venvs; the ingress and Piper in the main environment."""

from __future__ import annotations

import io
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import soundfile as sf

from deployments import styletts2, xtts
from tests.support import recordings as rec
from tests.support import tiny_xtts
from tests.support.chorus_app import STEADY_PIPER, ChorusApp

pytestmark = pytest.mark.ray

TEXT = "Hello there, how can I help you today?"
GREEDY = {"topK": 1}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, xtts_models: dict[str, Path], styletts2_model: Path) -> ChorusApp:
    chorus.deploy(
        engines={
            "piper": {},
            "xtts_v2": {"timeout_s": 180, "config": {
                "model_dir": str(xtts_models["base"]),
                "variants": {v: str(xtts_models[v]) for v in ("british", "american", "scottish")},
                "max_characters": 400, "stream_chunk_size": 16}},
            "styletts2": {"timeout_s": 180, "config": {"model_dir": str(styletts2_model), "seed": 0}},
        },
        deployments={
            "xtts_v2": {"ray_actor_options": xtts.actor_options(num_cpus=0.5)},
            "styletts2": {"ray_actor_options": styletts2.actor_options(num_cpus=0.5)},
        },
    )
    for name, variant in (("ava", "british"), ("scot", "scottish")):
        chorus.write(name, {
            "activeProvider": "xtts_v2", "fallbackChain": ["piper"],
            "providers": {"xtts_v2": {"variant": variant, "settings": GREEDY}, "piper": STEADY_PIPER},
        })
    chorus.write("sty", {"activeProvider": "styletts2", "fallbackChain": ["piper"],
                         "providers": {"styletts2": {"settings": {"diffusionSteps": 5}}, "piper": STEADY_PIPER}})
    for name in ("ava", "scot", "sty"):
        chorus.wait_for(name)
    return chorus


def wav(speech: rec.Speech) -> bytes:
    return rec.encode(speech.samples, speech.rate)


def xtts_stats(app: ChorusApp) -> dict[str, int]:
    """XTTS's counters as of now: /v1/providers serves a cached status, so wait for one the
    engine gave after this call began."""
    asked = datetime.now(UTC)
    deadline = time.monotonic() + 30
    with app.client() as c:
        while True:
            xtts = next(p for p in c.get("/v1/providers").json()["providers"] if p["engine"] == "xtts_v2")
            if datetime.fromisoformat(xtts["checked_at"]) > asked or time.monotonic() > deadline:
                return xtts["stats"]
            time.sleep(0.2)


def speak(app: ChorusApp, name: str, **body):
    with app.client() as c:
        return c.post(f"/v1/personalities/{name}/speech", json={"text": TEXT, **body})


def test_providers_show_what_loaded(app: ChorusApp) -> None:
    with app.client() as c:
        xtts = next(p for p in c.get("/v1/providers").json()["providers"] if p["engine"] == "xtts_v2")
    assert xtts["health"]["healthy"] is True
    assert "scottish" in xtts["health"]["reason"]  # reported even while healthy
    caps = xtts["capabilities"]
    assert caps["cloning"] is True and caps["streaming"] is True and caps["sample_rate"] == 24000
    assert set(caps["variants"]) == {"base", "british", "american"}
    assert {"en", "es", "zh-cn"} <= set(caps["languages"])


def test_samples_make_the_personality_speak_with_its_variant(app: ChorusApp) -> None:
    # No sample yet: XTTS has nothing to clone from, Piper takes over and says why.
    r = speak(app, "ava")
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
    assert r.headers["x-chorus-fallback"].startswith("xtts_v2;outcome=unavailable")
    assert "no reference samples" in r.headers["x-chorus-fallback"]

    with app.client() as c:
        up = c.post("/v1/personalities/ava/samples", files={"file": ("ref.wav", wav(rec.recordings().clean()))},
                    data={"id": "ref-1"})
        assert up.status_code == 201, up.text
    r = speak(app, "ava")
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "xtts_v2" and r.headers["x-chorus-variant"] == "british"
    assert "x-chorus-fallback" not in r.headers
    audio, rate = sf.read(io.BytesIO(r.content))
    assert rate == 24000 and 0.05 < len(audio) / rate <= tiny_xtts.MAX_AUDIO_S * 2 + 0.5


def test_conditioning_is_cached_and_recomputed_when_samples_change(app: ChorusApp) -> None:
    before = xtts_stats(app)
    assert speak(app, "ava").headers["x-chorus-provider"] == "xtts_v2"
    assert speak(app, "ava").headers["x-chorus-provider"] == "xtts_v2"
    after = xtts_stats(app)
    assert after["hits"] - before["hits"] == 2 and after["misses"] == before["misses"]

    with app.client() as c:
        up = c.post("/v1/personalities/ava/samples",
                    files={"file": ("ref2.wav", wav(rec.recordings().clean_other_text()))}, data={"id": "ref-2"})
        assert up.status_code == 201, up.text
    # The listing each replica keeps is short-lived; the new set reaches the engine.
    r = speak(app, "ava")
    assert r.headers["x-chorus-provider"] == "xtts_v2"
    changed = xtts_stats(app)
    assert changed["misses"] == after["misses"] + 1
    assert speak(app, "ava").headers["x-chorus-provider"] == "xtts_v2"
    assert xtts_stats(app)["hits"] == changed["hits"] + 1


def test_stream_sends_several_chunks(app: ChorusApp) -> None:
    pieces = []
    with app.client() as c:
        with c.stream("POST", "/v1/personalities/ava/speech", json={"text": TEXT, "stream": True}) as r:
            assert r.status_code == 200 and r.headers["x-chorus-provider"] == "xtts_v2"
            pieces = [p for p in r.iter_raw()]
    body = b"".join(pieces)
    assert body[:4] == b"RIFF" and len(pieces) >= 3
    audio, rate = sf.read(io.BytesIO(body))
    assert rate == 24000 and len(audio) > 0


def test_missing_variant_falls_back(app: ChorusApp) -> None:
    with app.client() as c:
        c.post("/v1/personalities/scot/samples", files={"file": ("ref.wav", wav(rec.recordings().clean()))})
    r = speak(app, "scot")
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
    fallback = r.headers["x-chorus-fallback"]
    assert fallback.startswith("xtts_v2;outcome=unavailable") and "scottish" in fallback


def test_styletts2_personality_speaks_from_its_samples(app: ChorusApp) -> None:
    with app.client() as c:
        up = c.post("/v1/personalities/sty/samples", files={"file": ("ref.wav", wav(rec.recordings().clean()))})
        assert up.status_code == 201, up.text
        assert set(up.json()["report"]["fit_for"]) == {"styletts2"}  # only StyleTTS2 is enabled here
    r = speak(app, "sty", text="Hello there. See you soon.")
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "styletts2" and "x-chorus-fallback" not in r.headers
    audio, rate = sf.read(io.BytesIO(r.content))
    assert rate == 24000 and len(audio) / rate > 0.2
    # StyleTTS2 speaks English only: Spanish goes to the next engine without a try.
    with app.client() as c:
        c.put("/v1/personalities/sty", json={"activeProvider": "styletts2", "fallbackChain": ["piper"],
                                             "languages": {"primary": "en", "supported": ["en", "es"]},
                                             "providers": {"styletts2": {}, "piper": STEADY_PIPER}})
        r = c.post("/v1/personalities/sty/speech", json={"text": "Hola.", "language": "es"})
    assert r.status_code == 503
    assert r.json()["attempts"][0] == {"engine": "styletts2", "outcome": "skipped",
                                       "reason": "no loaded voice does not speak 'es'"}


def test_one_off_clone_stores_nothing(app: ChorusApp) -> None:
    samples_before = sorted(p.name for p in app.samples_dir.rglob("*"))
    reference = wav(rec.recordings().clean())
    with app.client() as c:
        r = c.post("/v1/clone", files={"file": ("me.wav", reference)},
                   data={"text": TEXT, "language": "en", "provider": "xtts_v2", "variant": "american", "format": "flac"})
        assert r.status_code == 200, r.text
        assert r.headers["x-chorus-provider"] == "xtts_v2" and r.headers["x-chorus-variant"] == "american"
        audio, rate = sf.read(io.BytesIO(r.content))
        assert rate == 24000 and len(audio) > 0
        r = c.post("/v1/clone", files={"file": ("me.wav", reference)}, data={"text": "Hello there.", "provider": "styletts2"})
        assert r.status_code == 200, r.text
        assert r.headers["x-chorus-provider"] == "styletts2"
        assert sf.read(io.BytesIO(r.content))[1] == 24000

        noisy = rec.encode(rec.with_white_noise(rec.recordings().clean(), 10.0), rec.PIPER_RATE)
        bad = c.post("/v1/clone", files={"file": ("noisy.wav", noisy)}, data={"text": TEXT, "provider": "xtts_v2"})
        assert bad.status_code == 422
        snr = next(ch for ch in bad.json()["checks"] if ch["name"] == "snr")
        assert not snr["passed"] and abs(snr["value"] - 10) < 3

        for data, message in (({"provider": "xtts_v2"}, "text"), ({"text": TEXT, "provider": "piper"}, "provider"),
                              ({"text": TEXT, "language": "english"}, "language"),
                              ({"text": TEXT, "variant": "no/such"}, "variant")):
            r = c.post("/v1/clone", files={"file": ("me.wav", reference)}, data=data)
            assert r.status_code == 422 and message in r.json()["detail"], r.text
        # Form fields without the file: not multipart at all, refused before the body is read.
        r = c.post("/v1/clone", data={"text": TEXT})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"], r.text
    assert sorted(p.name for p in app.samples_dir.rglob("*")) == samples_before
