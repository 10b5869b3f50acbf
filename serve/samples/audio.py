"""Uploads decoded for analysis, and the canonical audio that gets stored.

- `decode_audio(data)` turns an upload (WAV, FLAC, OGG/Opus or Vorbis, MP3) into mono
  float32 at `CANONICAL_RATE`, or raises `SampleRejected` naming what is wrong with the
  bytes (empty, not audio, truncated, lying header, unsupported codec, too long).
- `canonical_wav(audio)` is what gets stored: 16-bit mono WAV at `CANONICAL_RATE`.
  Its bytes are deterministic, so their sha256 identifies the audio across formats.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from chorus.common.constants import MAX_SAMPLE_BYTES
from chorus.samples.report import CheckResult, ProblemCode, SampleRejected

# --- formats ----------------------------------------------------------------------------

# Cloning engines resample anyway; 24 kHz is XTTS v2's output rate and keeps the full
# speech band (the 16 kHz minimum is what analysis needs), at half the bytes of 48 kHz.
CANONICAL_RATE = 24_000
# The upload formats the product accepts (libsndfile's names). RF64/AIFF/CAF etc. would
# decode too, but nobody asked for them and every extra format is attack surface.
ACCEPTED_FORMATS: dict[str, str] = {"WAV": "WAV", "WAVEX": "WAV", "FLAC": "FLAC", "OGG": "OGG", "MP3": "MP3"}
# Codecs per format. WAV is restricted to PCM/float: ADPCM, mu-law and GSM are lossy
# telephone codecs that no reference recording should go through.
ACCEPTED_CODECS: dict[str, frozenset[str]] = {
    "WAV": frozenset({"PCM_U8", "PCM_S8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"}),
    "FLAC": frozenset({"PCM_S8", "PCM_16", "PCM_24"}),
    "OGG": frozenset({"OPUS", "VORBIS"}),
    "MP3": frozenset({"MPEG_LAYER_III"}),
}
ACCEPTED_DESCRIPTION = "WAV (PCM), FLAC, OGG (Opus or Vorbis) or MP3"
# Bits of resolution per codec; None for lossy codecs, which have no bit depth (their
# decoders produce float at full precision, so the bit-depth check does not apply).
CODEC_BIT_DEPTH: dict[str, int | None] = {
    "PCM_U8": 8, "PCM_S8": 8, "PCM_16": 16, "PCM_24": 24, "PCM_32": 32, "FLOAT": 32,
    "DOUBLE": 64, "OPUS": None, "VORBIS": None, "MPEG_LAYER_III": None,
}
LOSSLESS_FORMATS = frozenset({"WAV", "FLAC"})

# Twice the longest engine window: long enough that a 30-40 s recording still gets a
# full report ("too long for xtts_v2"), short enough to bound the work an upload causes.
MAX_DURATION_S = 60.0
# A voice reference is mono or stereo and needs nothing above 48 kHz. These caps are read
# from the header, before decoding, because they bound the decoded size and a small file
# can claim a lot: a silent 60 s 192 kHz FLAC is a few KB on the wire and would decode to
# hundreds of MB. At the caps (60 s x 48 kHz x 2 channels) one decode peaks near 75 MB
# (tests/unit/ingress/test_upload_bounds.py): the int32 frames and their float32 copy (23 MB each),
# the mono mix, its resampling and the canonical WAV.
MAX_CHANNELS = 2
MAX_SAMPLE_RATE = 48_000

# Samples within 0.01 dB of full scale count as clipped (clipped PCM sits exactly at the
# maximum code; lossy decoders overshoot slightly around it).
CLIP_LEVEL = 0.999


# --- decoding --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, eq=False)
class DecodedAudio:
    """An upload decoded for analysis. A dataclass, not a pydantic model: it carries a
    numpy array and never crosses a process or HTTP boundary."""

    samples: np.ndarray  # mono float32 at CANONICAL_RATE
    original_rate: int
    bit_depth: int | None  # None: lossy codec
    channels: int
    format: str  # "WAV", "FLAC", "OGG", "MP3"
    codec: str  # libsndfile subtype: "PCM_16", "OPUS", ...
    # Share of the original samples (all channels) at full scale, in percent. Measured
    # at decode time because mixing to mono and resampling smear clipped runs.
    clipped_percent: float

    @property
    def sample_rate(self) -> int:
        return CANONICAL_RATE

    @property
    def duration_s(self) -> float:
        return len(self.samples) / CANONICAL_RATE


def decode_audio(
    data: bytes, *, max_duration_s: float = MAX_DURATION_S, max_bytes: int = MAX_SAMPLE_BYTES,
    max_sample_rate: int = MAX_SAMPLE_RATE,
) -> DecodedAudio:
    """Decode an upload to mono float32 at CANONICAL_RATE, or raise SampleRejected.
    Format, codec, channels, rate and declared length are checked from the header before
    any audio is read, so what a file claims cannot make it expensive."""
    if not data:
        raise _rejected("empty upload: the body holds no bytes", "empty")
    if len(data) > max_bytes:
        raise _rejected(f"upload is {len(data)} bytes, over the {max_bytes}-byte limit", "too_large")
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        # When a WAV header promises more audio than the file holds, libsndfile quietly
        # reads what is there; that is truncation (or a lying header), so check it here.
        _check_riff_lengths(data)
    try:
        sound = sf.SoundFile(io.BytesIO(data))
    except (sf.LibsndfileError, RuntimeError) as err:
        raise _describe_unreadable(data, err) from None
    with sound:
        fmt, codec = sound.format, sound.subtype
        rate, channels, declared = sound.samplerate, sound.channels, sound.frames
        family = ACCEPTED_FORMATS.get(fmt)
        if family is None:
            raise _rejected(
                f"{fmt} files are not accepted; send {ACCEPTED_DESCRIPTION}", "unsupported_format"
            )
        if codec not in ACCEPTED_CODECS[family]:
            raise _rejected(
                f"{family} with codec {codec} is not accepted; send {ACCEPTED_DESCRIPTION}",
                "unsupported_codec",
            )
        if rate <= 0 or channels <= 0:
            raise _rejected(f"corrupt header: {rate} Hz, {channels} channels", "undecodable")
        if channels > MAX_CHANNELS:
            raise _rejected(f"{channels} channels: a voice sample is mono or stereo", "unsupported_format")
        if rate > max_sample_rate:
            raise _rejected(
                f"recorded at {rate} Hz, over the {max_sample_rate} Hz maximum sample rate "
                "(a voice reference needs no more)",
                "unsupported_format",
            )
        limit = int(max_duration_s * rate)
        if declared > limit and declared < 2**62:  # libsndfile reports unknown lengths as huge
            raise _rejected(
                f"recording is {declared / rate:.1f} s long, over the {max_duration_s:.0f} s maximum",
                "too_long",
            )
        try:
            # Read one frame past the limit so a length the header understated is caught.
            if codec.startswith("PCM_"):
                # Integer PCM is read as int32 (libsndfile left-aligns every width the same
                # way in every container) and scaled here: WAV and FLAC of the same PCM
                # then give identical floats, hence identical canonical bytes and hash.
                # Converted to float32 once and scaled in place (dividing an int32 array
                # goes through float64: three full copies instead of one). Exact: a
                # power-of-two scale after the one rounding to float32.
                frames = sound.read(frames=limit + 1, dtype="int32", always_2d=True).astype(np.float32)
                frames *= np.float32(2.0**-31)
            else:
                frames = sound.read(frames=limit + 1, dtype="float32", always_2d=True)
        except (sf.LibsndfileError, RuntimeError) as err:
            raise _rejected(
                f"{family} audio is corrupt or truncated: {_sf_message(err)}", "truncated"
            ) from None
    got = len(frames)
    if got > limit:
        raise _rejected(
            f"recording is longer than the {max_duration_s:.0f} s maximum", "too_long"
        )
    if got == 0:
        raise _rejected(f"{family} file holds no audio frames", "truncated")
    # Lossless headers give the exact length; lossy ones (Xing/granule positions) within
    # encoder padding, hence the 2 % allowance.
    expected = declared if family in LOSSLESS_FORMATS else int(declared * 0.98)
    if declared < 2**62 and got < expected:
        raise _rejected(
            f"{family} audio is truncated: the header promises {declared / rate:.2f} s, "
            f"the file holds {got / rate:.2f} s",
            "truncated",
        )
    if not np.isfinite(frames).all():
        raise _rejected(f"{family} audio holds NaN or infinite samples", "undecodable")

    bit_depth = CODEC_BIT_DEPTH.get(codec)
    clip_level = CLIP_LEVEL
    if bit_depth is not None and bit_depth < 16:
        clip_level = min(CLIP_LEVEL, (2 ** (bit_depth - 1) - 1) / 2 ** (bit_depth - 1))
    # Both signs compared in place of np.abs(frames), which would be another full copy.
    clipped = float(np.count_nonzero(frames >= clip_level) + np.count_nonzero(frames <= -clip_level))
    clipped = clipped / frames.size * 100.0

    mono = frames.mean(axis=1, dtype=np.float32) if channels > 1 else frames[:, 0]
    return DecodedAudio(
        samples=resample(mono, rate, CANONICAL_RATE),
        original_rate=rate,
        bit_depth=bit_depth,
        channels=channels,
        format=family,
        codec=codec,
        clipped_percent=clipped,
    )


def resample(x: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Band-limited resampling (libsoxr, high quality); float32 in, float32 out."""
    if rate == target:
        return np.ascontiguousarray(x, dtype=np.float32)
    import soxr

    return soxr.resample(np.ascontiguousarray(x, dtype=np.float32), rate, target, quality="HQ").astype(
        np.float32, copy=False
    )


def canonical_wav(audio: DecodedAudio) -> bytes:
    """16-bit mono WAV at CANONICAL_RATE. Quantised here (round, clip) rather than by
    libsndfile so the bytes depend only on the samples: the sha256 of this is the
    identity used for duplicate detection. The scale (2^15) is the inverse of how
    decode_audio reads PCM, so decoding a canonical WAV and re-encoding it gives the same
    bytes: re-uploading a stored sample is recognised as a duplicate."""
    pcm = np.clip(np.round(audio.samples * 32768.0), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    with sf.SoundFile(buf, "w", CANONICAL_RATE, 1, "PCM_16", format="WAV") as out:
        out.buffer_write(pcm.tobytes(), dtype="int16")
    return buf.getvalue()


def _rejected(reason: str, problem: ProblemCode) -> SampleRejected:
    check = CheckResult(name="decodable", passed=False, severity="hard", message=reason)
    return SampleRejected(reason, problem, [check])


def _sf_message(err: Exception) -> str:
    # libsndfile's messages start with "Error opening <_io.BytesIO object at 0x...>: "
    msg = str(err)
    return msg.split(": ", 1)[1] if msg.startswith("Error opening") and ": " in msg else msg


def _check_riff_lengths(data: bytes) -> None:
    if len(data) < 12:
        raise _rejected("WAV header is cut short", "truncated")
    (riff_size,) = struct.unpack_from("<I", data, 4)
    if riff_size in (0, 0xFFFFFFFF):
        raise _rejected(
            "WAV header declares no length (a streamed WAV); save the recording as a complete file",
            "truncated",
        )
    if riff_size + 8 > len(data):
        raise _rejected(
            f"WAV header declares {riff_size + 8} bytes but the upload holds {len(data)}: "
            "the file is truncated or its header is wrong",
            "truncated",
        )
    pos, have_fmt = 12, False
    while pos + 8 <= len(data):
        chunk, size = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if chunk == b"fmt ":
            have_fmt = True
        elif chunk == b"data":
            if not have_fmt:
                raise _rejected("WAV data chunk comes before its fmt chunk", "undecodable")
            available = len(data) - (pos + 8)
            if size > available:
                raise _rejected(
                    f"WAV header declares {size} bytes of audio but only {available} follow: "
                    "the file is truncated or its header is wrong",
                    "truncated",
                )
            return
        pos += 8 + size + (size & 1)
    raise _rejected("WAV file has no data chunk", "truncated")


def _describe_unreadable(data: bytes, err: Exception) -> SampleRejected:
    """libsndfile could not open it: say what it is, if we can tell."""
    head = data[:4096]
    try:
        text = head.decode("utf-8")
        if text and sum(ch.isprintable() or ch in "\r\n\t" for ch in text) / len(text) > 0.95:
            return _rejected("not audio: the upload is a text file", "undecodable")
    except UnicodeDecodeError:
        pass
    # FFmpeg knows more containers: if one of the usual audio ones holds an audio stream,
    # name its codec. Only those demuxers may probe (FFmpeg's `format_whitelist`): left to
    # itself FFmpeg tries every demuxer it has on a stranger's bytes, playlists naming URLs
    # and image sequences included.
    try:
        import av

        with av.open(io.BytesIO(data), "r", options={"format_whitelist": ",".join(PROBED_DEMUXERS)}) as container:
            streams = container.streams.audio
            if streams:
                codec = streams[0].codec_context.name
                return _rejected(
                    f"{codec} audio in a {container.format.name.split(',')[0]} container is not "
                    f"accepted; send {ACCEPTED_DESCRIPTION}",
                    "unsupported_codec",
                )
    except Exception:  # noqa: BLE001 - any FFmpeg failure just means "not audio we know"
        pass
    return _rejected(f"not a decodable audio file ({_sf_message(err)})", "undecodable")


# The containers an upload libsndfile cannot read is looked for in, to say what it holds.
PROBED_DEMUXERS = ("mov", "matroska", "ogg", "mp3", "aac", "flac", "wav", "aiff", "caf", "asf", "amr")
