"""The sample checks run silero VAD and resemblyzer's speaker encoder as exported ONNX files,
without torch (`chorus.samples.vad`, `chorus.samples.voice_encoder`). Held here to
resemblyzer's own code, which the test environment has: the same preprocessing and
embeddings, on real speech (the VAD: test_vad.py). And the checks' environment needs neither
package, nor torch."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from chorus.samples import model_export
from chorus.samples.models import SampleModels, SampleModelsMissing
from chorus.samples.voice_encoder import preprocess_wav
from tests.support import recordings as rec

RATE = 16_000  # both models' rate


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return rec.speech_16k()


@pytest.fixture(scope="module")
def models() -> SampleModels:
    return rec.models()


@pytest.fixture(scope="module")
def resemblyzer_encoder():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from resemblyzer import VoiceEncoder

    return VoiceEncoder("cpu", verbose=False)


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
