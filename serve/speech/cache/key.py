"""The cache key of one engine request: everything that changes its audio, and nothing else.

Not in it: the output format (the cache keeps PCM, encoded per answer, so one entry serves
every format) and the trace context (it changes every request, the audio does not)."""

from __future__ import annotations

import hashlib
import json

from deployments.base import EngineId, SynthesisRequest, VoiceSampleRef


def samples_digest(samples: list[VoiceSampleRef]) -> str:
    """The sample set a cloning engine conditions on: ids and the digests the sample store
    keeps of their audio, in order (an engine may weigh them by position)."""
    return hashlib.sha256(json.dumps([[s.id, s.sha256] for s in samples]).encode()).hexdigest()


def cache_key(request: SynthesisRequest, engine: EngineId, model_identity: str, sample_rate: int, scope: str) -> str:
    """sha256 hex over the scope (who may be answered with it: a personality, or a
    personality and an API key), the engine, its model identity
    (`Capabilities.model_identity`), the request's variant, voice, validated settings,
    sample set, language and exact text, the lexicon (it changes how words are said), and the
    rate the audio comes at."""
    settings = request.settings.model_dump(mode="json") if request.settings is not None else None
    fields = {
        "scope": scope,
        "engine": engine,
        "model": model_identity,
        "variant": request.variant,
        "voice": request.voice,
        "settings": settings,
        "samples": samples_digest(request.samples),
        "language": request.language,
        "text": request.text,
        "lexicon": [p.model_dump(mode="json") for p in request.lexicon],
        "rate": sample_rate,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()
