"""Does a recording sound like the same speaker as a personality's other samples?
Resemblyzer's speaker embeddings, compared by cosine similarity. Embeddings of stored
samples are cached by their sha256: every new upload is compared with all of them.
Methods block (CPU work): call them from a worker thread in async code."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping

import numpy as np

from chorus.samples import voice_encoder
from chorus.samples.audio import CANONICAL_RATE, DecodedAudio, resample
from chorus.samples.models import SampleModels
from chorus.samples.report import CheckResult, Severity

# Resemblyzer cosine similarity: recordings of one speaker score ~0.85-0.97, different
# speakers ~0.5-0.7 (measured: Piper voice vs. itself 0.96, vs. pitch/formant-shifted 0.5-0.67).
SAME_SPEAKER_MIN_SIMILARITY = 0.75

# A recording, or a zero-argument loader of it (called only when the embedding is not cached).
AudioSource = DecodedAudio | Callable[[], DecodedAudio]


class SpeakerComparer:
    """Thread-safe; the encoder loads on first use (through `SampleModels`)."""

    def __init__(self, models: SampleModels, *, embedding_cache_size: int = 256) -> None:
        self._models = models
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = embedding_cache_size
        self._cache_lock = threading.Lock()

    def embed(self, audio: AudioSource, key: str | None = None) -> np.ndarray:
        """Resemblyzer's speaker embedding (256 floats, L2-normalised). `key` (e.g. the
        sample's sha256) caches it: stored samples are compared with every new upload.
        `audio` may be a zero-argument loader, called only when the cache misses."""
        if key is not None:
            with self._cache_lock:
                hit = self._embeddings.get(key)
                if hit is not None:
                    self._embeddings.move_to_end(key)
                    return hit
        if callable(audio):
            audio = audio()
        encoder = self._models.speaker_encoder()
        raw = resample(audio.samples, CANONICAL_RATE, voice_encoder.RATE)
        wav = voice_encoder.preprocess_wav(raw)
        if len(wav) == 0:  # all silence: embed the raw audio rather than nothing
            wav = raw
        embedding = encoder.embed_utterance(wav)
        if key is not None:
            with self._cache_lock:
                self._embeddings[key] = embedding
                while len(self._embeddings) > self._cache_size:
                    self._embeddings.popitem(last=False)
        return embedding

    def similarity(self, a: DecodedAudio, b: DecodedAudio) -> float:
        """Cosine similarity of the two recordings' speaker embeddings (-1..1; the
        same speaker scores above SAME_SPEAKER_MIN_SIMILARITY)."""
        return _cosine(self.embed(a), self.embed(b))

    def check(
        self,
        audio: DecodedAudio,
        others: Mapping[str, AudioSource],
        *,
        key: str | None = None,
        other_keys: Mapping[str, str] | None = None,
        severity: Severity = "hard",
    ) -> CheckResult:
        """Does `audio` sound like the same speaker as every sample in `others` (id ->
        audio, or a loader of it)? Names the samples that differ. `key`/`other_keys` are
        cache keys (sha256) for the embeddings; `severity` is "warning" when a mismatch
        is to be stored anyway."""
        if not others:
            return CheckResult(
                name="speaker_consistency", passed=True, severity=severity, unit="cosine",
                threshold=SAME_SPEAKER_MIN_SIMILARITY, message="first sample of this personality",
            )
        mine = self.embed(audio, key)
        keys = other_keys or {}
        scores = {
            sid: _cosine(mine, self.embed(other, keys.get(sid))) for sid, other in others.items()
        }
        worst_id = min(scores, key=lambda s: scores[s])
        worst = scores[worst_id]
        differ = sorted((s for s, v in scores.items() if v < SAME_SPEAKER_MIN_SIMILARITY), key=lambda s: scores[s])
        return CheckResult(
            name="speaker_consistency", passed=not differ, severity=severity,
            value=round(worst, 3), threshold=SAME_SPEAKER_MIN_SIMILARITY, unit="cosine",
            message=(
                f"same speaker as the other samples (lowest similarity {worst:.2f}, {worst_id})"
                if not differ
                else "sounds like a different speaker than sample(s) "
                + ", ".join(f"{s} (similarity {scores[s]:.2f})" for s in differ)
            ),
        )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(np.dot(a, b) / denom) if denom else 0.0
