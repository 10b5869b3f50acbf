"""The trace vocabulary every Chorus process speaks: span names, attribute keys and the
outcomes they take. The ingress writes the request, speech and attempt spans; each engine
deployment writes its synthesize span (in its own process, under the same trace). The
statistics, the quota meter and the Ray metrics read completed spans by these names.

Names only: how tracing is set up and how context crosses the Ray call live beside it
(`deployments.tracing`)."""

from __future__ import annotations

from typing import Final, Literal

# --- spans ------------------------------------------------------------------------------------
SPEECH: Final = "chorus.speech"
"""One utterance a route asked for (speech, OpenAI speech, clone): child of the HTTP server span."""
ATTEMPT: Final = "chorus.engine.attempt"
"""One engine tried for an utterance (skipped ones too): child of `chorus.speech`."""
SYNTHESIZE: Final = "chorus.engine.synthesize"
"""Inside the engine deployment, under the attempt that called it."""

# --- attributes -------------------------------------------------------------------------------
PERSONALITY: Final = "chorus.personality"
LANGUAGE: Final = "chorus.language"
CHARACTERS: Final = "chorus.characters"  # of the text asked for (speech) / sent to the engine (attempt)
FORMAT: Final = "chorus.format"
STREAM: Final = "chorus.stream"
CACHE: Final = "chorus.cache"  # attempt and speech: "hit" | "miss" | "partial" (some pieces cached); unset: not used
ENGINE: Final = "chorus.engine"  # speech: who spoke; attempt, synthesize: who was asked
VARIANT: Final = "chorus.variant"
VOICE_CLASS: Final = "chorus.voice_class"  # cloud price class of the voice that spoke, e.g. "neural"
OUTCOME: Final = "chorus.outcome"
TIME_TO_FIRST_AUDIO_MS: Final = "chorus.time_to_first_audio_ms"  # streams only
FALLBACK_POSITION: Final = "chorus.fallback.position"  # 0 = the first engine of the plan
CIRCUIT: Final = "chorus.circuit"  # attempt: the engine's breaker when its turn came: "closed" | "open" | "half_open"
REASON: Final = "chorus.reason"  # attempt: why it was skipped or cut short, as clients are told
AUDIO_SECONDS: Final = "chorus.audio_seconds"
REAL_TIME_FACTOR: Final = "chorus.rtf"  # synthesis seconds / audio seconds
CONDITIONING_CACHE: Final = "chorus.conditioning_cache"  # cloning engines: "hit" | "miss"
KEY: Final = "chorus.key"  # the API key's name (never the key), when keys are on
VERIFY_OUTCOME: Final = "chorus.verify.outcome"  # attempt: "passed" | "failed" | "unverified" (its worst piece)
VERIFY_WER: Final = "chorus.verify.wer"  # attempt: word error rate of what the recognizer heard
VERIFY_REASON: Final = "chorus.verify.reason"  # attempt: why a piece went unverified
ERROR_TYPE: Final = "error.type"  # OpenTelemetry's: the error's class name

AttemptOutcome = Literal["ok", "skipped", "unavailable", "failed", "timeout"]
SpeechOutcome = Literal["ok", "failed", "bad_input", "cancelled"]
"""`failed`: every engine failed (503); `bad_input`: the caller's fault (4xx); `cancelled`:
the client went away."""
