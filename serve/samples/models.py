"""The models the sample checks run, loaded once per `SampleModels` and only off the event
loop: silero VAD (through ONNX Runtime), the ITU-R BS.1770-4 loudness meter (pyloudnorm)
and resemblyzer's speaker encoder (torch on CPU).

Building a `SampleModels` costs nothing; each model loads on first use, under one lock,
so concurrent first uses load it once. Loading imports torch and takes seconds, and every
use is CPU work, so both refuse to run on a thread with a running event loop: async code
calls the checks through `asyncio.to_thread` (a kopf handler or a FastAPI route that did
not would stall every other handler or request while torch loads).
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Callable
from typing import Any

from chorus.samples.audio import CANONICAL_RATE


class SampleModels:
    """One per process is enough (the owner of the checks builds it); thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loaded: dict[str, Any] = {}

    def vad(self) -> Any:
        """silero VAD, `audio_forward(x, sampling_rate=16000)` gives speech probabilities."""
        return self._get("vad", _load_vad)

    def loudness_meter(self) -> Any:
        """pyloudnorm's K-weighted meter at CANONICAL_RATE."""
        return self._get("loudness_meter", _load_loudness_meter)

    def speaker_encoder(self) -> Any:
        """resemblyzer's VoiceEncoder. Only needed once a personality has two samples."""
        return self._get("speaker_encoder", _load_speaker_encoder)

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


def _limit_torch_threads() -> None:
    import torch

    # One upload's analysis is small: extra intra-op threads only contend with the
    # serving threads (and, measured here on 2 cores, made resemblyzer 10-30x slower).
    # silero_vad sets the same on import; this states it.
    torch.set_num_threads(1)


def _load_vad() -> Any:
    _limit_torch_threads()
    from silero_vad import load_silero_vad

    # silero's "sequence" ONNX export: the stock model, one ONNX Runtime call per
    # ~16 s block instead of a Python loop per 32 ms frame, and no torch at inference.
    return load_silero_vad(sequence=True)


def _load_loudness_meter() -> Any:
    import pyloudnorm

    return pyloudnorm.Meter(CANONICAL_RATE)  # ITU-R BS.1770-4, K-weighted


def _load_speaker_encoder() -> Any:
    _limit_torch_threads()
    with warnings.catch_warnings():
        # resemblyzer -> webrtcvad imports pkg_resources, deprecated (hence the
        # setuptools<81 pin); the warning says nothing about our use.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        from resemblyzer import VoiceEncoder

    # The encoder's weights ship inside the resemblyzer wheel: nothing downloads.
    return VoiceEncoder("cpu", verbose=False)
