"""Speech through the real Ray Serve app and real Piper synthesis."""

from __future__ import annotations

import time

import numpy as np
import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.speech import CLEAR_SENTENCES, decode, word_error_rate, words

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
    # Levelling off: a stream's pieces are then the very samples of Piper's whole answers
    # (levelled, a whole answer and a stream each find their own gain).
    chorus.write("raw", {**JOE, "loudness": {"enabled": False}})
    chorus.wait_for("joe")
    chorus.wait_for("raw")
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


CLAUSE = "When the store opens at nine in the morning,"
REST = "I would like a cup of coffee. Thank you for your help."


def _silent_runs(samples: np.ndarray, rate: int) -> list[tuple[int, int]]:
    """(start, end) of each stretch of 50 ms or more below a whisper, inside the audio."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > 200)
    gaps = np.flatnonzero(np.diff(loud) > rate // 20)
    return [(int(loud[g]) + 1, int(loud[g + 1])) for g in gaps]


def test_stream_sends_a_long_first_sentence_s_first_clause_first(app: ChorusApp, ear) -> None:
    text = f"{CLAUSE} {REST}"
    with app.client() as c:
        clause, _ = decode(c.post("/v1/personalities/raw/speech", json={"text": CLAUSE}).content)
        sentence, _ = decode(c.post("/v1/personalities/raw/speech", json={"text": f"{CLAUSE} {REST.split('.')[0]}."}).content)
        whole, rate = decode(c.post("/v1/personalities/raw/speech", json={"text": text}).content)
        arrivals: list[bytes] = []
        with c.stream("POST", "/v1/personalities/raw/speech", json={"text": text, "stream": True}) as r:
            assert r.status_code == 200
            arrivals += r.iter_raw()
    body = b"".join(arrivals)
    samples, _ = decode(body)
    # The first audio is the clause's, exactly, and it came on its own: the reads end with
    # its last byte (the rest was still being synthesized). It is shorter than the whole
    # first sentence's audio would have been.
    first = 44 + 2 * len(clause)
    ends = np.cumsum([len(a) for a in arrivals])
    assert first in ends, f"reads ended at {ends[:4]}, the clause at {first}"
    assert np.array_equal(samples[: len(clause)], clause)
    assert len(clause) < 0.7 * len(sentence)
    # The joined stream is the whole text, both halves heard.
    heard = set(words(ear.hear(body)))
    for half in (CLAUSE, REST):
        said = words(half)
        assert sum(w in heard for w in said) >= 0.8 * len(said), f"heard {sorted(heard)} for {half!r}"
    # No click at the joint: the jump across it is within the audio's ordinary sample-to-sample
    # change. No gap either: each piece keeps Piper's own silence at its ends, so the pause
    # there (~0.26 s) is a sentence break's, which Piper makes between any two sentences;
    # 10% over the longest one in the unsplit text allows for the clause's own cadence.
    joint = len(clause)
    steps = np.abs(np.diff(samples.astype(np.int32)))
    assert steps[joint - 3: joint + 3].max() <= np.median(steps)
    pause = next(end - start for start, end in _silent_runs(samples, rate) if start <= joint <= end)
    assert pause <= 1.1 * max(end - start for start, end in _silent_runs(whole, rate))


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


@pytest.mark.parametrize(("fmt", "stream", "subtype"), [("mulaw", False, "ULAW"), ("alaw", True, "ALAW")])
def test_telephony_audio_is_intelligible(app: ChorusApp, ear, fmt: str, stream: bool, subtype: str) -> None:
    """G.711 at 8 kHz from real Piper (22.05 kHz), decoded by libsndfile rather than the FFmpeg
    that encoded it, brought to the ear's 16 kHz by soxr: the words come back."""
    import io

    import soundfile as sf
    import soxr

    heard = {}
    with app.client() as c:
        for sentence in CLEAR_SENTENCES[:3]:
            r = c.post("/v1/personalities/joe/speech", json={"text": sentence, "format": fmt, "stream": stream})
            assert r.status_code == 200, r.text
            if stream:
                assert r.headers["content-type"] == "audio/PCMA; rate=8000; channels=1"
                samples, rate = sf.read(io.BytesIO(r.content), format="RAW", subtype=subtype, samplerate=8000,
                                        channels=1, dtype="int16")
            else:
                assert sf.info(io.BytesIO(r.content)).subtype == subtype
                samples, rate = sf.read(io.BytesIO(r.content), dtype="int16")
            assert rate == 8000 and 0.8 < len(samples) / rate < 4.0
            wideband = soxr.resample(samples, 8000, 16_000)
            heard[sentence] = ear.hear_pcm(wideband.astype(np.int16).tobytes(), 16_000)
    good = [s for s, h in heard.items() if word_error_rate(s, h) <= 0.34]
    assert len(good) >= 2, f"ear heard {heard}"


def test_a_lexicon_entry_is_said_as_written_and_changes_with_the_personality(app: ChorusApp, ear) -> None:
    """A made-up word with an entry is heard as the word the entry says (Piper: its phonemes
    inline); without the entry it is not; a changed entry is heard at once (hot reload, and the
    audio cache keys on the lexicon)."""
    text = "Please open the zyxwv."
    with app.client() as c:
        spec = {**JOE, "lexicon": [{"text": "Zyxwv", "ipa": "dˈɔːɹ"}]}
        assert c.put("/v1/personalities/lexi", json=spec).status_code == 201
        try:
            heard = ear.hear(c.post("/v1/personalities/lexi/speech", json={"text": text}).content).split()
            assert "door" in heard, heard
            plain = ear.hear(c.post("/v1/personalities/joe/speech", json={"text": text}).content).split()
            assert "door" not in plain, plain
            spec["lexicon"] = [{"text": "Zyxwv", "alias": "window"}]
            assert c.put("/v1/personalities/lexi", json=spec).status_code == 200
            heard = ear.hear(c.post("/v1/personalities/lexi/speech", json={"text": text}).content).split()
            assert "window" in heard and "door" not in heard, heard
        finally:
            c.delete("/v1/personalities/lexi")
