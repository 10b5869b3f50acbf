"""Quality checks on real recordings: Piper speech and degraded copies with known properties.

Every assertion compares a measured value with what was done to the recording."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import soundfile as sf

from chorus.samples.audio import CANONICAL_RATE, canonical_wav, decode_audio
from chorus.samples.quality import SampleChecker
from chorus.samples.report import QualityReport, SampleRejected, SpeakerMismatch
from chorus.samples.speaker import SpeakerComparer
from tests.support import recordings as rec
from tests.support.recordings import PIPER_RATE, PiperRecordings

BOTH = ["xtts_v2", "styletts2", "piper"]  # piper: not a cloning engine, ignored

# The recording specification's numbers, written out rather than imported from
# chorus.samples, so that moving a threshold in the product fails these tests.
SPEC_MIN_SNR_DB = 20.0  # "SNR (Signal-to-Noise Ratio): >20 dB"
SPEC_FULL_SCALE = 0.999  # a sample within 0.01 dB of full scale counts as clipped
SPEC_MAX_CLIPPED_PERCENT = 0.1
SPEC_MIN_LOUDNESS_LUFS = -30.0
SPEC_MAX_LOUDNESS_SPREAD_LU = 12.0
SPEC_MIN_SPEECH_RATIO = 0.6
SPEC_MAX_SILENCE_S = 2.0
SPEC_SAME_SPEAKER_MIN_SIMILARITY = 0.75


@pytest.fixture(scope="module")
def voice() -> PiperRecordings:
    return rec.recordings()


@pytest.fixture(scope="module")
def checker() -> SampleChecker:
    return rec.checker()


@pytest.fixture(scope="module")
def speakers() -> SpeakerComparer:
    return rec.speakers()


def report_for(checker: SampleChecker, data: bytes, engines: list[str] = BOTH) -> QualityReport:
    return checker.check_sample(decode_audio(data), engines)


def hard_failures(report: QualityReport) -> set[str]:
    return {c.name for c in report.hard_failures}


# --- clean speech -------------------------------------------------------------------------------


def test_clean_speech_passes_every_hard_check(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.clean()
    report = report_for(checker, rec.encode(speech.samples, PIPER_RATE))

    assert report.accepted, report.hard_failures
    assert hard_failures(report) == set()
    assert report.sample_rate == PIPER_RATE and report.channels == 1 and report.bit_depth == 16
    assert report.duration_s == pytest.approx(speech.duration_s, abs=0.01)
    assert report.fit_for == ["xtts_v2", "styletts2"]
    # Digital silence between sentences: noise is only the 16-bit quantisation.
    assert report.check("snr").value > 60
    assert report.check("clipping").value == 0
    assert report.check("speech_ratio").value > 0.75
    # Pauses are 0.4 s; the VAD pads speech, so it measures a little less.
    assert 0.2 < report.check("longest_silence").value <= 0.45
    assert report.check("loudness_consistency").value < SPEC_MAX_LOUDNESS_SPREAD_LU
    # 7.6 s: inside StyleTTS2's optimal 5-8 s, outside XTTS v2's 15-20 s -> a warning.
    optimal = report.check("duration_optimal")
    assert not optimal.passed and optimal.severity == "warning" and "xtts_v2" in optimal.message
    assert report.warnings == [optimal.message]
    assert report.quality_score > 0.85


def test_integrated_loudness_is_bs1770(voice: PiperRecordings, checker: SampleChecker) -> None:
    """The loudness check reports pyloudnorm's BS.1770 integrated loudness of the
    canonical audio; a 20 dB quieter copy measures 20 LU lower and gets a warning."""
    import pyloudnorm

    speech = voice.clean()
    loud = report_for(checker, rec.encode(speech.samples, PIPER_RATE))
    quiet = report_for(checker, rec.encode(speech.samples * 0.1, PIPER_RATE))

    reference = pyloudnorm.Meter(PIPER_RATE).integrated_loudness(speech.samples.astype(np.float64))
    assert loud.check("loudness").value == pytest.approx(reference, abs=0.3)
    assert loud.check("loudness").passed
    assert quiet.check("loudness").value == pytest.approx(reference - 20, abs=0.3)
    assert quiet.check("loudness").threshold == SPEC_MIN_LOUDNESS_LUFS
    assert quiet.check("loudness").value < SPEC_MIN_LOUDNESS_LUFS
    assert not quiet.check("loudness").passed and quiet.check("loudness").severity == "warning"
    assert quiet.accepted, quiet.hard_failures  # quiet is a warning, not a rejection
    assert any("LUFS" in w for w in quiet.warnings)
    assert quiet.quality_score < loud.quality_score


# --- noise --------------------------------------------------------------------------------------


# 10 dB of noise is refused, 30 dB accepted: the specification's verdicts, not the product's.
@pytest.mark.parametrize(("snr_db", "accepted"), [(10.0, False), (30.0, True)])
def test_snr_estimate_within_3_db_of_mixed_in_noise(
    voice: PiperRecordings, checker: SampleChecker, snr_db: float, accepted: bool
) -> None:
    speech = voice.clean()
    noisy = rec.with_white_noise(speech, snr_db, seed=int(snr_db))
    report = report_for(checker, rec.encode(noisy, PIPER_RATE))

    snr = report.check("snr")
    print(f"mixed-in SNR {snr_db} dB -> estimated {snr.value} dB")
    assert abs(snr.value - snr_db) <= 3.0
    assert snr.threshold == SPEC_MIN_SNR_DB
    assert snr.passed is accepted
    assert report.accepted is accepted
    if not accepted:
        assert hard_failures(report) == {"snr"}
        with pytest.raises(SampleRejected) as err:
            report.raise_if_rejected()
        # The rejection carries the whole table, not just the failure.
        assert err.value.problem == "quality"
        assert [c.name for c in err.value.checks] == [c.name for c in report.checks]
        assert "signal-to-noise" in err.value.reason


# --- level ---------------------------------------------------------------------------------------


def test_hard_clipping_is_measured_and_rejected(voice: PiperRecordings, checker: SampleChecker) -> None:
    clipped = rec.hard_clipped(voice.clean().samples, gain=6.0)
    data = rec.encode(clipped, PIPER_RATE)
    report = report_for(checker, data)

    pcm, _ = sf.read(io.BytesIO(data), dtype="int16")
    expected = np.count_nonzero(np.abs(pcm / 32768.0) >= SPEC_FULL_SCALE) / pcm.size * 100
    clip = report.check("clipping")
    assert clip.value == pytest.approx(expected, abs=1e-3)
    assert clip.threshold == SPEC_MAX_CLIPPED_PERCENT
    assert clip.value > SPEC_MAX_CLIPPED_PERCENT and not clip.passed
    assert "clipping" in hard_failures(report)
    assert not report.accepted and report.quality_score <= 0.5


def test_loudness_jump_fails_consistency(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.clean_long()
    report = report_for(checker, rec.encode(rec.louder_then_quieter(speech.samples, 20.0), PIPER_RATE))
    spread = report.check("loudness_consistency")
    # A 20 dB step: the p90-p10 spread of per-second loudness is about the step.
    assert spread.threshold == SPEC_MAX_LOUDNESS_SPREAD_LU
    assert spread.value > SPEC_MAX_LOUDNESS_SPREAD_LU and not spread.passed
    assert 15 < spread.value < 28
    assert hard_failures(report) == {"loudness_consistency"}


def test_silence_is_not_a_recording(checker: SampleChecker) -> None:
    report = report_for(checker, rec.encode(np.zeros(8 * PIPER_RATE, np.float32), PIPER_RATE))
    assert {"not_silent", "snr", "speech_ratio", "longest_silence"} <= hard_failures(report)
    assert report.check("speech_ratio").value == 0
    assert report.check("longest_silence").value == pytest.approx(8.0, abs=0.01)
    assert report.check("snr").value is None


# --- format -------------------------------------------------------------------------------------


def test_8_khz_fails_sample_rate(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.clean()
    audio = decode_audio(rec.encode(rec.resampled(speech.samples, PIPER_RATE, 8000), 8000))
    report = checker.check_sample(audio, BOTH)

    assert audio.original_rate == 8000 and audio.sample_rate == CANONICAL_RATE
    assert audio.duration_s == pytest.approx(speech.duration_s, abs=0.01)
    rate = report.check("sample_rate")
    assert rate.value == 8000 and rate.threshold == 16000 and not rate.passed
    assert not report.check("sample_rate_recommended").passed
    assert hard_failures(report) == {"sample_rate"}


def test_8_bit_fails_bit_depth(voice: PiperRecordings, checker: SampleChecker) -> None:
    report = report_for(checker, rec.encode(voice.clean().samples, PIPER_RATE, subtype="PCM_U8"))
    depth = report.check("bit_depth")
    assert depth.value == 8 and depth.threshold == 16 and not depth.passed
    assert "bit_depth" in hard_failures(report)


def test_stereo_is_mixed_to_mono(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.clean()
    data = rec.encode(rec.stereo(speech.samples), PIPER_RATE)
    audio = decode_audio(data)
    report = checker.check_sample(audio, BOTH)

    assert audio.channels == 2 and audio.samples.ndim == 1
    assert report.channels == 2 and report.accepted, report.hard_failures
    # Mono is the mean of the channels: 0.5 * (1 + 10^(-2/20)) of the left channel.
    mono = decode_audio(rec.encode(speech.samples, PIPER_RATE)).samples
    gain = float(np.dot(audio.samples, mono) / np.dot(mono, mono))
    assert gain == pytest.approx(0.5 * (1 + 10 ** (-2 / 20)), abs=0.002)


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "bit_depth"),
    [
        ("FLAC", "PCM_24", PIPER_RATE, 24),
        ("OGG", "OPUS", 48000, None),
        ("OGG", "VORBIS", PIPER_RATE, None),
        ("MP3", "MPEG_LAYER_III", PIPER_RATE, None),
    ],
)
def test_accepted_formats_decode(
    voice: PiperRecordings, checker: SampleChecker, fmt: str, subtype: str, rate: int, bit_depth: int | None
) -> None:
    speech = voice.clean()
    x = speech.samples if rate == PIPER_RATE else rec.resampled(speech.samples, PIPER_RATE, rate)
    audio = decode_audio(rec.encode(x, rate, fmt, subtype))
    report = checker.check_sample(audio, BOTH)

    assert (audio.format, audio.codec, audio.original_rate, audio.bit_depth) == (fmt, subtype, rate, bit_depth)
    # Lossy codecs pad a few ms (encoder delay); never more than 60 ms here.
    assert audio.duration_s == pytest.approx(speech.duration_s, abs=0.06)
    assert report.accepted, report.hard_failures
    assert report.check("snr").value > 30


def test_canonical_wav_is_24khz_16bit_mono_and_format_independent(voice: PiperRecordings) -> None:
    # Quantise once, so both files hold the very same PCM (libsndfile's WAV and FLAC
    # writers round float input differently).
    pcm = rec.pcm16(voice.clean().samples)
    from_wav = canonical_wav(decode_audio(rec.encode(pcm, PIPER_RATE)))
    from_flac = canonical_wav(decode_audio(rec.encode(pcm, PIPER_RATE, "FLAC", "PCM_16")))

    info = sf.info(io.BytesIO(from_wav))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("WAV", "PCM_16", CANONICAL_RATE, 1)
    # Same PCM in, same bytes out: this is what duplicate detection hashes.
    assert from_wav == from_flac
    # Re-decoding the canonical WAV is lossless up to 16-bit rounding.
    again = canonical_wav(decode_audio(from_wav))
    assert again == from_wav


# --- duration -----------------------------------------------------------------------------------


def test_too_short_fits_no_engine(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.too_short()
    assert speech.duration_s < 3.0
    report = report_for(checker, rec.encode(speech.samples, PIPER_RATE))
    duration = report.check("duration")
    assert duration.value == pytest.approx(speech.duration_s, abs=0.01)
    assert duration.threshold == (3.0, 30.0)
    assert not duration.passed and report.fit_for == []
    assert "duration" in hard_failures(report)


def test_too_long_for_every_engine(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.too_long_for_engines()
    assert 30 < speech.duration_s < 60
    report = report_for(checker, rec.encode(speech.samples, PIPER_RATE))
    assert report.fit_for == []
    assert "duration" in hard_failures(report)
    assert "xtts_v2 6-30 s" in report.check("duration").message


def test_fit_for_one_engine_says_which(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.clean_long()
    assert 15 < speech.duration_s < 20
    data = rec.encode(speech.samples, PIPER_RATE)

    both = report_for(checker, data, ["xtts_v2", "styletts2"])
    assert both.accepted and both.fit_for == ["xtts_v2"]
    fit = both.check("engine_fit")
    assert fit.severity == "warning" and not fit.passed
    assert "only xtts_v2" in fit.message and "styletts2 needs 3-10 s" in fit.message
    assert both.check("duration_optimal").passed  # 15-20 s is XTTS v2's optimum

    xtts_only = report_for(checker, data, ["xtts_v2"])
    assert xtts_only.fit_for == ["xtts_v2"] and xtts_only.warnings == []

    styletts_only = report_for(checker, data, ["styletts2"])
    assert not styletts_only.accepted and styletts_only.fit_for == []


def test_over_max_duration_is_rejected_at_decode(voice: PiperRecordings) -> None:
    speech = voice.over_max_duration()
    assert speech.duration_s > 60
    with pytest.raises(SampleRejected) as err:
        decode_audio(rec.encode(speech.samples, PIPER_RATE))
    assert err.value.problem == "too_long" and "60 s maximum" in err.value.reason


# --- speech and silence -----------------------------------------------------------------------------


def test_mostly_silence_fails_speech_ratio_and_pauses(voice: PiperRecordings, checker: SampleChecker) -> None:
    speech = voice.speech(rec.SENTENCES[:1], gap_s=0.2)  # 3.2 s of speech
    x = rec.with_trailing_silence(speech.samples, PIPER_RATE, 6.0)
    report = report_for(checker, rec.encode(x, PIPER_RATE))

    ratio, pause = report.check("speech_ratio"), report.check("longest_silence")
    total = len(x) / PIPER_RATE
    assert ratio.value == pytest.approx(len(rec.recordings().sentence(rec.SENTENCES[0])) / PIPER_RATE / total, abs=0.06)
    assert (ratio.threshold, pause.threshold) == (SPEC_MIN_SPEECH_RATIO, SPEC_MAX_SILENCE_S)
    assert ratio.value < SPEC_MIN_SPEECH_RATIO and not ratio.passed
    assert pause.value == pytest.approx(6.2, abs=0.2) and pause.value > SPEC_MAX_SILENCE_S
    assert hard_failures(report) == {"speech_ratio", "longest_silence"}


# --- bad input ----------------------------------------------------------------------------------


def test_bad_input_is_named(voice: PiperRecordings) -> None:
    x = voice.clean().samples
    wav = rec.encode(x, PIPER_RATE)
    flac = rec.encode(x, PIPER_RATE, "FLAC", "PCM_16")
    mp3 = rec.encode(x, PIPER_RATE, "MP3", "MPEG_LAYER_III")
    cases = {
        "empty": (b"", "empty", "empty upload"),
        "text": (b"Hello, this is a text file renamed to voice.wav\n" * 20, "undecodable", "text file"),
        "corrupt header": (rec.wav_with_corrupt_header(wav), "undecodable", "not a decodable audio file"),
        "lying header": (rec.wav_with_lying_header(wav), "truncated", "WAV header declares"),
        "truncated wav": (rec.truncated(wav), "truncated", "WAV header declares"),
        "truncated flac": (rec.truncated(flac), "truncated", "FLAC audio is"),
        "truncated mp3": (rec.truncated(mp3), "truncated", "MP3 audio is truncated"),
        "aac": (rec.aac_in_mp4(x, PIPER_RATE), "unsupported_codec", "aac audio in a mov"),
        "mu-law": (rec.encode(x, PIPER_RATE, "WAV", "ULAW"), "unsupported_codec", "WAV with codec ULAW"),
        "5.1": (rec.encode(np.stack([x] * 6, axis=1), PIPER_RATE), "unsupported_format", "6 channels"),
        "aiff": (rec.encode(x, PIPER_RATE, "AIFF", "PCM_16"), "unsupported_format", "AIFF files are not accepted"),
    }
    for name, (data, problem, words) in cases.items():
        with pytest.raises(SampleRejected) as err:
            decode_audio(data)
        assert err.value.problem == problem, (name, err.value.reason)
        assert words in err.value.reason, (name, err.value.reason)
        assert err.value.status_code == 422
        [check] = err.value.checks
        assert check.name == "decodable" and not check.passed and check.message == err.value.reason


def test_sample_rejected_pickles() -> None:
    err = SampleRejected("too quiet", "quality", [])
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.problem, back.checks) == ("too quiet", "quality", [])
    mismatch = pickle.loads(pickle.dumps(SpeakerMismatch("someone else", 0.42)))
    assert (mismatch.reason, mismatch.problem, mismatch.similarity) == ("someone else", "speaker_mismatch", 0.42)


# --- speakers ---------------------------------------------------------------------------------------


def test_speaker_similarity(voice: PiperRecordings, speakers: SpeakerComparer) -> None:
    a = decode_audio(rec.encode(voice.clean().samples, PIPER_RATE))
    same = decode_audio(rec.encode(voice.clean_other_text().samples, PIPER_RATE))
    other = decode_audio(rec.encode(rec.other_speaker(voice.clean_other_text()), PIPER_RATE))

    same_score = speakers.similarity(a, same)
    other_score = speakers.similarity(a, other)
    print(f"resemblyzer cosine: same speaker {same_score:.3f}, shifted speaker {other_score:.3f}")
    assert same_score > SPEC_SAME_SPEAKER_MIN_SIMILARITY
    assert other_score < SPEC_SAME_SPEAKER_MIN_SIMILARITY

    check = speakers.check(other, {"studio-1": a, "studio-2": same})
    assert check.threshold == SPEC_SAME_SPEAKER_MIN_SIMILARITY
    assert not check.passed and check.severity == "hard"  # refused unless forced
    assert speakers.check(other, {"studio-1": a}, severity="warning").severity == "warning"
    assert "studio-1" in check.message and "studio-2" in check.message
    assert check.value == pytest.approx(min(other_score, speakers.similarity(other, same)), abs=1e-3)
    assert speakers.check(same, {"studio-1": a}).passed


def test_ffmpeg_looks_into_an_unreadable_upload_with_the_usual_audio_demuxers_only() -> None:
    """Security audit L3: FFmpeg probed a stranger's bytes with every demuxer it has (HLS
    playlists naming URLs, image sequences, ...) only to word an error. A Sun .au file, which
    FFmpeg reads and libsndfile's build here does not name as accepted, is found by no allowed
    demuxer; an AAC in MP4 still is, and named."""
    import io

    import av
    import numpy as np

    from chorus.samples import audio

    def made(container: str, codec: str, rate: int) -> bytes:
        out_buf = io.BytesIO()
        with av.open(out_buf, "w", format=container) as out:
            stream = out.add_stream(codec, rate=rate)
            fmt = "fltp" if codec == "aac" else "s16"
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), dtype="float32" if fmt == "fltp" else "int16"),
                                               format=fmt, layout="mono")
            frame.sample_rate = rate
            for packet in [*stream.encode(frame), *stream.encode(None)]:
                out.mux(packet)
        return out_buf.getvalue()

    assert "au" not in audio.PROBED_DEMUXERS
    # FFmpeg alone reads it: the whitelist is what keeps it out.
    with av.open(io.BytesIO(made("au", "pcm_s16be", 8000)), "r") as reads:
        assert reads.format.name == "au"
    refused = audio._describe_unreadable(made("au", "pcm_s16be", 8000), RuntimeError("libsndfile"))
    assert refused.problem == "undecodable"
    named = audio._describe_unreadable(made("mp4", "aac", 24000), RuntimeError("libsndfile"))
    assert named.problem == "unsupported_codec" and named.reason.startswith("aac audio in a mov container")
    playlist = b"#EXTM3U\n#EXTINF:1,\nhttp://169.254.169.254/latest\n" + bytes(range(256)) * 8
    assert audio._describe_unreadable(playlist, RuntimeError("libsndfile")).problem == "undecodable"
