"""Quality checks for a voice reference recording (a "sample" a cloning engine clones from).

Three steps, each usable alone:

1. `decode_audio(data)` turns an upload (WAV, FLAC, OGG/Opus or Vorbis, MP3) into mono
   float32 at `CANONICAL_RATE`, or raises `SampleRejected` naming what is wrong with the
   bytes (empty, not audio, truncated, lying header, unsupported codec, too long).
2. `SampleChecker.check_sample(audio, engines)` measures the recording and returns a
   `QualityReport`: every check with its measured value and threshold, a 0..1 score,
   and whether a hard check failed. `QualityReport.raise_if_rejected()` turns a hard
   failure into `SampleRejected` carrying the whole table (the HTTP layer answers 422).
3. `canonical_wav(audio)` is what gets stored: 16-bit mono WAV at `CANONICAL_RATE`.
   Its bytes are deterministic, so their sha256 identifies the audio across formats.

`SampleChecker` holds the models (silero VAD through ONNX Runtime, resemblyzer's speaker
encoder through torch on CPU); build one per process and reuse it. Its methods block
(CPU work): call them from a worker thread in async code. Heavy libraries are imported
when the checker is built, so importing this module for its types stays cheap.
"""

from __future__ import annotations

import io
import math
import struct
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Union

import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field

from chorus.constants import MAX_SAMPLE_BYTES
from deployments.settings import cloning_windows

if TYPE_CHECKING:
    from chorus.personalities import PersonalitySpec

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
# A 60 s 96 kHz 24-bit stereo WAV is 35 MB; anything bigger is not a sensible reference.
# A voice reference is mono or stereo; these also bound the decoded size (a small lossy
# file can expand a lot): 60 s x 192 kHz x 2 channels of float32 is 92 MB.
MAX_CHANNELS = 2
MAX_SAMPLE_RATE = 192_000

# --- thresholds (the recording specification) --------------------------------------------

# Below 16 kHz the upper speech band (sibilants, 4-8 kHz) is missing and clones sound muffled.
MIN_SAMPLE_RATE = 16_000
# 22.05 kHz and up is what the engines were trained on; 16 kHz works but loses detail.
RECOMMENDED_SAMPLE_RATE = 22_050
# 8-bit PCM has ~48 dB of dynamic range: its quantisation noise alone breaks the SNR bar.
MIN_BIT_DEPTH = 16
# Noise at 20 dB below the voice is audible in clones; both engines copy it faithfully.
MIN_SNR_DB = 20.0
# 0.1 % of samples at full scale is a few hundred per second of clipped waveform: audible
# distortion that the engines reproduce. Occasional single full-scale peaks stay well below.
MAX_CLIPPED_PERCENT = 0.1
# Samples within 0.01 dB of full scale count as clipped (clipped PCM sits exactly at the
# maximum code; lossy decoders overshoot slightly around it).
CLIP_LEVEL = 0.999
# Quieter than -30 LUFS (broadcast speech is -23..-16) hints at a far microphone or low gain:
# usable, but worth a warning.
MIN_LOUDNESS_LUFS = -30.0
# Per-second loudness of read speech varies by ~6 LU (p90-p10; measured on Piper speech);
# 12 LU means the level itself changed (speaker moved, gain ridden, AGC pumping).
MAX_LOUDNESS_SPREAD_LU = 12.0
# Below -60 dBFS RMS there is nothing but noise floor: silence, not a recording.
MIN_RMS_DBFS = -60.0
# Read speech is ~70-90 % voiced by VAD; under 60 % the engines condition on pauses.
MIN_SPEECH_RATIO = 0.6
# Pauses longer than 2 s (anywhere, edges included: engines use the whole recording) make
# clones hesitant.
MAX_SILENCE_S = 2.0
# Resemblyzer cosine similarity: recordings of one speaker score ~0.85-0.97, different
# speakers ~0.5-0.7 (measured: Piper voice vs. itself 0.96, vs. pitch/formant-shifted 0.5-0.67).
SAME_SPEAKER_MIN_SIMILARITY = 0.75

# Analysis frame for SNR: 20 ms is short enough to find the pauses between words.
_FRAME_S = 0.02
# Frames this close to detected speech are neither speech nor noise: VAD edges are soft,
# and word tails in "noise" frames would lower the SNR estimate.
_GUARD_S = 0.1
# Below 0.2 s of clean non-speech frames the noise power estimate is not trusted.
_MIN_NOISE_S = 0.2
# -100 dBFS: quieter than 16-bit quantisation noise, so digital silence gives a finite SNR.
_NOISE_FLOOR_POWER = 1e-10
_SNR_CAP_DB = 100.0
_VAD_RATE = 16_000

Severity = Literal["hard", "warning"]
AudioSource = Union["DecodedAudio", Callable[[], "DecodedAudio"]]
ProblemCode = Literal[
    "empty", "too_large", "undecodable", "unsupported_format", "unsupported_codec",
    "truncated", "too_long", "quality",
]


class CheckResult(BaseModel):
    """One line of the check table: what was measured against what limit."""

    model_config = ConfigDict(frozen=True)

    name: str
    passed: bool
    severity: Severity
    value: float | None = None
    threshold: float | tuple[float, float] | None = None
    unit: str = ""
    message: str


class QualityReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    checks: list[CheckResult]
    quality_score: float = Field(ge=0.0, le=1.0)
    accepted: bool
    warnings: list[str]
    duration_s: float
    sample_rate: int = Field(description="rate of the upload, before resampling")
    channels: int
    bit_depth: int | None
    format: str
    codec: str
    fit_for: list[str] = Field(description="cloning engines whose duration window the sample meets")

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def hard_failures(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == "hard" and not c.passed]

    def with_checks(self, extra: Iterable[CheckResult]) -> QualityReport:
        """The report with more checks appended (e.g. speaker consistency, which needs
        the personality's other samples)."""
        checks = [*self.checks, *extra]
        return self.model_copy(
            update={
                "checks": checks,
                "accepted": not any(c.severity == "hard" and not c.passed for c in checks),
                "warnings": [c.message for c in checks if not c.passed and c.severity == "warning"],
            }
        )

    def raise_if_rejected(self) -> None:
        failures = self.hard_failures
        if failures:
            raise SampleRejected(
                "sample failed " + "; ".join(f.message for f in failures), "quality", self.checks
            )


class SampleRejected(ValueError):
    """The upload cannot be a reference sample. `reason` is for people, `problem` a
    stable code for clients, `checks` the full table when quality checks ran (or the
    failed `decodable` check when the bytes are the problem). Pickles via `args`."""

    status_code: ClassVar[int] = 422

    def __init__(
        self, reason: str, problem: ProblemCode = "quality", checks: list[CheckResult] | None = None
    ) -> None:
        checks = list(checks or [])
        super().__init__(reason, problem, checks)
        self.reason = reason
        self.problem: ProblemCode = problem
        self.checks = checks

    def __str__(self) -> str:
        return self.reason


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
    data: bytes, *, max_duration_s: float = MAX_DURATION_S, max_bytes: int = MAX_SAMPLE_BYTES
) -> DecodedAudio:
    """Decode an upload to mono float32 at CANONICAL_RATE, or raise SampleRejected."""
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
        if channels > MAX_CHANNELS or rate > MAX_SAMPLE_RATE:
            raise _rejected(
                f"{channels} channels at {rate} Hz: a voice sample is mono or stereo, at most "
                f"{MAX_SAMPLE_RATE} Hz",
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
                ints = sound.read(frames=limit + 1, dtype="int32", always_2d=True)
                frames = (ints / np.float32(2**31)).astype(np.float32)
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
    clipped = float(np.count_nonzero(np.abs(frames) >= clip_level)) / frames.size * 100.0

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
    # FFmpeg knows more containers: if it finds an audio stream, name its codec.
    try:
        import av

        with av.open(io.BytesIO(data), "r") as container:
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


# --- engines ---------------------------------------------------------------------------------


def cloning_engines(spec: PersonalitySpec) -> list[str]:
    """The enabled engines of a personality that clone from samples."""
    out = []
    for engine in cloning_windows():
        cfg = spec.providers.get(engine)  # type: ignore[arg-type]
        if cfg is not None and cfg.enabled:
            out.append(engine)
    return out


def duration_fit(duration_s: float, engines: Sequence[str]) -> list[str]:
    """The cloning engines (of `engines`, or all when none is given) whose window fits."""
    windows = cloning_windows()
    return [e for e in _cloning(engines) if duration_s in windows[e].usable]  # type: ignore[index]


def _cloning(engines: Sequence[str]) -> list[str]:
    # A personality without a cloning engine may still collect samples for later: judge
    # them against every cloning engine then.
    windows = cloning_windows()
    chosen = [e for e in windows if e in engines]
    return chosen or list(windows)


# --- the checker ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Speech:
    segments: list[tuple[float, float]]  # seconds
    ratio: float
    longest_silence_s: float


class SampleChecker:
    """Measures recordings. Holds the VAD (loaded now) and the speaker encoder (loaded on
    first use: it costs ~1 s and is only needed once a personality has two samples).
    Thread-safe; one instance per process is enough."""

    def __init__(self, *, embedding_cache_size: int = 256) -> None:
        import pyloudnorm
        import torch
        from silero_vad import load_silero_vad

        # One upload's analysis is small: extra intra-op threads only contend with the
        # serving threads (and, measured here on 2 cores, made resemblyzer 10-30x slower).
        # silero_vad sets the same on import; this states it.
        torch.set_num_threads(1)
        # silero's "sequence" ONNX export: the stock model, one ONNX Runtime call per
        # ~16 s block instead of a Python loop per 32 ms frame, and no torch at inference.
        self._vad = load_silero_vad(sequence=True)
        self._meter = pyloudnorm.Meter(CANONICAL_RATE)  # ITU-R BS.1770-4, K-weighted
        self._encoder: Any = None
        self._encoder_lock = threading.Lock()
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = embedding_cache_size
        self._cache_lock = threading.Lock()

    # -- quality ------------------------------------------------------------------------------

    def check_sample(self, audio: DecodedAudio, engines: Sequence[str] = ()) -> QualityReport:
        """Run every check. `engines` are the personality's enabled engines (non-cloning
        ones are ignored); with no cloning engine, all cloning engines are judged."""
        x = audio.samples
        duration = audio.duration_s
        speech = self._speech(x)
        fit = duration_fit(duration, engines)

        checks = [
            CheckResult(
                name="decodable", passed=True, severity="hard",
                message=f"{audio.format} ({audio.codec}), {audio.channels} channel(s), "
                f"{audio.original_rate} Hz, {duration:.2f} s",
            ),
            *self._format_checks(audio),
            self._silence_check(x),
            *self._duration_checks(duration, engines, fit),
            self._snr_check(x, speech),
            self._clipping_check(audio),
            *self._loudness_checks(x, speech),
            CheckResult(
                name="speech_ratio", passed=speech.ratio >= MIN_SPEECH_RATIO, severity="hard",
                value=round(speech.ratio, 3), threshold=MIN_SPEECH_RATIO, unit="ratio",
                message=f"speech covers {speech.ratio:.0%} of the recording "
                f"(needs at least {MIN_SPEECH_RATIO:.0%})",
            ),
            CheckResult(
                name="longest_silence", passed=speech.longest_silence_s <= MAX_SILENCE_S,
                severity="hard", value=round(speech.longest_silence_s, 2), threshold=MAX_SILENCE_S,
                unit="s",
                message=f"longest pause is {speech.longest_silence_s:.1f} s "
                f"(at most {MAX_SILENCE_S:g} s)",
            ),
        ]
        accepted = not any(c.severity == "hard" and not c.passed for c in checks)
        return QualityReport(
            checks=checks,
            quality_score=_score(checks, accepted),
            accepted=accepted,
            warnings=[c.message for c in checks if not c.passed and c.severity == "warning"],
            duration_s=round(duration, 3),
            sample_rate=audio.original_rate,
            channels=audio.channels,
            bit_depth=audio.bit_depth,
            format=audio.format,
            codec=audio.codec,
            fit_for=fit,
        )

    def speech_segments(self, audio: DecodedAudio) -> list[tuple[float, float]]:
        """Where the VAD hears speech, in seconds."""
        return self._speech(audio.samples).segments

    def _speech(self, x: np.ndarray) -> _Speech:
        from silero_vad.utils_vad import get_speech_timestamps_from_probs

        duration = len(x) / CANONICAL_RATE
        x16 = resample(x, CANONICAL_RATE, _VAD_RATE)
        probs = self._vad.audio_forward(x16, sampling_rate=_VAD_RATE)
        stamps = get_speech_timestamps_from_probs(
            probs, sampling_rate=_VAD_RATE, audio_length_samples=len(x16)
        )
        segments = [(s["start"] / _VAD_RATE, s["end"] / _VAD_RATE) for s in stamps]
        voiced = sum(b - a for a, b in segments)
        edges = [0.0, *(t for seg in segments for t in seg), duration]
        gaps = [max(0.0, edges[i + 1] - edges[i]) for i in range(0, len(edges), 2)]
        return _Speech(
            segments=segments,
            ratio=voiced / duration if duration else 0.0,
            longest_silence_s=max(gaps),
        )

    def _format_checks(self, audio: DecodedAudio) -> list[CheckResult]:
        rate = audio.original_rate
        bits = audio.bit_depth
        return [
            CheckResult(
                name="sample_rate", passed=rate >= MIN_SAMPLE_RATE, severity="hard",
                value=rate, threshold=MIN_SAMPLE_RATE, unit="Hz",
                message=f"sample rate {rate} Hz (at least {MIN_SAMPLE_RATE} Hz)",
            ),
            CheckResult(
                name="sample_rate_recommended", passed=rate >= RECOMMENDED_SAMPLE_RATE,
                severity="warning", value=rate, threshold=RECOMMENDED_SAMPLE_RATE, unit="Hz",
                message=f"sample rate {rate} Hz; 22050 or 48000 Hz recommended",
            ),
            CheckResult(
                name="bit_depth", passed=bits is None or bits >= MIN_BIT_DEPTH, severity="hard",
                value=bits, threshold=MIN_BIT_DEPTH, unit="bit",
                message=(
                    f"{audio.codec} is lossy: no bit depth to check"
                    if bits is None
                    else f"bit depth {bits} (at least {MIN_BIT_DEPTH})"
                ),
            ),
        ]

    def _silence_check(self, x: np.ndarray) -> CheckResult:
        rms_db = _db(float(np.mean(np.square(x, dtype=np.float64))))
        return CheckResult(
            name="not_silent", passed=rms_db > MIN_RMS_DBFS, severity="hard",
            value=round(max(rms_db, -200.0), 1), threshold=MIN_RMS_DBFS, unit="dBFS",
            message=f"level {rms_db:.1f} dBFS RMS"
            + ("" if rms_db > MIN_RMS_DBFS else ": the recording is silent"),
        )

    def _duration_checks(
        self, duration: float, engines: Sequence[str], fit: list[str]
    ) -> list[CheckResult]:
        judged = _cloning(engines)
        cloning = cloning_windows()
        windows = {e: cloning[e].usable for e in judged}  # type: ignore[index]
        union = (min(w.min_s for w in windows.values()), max(w.max_s for w in windows.values()))
        wanted = ", ".join(f"{e} {w}" for e, w in windows.items())
        checks = [
            CheckResult(
                name="duration", passed=bool(fit), severity="hard", value=round(duration, 2),
                threshold=union, unit="s",
                message=(
                    f"{duration:.1f} s fits {', '.join(fit)}"
                    if fit
                    else f"{duration:.1f} s fits no cloning engine ({wanted})"
                ),
            )
        ]
        if fit and len(fit) < len(judged):
            missed = [e for e in judged if e not in fit]
            checks.append(
                CheckResult(
                    name="engine_fit", passed=False, severity="warning", value=len(fit),
                    threshold=len(judged), unit="engines",
                    message=f"{duration:.1f} s fits only {', '.join(fit)}; "
                    + ", ".join(f"{e} needs {windows[e]}" for e in missed),
                )
            )
        if fit:
            optimal = {e: cloning[e].optimal for e in fit}  # type: ignore[index]
            off = [e for e in fit if duration not in optimal[e]]
            checks.append(
                CheckResult(
                    name="duration_optimal", passed=not off, severity="warning",
                    value=round(duration, 2), threshold=(optimal[off[0]] if off else optimal[fit[0]]).bounds,
                    unit="s",
                    message=(
                        f"{duration:.1f} s is optimal for {', '.join(fit)}"
                        if not off
                        else f"{duration:.1f} s is not optimal for "
                        + ", ".join(f"{e} ({optimal[e]})" for e in off)
                    ),
                )
            )
        return checks

    def _snr_check(self, x: np.ndarray, speech: _Speech) -> CheckResult:
        snr, how = _estimate_snr(x, speech.segments)
        if snr is None:
            return CheckResult(
                name="snr", passed=False, severity="hard", threshold=MIN_SNR_DB, unit="dB",
                message="no speech found, so no signal-to-noise ratio",
            )
        return CheckResult(
            name="snr", passed=snr > MIN_SNR_DB, severity="hard", value=round(snr, 2),
            threshold=MIN_SNR_DB, unit="dB",
            message=f"signal-to-noise ratio {snr:.1f} dB (above {MIN_SNR_DB:g} dB; noise from {how})",
        )

    def _clipping_check(self, audio: DecodedAudio) -> CheckResult:
        pct = audio.clipped_percent
        return CheckResult(
            name="clipping", passed=pct < MAX_CLIPPED_PERCENT, severity="hard",
            value=round(pct, 4), threshold=MAX_CLIPPED_PERCENT, unit="%",
            message=f"{pct:.3f} % of samples at full scale (below {MAX_CLIPPED_PERCENT:g} %)",
        )

    def _loudness_checks(self, x: np.ndarray, speech: _Speech) -> list[CheckResult]:
        integrated = self._lufs(x)
        checks = [
            CheckResult(
                name="loudness", passed=integrated is not None and integrated >= MIN_LOUDNESS_LUFS,
                severity="warning",
                value=None if integrated is None else round(integrated, 1),
                threshold=MIN_LOUDNESS_LUFS, unit="LUFS",
                message=(
                    "no measurable loudness"
                    if integrated is None
                    else f"integrated loudness {integrated:.1f} LUFS"
                    + ("" if integrated >= MIN_LOUDNESS_LUFS else f", quiet (below {MIN_LOUDNESS_LUFS:g} LUFS)")
                ),
            )
        ]
        # Loudness of each whole second that is mostly speech: pauses would read as
        # "inconsistent" otherwise. Spread = p90 - p10, robust to one odd second.
        per_second = []
        for start in range(0, len(x) - CANONICAL_RATE + 1, CANONICAL_RATE):
            t0, t1 = start / CANONICAL_RATE, start / CANONICAL_RATE + 1.0
            voiced = sum(max(0.0, min(b, t1) - max(a, t0)) for a, b in speech.segments)
            if voiced >= 0.5:
                lufs = self._lufs(x[start : start + CANONICAL_RATE])
                if lufs is not None:
                    per_second.append(lufs)
        spread = float(np.percentile(per_second, 90) - np.percentile(per_second, 10)) if per_second else 0.0
        checks.append(
            CheckResult(
                name="loudness_consistency", passed=spread <= MAX_LOUDNESS_SPREAD_LU, severity="hard",
                value=round(spread, 2), threshold=MAX_LOUDNESS_SPREAD_LU, unit="LU",
                message=f"per-second loudness spread {spread:.1f} LU over {len(per_second)} s of "
                f"speech (at most {MAX_LOUDNESS_SPREAD_LU:g} LU)",
            )
        )
        return checks

    def _lufs(self, x: np.ndarray) -> float | None:
        if len(x) < 0.4 * CANONICAL_RATE:  # BS.1770 gating blocks are 400 ms
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(self._meter.integrated_loudness(x.astype(np.float64)))
        return value if math.isfinite(value) else None

    # -- speakers -------------------------------------------------------------------------

    def embed(self, audio: AudioSource, key: str | None = None) -> np.ndarray:
        """Resemblyzer's speaker embedding (256 floats, L2-normalised). `key` (e.g. the
        sample's sha256) caches it: stored samples are compared with every new upload.
        `audio` may be a zero-argument loader, called only when the cache misses."""
        if key is not None:
            with self._cache_lock:
                hit = self._embeddings.get(key)
                if hit is not None:
                    self._embeddings.move_to_end(key)
                    return hit
        if callable(audio):
            audio = audio()
        encoder = self._speaker_encoder()
        from resemblyzer import preprocess_wav

        # preprocess_wav: resemblyzer's own volume normalisation and silence trimming.
        wav = preprocess_wav(resample(audio.samples, CANONICAL_RATE, _VAD_RATE))
        if len(wav) == 0:  # all silence: embed the raw audio rather than nothing
            wav = resample(audio.samples, CANONICAL_RATE, _VAD_RATE)
        embedding = np.asarray(encoder.embed_utterance(wav), dtype=np.float32)
        if key is not None:
            with self._cache_lock:
                self._embeddings[key] = embedding
                while len(self._embeddings) > self._cache_size:
                    self._embeddings.popitem(last=False)
        return embedding

    def speaker_similarity(self, a: DecodedAudio, b: DecodedAudio) -> float:
        """Cosine similarity of the two recordings' speaker embeddings (-1..1; the
        same speaker scores above SAME_SPEAKER_MIN_SIMILARITY)."""
        return _cosine(self.embed(a), self.embed(b))

    def speaker_check(
        self,
        audio: DecodedAudio,
        others: Mapping[str, AudioSource],
        *,
        key: str | None = None,
        other_keys: Mapping[str, str] | None = None,
    ) -> CheckResult:
        """Warning check: does `audio` sound like the same speaker as every sample in
        `others` (id -> audio, or a loader of it)? Names the samples that differ.
        `key`/`other_keys` are cache keys (sha256) for the embeddings."""
        if not others:
            return CheckResult(
                name="speaker_consistency", passed=True, severity="warning", unit="cosine",
                threshold=SAME_SPEAKER_MIN_SIMILARITY, message="first sample of this personality",
            )
        mine = self.embed(audio, key)
        keys = other_keys or {}
        scores = {
            sid: _cosine(mine, self.embed(other, keys.get(sid))) for sid, other in others.items()
        }
        worst_id = min(scores, key=lambda s: scores[s])
        worst = scores[worst_id]
        differ = sorted((s for s, v in scores.items() if v < SAME_SPEAKER_MIN_SIMILARITY), key=lambda s: scores[s])
        return CheckResult(
            name="speaker_consistency", passed=not differ, severity="warning",
            value=round(worst, 3), threshold=SAME_SPEAKER_MIN_SIMILARITY, unit="cosine",
            message=(
                f"same speaker as the other samples (lowest similarity {worst:.2f}, {worst_id})"
                if not differ
                else "sounds like a different speaker than sample(s) "
                + ", ".join(f"{s} (similarity {scores[s]:.2f})" for s in differ)
            ),
        )

    def _speaker_encoder(self) -> Any:
        with self._encoder_lock:
            if self._encoder is None:
                with warnings.catch_warnings():
                    # resemblyzer -> webrtcvad imports pkg_resources, deprecated (hence the
                    # setuptools<81 pin); the warning says nothing about our use.
                    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
                    from resemblyzer import VoiceEncoder

                # The encoder's weights ship inside the resemblyzer wheel: nothing downloads.
                self._encoder = VoiceEncoder("cpu", verbose=False)
            return self._encoder


# --- measurements ------------------------------------------------------------------------------


def _estimate_snr(x: np.ndarray, segments: list[tuple[float, float]]) -> tuple[float | None, str]:
    """SNR from frame powers: mean power of speech frames (speech + noise) against mean
    power of non-speech frames (noise), both as the VAD finds them. Without enough
    pauses, the quietest 5 % of speech frames stand in for the noise (an underestimate
    of the SNR, so on the safe side)."""
    hop = int(_FRAME_S * CANONICAL_RATE)
    n = len(x) // hop
    if n == 0 or not segments:
        return None, ""
    power = np.mean(np.square(x[: n * hop].reshape(n, hop), dtype=np.float64), axis=1)
    speech = np.zeros(n, dtype=bool)
    near = np.zeros(n, dtype=bool)
    guard = int(round(_GUARD_S / _FRAME_S))
    for a, b in segments:
        i, j = int(a / _FRAME_S), int(math.ceil(b / _FRAME_S))
        speech[i:j] = True
        near[max(0, i - guard) : j + guard] = True
    if not speech.any():
        return None, ""
    p_speech = float(power[speech].mean())
    noise = power[~near]
    if len(noise) * _FRAME_S >= _MIN_NOISE_S:
        p_noise, how = float(noise.mean()), f"{len(noise) * _FRAME_S:.1f} s of pauses"
    else:
        p_noise, how = float(np.percentile(power[speech], 5)), "the quietest speech frames"
    p_noise = max(p_noise, _NOISE_FLOOR_POWER)
    snr = 10.0 * math.log10(max(p_speech - p_noise, _NOISE_FLOOR_POWER) / p_noise)
    return min(snr, _SNR_CAP_DB), how


def _db(power: float) -> float:
    return 10.0 * math.log10(power) if power > 0 else -math.inf


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else 0.0


def _clamp01(v: float) -> float:
    return min(1.0, max(0.0, v))


def _score(checks: list[CheckResult], accepted: bool) -> float:
    """0..1: a weighted mean of how comfortably each measured check clears its bar.
    A rejected sample is capped at 0.5 so any accepted sample outranks it."""
    by = {c.name: c for c in checks}

    def val(name: str) -> float | None:
        c = by.get(name)
        return None if c is None else c.value

    snr = val("snr")
    parts: list[tuple[float, float]] = [
        # 10 dB -> 0, 40 dB (studio) -> 1
        (0.35, 0.0 if snr is None else _clamp01((snr - 10.0) / 30.0)),
        (0.15, _clamp01(1.0 - (val("clipping") or 0.0) / MAX_CLIPPED_PERCENT)),
        (0.15, _clamp01((val("speech_ratio") or 0.0) / 0.85)),
        (0.10, _clamp01(1.0 - (val("loudness_consistency") or 0.0) / (2 * MAX_LOUDNESS_SPREAD_LU))),
        (0.10, 1.0 if by["loudness"].passed else 0.5),
        (0.15, 1.0 if by.get("duration_optimal", by["duration"]).passed and by["duration"].passed
         else 0.6 if by["duration"].passed else 0.0),
    ]
    score = sum(w * s for w, s in parts) / sum(w for w, _ in parts)
    if not accepted:
        score = min(score, 0.5)
    return round(score, 3)
