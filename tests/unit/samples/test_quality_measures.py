"""The checker's measurements on recordings built sample by sample, with the VAD's answer
fixed, so every number the report gives can be worked out here from the recording
specification's rules, written out below (not imported from chorus.samples):

- SNR: 20 ms frames; speech frames are those the VAD's segments cover, noise frames those
  more than 0.1 s from any segment; SNR = 10 log10((speech power - noise power) / noise
  power); with under 0.2 s of noise frames, the quietest 5 % of speech frames stand in.
- loudness consistency: the integrated loudness (ITU-R BS.1770-4, pyloudnorm) of each whole
  second from the start that has at least 0.5 s of speech; the spread is p90 - p10.
- level: 10 log10 of the mean square; silence below -60 dBFS; reported to 0.1 dB.
- the quality score: the weights and ramps of `SPEC_SCORE` below.

The VAD itself is held to silero's own code in test_torch_free_models.py."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest

from chorus.personalities import PersonalitySpec
from chorus.samples.audio import DecodedAudio
from chorus.samples.quality import SampleChecker, cloning_engines
from chorus.samples.report import QualityReport

RATE = 24_000  # the canonical rate the checker measures at
FRAME = 480  # 20 ms
GUARD_FRAMES = 5  # 0.1 s
MIN_NOISE_FRAMES = 10  # 0.2 s
SPEC_MIN_SNR_DB = 20.0
SPEC_SILENCE_DBFS = -60.0
SPEC_MIN_LOUDNESS_LUFS = -30.0
SPEC_MAX_CLIPPED_PERCENT = 0.1
SPEC_MAX_LOUDNESS_SPREAD_LU = 12.0


class FixedVad:
    def __init__(self, segments: list[tuple[float, float]]) -> None:
        self.segments = segments

    def speech_segments(self, audio: np.ndarray) -> list[tuple[float, float]]:
        return list(self.segments)


class FixedModels:
    """The VAD says `segments`; the loudness meter is the real one."""

    def __init__(self, segments: list[tuple[float, float]]) -> None:
        self._vad = FixedVad(segments)
        self._meter = pyloudnorm.Meter(RATE)

    def vad(self) -> FixedVad:
        return self._vad

    def loudness_meter(self) -> pyloudnorm.Meter:
        return self._meter


def tone(freq: float, amplitude: float, seconds: float) -> np.ndarray:
    t = np.arange(int(round(seconds * RATE))) / RATE
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def decoded(x: np.ndarray, *, clipped: float = 0.0, bits: int | None = 16, codec: str = "PCM_16",
            fmt: str = "WAV") -> DecodedAudio:
    return DecodedAudio(samples=x.astype(np.float32), original_rate=RATE, bit_depth=bits, channels=1,
                        format=fmt, codec=codec, clipped_percent=clipped)


def check(x: np.ndarray, segments: list[tuple[float, float]], engines: list[str] | None = None,
          **audio: object) -> QualityReport:
    return SampleChecker(FixedModels(segments)).check_sample(decoded(x, **audio),  # type: ignore[arg-type]
                                                             engines or ["xtts_v2", "styletts2"])


# --- SNR ----------------------------------------------------------------------------------------


def spec_snr(x: np.ndarray, segments: list[tuple[float, float]]) -> float:
    n = len(x) // FRAME
    power = np.mean(np.square(x[: n * FRAME].reshape(n, FRAME).astype(np.float64)), axis=1)
    t = np.arange(n) * FRAME / RATE  # each frame's start
    speech = np.zeros(n, bool)
    near = np.zeros(n, bool)
    for a, b in segments:
        first, end = int(a * 50), int(math.ceil(b * 50))  # 50 frames a second
        speech[first:end] = True
        near[max(0, first - GUARD_FRAMES): end + GUARD_FRAMES] = True
    assert t.size == n
    noise = power[~near]
    p_noise = noise.mean() if noise.size >= MIN_NOISE_FRAMES else np.percentile(power[speech], 5)
    return 10 * math.log10((power[speech].mean() - p_noise) / p_noise)


def test_snr_counts_speech_frames_against_the_pauses_away_from_speech() -> None:
    """Noise at two levels before the speech, a loud word tail right after it: the tail (its
    whole 0.1 s) is within the guard of the speech, so it is neither; the frames before the
    speech and the rest of the pauses are the noise."""
    x = np.concatenate([
        tone(50, 0.004, 0.3),  # quieter noise first
        tone(50, 0.01, 0.7),
        tone(1000, 0.3, 1.0) + tone(50, 0.01, 1.0),  # speech, 1.0-2.0 s
        tone(1000, 0.1, 0.1),  # the word's tail
        tone(50, 0.01, 0.9),
    ])
    segments = [(1.0, 2.0)]
    snr = check(x, segments).check("snr")
    expected = spec_snr(x, segments)
    assert snr.value == round(expected, 2)
    assert 20 < expected < 40 and snr.passed
    assert "noise from 1.8 s of pauses" in snr.message


def test_snr_from_the_quietest_speech_frames_without_enough_pauses() -> None:
    """All speech, its level rising frame by frame: the quietest 5 % of its frames are the noise."""
    frames = [tone(1000, 0.02 + 0.002 * i, 0.02) for i in range(300)]
    x = np.concatenate(frames)
    segments = [(0.0, 6.0)]
    snr = check(x, segments).check("snr")
    assert snr.value == round(spec_snr(x, segments), 2)
    assert "noise from the quietest speech frames" in snr.message


def test_two_tenths_of_a_second_of_pauses_is_enough_to_measure_noise() -> None:
    """Speech from 0.3 s to the end of a 6 s recording: 15 frames of pause, 5 of them within
    the guard, leave exactly 10 frames (0.2 s) of noise."""
    x = np.concatenate([tone(50, 0.01, 0.3), tone(1000, 0.3, 5.7) + tone(50, 0.01, 5.7)])
    segments = [(0.3, 6.0)]
    snr = check(x, segments).check("snr")
    assert "noise from 0.2 s of pauses" in snr.message
    assert snr.value == round(spec_snr(x, segments), 2)


def test_snr_of_exactly_twenty_db_is_not_above_the_bar() -> None:
    """The specification asks for more than 20 dB. Square waves at powers of two make every
    frame power exact: speech (+a, -a, ...) and noise (+b, +b, -b, -b, ...) are orthogonal
    over a frame, so speech frames hold a² + b², pauses b², and a = 10 b is exactly 20 dB."""
    b = 2.0**-5
    a = 10 * b
    n = 6 * RATE
    noise = b * np.tile([1.0, 1.0, -1.0, -1.0], n // 4)
    speech = a * np.tile([1.0, -1.0], n // 2)
    speech[: int(1.2 * RATE)] = 0
    x = (noise + speech).astype(np.float32)
    segments = [(1.2, 6.0)]
    assert spec_snr(x, segments) == SPEC_MIN_SNR_DB  # exactly
    snr = check(x, segments).check("snr")
    assert snr.value == SPEC_MIN_SNR_DB and not snr.passed


def test_no_speech_no_snr() -> None:
    snr = check(tone(50, 0.01, 6.0), []).check("snr")
    assert snr.value is None and not snr.passed and "no speech found" in snr.message


# --- level -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("amplitude", [0.0665, 0.00151])  # -26.5 and -59.4 dBFS RMS
def test_level_is_the_mean_square_in_dbfs(amplitude: float) -> None:
    x = tone(1000, amplitude, 6.0)
    level = 10 * math.log10(float(np.mean(np.square(x.astype(np.float64)))))
    silent = check(x, [(0.0, 6.0)]).check("not_silent")
    assert silent.value == round(level, 1) and silent.threshold == SPEC_SILENCE_DBFS
    assert silent.passed and "silent" not in silent.message.replace("not_silent", "")


def test_digital_silence_is_silent() -> None:
    silent = check(np.zeros(6 * RATE, np.float32), []).check("not_silent")
    assert silent.value == -200.0 and not silent.passed
    assert silent.message.endswith(": the recording is silent")


# --- loudness ----------------------------------------------------------------------------------------


def spec_spread(x: np.ndarray, segments: list[tuple[float, float]]) -> tuple[float, int]:
    meter = pyloudnorm.Meter(RATE)
    levels = []
    for second in range(len(x) // RATE):  # whole seconds only
        voiced = sum(max(0.0, min(b, second + 1) - max(a, second)) for a, b in segments)
        if voiced >= 0.5:
            levels.append(meter.integrated_loudness(x[second * RATE: (second + 1) * RATE].astype(np.float64)))
    return float(np.percentile(levels, 90) - np.percentile(levels, 10)), len(levels)


@pytest.mark.parametrize(("samples", "counted"), [(int(9.7 * RATE), 8), (8 * RATE, 7), (8 * RATE - 1, 6)])
def test_loudness_spread_over_the_whole_seconds_of_speech(samples: int, counted: int) -> None:
    """Each second at its own level. Second 3 holds exactly 0.5 s of speech (counted),
    second 4 0.45 s (not); the loudest are the first and last whole seconds and the part
    second after them, which is never counted, even one sample short of a second."""
    gains = [0.5, 0.1, 0.12, 0.15, 0.9, 0.11, 0.13, 0.6, 0.14, 0.95]
    x = np.concatenate([tone(1000, g, 1.0) for g in gains])[:samples]
    seconds = samples / RATE
    segments = [(0.0, 3.5), (4.0, 4.45), (5.0, seconds)]
    expected, spec_counted = spec_spread(x, segments)
    consistency = check(x, segments).check("loudness_consistency")
    assert spec_counted == counted
    assert consistency.value == round(expected, 2)
    assert f"over {counted} s of speech" in consistency.message


def test_no_second_of_speech_has_no_spread() -> None:
    consistency = check(tone(1000, 0.2, 6.0), [(0.2, 0.6), (2.0, 2.3)]).check("loudness_consistency")
    assert consistency.value == 0.0 and consistency.passed and "over 0 s of speech" in consistency.message


def test_quiet_recordings_are_called_quiet_and_others_not() -> None:
    loud = check(tone(1000, 0.2, 6.0), [(0.0, 6.0)]).check("loudness")
    quiet = check(tone(1000, 0.01, 6.0), [(0.0, 6.0)]).check("loudness")
    assert loud.passed and "quiet" not in loud.message
    assert not quiet.passed and quiet.message.endswith(f", quiet (below {SPEC_MIN_LOUDNESS_LUFS:g} LUFS)")


# --- format and duration --------------------------------------------------------------------------------


def test_bit_depth_is_named_or_the_codec_called_lossy() -> None:
    x = tone(1000, 0.2, 6.0)
    pcm = SampleChecker(FixedModels([(0.0, 6.0)])).check_sample(decoded(x), ["xtts_v2"]).check("bit_depth")
    lossy = SampleChecker(FixedModels([(0.0, 6.0)])).check_sample(
        decoded(x, bits=None, codec="OPUS", fmt="OGG"), ["xtts_v2"]).check("bit_depth")
    assert pcm.message == "bit depth 16 (at least 16)" and pcm.passed
    assert lossy.message == "OPUS is lossy: no bit depth to check" and lossy.passed


def test_duration_optimal_names_the_engines_it_is_optimal_for_or_not() -> None:
    x = tone(1000, 0.2, 6.57)
    both = check(x, [(0.0, 6.57)]).check("duration_optimal")
    assert both.value == 6.57 and not both.passed
    assert both.message == "6.6 s is not optimal for xtts_v2 (15-20 s)"
    alone = check(x, [(0.0, 6.57)], ["styletts2"]).check("duration_optimal")
    assert alone.passed and alone.message == "6.6 s is optimal for styletts2"


def test_cloning_engines_are_the_enabled_ones_that_clone() -> None:
    spec = PersonalitySpec.model_validate({
        "displayName": "x", "activeProvider": "styletts2", "languages": {"primary": "en"},
        "providers": {"piper": {"enabled": True}, "xtts_v2": {"enabled": False}, "styletts2": {"enabled": True}},
    })
    assert cloning_engines(spec) == ["styletts2"]


# --- the score -----------------------------------------------------------------------------------------

# weight, and how a check's measurement maps to 0..1
SPEC_SCORE = {
    "snr": 0.35,  # 10 dB -> 0, 40 dB -> 1
    "clipping": 0.15,  # 0 % -> 1, the 0.1 % bar -> 0
    "speech_ratio": 0.15,  # 0 -> 0, 85 % -> 1
    "loudness_consistency": 0.10,  # 0 LU -> 1, twice the 12 LU bar -> 0
    "loudness": 0.10,  # passed 1, quiet 0.5
    "duration": 0.15,  # fits and optimal 1, fits 0.6, fits nothing 0
}


def spec_score(report: QualityReport) -> float:
    by = {c.name: c for c in report.checks}

    def ramp(v: float) -> float:
        return min(1.0, max(0.0, v))

    snr = by["snr"].value
    fits = by["duration"].passed
    optimal = fits and by["duration_optimal"].passed
    parts = {
        "snr": 0.0 if snr is None else ramp((snr - 10) / 30),
        "clipping": ramp(1 - (by["clipping"].value or 0) / SPEC_MAX_CLIPPED_PERCENT),
        "speech_ratio": ramp((by["speech_ratio"].value or 0) / 0.85),
        "loudness_consistency": ramp(1 - (by["loudness_consistency"].value or 0) / (2 * SPEC_MAX_LOUDNESS_SPREAD_LU)),
        "loudness": 1.0 if by["loudness"].passed else 0.5,
        "duration": 1.0 if optimal else 0.6 if fits else 0.0,
    }
    score = sum(SPEC_SCORE[k] * v for k, v in parts.items()) / sum(SPEC_SCORE.values())
    return round(score if report.accepted else min(score, 0.5), 3)


def test_score_of_an_accepted_recording_weighs_every_measurement() -> None:
    """Every measurement between its ends: 25 dB SNR or so, a few clipped samples, 70 %
    speech, levels that vary, a duration that fits but is not optimal for XTTS."""
    gains = [0.2, 0.3, 0.15, 0.25, 0.2, 0.35, 0.3]
    speech = np.concatenate([tone(1000, g, 1.0) for g in gains])
    segments = [(0.0, 2.6), (3.5, 5.9)]
    speech[int(2.6 * RATE): int(3.5 * RATE)] = 0
    speech[int(5.9 * RATE):] = 0
    x = speech + tone(50, 0.012, 7.0)
    report = check(x, segments, clipped=0.03)
    assert report.accepted
    assert 0 < report.check("loudness_consistency").value < 2 * SPEC_MAX_LOUDNESS_SPREAD_LU
    assert 10 < report.check("snr").value < 40 and 0.6 < report.check("speech_ratio").value < 0.85
    assert report.quality_score == spec_score(report)
    optimal = check(x, segments, ["styletts2"], clipped=0.03)  # 7 s: StyleTTS2's optimum
    assert optimal.check("duration_optimal").passed
    assert optimal.quality_score == spec_score(optimal) > report.quality_score
    quiet = check(x * 0.05, segments, ["styletts2"])  # quiet is a warning: still accepted
    assert quiet.accepted and not quiet.check("loudness").passed
    assert quiet.quality_score == spec_score(quiet)


def test_score_of_a_short_silent_recording_counts_what_it_has() -> None:
    """Nothing measured but a clean, steady, too short silence: rejected, and below 0.5."""
    report = check(np.zeros(int(1.5 * RATE), np.float32), [])
    assert not report.accepted and not report.check("duration").passed
    assert report.quality_score == spec_score(report) == 0.3


# --- the bars themselves, at and around them -------------------------------------------------------------


def test_speech_ratio_and_longest_pause_are_measured_over_the_whole_recording() -> None:
    """9.5 s, speech 0.7-3.0 and 5.0-9.0: 6.3 s of speech; pauses 0.7, 2.0 and 0.5 s (the
    edges count)."""
    report = check(tone(1000, 0.2, 9.5), [(0.7, 3.0), (5.0, 9.0)])
    ratio, pause = report.check("speech_ratio"), report.check("longest_silence")
    assert ratio.value == round(6.3 / 9.5, 3) and ratio.message.startswith("speech covers 66% ")
    assert pause.value == 2.0 and pause.message.startswith("longest pause is 2.0 s")
    trailing = check(tone(1000, 0.2, 9.5), [(0.2, 7.3)]).check("longest_silence")
    assert trailing.value == 2.2 and not trailing.passed  # after the last word


def test_exactly_sixty_percent_speech_and_exactly_two_seconds_of_pause_pass() -> None:
    """The specification's bars are "at least 60 %" and "at most 2 s"."""
    report = check(tone(1000, 0.2, 10.0), [(0.0, 3.0), (5.0, 8.0)])
    assert report.check("speech_ratio").value == 0.6 and report.check("speech_ratio").passed
    assert report.check("longest_silence").value == 2.0 and report.check("longest_silence").passed


def test_sample_rate_of_exactly_sixteen_khz_passes() -> None:
    x = tone(1000, 0.2, 6.0)
    audio = DecodedAudio(samples=x, original_rate=16_000, bit_depth=16, channels=1, format="WAV",
                         codec="PCM_16", clipped_percent=0.0)
    report = SampleChecker(FixedModels([(0.0, 6.0)])).check_sample(audio, ["xtts_v2"])
    assert report.check("sample_rate").passed and not report.check("sample_rate_recommended").passed


def test_clipping_at_exactly_the_bar_fails() -> None:
    """"Clipping: <0.1 %"."""
    assert check(tone(1000, 0.2, 6.0), [(0.0, 6.0)], clipped=0.0999).check("clipping").passed
    assert not check(tone(1000, 0.2, 6.0), [(0.0, 6.0)], clipped=SPEC_MAX_CLIPPED_PERCENT).check("clipping").passed


@pytest.mark.parametrize(("amplitude", "silent"), [(0.00134, True), (0.00142, False)])  # -60.5, -60.0 dBFS
def test_silence_is_below_sixty_dbfs(amplitude: float, silent: bool) -> None:
    x = tone(1000, amplitude, 6.0)
    level = 10 * math.log10(float(np.mean(np.square(x.astype(np.float64)))))
    assert (level < SPEC_SILENCE_DBFS) == silent
    assert check(x, [(0.0, 6.0)]).check("not_silent").passed is not silent


def test_loudness_needs_one_gating_block() -> None:
    """BS.1770 measures 400 ms blocks: a recording of exactly one block has a loudness, a
    shorter one none (and is not an error)."""
    block = int(0.4 * RATE)
    measured = check(tone(1000, 0.2, 0.4)[:block], [(0.0, 0.4)]).check("loudness")
    assert measured.value is not None and measured.passed
    short = check(tone(1000, 0.2, 0.3), [(0.0, 0.3)]).check("loudness")
    assert short.value is None and not short.passed and short.message == "no measurable loudness"


# --- what the report says, to the digit -------------------------------------------------------------------


def test_reported_values_keep_their_precision() -> None:
    """Durations to the millisecond, pauses and the optimal window's duration to 10 ms,
    clipping to 0.0001 %, loudness to 0.1 LU: what a client compares and shows."""
    x = tone(1000, 0.17, 7.1)[:168_003]  # 7.000125 s, -18.5 LUFS
    segments = [(0.0, 3.0), (4.2345, 7.0)]
    report = check(x, segments, ["styletts2"], clipped=0.03456)
    assert report.duration_s == 7.0 and report.check("duration_optimal").value == 7.0
    assert report.check("duration").value == 7.0
    finer = check(tone(1000, 0.2, 7.1)[:168_030], segments, ["styletts2"])  # 7.00125 s
    assert finer.duration_s == 7.001
    assert finer.check("duration").value == finer.check("duration_optimal").value == 7.0
    assert report.check("longest_silence").value == 1.23
    assert report.check("clipping").value == 0.0346
    lufs = pyloudnorm.Meter(RATE).integrated_loudness(x.astype(np.float64))
    assert report.check("loudness").value == round(lufs, 1) != round(lufs)


def test_warnings_are_the_failed_warning_checks_only() -> None:
    """A recording that fails hard checks too (too short, silent) lists as warnings only
    what failed at warning level (quiet)."""
    report = check(np.zeros(int(1.5 * RATE), np.float32), [])
    failed_warnings = [c.message for c in report.checks if not c.passed and c.severity == "warning"]
    assert report.warnings == failed_warnings == ["no measurable loudness"]
    assert not report.accepted


def test_recommended_sample_rates_are_22050_and_up() -> None:
    for rate, recommended in ((48_000, True), (22_050, True), (22_049, False), (16_000, False)):
        audio = DecodedAudio(samples=tone(1000, 0.2, 6.0), original_rate=rate, bit_depth=16, channels=1,
                             format="WAV", codec="PCM_16", clipped_percent=0.0)
        report = SampleChecker(FixedModels([(0.0, 6.0)])).check_sample(audio, ["xtts_v2"])
        assert report.check("sample_rate_recommended").passed is recommended, rate


def test_an_empty_recording_is_measured_as_nothing() -> None:
    report = check(np.zeros(0, np.float32), [])
    assert report.check("speech_ratio").value == 0.0 and report.check("longest_silence").value == 0.0
    assert report.check("snr").value is None and not report.accepted


def test_one_frame_of_speech_still_has_an_snr() -> None:
    """30 ms: one 20 ms frame, all speech, so its own quietest frames are the noise."""
    snr = check(tone(1000, 0.2, 0.03), [(0.0, 0.03)]).check("snr")
    assert snr.value is not None and not snr.passed and "quietest speech frames" in snr.message


def test_a_recording_that_clears_every_bar_comfortably_scores_one() -> None:
    """Six identical seconds of a steady tone (no loudness spread at all), then 0.35 s of
    digital silence (the noise: nothing, so the SNR is capped), optimal for StyleTTS2."""
    x = np.concatenate([tone(1000, 0.2, 6.0), np.zeros(int(0.35 * RATE), np.float32)])
    report = check(x, [(0.0, 6.0)], ["styletts2"])
    assert report.check("loudness_consistency").value == 0.0 and report.check("snr").value > 40
    assert report.quality_score == spec_score(report) == 1.0


def test_a_few_frames_of_pause_are_not_enough_to_measure_noise() -> None:
    """Speech from 0.2 s: 10 frames of pause, 5 of them within the guard of the speech: 0.1 s
    is under the 0.2 s needed, so the quietest speech frames stand in."""
    rising = np.concatenate([tone(1000, 0.02 + 0.002 * i, 0.02) for i in range(290)])
    x = np.concatenate([tone(50, 0.01, 0.2), rising + tone(50, 0.01, 5.8)])
    snr = check(x, [(0.2, 6.0)]).check("snr")
    assert "quietest speech frames" in snr.message and snr.value == round(spec_snr(x, [(0.2, 6.0)]), 2)


def test_snr_is_capped_at_one_hundred_db() -> None:
    """Digital silence between words louder than full scale (a float file can hold that)."""
    x = np.concatenate([np.zeros(RATE, np.float32), 2 * np.tile(np.float32([1, -1]), 5 * RATE // 2)])
    assert check(x, [(1.0, 6.0)]).check("snr").value == 100.0


def test_when_no_engine_is_optimal_the_first_ones_window_is_the_threshold() -> None:
    """9 s fits both engines and is optimal for neither: the threshold is XTTS's window,
    the message names both."""
    optimal = check(tone(1000, 0.2, 9.0), [(0.0, 9.0)]).check("duration_optimal")
    assert not optimal.passed and tuple(optimal.threshold) == (15.0, 20.0)
    assert optimal.message == "9.0 s is not optimal for xtts_v2 (15-20 s), styletts2 (5-8 s)"


def test_score_of_a_noisy_recording_counts_no_snr_below_ten_db() -> None:
    """SNR around 3 dB (rejected): the SNR's share is 0, not less, so the other shares still
    put it at the 0.5 cap."""
    rng = np.random.default_rng(3)
    x = tone(1000, 0.2, 7.0) + (0.1 * rng.standard_normal(7 * RATE)).astype(np.float32)
    x[int(6.6 * RATE):] = (0.1 * rng.standard_normal(x.size - int(6.6 * RATE))).astype(np.float32)
    report = check(x, [(0.0, 6.6)], ["styletts2"])
    assert report.check("snr").value < 10 and not report.accepted
    assert report.quality_score == spec_score(report) == 0.5


def test_score_of_a_rejected_recording_has_no_negative_shares() -> None:
    """2 s of noise with half a second of faint speech: no SNR to speak of (its share is 0,
    not below), too short, and under the 0.5 cap, so every share shows in the score."""
    rng = np.random.default_rng(5)
    x = (0.1 * rng.standard_normal(2 * RATE)).astype(np.float32)
    x[int(0.5 * RATE): RATE] += tone(1000, 0.001, 0.5)
    report = check(x, [(0.5, 1.0)])
    assert report.check("snr").value < 0 and not report.check("duration").passed
    assert 0 < report.quality_score == spec_score(report) < 0.5
