"""Where a recording has speech: silero VAD's "sequence" ONNX model on ONNX Runtime, and
silero's speech-timestamp rules, without torch.

The `silero-vad` package holds the model and the rules, but importing any part of it imports
torch, and torch with its CUDA libraries is most of an image's size. So the model file is
exported beside the speaker encoder (`chorus.samples.model_export`), and this module runs it
the way `silero_vad.sequence_vad` does: one ONNX Runtime call per block of up to 512 frames
(~16 s) instead of a Python loop per 32 ms frame. The tests hold both halves to silero's own
code: the same probabilities as `load_silero_vad(sequence=True).audio_forward`, the same
segments as `get_speech_timestamps_from_probs`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

# The model's rate: 512-sample frames, each with the previous frame's last 64 samples.
RATE = 16_000
_FRAME = 512
_CONTEXT = 64
_STATE = (1, 1, 128)
_BLOCK_FRAMES = 512

# silero's defaults (get_speech_timestamps), in samples: a frame at or above THRESHOLD starts
# speech, one below THRESHOLD - 0.15 may end it once 100 ms of such frames follow; speech
# shorter than 250 ms is dropped, and every segment is padded by 30 ms.
THRESHOLD = 0.5
_NEG_THRESHOLD = THRESHOLD - 0.15
_MIN_SPEECH = RATE * 250 / 1000
_MIN_SILENCE = RATE * 100 / 1000
_PAD = RATE * 30 / 1000


class SileroVad:
    """Thread-safe (an ONNX Runtime session is); blocks: call it from a worker thread."""

    def __init__(self, session: InferenceSession) -> None:
        self._session = session  # the exported model's (SampleModels opens it)

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """One speech probability per 32 ms frame of `audio` (mono float, RATE)."""
        hidden = np.zeros(_STATE, dtype=np.float32)
        cell = np.zeros(_STATE, dtype=np.float32)
        out = []
        for block in _blocks(np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)):
            probs, hidden, cell = self._session.run(
                ["speech_probs", "hn", "cn"], {"input": block, "h": hidden, "c": cell}
            )
            out.append(probs)
        return np.concatenate(out).reshape(-1) if out else np.zeros(0, dtype=np.float32)

    def speech_segments(self, audio: np.ndarray) -> list[tuple[float, float]]:
        """The spans of speech in `audio` (mono float, RATE), in seconds."""
        stamps = speech_timestamps(self.probabilities(audio), len(audio))
        return [(start / RATE, end / RATE) for start, end in stamps]


def _blocks(audio: np.ndarray) -> Iterator[np.ndarray]:
    """(frames, 64 + 512) blocks: each frame after the trailing 64 samples of the one before
    (zeros before the first), the last frame zero-padded: the streaming model's own context."""
    n_frames = -(-audio.size // _FRAME)
    context = np.zeros(_CONTEXT, dtype=np.float32)
    for first in range(0, n_frames, _BLOCK_FRAMES):
        count = min(_BLOCK_FRAMES, n_frames - first)
        frames = np.zeros((count, _FRAME), dtype=np.float32)
        chunk = audio[first * _FRAME : (first + count) * _FRAME]
        frames.reshape(-1)[: chunk.size] = chunk
        contexts = np.empty((count, _CONTEXT), dtype=np.float32)
        contexts[0] = context
        contexts[1:] = frames[:-1, -_CONTEXT:]
        context = frames[-1, -_CONTEXT:].copy()
        yield np.concatenate((contexts, frames), axis=1)


def speech_timestamps(probs: np.ndarray, n_samples: int) -> list[tuple[int, int]]:
    """silero's `get_speech_timestamps_from_probs` at its defaults (no maximum speech
    length), as (start, end) sample indices at RATE."""
    speeches: list[tuple[int, int]] = []
    start: int | None = None  # of the speech under way
    silence_from = 0  # where the current run of quiet frames began (0: none)
    for i, prob in enumerate(probs):
        sample = _FRAME * i
        if prob >= THRESHOLD:
            silence_from = 0
            if start is None:
                start = sample
                continue
        if start is not None and prob < _NEG_THRESHOLD:
            if not silence_from:
                silence_from = sample
            if sample - silence_from >= _MIN_SILENCE:
                if silence_from - start > _MIN_SPEECH:
                    speeches.append((start, silence_from))
                start, silence_from = None, 0
    if start is not None and n_samples - start > _MIN_SPEECH:
        speeches.append((start, n_samples))
    return _padded(speeches, n_samples)


def _padded(speeches: list[tuple[int, int]], n_samples: int) -> list[tuple[int, int]]:
    """Each segment widened by the pad, within the recording. (silero also lets segments
    closer than two pads meet halfway; at these settings a segment ends only after 100 ms of
    quiet and the next begins a frame later at the earliest, so they never are.)"""
    return [(int(max(0, start - _PAD)), int(min(n_samples, end + _PAD))) for start, end in speeches]
