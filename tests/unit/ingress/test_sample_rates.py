"""Sample rates and telephony on both speech routes, without Ray: `sample_rate` resamples
(whole and streamed), mulaw and alaw are G.711 at 8 kHz unless told otherwise, a WAV file
whole and raw bytes streamed. Every answer is decoded by libsndfile (soundfile), not by the
FFmpeg that encoded it, and compared with the engine's own PCM resampled by soxr."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import soxr

from tests.support.ingress_app import Api

TEXT = "Hello there. How are you?"


def expected(api: Api, rate: int) -> np.ndarray:
    """What the fake Piper said (16 kHz), resampled by a different resampler (soxr)."""
    said = np.frombuffer(api.piper.pcm("Hello there.") + api.piper.pcm("How are you?"), dtype=np.int16)
    return soxr.resample(said.astype(np.float32), 16_000, rate)


def like(got: np.ndarray, want: np.ndarray) -> None:
    """Same length (within the resamplers' edges) and the same waveform (G.711 keeps ~38 dB SNR)."""
    assert abs(len(got) - len(want)) <= 2, (len(got), len(want))
    n = min(len(got), len(want))
    assert np.corrcoef(got[:n].astype(np.float64), want[:n])[0, 1] > 0.99


def personality_route(**body: Any) -> tuple[str, dict[str, Any]]:
    return "/v1/personalities/joe/speech", {"text": TEXT, **body}


def openai_route(**body: Any) -> tuple[str, dict[str, Any]]:
    body = {"response_format": body.pop("format")} | body if "format" in body else body
    return "/v1/audio/speech", {"model": "tts-1", "voice": "joe", "input": TEXT, **body}


ROUTES = [personality_route, openai_route]


async def post(api: Api, route_and_body: tuple[str, dict[str, Any]]) -> Any:
    path, body = route_and_body
    return await api.client.post(path, json=body)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("fmt", "subtype"), [("mulaw", "ULAW"), ("alaw", "ALAW")])
async def test_g711_is_an_8khz_wav_file_by_default(api: Api, route: Any, fmt: str, subtype: str) -> None:
    r = await post(api, route(format=fmt))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    info = sf.info(io.BytesIO(r.content))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, subtype)
    audio, _ = sf.read(io.BytesIO(r.content), dtype="int16")
    like(audio, expected(api, 8000))


@pytest.mark.parametrize("route", ROUTES)
async def test_g711_takes_another_rate_when_asked(api: Api, route: Any) -> None:
    r = await post(api, route(format="mulaw", sample_rate=16_000))
    info = sf.info(io.BytesIO(r.content))
    assert (info.samplerate, info.subtype) == (16_000, "ULAW")


@pytest.mark.parametrize(("fmt", "subtype", "media"), [("mulaw", "ULAW", "audio/PCMU"), ("alaw", "ALAW", "audio/PCMA")])
async def test_a_g711_stream_is_raw_bytes_across_sentences(api: Api, fmt: str, subtype: str, media: str) -> None:
    r = await post(api, personality_route(format=fmt, stream=True))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == f"{media}; rate=8000; channels=1"
    audio, _ = sf.read(io.BytesIO(r.content), format="RAW", subtype=subtype, samplerate=8000, channels=1, dtype="int16")
    like(audio, expected(api, 8000))  # both sentences, nothing lost or doubled where they meet


@pytest.mark.parametrize("rate", [8000, 22_050, 44_100, 48_000])
async def test_sample_rate_resamples_whole_and_streamed_answers(api: Api, rate: int) -> None:
    r = await post(api, personality_route(sample_rate=rate))
    whole, got_rate = sf.read(io.BytesIO(r.content), dtype="int16")
    assert got_rate == rate
    like(whole, expected(api, rate))
    r = await post(api, personality_route(format="pcm", sample_rate=rate, stream=True))
    assert r.headers["content-type"] == f"audio/L16; rate={rate}; channels=1"
    streamed = np.frombuffer(r.content, dtype=np.int16)
    assert np.array_equal(streamed, whole)  # one resampler across the sentences: the same samples


async def test_a_wav_stream_header_carries_the_asked_rate(api: Api) -> None:
    r = await post(api, personality_route(sample_rate=24_000, stream=True))
    audio, rate = sf.read(io.BytesIO(r.content), dtype="int16")
    assert rate == 24_000
    like(audio, expected(api, 24_000))


async def test_openai_pcm_stays_24khz_unless_a_rate_is_asked(api: Api) -> None:
    r = await post(api, openai_route(format="pcm"))
    assert r.headers["content-type"] == "audio/L16; rate=24000; channels=1"
    r = await post(api, openai_route(format="pcm", sample_rate=8000))
    assert r.headers["content-type"] == "audio/L16; rate=8000; channels=1"
    like(np.frombuffer(r.content, dtype=np.int16), expected(api, 8000))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("rate", "message"), [
    (7999, "sample_rate: Input should be greater than or equal to 8000"),
    (48_001, "sample_rate: Input should be less than or equal to 48000"),
    ("fast", "sample_rate: Input should be a valid integer"),
])
async def test_a_rate_out_of_range_is_refused_by_name(api: Api, route: Any, rate: Any, message: str) -> None:
    r = await post(api, route(sample_rate=rate))
    assert r.status_code == 422
    assert message in r.text
    assert api.piper.requests == []
