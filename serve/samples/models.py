"""The models the sample checks run, loaded once per `SampleModels` and only off the event
loop: silero VAD and resemblyzer's speaker encoder (both ONNX files on ONNX Runtime, exported
by `chorus.samples.model_export`: no torch here) and the ITU-R BS.1770-4 loudness meter
(pyloudnorm).

Building a `SampleModels` costs nothing; each model loads on first use, under one lock,
so concurrent first uses load it once. Loading and every use are CPU work, so both refuse
to run on a thread with a running event loop: async code calls the checks through
`asyncio.to_thread` (a kopf handler or a FastAPI route that did not would stall every other
handler or request while a model loads).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from chorus.samples.audio import CANONICAL_RATE
from chorus.samples.model_export import ENCODER_FILE, VAD_FILE
from chorus.samples.vad import SileroVad
from chorus.samples.voice_encoder import VoiceEncoder


def default_directory() -> Path:
    """Where scripts/install.sh and the images put the exported models: the environment's
    own data directory, so each venv carries the models its code was installed with."""
    return Path(sys.prefix) / "share" / "chorus" / "sample-models"


class SampleModelsMissing(RuntimeError):
    """The exported model files are not there: the environment was not set up by
    scripts/install.sh or an image build."""


class SampleModels:
    """One per process is enough (the owner of the checks builds it); thread-safe."""

    def __init__(self, directory: Path | None = None) -> None:
        self._directory = directory or default_directory()
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}

    def vad(self) -> SileroVad:
        """silero VAD: where a recording has speech."""
        return self._get("vad", lambda: SileroVad(_session(self._file(VAD_FILE))))

    def loudness_meter(self) -> Any:
        """pyloudnorm's K-weighted meter at CANONICAL_RATE."""
        return self._get("loudness_meter", _load_loudness_meter)

    def speaker_encoder(self) -> VoiceEncoder:
        """resemblyzer's speaker encoder. Only needed once a personality has two samples."""
        return self._get("speaker_encoder", lambda: VoiceEncoder(_session(self._file(ENCODER_FILE))))

    def _file(self, name: str) -> Path:
        path = self._directory / name
        if not path.is_file():
            raise SampleModelsMissing(
                f"the sample checks' model {name} is not in {self._directory}: export it with "
                f"`python -m chorus.samples.model_export {self._directory}` (scripts/install.sh "
                "and the image builds do)"
            )
        return path

    def _get(self, name: str, load: Callable[[], Any]) -> Any:
        _refuse_event_loop(name)
        with self._lock:
            model = self._loaded.get(name)
            if model is None:
                model = self._loaded[name] = load()
            return model


def _refuse_event_loop(name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop on this thread: a worker thread or plain sync code
    raise RuntimeError(
        f"the sample {name} blocks (model loading, CPU work): call it from a worker thread, "
        "e.g. asyncio.to_thread, not on the event loop"
    )


def _session(model: Path) -> Any:
    """An ONNX Runtime session on the CPU with one thread: one upload's analysis is small,
    and more threads only contend with the serving ones."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(str(model), sess_options=options, providers=["CPUExecutionProvider"])


def _load_loudness_meter() -> Any:
    import pyloudnorm

    return pyloudnorm.Meter(CANONICAL_RATE)  # ITU-R BS.1770-4, K-weighted
