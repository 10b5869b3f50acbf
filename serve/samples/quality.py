"""Quality checks for a voice reference recording (a "sample" a cloning engine clones from),
and their thresholds: the recording specification.

`SampleChecker.check_sample(audio, engines)` measures a decoded recording
(`chorus.samples.audio.decode_audio`) and returns a `QualityReport`: every check with its
measured value and threshold, a 0..1 score, and whether a hard check failed.
`QualityReport.raise_if_rejected()` turns a hard failure into `SampleRejected` carrying the
whole table (the HTTP layer answers 422).

The checker runs the VAD and the loudness meter of a `SampleModels`; its methods block (CPU
work): call them from a worker thread in async code.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from chorus.samples.audio import CANONICAL_RATE, DecodedAudio, resample
from chorus.samples.models import SampleModels
from chorus.samples.report import CheckResult, QualityReport
from chorus.samples.vad import RATE as VAD_RATE
from deployments.settings import cloning_windows

if TYPE_CHECKING:
    from chorus.personalities import PersonalitySpec

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
    """Measures recordings. Thread-safe; the models load on first use."""

    def __init__(self, models: SampleModels) -> None:
        self._models = models

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

    def _speech(self, x: np.ndarray) -> _Speech:
        duration = len(x) / CANONICAL_RATE
        segments = self._models.vad().speech_segments(resample(x, CANONICAL_RATE, VAD_RATE))
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
            value = float(self._models.loudness_meter().integrated_loudness(x.astype(np.float64)))
        return value if math.isfinite(value) else None


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
