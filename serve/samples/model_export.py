"""Writes the sample checks' two models as ONNX files, where torch is at hand, so the
environments that run the checks need no torch:

- `silero_vad.onnx`: silero VAD's "sequence" export, copied from the `silero-vad` wheel;
- `voice_encoder.onnx`: resemblyzer's speaker encoder with its weights, input a batch of
  power spectrograms (partials, 160 frames, 201 bins) and the mel filterbank resemblyzer
  applies (librosa's, 40 bands) as its first step; output the L2-normed embeddings.

    python -m chorus.samples.model_export DIR    (or python serve/samples/model_export.py DIR)

Run by scripts/install.sh into the venv's `share/chorus/sample-models` and by the image
builds in a throwaway stage. Imports nothing of Chorus, so a build can run the file alone.
`manifest.json` names the packages the files came from; a directory whose manifest matches
the installed ones is left alone.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

SOURCES = ("silero-vad", "resemblyzer", "librosa", "torch")
VAD_FILE = "silero_vad.onnx"
ENCODER_FILE = "voice_encoder.onnx"
MANIFEST_FILE = "manifest.json"


def export(directory: Path) -> bool:
    """Writes the models into `directory` unless its manifest already names the installed
    sources. True when it wrote them. The files appear together or not at all."""
    manifest = {name: metadata.version(name) for name in SOURCES}
    existing = directory / MANIFEST_FILE
    if existing.is_file() and json.loads(existing.read_text()) == manifest:
        return False
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory.parent) as scratch:
        staged = Path(scratch) / "models"
        staged.mkdir()
        _copy_vad(staged / VAD_FILE)
        _export_encoder(staged / ENCODER_FILE)
        (staged / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n")
        shutil.rmtree(directory, ignore_errors=True)
        staged.rename(directory)
    return True


def _copy_vad(target: Path) -> None:
    from importlib import resources

    # The data file only: importing silero_vad would import torch for nothing.
    source = resources.files("silero_vad").joinpath("data", "silero_vad_16k_sequence.onnx")
    with resources.as_file(source) as path:
        shutil.copyfile(path, target)


def _export_encoder(target: Path) -> None:
    import librosa
    import torch

    with warnings.catch_warnings():
        # resemblyzer -> webrtcvad imports pkg_resources, deprecated; nothing to do with us.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from resemblyzer import VoiceEncoder

    class PowerToEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = VoiceEncoder("cpu", verbose=False)
            # resemblyzer's wav_to_mel_spectrogram: librosa's melspectrogram, 16 kHz, 400-point FFT.
            mel = librosa.filters.mel(sr=16_000, n_fft=400, n_mels=40)
            self.register_buffer("mel", torch.from_numpy(mel).T.contiguous())

        def forward(self, power: torch.Tensor) -> torch.Tensor:
            return self.encoder(power @ self.mel)

    model = PowerToEmbedding().eval()
    example = torch.zeros(2, 160, 201)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            model, (example,), str(target), dynamo=False, opset_version=17,
            input_names=["power"], output_names=["embeds"],
            dynamic_axes={"power": {0: "partials"}, "embeds": {0: "partials"}},
        )


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} DIR")
    wrote = export(Path(sys.argv[1]))
    print(("wrote " if wrote else "up to date: ") + sys.argv[1])
