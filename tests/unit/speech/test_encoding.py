"""Encoding whole answers: byte for byte what libsndfile writes, and off the event loop
only where that pays."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
import soundfile as sf

from chorus.speech import encoding
from deployments.base import AudioFormat


def pcm(seconds: float, rate: int = 22_050) -> bytes:
    return np.random.default_rng(3).integers(-32768, 32767, int(seconds * rate), dtype=np.int16).tobytes()


@pytest.mark.parametrize("rate", [16_000, 22_050, 24_000, 48_000])
@pytest.mark.parametrize("seconds", [0, 1 / 22_050, 2.5])
def test_wav_is_what_libsndfile_writes(rate: int, seconds: float) -> None:
    audio = pcm(seconds, rate)
    theirs = io.BytesIO()
    sf.write(theirs, np.frombuffer(audio, dtype=np.int16), rate, format="WAV", subtype="PCM_16")
    assert encoding.encode(audio, rate, AudioFormat.wav) == theirs.getvalue()


def test_a_stream_header_is_the_whole_header_with_its_sizes_unknown() -> None:
    whole = encoding.encode(pcm(1), 22_050, AudioFormat.wav)
    stream = encoding.wav_stream_header(22_050)
    assert len(stream) == 44 and stream[:4] + stream[8:40] == whole[:4] + whole[8:40]
    assert stream[4:8] == stream[40:44] == b"\xff\xff\xff\xff"


def test_resampling_keeps_the_duration_and_goes_into_the_encoding() -> None:
    audio = pcm(1.0)
    resampled = encoding.resample(audio, 22_050, 24_000)
    assert abs(len(resampled) / 2 - 24_000) < 64 and len(resampled) % 2 == 0
    assert encoding.encode(audio, 22_050, AudioFormat.pcm, 24_000) == resampled
    samples, rate = sf.read(io.BytesIO(encoding.encode(audio, 22_050, AudioFormat.wav, 24_000)), dtype="int16")
    assert rate == 24_000 and samples.tobytes() == resampled


class Threads:
    """Counts the hops to worker threads `asyncio.to_thread` makes."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.hops = 0
        real = asyncio.to_thread

        async def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
            self.hops += 1
            return await real(*args, **kwargs)

        monkeypatch.setattr(encoding.asyncio, "to_thread", counted)


@pytest.mark.parametrize("fmt,seconds,rate,hops", [
    (AudioFormat.wav, 5, None, 0),  # a header and a copy: cheaper than the hop
    (AudioFormat.pcm, 5, None, 0),
    (AudioFormat.wav, 100, None, 1),  # over INLINE_BYTES: the copy alone is worth a thread
    (AudioFormat.pcm, 5, 24_000, 1),  # resampling is real work: one hop, encoding included
    (AudioFormat.flac, 1, None, 1),
    (AudioFormat.mp3, 1, None, 1),
    (AudioFormat.mulaw, 1, None, 1),  # G.711 is FFmpeg's: a hop like every real encoder
])
async def test_only_real_work_leaves_the_event_loop(
    monkeypatch: pytest.MonkeyPatch, fmt: AudioFormat, seconds: float, rate: int | None, hops: int
) -> None:
    threads = Threads(monkeypatch)
    audio = pcm(seconds)
    body = await encoding.encode_off_loop(audio, 22_050, fmt, rate)
    assert threads.hops == hops
    assert body == encoding.encode(audio, 22_050, fmt, rate)
