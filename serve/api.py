"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from chorus.breaker import CircuitOut
from chorus.personalities import LanguageCode, PersonalitySpec
from chorus.router import AttemptOut
from chorus.samples.report import QualityReport
from chorus.samples.storage import StoredSample
from chorus.stores.base import FileProblem, PersonalityStatus
from deployments.base import AudioFormat, EngineId, EngineStatus


class SpeechRequest(BaseModel):
    """`POST /v1/personalities/{name}/speech`"""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="What to say. Long text is split at sentence boundaries.")
    language: LanguageCode | None = Field(None, description="Defaults to the personality's primary language.")
    provider: EngineId | None = Field(None, description="Try this engine first instead of the active one.")
    format: AudioFormat = AudioFormat.wav
    stream: bool = Field(False, description="Send audio as each sentence is ready (wav or pcm).")


class OpenAISpeechRequest(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body; `voice` names a personality."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="tts-1, tts-1-hd, gpt-4o-mini-tts, or a Chorus engine id to try first.")
    input: str
    voice: str = Field(description="The personality name.")
    response_format: AudioFormat = AudioFormat.mp3
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(None, description="Accepted for compatibility; engines ignore it.")
    stream_format: Literal["audio"] = "audio"


class PersonalityOut(BaseModel):
    apiVersion: str
    kind: str
    metadata: dict[str, Any]
    spec: PersonalitySpec
    status: PersonalityStatus


class PersonalityList(BaseModel):
    items: list[PersonalityOut]
    problems: list[FileProblem] = Field(description="Files that serve nothing, and why.")


class ProviderOut(EngineStatus):
    timeout_s: float | None
    checked_at: datetime | None = Field(
        None, description="When this replica last asked the engine (statuses are cached for status_refresh_s)."
    )
    circuit: CircuitOut = Field(description="This ingress replica's circuit breaker for the engine.")
    quota_exhausted: list[str] = Field(
        default_factory=list, description="Voice classes whose monthly cloud allowance is used up (GET /v1/quotas)."
    )


class ProvidersOut(BaseModel):
    providers: list[ProviderOut]



class QuotaOut(BaseModel):
    """One cloud engine and voice class this UTC month."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    engine: EngineId
    voice_class: str = Field(description="The provider's price class, e.g. standard or neural.")
    used: int = Field(description="Characters synthesized this month.")
    allowed: int = Field(description="The monthly allowance.")
    remaining: int
    resets_at: datetime = Field(description="When the month ends (UTC) and the count starts again.")
    policy: Literal["enforce", "warn"]
    exhausted: bool = Field(description="Used up: skipped by the router (enforce) or only flagged (warn).")


class QuotasOut(BaseModel):
    """`GET /v1/quotas`"""

    quotas: list[QuotaOut]


class UploadOut(BaseModel):
    """`POST /v1/personalities/{name}/samples`"""

    sample: StoredSample
    report: QualityReport


# --- errors (shapes made in chorus.errors) ---------------------------------------------


class ErrorOut(BaseModel):
    """Every error answer of the Chorus API: `detail` says what went wrong; some carry more
    (`limit`, `attempts`, `code`, `errors`)."""

    detail: str


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorOut(BaseModel):
    """Every error answer on `/v1/audio/*`, in OpenAI's shape."""

    error: OpenAIError


class RejectedOut(ErrorOut):
    """A voice sample or clone reference that failed its checks."""

    problem: str
    checks: list[dict]
    similarity: float | None = Field(
        None, description="speaker_mismatch: the lowest cosine similarity to the personality's samples."
    )


class AllFailedOut(ErrorOut):
    attempts: list[AttemptOut]
