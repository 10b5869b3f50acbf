"""Audio encodings for responses: engines hand over s16le PCM, clients get a format.

wav is a header before the PCM itself and pcm is the PCM as it came; flac goes through
libsndfile (soundfile); mp3, opus and aac through FFmpeg's encoders (PyAV), which also
resamples where a codec or a protocol fixes the rate.
"""

from __future__ import annotations

import asyncio
import io
import struct
from fractions import Fraction

import av
import numpy as np
import soundfile as sf

from deployments.base import AudioFormat

MEDIA_TYPES: dict[AudioFormat, str] = {
    AudioFormat.wav: "audio/wav",
    AudioFormat.mp3: "audio/mpeg",
    AudioFormat.opus: "audio/ogg; codecs=opus",
    AudioFormat.aac: "audio/aac",
    AudioFormat.flac: "audio/flac",
    AudioFormat.pcm: "audio/L16",
}

# Formats that can go out chunk by chunk as sentences are synthesized.
STREAMABLE = frozenset({AudioFormat.wav, AudioFormat.pcm})

# Opus only runs at these rates; 48 kHz is its native one.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def media_type(fmt: AudioFormat, sample_rate: int) -> str:
    if fmt is AudioFormat.pcm:
        return f"audio/L16; rate={sample_rate}; channels=1"
    return MEDIA_TYPES[fmt]


# A wav or pcm answer of up to this much PCM (about 95 s at 22.05 kHz) is built on the event
# loop: it is a 44-byte header and one copy, 2-30 µs for 1-30 s of audio here, while a hop to
# a worker thread costs ~45 µs (median; 2.7 ms at p99 when the pool is busy). Above it the
# copy alone nears a millisecond, and that goes to a thread like every real encoder.
INLINE_BYTES = 4 << 20


def resample(pcm: bytes, rate: int, target: int) -> bytes:
    if rate == target or not pcm:
        return pcm
    resampler = av.AudioResampler(format="s16", layout="mono", rate=target)
    # The frames' arrays are joined as they are: a `tobytes()` each would copy them once more.
    frames = [*resampler.resample(_frame(pcm, rate)), *resampler.resample(None)]
    return b"".join([f.to_ndarray() for f in frames])


async def encode_off_loop(pcm: bytes, sample_rate: int, fmt: AudioFormat, rate: int | None = None) -> bytes:
    """`encode`, costing the event loop least: small wav or pcm in line, everything else
    (resampling included) in one worker thread hop (`INLINE_BYTES` says why)."""
    if (rate is None or rate == sample_rate) and fmt in STREAMABLE and len(pcm) <= INLINE_BYTES:
        return encode(pcm, sample_rate, fmt)
    return await asyncio.to_thread(encode, pcm, sample_rate, fmt, rate)


def encode(pcm: bytes, sample_rate: int, fmt: AudioFormat, rate: int | None = None) -> bytes:
    """Encode a whole utterance, resampled to `rate` first if one is given."""
    if rate is not None:
        pcm, sample_rate = resample(pcm, sample_rate, rate), rate
    if fmt is AudioFormat.pcm:
        return pcm
    if fmt is AudioFormat.wav:
        return _wav_header(sample_rate, len(pcm)) + pcm
    if fmt is AudioFormat.flac:
        buf = io.BytesIO()
        sf.write(buf, np.frombuffer(pcm, dtype=np.int16), sample_rate, format="FLAC", subtype="PCM_16")
        return buf.getvalue()
    if fmt is AudioFormat.mp3:
        return _ffmpeg(pcm, sample_rate, "mp3", "libmp3lame", sample_rate, bit_rate=64_000)
    if fmt is AudioFormat.opus:
        rate = next((r for r in _OPUS_RATES if r >= sample_rate), 48000)
        return _ffmpeg(pcm, sample_rate, "ogg", "libopus", rate, bit_rate=32_000)
    if fmt is AudioFormat.aac:
        return _ffmpeg(pcm, sample_rate, "adts", "aac", sample_rate, bit_rate=64_000)
    raise ValueError(f"unknown format {fmt}")


def wav_stream_header(sample_rate: int) -> bytes:
    """A WAV header for a stream of unknown length: RIFF and data sizes set to the
    maximum, which players and decoders (ffmpeg, libsndfile, browsers) read as
    "until the end of the stream"."""
    return _wav_header(sample_rate, None)


def _wav_header(sample_rate: int, data_bytes: int | None) -> bytes:
    """The 44-byte header of mono 16-bit PCM WAV, the same bytes libsndfile writes; sizes
    at their maximum when `data_bytes` is None (not known yet)."""
    data = 0xFFFFFFFF if data_bytes is None else data_bytes
    riff = 0xFFFFFFFF if data_bytes is None else 36 + data_bytes
    return (
        b"RIFF" + struct.pack("<I", riff) + b"WAVE"
        + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, sample_rate, sample_rate * 2, 2, 16)
        + b"data" + struct.pack("<I", data)
    )


def _frame(pcm: bytes, rate: int) -> av.AudioFrame:
    samples = np.frombuffer(pcm, dtype=np.int16).reshape(1, -1)
    frame = av.AudioFrame.from_ndarray(samples, format="s16", layout="mono")
    frame.sample_rate = rate
    frame.time_base = Fraction(1, rate)
    frame.pts = 0
    return frame


def _ffmpeg(pcm: bytes, rate: int, container: str, codec: str, out_rate: int, *, bit_rate: int) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout="mono")
        stream.bit_rate = bit_rate
        # The encoder wants its own sample format, rate and frame size; PyAV's graph
        # resamples and re-frames for us.
        for packet in stream.encode(_frame(pcm, rate)):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()
