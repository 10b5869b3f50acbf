"""One thing to say: what a speech route hands the router.

Every speech route (a personality's own, OpenAI's `/v1/audio/speech`, `/v1/clone`)
checks its request against the personality and builds one `Utterance`; the router and
the response read everything they need from it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from chorus.personalities import Personality
from deployments.base import AudioFormat, EngineId, VoiceSampleRef


class Utterance(BaseModel):
    model_config = ConfigDict(frozen=True)

    personality: Personality
    text: str = Field(min_length=1)
    language: str = Field(description="One the personality speaks (its primary when the caller named none).")
    provider: EngineId | None = Field(None, description="Tried first instead of the personality's active engine.")
    speed: float = Field(1.0, gt=0, description="Multiplies the engine's speed setting (OpenAI's `speed`).")
    samples: list[VoiceSampleRef] | None = Field(
        None, description="What a cloning engine clones from; None: the personality's stored samples."
    )
    format: AudioFormat = AudioFormat.wav
    stream: bool = False
    timestamps: bool = Field(False, description="Word timings asked for: engines that have their own report them.")
    cache: bool = Field(True, description="Read and keep audio in the cache; False: `Cache-Control: no-store`.")
    caller: str | None = Field(None, description="The name of the API key that asked (None: keys are off).")

    def cache_scope(self) -> str | None:
        """Whom this utterance's cached audio may answer, as part of every cache key: the
        personality's callers, or only this key's (the personality's `cache.scope`); None:
        the cache is not used (`off`, or the caller said `no-store`)."""
        scope = self.personality.spec.cache.scope
        if not self.cache or scope == "off":
            return None
        if scope == "key":
            return f"key:{self.personality.name}:{self.caller or ''}"
        return f"personality:{self.personality.name}"
