"""One loudness whichever engine speaks (chorus.speech.loudness, PersonalitySpec.loudness):
Piper's speech at any level, measured by an ITU-R BS.1770 meter, lands on the personality's
target; peaks stay under the true-peak ceiling (measured 4x oversampled); a stream's chunks,
sentence-long or shorter than a word, come out at the target too."""

from __future__ import annotations

import io
import math

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import soxr

from chorus.speech.loudness import StreamLevel, level
from deployments.base import EngineFailedError
from tests.support.ingress_app import JOE, Api
from tests.support.recordings import PIPER_RATE, SENTENCES, recordings

RATE = PIPER_RATE


def piper(gain: float) -> list[bytes]:
    """The recordings' sentences as Piper says them (about -25 LUFS), times `gain`."""
    return [(recordings().sentence(s) * 32767 * gain).clip(-32768, 32767).astype("<i2").tobytes() for s in SENTENCES]


def lufs(pcm: bytes, rate: int = RATE) -> float:
    return float(pyloudnorm.Meter(rate).integrated_loudness(np.frombuffer(pcm, "<i2") / 32768.0))


def true_peak_db(pcm: bytes, rate: int = RATE) -> float:
    x = soxr.resample(np.frombuffer(pcm, "<i2") / 32768.0, rate, 4 * rate, quality="VHQ")
    return 20 * math.log10(np.abs(x).max())


@pytest.mark.parametrize("gain", [0.2, 1.0, 3.0], ids=["-39 LUFS", "-25 LUFS", "-16 LUFS, clipping"])
@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_an_answer_lands_on_the_target_whatever_its_level(gain: float, target: float) -> None:
    pcm = b"".join(piper(gain))
    out = level(pcm, RATE, target, -1.0)
    assert len(out) == len(pcm)
    assert abs(lufs(out) - target) <= 0.5, (lufs(pcm), lufs(out))
    assert true_peak_db(out) <= -1.0 + 0.05


def test_a_lower_ceiling_holds_and_costs_loudness_only_where_it_must() -> None:
    out = level(b"".join(piper(1.0)), RATE, -16.0, -6.0)
    assert true_peak_db(out) <= -6.0 + 0.05
    assert -19.0 <= lufs(out) <= -15.5  # -16 LUFS with peaks 5 dB lower: the limiter works hard


def test_silence_stays_silent_hiss_is_not_raised_into_noise_and_a_word_is_levelled() -> None:
    assert level(bytes(3200), RATE, -16.0, -1.0) == bytes(3200)
    hiss = np.random.default_rng(0).normal(0, 3, RATE).astype("<i2").tobytes()  # about -80 LUFS
    assert lufs(level(hiss, RATE, -16.0, -1.0)) <= lufs(hiss) + 30.0 + 0.1  # raised 30 dB at most
    word = piper(1.0)[0][: int(0.3 * RATE) * 2]  # shorter than BS.1770's 400 ms block
    out = level(word, RATE, -16.0, -1.0)
    assert len(out) == len(word)
    repeated = np.tile(np.frombuffer(out, "<i2"), 4).tobytes()  # long enough for the meter
    assert abs(lufs(repeated) - -16.0) <= 1.0


@pytest.mark.parametrize("gain", [0.2, 1.0, 3.0], ids=["-39 LUFS", "-25 LUFS", "-16 LUFS, clipping"])
@pytest.mark.parametrize("chunk_s", [None, 0.25], ids=["sentences", "model steps"])
def test_a_stream_comes_out_at_the_target_chunk_by_chunk(gain: float, chunk_s: float | None) -> None:
    sentences = piper(gain)
    if chunk_s is None:  # Piper's chunks
        chunks = sentences
    else:  # XTTS's: model steps shorter than a word
        whole, step = b"".join(sentences), 2 * int(chunk_s * RATE)
        chunks = [whole[i:i + step] for i in range(0, len(whole), step)]
    stream = StreamLevel(RATE, -16.0, -1.0)
    out = b"".join(stream.feed(chunk) for chunk in chunks) + stream.close()
    assert len(out) == sum(len(c) for c in chunks)
    assert abs(lufs(out) - -16.0) <= 1.0, (lufs(b"".join(chunks)), lufs(out))
    assert true_peak_db(out) <= -1.0 + 0.05


async def test_two_engines_of_one_personality_answer_at_its_level(tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = Api(tmp_path)
    api.google.amplitude = 500  # ~24 dB under the scripted Piper
    assert (await api.client.put("/v1/personalities/ana", json={**JOE, "loudness": {"targetLufs": -20}})).status_code == 201
    text = "The store opens at nine in the morning and closes at six."
    heard = {}
    for engine in ("piper", "google_tts"):
        for stream in (False, True):
            body = {"text": text, "provider": engine, "stream": stream, "format": "wav"}
            r = await api.client.post("/v1/personalities/ana/speech", json=body)
            assert r.status_code == 200, r.text
            pcm = r.content[44:] if stream else sf.read(io.BytesIO(r.content), dtype="int16")[0].tobytes()
            heard[engine, stream] = lufs(pcm, {"piper": 16_000, "google_tts": 24_000}[engine])
    assert all(abs(v - -20.0) <= 1.0 for v in heard.values()), heard
    # Off, each engine's own level, as made.
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": text, "provider": "google_tts"})
    assert sf.read(io.BytesIO(r.content), dtype="int16")[0].tobytes() == api.google.pcm(text)


def test_another_engine_carrying_a_stream_on_is_met_at_its_level_from_its_first_chunk() -> None:
    def seconds(pcm: bytes) -> list[bytes]:  # chunks of a second: shorter than the 3 s window
        return [pcm[i:i + 2 * RATE] for i in range(0, len(pcm), 2 * RATE)]

    # A loud engine, then one ~23 LU quieter: averaged with the loud one's last seconds, the
    # quiet one's first chunks would come out far under the target.
    loud, quiet = seconds(b"".join(piper(3.0)[:2])), seconds(b"".join(piper(0.2)[2:]))
    stream = StreamLevel(RATE, -16.0, -1.0)
    before = b"".join(stream.feed(c) for c in loud)
    stream.restart()  # the router's switch (chorus.ingress.speaking)
    first = stream.feed(quiet[0]) + stream.feed(quiet[1])
    rest = b"".join(stream.feed(c) for c in quiet[2:]) + stream.close()
    assert abs(lufs(before) - -16.0) <= 1.0
    assert abs(lufs(first) - lufs(before)) <= 1.0  # no level jump at the switch
    assert abs(lufs(first + rest) - -16.0) <= 1.0


async def test_a_stream_carried_on_by_a_quieter_engine_keeps_its_level(tmp_path) -> None:  # type: ignore[no-untyped-def]
    api = Api(tmp_path)
    api.google.amplitude = 250  # ~30 dB under the scripted Piper
    assert (await api.client.put("/v1/personalities/ana", json={**JOE, "loudness": {"targetLufs": -20}})).status_code == 201
    first, then = "This first sentence comes from the active engine.", "And this one, then, from the next in line."
    api.piper.error, api.piper.fail_at = EngineFailedError("crashed", "piper"), 1
    r = await api.client.post("/v1/personalities/ana/speech", json={"text": f"{first} {then} {then}", "stream": True,
                                                                    "format": "pcm"})
    assert r.status_code == 200 and api.google.requests  # Google carried it on
    cut = len(api.piper.pcm(first))  # bytes at the stream's 16 kHz
    assert abs(lufs(r.content[:cut], 16_000) - -20.0) <= 1.0
    assert abs(lufs(r.content[cut:], 16_000) - lufs(r.content[:cut], 16_000)) <= 1.0
