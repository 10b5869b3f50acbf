"""Resemblyzer's speaker encoder (GE2E: a 3-layer LSTM over 40 mel bands) on ONNX Runtime,
with resemblyzer's preprocessing, without torch.

`resemblyzer` runs the encoder under torch, and importing any part of it imports torch: most
of an image's size. So `chorus.samples.model_export` exports the same weights to ONNX, with
the mel filterbank as the graph's first step, and this module does the rest the way
resemblyzer 0.1.4 does: volume normalisation and long-silence trimming (`preprocess_wav`),
a power spectrogram, partial utterances of 1.6 s every ~0.77 s (`embed_utterance`), and the
L2-normed mean of their embeddings. The tests hold it to resemblyzer's own embeddings.
"""

from __future__ import annotations

import struct
import warnings
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from onnxruntime import InferenceSession

# resemblyzer's hparams: 16 kHz audio, 25 ms windows every 10 ms, 160-frame partials.
RATE = 16_000
_N_FFT = 400
_HOP = 160
_PARTIAL_FRAMES = 160
_PARTIALS_PER_S = 1.3
_MIN_COVERAGE = 0.75
# Volume normalisation (raise only) and the webrtcvad trimming of long silences.
_TARGET_DBFS = -30.0
_INT16_MAX = 2**15 - 1
_VAD_WINDOW = RATE * 30 // 1000
_VAD_AVERAGE_WIDTH = 8
_VAD_MAX_SILENCE = 6


class VoiceEncoder:
    """Thread-safe (an ONNX Runtime session is); blocks: call it from a worker thread."""

    def __init__(self, session: InferenceSession) -> None:
        self._session = session  # the exported model's (SampleModels opens it)

    def embed_utterance(self, wav: np.ndarray) -> np.ndarray:
        """The speaker embedding (256 floats, L2-normed) of a preprocessed waveform
        (`preprocess_wav`) at RATE."""
        slices = _partial_slices(len(wav))
        end = slices[-1] * _HOP + _PARTIAL_FRAMES * _HOP
        if end >= len(wav):
            wav = np.pad(wav, (0, end - len(wav)))
        power = _power_spectrogram(wav)
        partials = np.stack([power[s : s + _PARTIAL_FRAMES] for s in slices])
        (embeds,) = self._session.run(["embeds"], {"power": partials})
        mean = embeds.mean(axis=0)
        return (mean / np.linalg.norm(mean)).astype(np.float32)


def preprocess_wav(wav: np.ndarray) -> np.ndarray:
    """Raised to -30 dBFS if quieter, and pauses longer than ~0.2 s cut out (webrtcvad at
    its strictest, smoothed over 8 windows of 30 ms, speech widened by 6 windows)."""
    from scipy.ndimage import binary_dilation

    with warnings.catch_warnings():
        # webrtcvad imports pkg_resources, deprecated (hence the setuptools<81 pin); the
        # warning says nothing about our use.
        warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
        import webrtcvad

    rms = np.sqrt(np.mean((wav * _INT16_MAX) ** 2))
    change_db = _TARGET_DBFS - 20 * np.log10(rms / _INT16_MAX)
    if change_db > 0:
        wav = wav * 10 ** (change_db / 20)
    wav = wav[: len(wav) - len(wav) % _VAD_WINDOW]
    pcm = struct.pack(f"{len(wav)}h", *np.round(wav * _INT16_MAX).astype(np.int16))
    vad = webrtcvad.Vad(3)
    voiced = np.array(
        [vad.is_speech(pcm[i * 2 : (i + _VAD_WINDOW) * 2], RATE) for i in range(0, len(wav), _VAD_WINDOW)]
    )
    mask = np.round(_moving_average(voiced, _VAD_AVERAGE_WIDTH)).astype(bool)
    mask = binary_dilation(mask, np.ones(_VAD_MAX_SILENCE + 1))
    return wav[np.repeat(mask, _VAD_WINDOW)]


def _moving_average(flags: np.ndarray, width: int) -> np.ndarray:
    padded = np.concatenate((np.zeros((width - 1) // 2), flags, np.zeros(width // 2)))
    sums = np.cumsum(padded, dtype=float)
    sums[width:] = sums[width:] - sums[:-width]
    return sums[width - 1 :] / width


def _partial_slices(n_samples: int) -> list[int]:
    """The first frame of each partial utterance: one every ~0.77 s, covering the whole
    recording; the last one is dropped when under 75 % of it is audio (unless it is the only)."""
    n_frames = int(np.ceil((n_samples + 1) / _HOP))
    step = int(np.round(RATE / _PARTIALS_PER_S / _HOP))
    starts = list(range(0, max(1, n_frames - _PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * _HOP) / (_PARTIAL_FRAMES * _HOP)
    if coverage < _MIN_COVERAGE and len(starts) > 1:
        starts.pop()
    return starts


def _power_spectrogram(wav: np.ndarray) -> np.ndarray:
    """|STFT|² as librosa computes it for resemblyzer: periodic Hann window, frames centred
    (zero-padded by half a window), shape (frames, 201)."""
    padded = np.pad(wav.astype(np.float32), _N_FFT // 2)
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP]
    window = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_N_FFT) / _N_FFT)).astype(np.float32)
    return (np.abs(np.fft.rfft(frames * window, axis=1)) ** 2).astype(np.float32)
