"""The sample checks run silero VAD and resemblyzer's speaker encoder as exported ONNX files,
without torch (`chorus.samples.vad`, `chorus.samples.voice_encoder`). Held here to the two
packages' own code, which the test environment has: the same speech probabilities and
segments as silero-vad, the same preprocessing and embeddings as resemblyzer, on real speech.
And the checks' environment needs neither package, nor torch."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from chorus.samples import model_export
from chorus.samples.models import SampleModels, SampleModelsMissing
from chorus.samples.vad import speech_timestamps
from chorus.samples.voice_encoder import preprocess_wav
from tests.support import recordings as rec
from tests.support.recordings import PIPER_RATE

RATE = 16_000  # both models' rate


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    """Five sentences with pauses of 0.3-1.5 s, at 16 kHz: speech, short and long silences."""
    voice = rec.recordings()
    parts = []
    for text, gap in zip(rec.SENTENCES, (0.3, 1.5, 0.05, 0.8, 0.6), strict=True):
        parts += [voice.sentence(text), np.zeros(int(gap * PIPER_RATE), np.float32)]
    return resample_poly(np.concatenate(parts), 160, 441).astype(np.float32)


@pytest.fixture(scope="module")
def models() -> SampleModels:
    return rec.models()


@pytest.fixture(scope="module")
def resemblyzer_encoder():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


# --- silero VAD ---------------------------------------------------------------------------------


def test_speech_probabilities_are_silero_sequence_models(speech: np.ndarray, models: SampleModels) -> None:
    from silero_vad import load_silero_vad

    reference = load_silero_vad(sequence=True)
    for audio in (speech, speech[:40_000], speech[: 512 * 600 + 77]):  # one block, several, a part frame
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


# --- resemblyzer's speaker encoder ------------------------------------------------------------------


def test_preprocessing_is_resemblyzers(speech: np.ndarray) -> None:
    from resemblyzer import preprocess_wav as theirs

    quiet = speech * 0.02  # raised to -30 dBFS
    loud = np.clip(speech * 3, -1, 1)  # left as it is
    for audio in (speech, quiet, loud, speech[:12_345]):
        ours = preprocess_wav(audio)
        np.testing.assert_allclose(ours, theirs(audio), rtol=1e-6, atol=1e-7)
    assert len(preprocess_wav(speech)) < len(speech) - RATE  # the 1.5 s pause shortened


@pytest.mark.parametrize("seconds", [0.5, 1.9, 2.5, 9.0, 24.0])
def test_embeddings_are_resemblyzers(speech: np.ndarray, models: SampleModels, resemblyzer_encoder, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Lengths below one partial, with a last partial kept and dropped, and many partials."""
    from resemblyzer import preprocess_wav as theirs

    wav = theirs(np.tile(speech, 2)[: int(seconds * RATE)])
    ours = models.speaker_encoder().embed_utterance(wav)
    expected = resemblyzer_encoder.embed_utterance(wav)
    assert ours.dtype == np.float32 and ours.shape == (256,)
    np.testing.assert_allclose(ours, expected, atol=2e-5)


# --- the exported files and the environment ----------------------------------------------------


def test_export_writes_both_models_once_per_source_versions(tmp_path: Path) -> None:
    target = tmp_path / "models"
    assert model_export.export(target)
    manifest = json.loads((target / model_export.MANIFEST_FILE).read_text())
    assert set(manifest) == set(model_export.SOURCES)
    assert not model_export.export(target)  # up to date: left alone
    (target / model_export.MANIFEST_FILE).write_text(json.dumps({**manifest, "torch": "0"}))
    (target / model_export.ENCODER_FILE).write_bytes(b"stale")
    assert model_export.export(target)  # another torch: written again
    assert (target / model_export.ENCODER_FILE).stat().st_size > 1_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models"]  # no scratch left behind


def test_missing_models_are_named_with_the_way_to_export_them(tmp_path: Path) -> None:
    models = SampleModels(tmp_path)
    with pytest.raises(SampleModelsMissing, match=r"silero_vad\.onnx is not in .*model_export"):
        models.vad()
    with pytest.raises(SampleModelsMissing, match=r"voice_encoder\.onnx"):
        models.speaker_encoder()


def test_the_sample_checks_import_no_torch_and_neither_model_package() -> None:
    """What lets the images leave torch out: a whole check, speaker comparison included,
    in a fresh interpreter of this environment, loads none of them."""
    script = """
import sys
import numpy as np
from chorus.samples.audio import decode_audio
from chorus.samples.quality import SampleChecker
from chorus.samples.speaker import SpeakerComparer
from chorus.samples.models import SampleModels
from tests.support import recordings as rec
voice = rec.recordings()
a = decode_audio(rec.encode(voice.clean().samples, rec.PIPER_RATE))
b = decode_audio(rec.encode(voice.clean_other_text().samples, rec.PIPER_RATE))
models = SampleModels()
assert SampleChecker(models).check_sample(a, ["xtts_v2"]).accepted
assert SpeakerComparer(models).similarity(a, b) > 0.75
print(sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "resemblyzer", "silero_vad", "librosa"}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
