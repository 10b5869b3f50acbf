"""silero VAD without torch (`chorus.samples.vad`), held to silero-vad's own code, which the
test environment has: the same speech probabilities as its sequence model, the same segments
as its `get_speech_timestamps_from_probs`, on real speech and on every kind of probability run."""

from __future__ import annotations

import numpy as np
import pytest

from chorus.samples.models import SampleModels
from chorus.samples.vad import speech_timestamps
from tests.support import recordings as rec

RATE = 16_000  # the model's rate


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return rec.speech_16k()


@pytest.fixture(scope="module")
def models() -> SampleModels:
    return rec.models()


def test_speech_probabilities_are_silero_sequence_models(speech: np.ndarray, models: SampleModels) -> None:
    from silero_vad import load_silero_vad

    reference = load_silero_vad(sequence=True)
    # One block (up to 512 frames, ~16 s) whole, a part frame, and three blocks with the
    # speech running across both block edges (each block's first frame takes its context from
    # the last frame of the block before).
    three_blocks = np.tile(speech, 3)[: 512 * 1100 + 77]
    for audio in (speech, speech[:40_000], three_blocks):
        ours = models.vad().probabilities(audio)
        theirs = reference.audio_forward(audio, sampling_rate=RATE)
        assert len(ours) == -(-len(audio) // 512)
        np.testing.assert_array_equal(ours, theirs)
    assert models.vad().probabilities(np.zeros(0, np.float32)).size == 0


def test_speech_segments_are_silero_timestamps_of_real_speech(speech: np.ndarray, models: SampleModels) -> None:
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    probs = models.vad().probabilities(speech)
    theirs = get_speech_timestamps_from_probs(probs, sampling_rate=RATE, audio_length_samples=len(speech))
    assert len(theirs) >= 3  # the long pauses split the speech
    assert speech_timestamps(probs, len(speech)) == [(s["start"], s["end"]) for s in theirs]
    segments = models.vad().speech_segments(speech)
    assert segments == [(s["start"] / RATE, s["end"] / RATE) for s in theirs]


def test_speech_timestamps_follow_silero_on_every_kind_of_probability_run() -> None:
    """Random runs around both thresholds (0.5 to start, 0.35 to end), with pauses shorter and
    longer than 100 ms, speech shorter and longer than 250 ms, padding that meets halfway,
    speech at the very start and end."""
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    rng = np.random.default_rng(7)
    levels = np.array([0.0, 0.2, 0.34, 0.35, 0.36, 0.49, 0.5, 0.51, 0.9, 1.0])
    for trial in range(400):
        runs = rng.integers(1, 14, size=rng.integers(1, 30))
        probs = np.concatenate([np.full(n, rng.choice(levels)) for n in runs]).astype(np.float32)
        n_samples = len(probs) * 512 - int(rng.integers(0, 512))
        theirs = get_speech_timestamps_from_probs(probs, sampling_rate=RATE, audio_length_samples=n_samples)
        assert speech_timestamps(probs, n_samples) == [(s["start"], s["end"]) for s in theirs], trial


def test_speech_running_to_the_end_counts_only_when_longer_than_250_ms() -> None:
    """silero keeps speech still under way at the end only when it lasts more than 250 ms:
    4,000 samples exactly is dropped, one more is kept."""
    from silero_vad.utils_vad import get_speech_timestamps_from_probs

    probs = np.array([0.0] * 20 + [0.9] * 8, dtype=np.float32)  # speech from sample 20 * 512
    for n_samples in (20 * 512 + 4000, 20 * 512 + 4001):
        theirs = get_speech_timestamps_from_probs(probs, sampling_rate=RATE, audio_length_samples=n_samples)
        assert speech_timestamps(probs, n_samples) == [(s["start"], s["end"]) for s in theirs]
    assert speech_timestamps(probs, 20 * 512 + 4000) == []
    assert speech_timestamps(probs, 20 * 512 + 4001) != []
