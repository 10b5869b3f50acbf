"""Audio encodings for responses: engines hand over s16le PCM, clients get a format.

wav is a header before the PCM itself and pcm is the PCM as it came; flac goes through
libsndfile (soundfile); mp3, opus, aac and G.711 (mulaw, alaw) through FFmpeg's encoders
(PyAV), whose resampler (swresample) also changes rates. A whole G.711 answer is a WAV file
(format tags 7 and 6, which every telephony stack reads); a streamed one is the raw bytes.
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
    AudioFormat.mulaw: "audio/wav",
    AudioFormat.alaw: "audio/wav",
}

# FFmpeg's G.711 encoders, and the RFC 3551 names of the raw streams.
G711 = {AudioFormat.mulaw: "pcm_mulaw", AudioFormat.alaw: "pcm_alaw"}
_G711_MEDIA = {AudioFormat.mulaw: "audio/PCMU", AudioFormat.alaw: "audio/PCMA"}
TELEPHONY_RATE = 8000

# Formats that can go out chunk by chunk as sentences are synthesized: raw samples, or an
# encoder's packets that stand alone (G.711 bytes, MPEG audio frames).
STREAM_CODECS = {AudioFormat.mulaw: "pcm_mulaw", AudioFormat.alaw: "pcm_alaw", AudioFormat.mp3: "libmp3lame"}
STREAMABLE = frozenset({AudioFormat.wav, AudioFormat.pcm, *STREAM_CODECS})

# Opus only runs at these rates; 48 kHz is its native one.
_OPUS_RATES = (8000, 12000, 16000, 24000, 48000)


def media_type(fmt: AudioFormat, sample_rate: int, *, streamed: bool = False) -> str:
    if fmt is AudioFormat.pcm:
        return f"audio/L16; rate={sample_rate}; channels=1"
    if streamed and fmt in G711:  # raw bytes: no header says the rate
        return f"{_G711_MEDIA[fmt]}; rate={sample_rate}; channels=1"
    return MEDIA_TYPES[fmt]


def default_rate(fmt: AudioFormat) -> int | None:
    """The rate a format goes out at when the caller names none (None: the engine's own)."""
    return TELEPHONY_RATE if fmt in G711 else None


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
    if (rate is None or rate == sample_rate) and fmt in (AudioFormat.wav, AudioFormat.pcm) and len(pcm) <= INLINE_BYTES:
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
    if fmt in G711:
        return _ffmpeg(pcm, sample_rate, "wav", G711[fmt], sample_rate)
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


def _ffmpeg(pcm: bytes, rate: int, container: str, codec: str, out_rate: int, *, bit_rate: int | None = None) -> bytes:
    buf = io.BytesIO()
    with av.open(buf, mode="w", format=container) as out:
        stream = out.add_stream(codec, rate=out_rate, layout="mono")
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        # The encoder wants its own sample format, rate and frame size; PyAV's graph
        # resamples and re-frames for us.
        for packet in stream.encode(_frame(pcm, rate)):
            out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


class StreamEncoder:
    """One stream's chunks, resampled and encoded as they come. The resampler and the encoder
    are one for the whole stream, so filters run across chunk edges (no click where sentences
    meet) and no sample is lost or doubled between them. G.711 is sample by sample, so its bytes
    go out as soon as they are resampled; MP3 frames go out as the encoder completes them."""

    def __init__(self, fmt: AudioFormat, source_rate: int, rate: int | None = None) -> None:
        if fmt not in STREAMABLE:
            raise ValueError(f"{fmt} cannot be streamed")
        self.format = fmt
        self.rate = rate or source_rate
        self._source_rate = source_rate
        self._resampler = (
            av.AudioResampler(format="s16", layout="mono", rate=self.rate) if self.rate != source_rate else None
        )
        self._fed = 0  # samples fed so far: the next frame's pts, in the source's time base
        self._codec: av.AudioCodecContext | None = None
        if fmt in STREAM_CODECS:
            codec: av.AudioCodecContext = av.CodecContext.create(STREAM_CODECS[fmt], "w")  # type: ignore[assignment]
            codec.sample_rate, codec.layout = self.rate, "mono"
            # (libmp3lame takes planar samples; PyAV converts and re-frames what it is given.)
            codec.format = "s16p" if fmt is AudioFormat.mp3 else "s16"
            if fmt is AudioFormat.mp3:
                codec.bit_rate = 64_000
            self._codec = codec

    def header(self) -> bytes:
        return wav_stream_header(self.rate) if self.format is AudioFormat.wav else b""

    def media_type(self) -> str:
        return media_type(self.format, self.rate, streamed=True)

    def feed(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        frame = _frame(pcm, self._source_rate)
        frame.pts = self._fed
        self._fed += frame.samples
        return self._encode(self._resampler.resample(frame) if self._resampler else [frame])

    @property
    def seconds(self) -> float:
        """Audio fed so far."""
        return self._fed / self._source_rate

    def close(self) -> bytes:
        """What the resampler and the encoder still hold (a filter's tail, a last frame)."""
        out = self._encode(self._resampler.resample(None)) if self._resampler else b""
        return out + (b"".join(bytes(p) for p in self._codec.encode(None)) if self._codec else b"")

    def _encode(self, frames: list[av.AudioFrame]) -> bytes:
        if self._codec is None:
            return b"".join([f.to_ndarray() for f in frames])
        return b"".join(bytes(p) for f in frames for p in self._codec.encode(f))
