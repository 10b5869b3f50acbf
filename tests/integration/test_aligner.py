"""The forced aligner (pocketsphinx, in the Recognizer; here behind a local handle) against ground truth: Piper's own phoneme
durations say exactly when each word of its audio is heard, so the aligner, given the same
audio without them, must find nearly the same boundaries. Real Piper, no Ray."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from chorus.speech.aligner import Aligner
from chorus.speech.timestamps import timestamps
from deployments.base import AudioResult, SynthesisRequest
from deployments.piper import Piper
from tests.support.local_ear import LocalEar

TEXT = "Please open the door. I would like a cup of coffee. Thank you for your help."


@pytest.fixture(scope="module")
def spoken() -> AudioResult:
    return asyncio.run(Piper({}).synthesize(SynthesisRequest(text=TEXT, language="en", timestamps=True)))


def test_the_aligner_finds_the_boundaries_pipers_durations_give(spoken: AudioResult) -> None:
    aligner = Aligner(LocalEar())
    truth = asyncio.run(timestamps(spoken, TEXT, "en", aligner))
    assert {s.words_from for s in truth.sentences} == {"engine"}
    found = asyncio.run(timestamps(AudioResult(pcm=spoken.pcm, sample_rate=spoken.sample_rate), TEXT, "en", aligner))
    assert found.sentences[0].words_from == "aligner"  # the whole answer, as a cloud engine's
    assert [w.text for w in found.words] == [w.text for w in truth.words] == TEXT.split()
    errors = [abs(a.start - b.start) for a, b in zip(found.words, truth.words)]
    errors += [abs(a.end - b.end) for a, b in zip(found.words, truth.words)]
    # Measured: median 39 ms, p90 74 ms (pocketsphinx counts 10 ms frames; the last phoneme's
    # tail is a matter of definition).
    assert np.median(errors) < 0.06 and np.percentile(errors, 90) < 0.12


def test_a_word_outside_the_dictionary_is_not_aligned(spoken: AudioResult) -> None:
    aligner = Aligner(LocalEar())
    pcm, rate = spoken.pcm, spoken.sample_rate
    assert asyncio.run(aligner.align(pcm, rate, ["Zyxwv", *TEXT.split()[1:]])) is None
    assert asyncio.run(aligner.align(pcm, rate, TEXT.split())) is not None
