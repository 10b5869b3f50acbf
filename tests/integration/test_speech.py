"""Speech through the real Ray Serve app and real Piper synthesis."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.chorus_app import STEADY_PIPER, ChorusApp
from tests.speech import CLEAR_SENTENCES, decode, word_error_rate

pytestmark = pytest.mark.ray

JOE = {
    "displayName": "Joe",
    "activeProvider": "piper",
    "languages": {"primary": "en", "supported": ["en"]},
    "providers": {"piper": STEADY_PIPER},
}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp) -> ChorusApp:
    chorus.deploy()
    chorus.write("joe", JOE)
    chorus.wait_for("joe")
    return chorus


def test_speech_is_intelligible(app: ChorusApp, ear) -> None:
    heard = {}
    with app.client() as c:
        for sentence in CLEAR_SENTENCES[:4]:
            r = c.post("/v1/personalities/joe/speech", json={"text": sentence})
            assert r.status_code == 200, r.text
            assert r.headers["content-type"] == "audio/wav"
            assert r.headers["x-chorus-provider"] == "piper"
            assert "x-chorus-fallback" not in r.headers
            assert float(r.headers["x-chorus-latency-ms"]) > 0
            heard[sentence] = ear.hear(r.content)
    errors = {s: word_error_rate(s, h) for s, h in heard.items()}
    good = [s for s, e in errors.items() if e <= 0.25]
    assert len(good) >= 3, f"ear heard {heard}"


def test_stream_sends_first_sentence_before_the_rest(app: ChorusApp, ear) -> None:
    text = " ".join(CLEAR_SENTENCES)
    arrivals: list[tuple[float, bytes]] = []
    with app.client() as c:
        start = time.perf_counter()
        with c.stream("POST", "/v1/personalities/joe/speech", json={"text": text, "stream": True}) as r:
            assert r.status_code == 200
            assert r.headers["x-chorus-provider"] == "piper"
            for piece in r.iter_raw():
                arrivals.append((time.perf_counter() - start, piece))
    body = b"".join(p for _, p in arrivals)
    assert body[:4] == b"RIFF" and body[8:12] == b"WAVE"
    samples, rate = decode(body)
    assert rate == 22050
    # One sentence per chunk: several separate chunks, the first long before the last.
    assert len(arrivals) >= len(CLEAR_SENTENCES)
    first_audio = next(t for t, p in arrivals if len(p) > 44)
    assert first_audio < arrivals[-1][0] / 2
    # The whole stream is the whole text.
    assert word_error_rate(text, ear.hear(body)) <= 0.25
    # The same text unstreamed has the same length (one utterance, nothing lost).
    with app.client() as c:
        whole = c.post("/v1/personalities/joe/speech", json={"text": text})
    whole_samples, _ = decode(whole.content)
    assert abs(len(whole_samples) - len(samples)) < rate * 0.05


def test_pcm_stream_is_raw(app: ChorusApp) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/joe/speech", json={"text": "Thank you. Goodbye.", "stream": True, "format": "pcm"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("audio/L16; rate=22050")
    assert r.content[:4] != b"RIFF" and len(r.content) % 2 == 0
    assert np.abs(np.frombuffer(r.content, dtype=np.int16)).max() > 1000


@pytest.mark.parametrize("fmt,codec", [("wav", "pcm_s16le"), ("mp3", "mp3"), ("opus", "opus"), ("aac", "aac"), ("flac", "flac")])
def test_every_format_decodes(app: ChorusApp, fmt: str, codec: str) -> None:
    import io

    import av

    with app.client() as c:
        r = c.post("/v1/personalities/joe/speech", json={"text": "It is a beautiful day.", "format": fmt})
    assert r.status_code == 200, r.text
    with av.open(io.BytesIO(r.content)) as container:
        assert container.streams.audio[0].codec_context.name.startswith(codec)
    samples, rate = decode(r.content)
    assert 1.0 < len(samples) / rate < 3.0


def test_language_and_provider_selection(app: ChorusApp) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/joe/speech", json={"text": "Hello.", "language": "en-US", "provider": "piper"})
        assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
        r = c.post("/v1/personalities/joe/speech", json={"text": "Bonjour.", "language": "fr"})
        assert r.status_code == 422 and "'fr'" in r.json()["detail"]
