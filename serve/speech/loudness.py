"""One loudness for a personality, whichever engine speaks (`PersonalitySpec.loudness`).

Engines speak at their own levels (Piper near full scale, a cloud voice 10 LU lower), so a
chain that falls back, or a stream that changes engine, would jump in level. Every answer
is brought to the personality's target integrated loudness (EBU R128 / ITU-R BS.1770, as
pyloudnorm measures it) by one gain, and FFmpeg's `alimiter`, run 4x oversampled as true-peak
meters measure, keeps its peaks under the true-peak ceiling where the gain would push them over.

A whole answer is measured whole. A stream cannot wait for its end: each chunk gets the gain
that brings the last 3 s it said (EBU R128's short-term window), that chunk included, to the
target, so a chunk shorter than a word is not levelled on its own and the level follows the
voice within a sentence or two.

The cache keeps the engines' own audio; levelling happens on the way out, so a changed target
needs no cached audio dropped.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import av
import numpy as np
import pyloudnorm

# BS.1770 measures 400 ms blocks; shorter audio is measured as that long (repeated), which
# keeps its mean square, so a one-word answer is levelled like the rest.
_BLOCK_S = 0.4
# The limiter works on 4x oversampled audio (where the peaks between samples are); coming
# back to the answer's rate can overshoot its ceiling a little, which this margin absorbs.
_RESAMPLING_MARGIN_DB = 0.3
_OVERSAMPLING = 4
_SHORT_TERM_S = 3.0
# A stream's gain moves to a chunk's over this long (no step in level at the join).
_GAIN_RAMP_S = 0.02
# Close enough to the target that another limiting pass is not worth it.
_SETTLED_LU = 0.1
_MAKEUP_PASSES = 2
# A gain is bounded: near-silence (breath, a cut-off chunk) is not raised into noise.
_MAX_GAIN_DB = 30.0


def measure(pcm: bytes, sample_rate: int) -> float:
    """The integrated loudness of mono s16le PCM, in LUFS (-inf for silence)."""
    samples = _floats(pcm)
    if not samples.size:
        return -math.inf
    block = math.ceil(_BLOCK_S * sample_rate) + 1
    if samples.size < block:
        samples = np.tile(samples, math.ceil(block / samples.size))
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(samples))


def gain_db(loudness: float, target_lufs: float) -> float:
    """The gain that brings `loudness` to `target_lufs`: none for silence, at most `_MAX_GAIN_DB`."""
    if not math.isfinite(loudness):
        return 0.0
    return min(target_lufs - loudness, _MAX_GAIN_DB)


class _Limiter:
    """FFmpeg's `alimiter` at 4x the audio's rate, fed float samples as they come: one per
    answer or stream, so a stream's chunks are limited as one signal, with no edge at their
    joins. Its look-ahead and the resamplers hold back a few milliseconds until `close`."""

    def __init__(self, sample_rate: int, true_peak_db: float) -> None:
        ceiling = 10 ** ((true_peak_db - _RESAMPLING_MARGIN_DB) / 20)
        self._rate = sample_rate
        self._graph = av.filter.Graph()
        chain = [
            self._graph.add_abuffer(format="flt", sample_rate=sample_rate, layout="mono",
                                    time_base=Fraction(1, sample_rate)),
            self._graph.add("aresample", str(_OVERSAMPLING * sample_rate)),
            # latency=1: the look-ahead's delay taken back, so the audio keeps its length.
            self._graph.add("alimiter", f"limit={ceiling:.6f}:attack=5:release=50:level=disabled:latency=1"),
            self._graph.add("aresample", str(sample_rate)),
            self._graph.add("aformat", "sample_fmts=s16"),
            self._graph.add("abuffersink"),
        ]
        for a, b in itertools.pairwise(chain):
            a.link_to(b)
        self._graph.configure()
        self._pts = 0

    def feed(self, samples: np.ndarray) -> bytes:
        """Float samples (1.0: full scale) in; the limited s16le PCM that is ready out."""
        frame = av.AudioFrame.from_ndarray(samples.astype(np.float32).reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate, frame.pts = self._rate, self._pts
        self._pts += samples.size
        self._graph.push(frame)
        return self._ready()

    def close(self) -> bytes:
        """What is still held back."""
        self._graph.push(None)
        return self._ready()

    def _ready(self) -> bytes:
        out = []
        while True:
            try:
                out.append(self._graph.pull().to_ndarray().reshape(-1))
            except (av.error.BlockingIOError, av.error.EOFError):
                return np.concatenate(out).astype("<i2").tobytes() if out else b""


def _floats(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768.0


def level(pcm: bytes, sample_rate: int, target_lufs: float, true_peak_db: float) -> bytes:
    """A whole answer at `target_lufs`, its peaks under `true_peak_db` dBTP: as many samples
    as it came with. Where the limiter takes loudness off, the gain is raised by what is
    missing and the answer limited again (at most `_MAKEUP_PASSES` times)."""
    if not pcm:
        return pcm
    loudness = measure(pcm, sample_rate)
    gain = gain_db(loudness, target_lufs)
    out = _limited(pcm, sample_rate, gain, true_peak_db)
    for _ in range(_MAKEUP_PASSES if math.isfinite(loudness) else 0):
        short = target_lufs - measure(out, sample_rate)
        if short <= _SETTLED_LU or gain >= _MAX_GAIN_DB:
            break
        gain = min(gain + short, _MAX_GAIN_DB)
        out = _limited(pcm, sample_rate, gain, true_peak_db)
    return out


def _limited(pcm: bytes, sample_rate: int, gain: float, true_peak_db: float) -> bytes:
    limiter = _Limiter(sample_rate, true_peak_db)
    out = limiter.feed(_floats(pcm) * 10 ** (gain / 20)) + limiter.close()
    assert len(out) == len(pcm), (len(out), len(pcm))
    return out


class StreamLevel:
    """One stream's levelling: each chunk at the gain that brings the last `_SHORT_TERM_S`
    seconds, that chunk included, to the target, raised by what the limiter would take off
    the chunk at that gain (found on a copy: the stream's own limiter cannot take a chunk
    back), as `level`'s second pass does for a whole answer. The gain moves from the last
    chunk's over the first `_GAIN_RAMP_S` of the next, and all of it is limited as one
    signal. `feed` returns what is ready (a few milliseconds are held back for the
    limiter's look-ahead), `close` the rest."""

    def __init__(self, sample_rate: int, target_lufs: float, true_peak_db: float) -> None:
        self.sample_rate, self.target_lufs, self.true_peak_db = sample_rate, target_lufs, true_peak_db
        self._limiter = _Limiter(sample_rate, true_peak_db)
        self._window = 2 * int(_SHORT_TERM_S * sample_rate)  # bytes
        self._heard = b""  # the stream's last `_SHORT_TERM_S` seconds, as the engine spoke them
        self._gain: float | None = None  # linear, the last chunk's

    def feed(self, pcm: bytes) -> bytes:
        if not pcm:
            return b""
        self._heard = _last(self._heard + pcm, max(self._window, len(pcm)))
        heard = measure(self._heard, self.sample_rate)
        gain = gain_db(heard, self.target_lufs)
        # The window is often this chunk alone (the first, or one of 3 s or more): measured once.
        alone = heard if len(self._heard) == len(pcm) else measure(pcm, self.sample_rate)
        if math.isfinite(alone) and gain < _MAX_GAIN_DB:
            taken = alone + gain - measure(_limited(pcm, self.sample_rate, gain, self.true_peak_db), self.sample_rate)
            gain = min(gain + max(taken, 0.0), _MAX_GAIN_DB)
        linear = 10 ** (gain / 20)
        samples = _floats(pcm)
        gains = np.full(samples.size, linear)
        if self._gain is not None:
            ramp = min(samples.size, int(_GAIN_RAMP_S * self.sample_rate))
            gains[:ramp] = np.linspace(self._gain, linear, ramp, endpoint=False)
        self._gain = linear
        return self._limiter.feed(samples * gains)

    def restart(self) -> None:
        """Another voice from here on (an engine carrying the stream on): its level is
        measured from its own chunks, not averaged with the last one's."""
        self._heard = b""

    def close(self) -> bytes:
        return self._limiter.close()


def _last(pcm: bytes, size: int) -> bytes:
    return pcm[-size:] if len(pcm) > size else pcm
