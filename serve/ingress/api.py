"""Request and response bodies of the HTTP API (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from chorus.auth.keys import KeyLimits
from chorus.auth.scopes import Scope
from chorus.personalities import LanguageCode, PersonalitySpec
from chorus.samples.report import QualityReport
from chorus.samples.storage import StoredSample
from chorus.speech.attempts import AttemptOut
from chorus.speech.breaker import CircuitOut
from chorus.speech.replicas import ReplicaCount
from chorus.speech.timestamps import Timestamps
from chorus.stores.base import FileProblem, PersonalityStatus
from deployments.base import AudioFormat, EngineId, EngineStatus


def _http_url(value: str) -> str:
    # Templates hold {placeholders} that URL types would escape, so only the scheme is checked:
    # a link the page renders must never be javascript: or data:.
    if not value.startswith(("http://", "https://")):
        raise ValueError(f"not an http(s) URL: {value!r}")
    return value


HttpUrlText = Annotated[str, AfterValidator(_http_url)]
SampleRate = Annotated[int, Field(ge=8000, le=48000)]


class SpeechRequest(BaseModel):
    """`POST /v1/personalities/{name}/speech`"""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="What to say. Long text is split at sentence boundaries.")
    language: LanguageCode | None = Field(None, description="Defaults to the personality's primary language.")
    provider: EngineId | None = Field(None, description="Try this engine first instead of the active one.")
    format: AudioFormat = Field(AudioFormat.wav, description="mulaw and alaw (G.711) are 8 kHz unless sample_rate says "
                                "otherwise: a WAV file whole, raw bytes streamed.")
    stream: bool = Field(False, description="Send audio as each sentence is ready (wav, pcm, mp3, mulaw or alaw).")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="sse: stream as server-sent events (speech.audio.delta, speech.audio.done, error), "
        "as OpenAI's speech API does; implies `stream`.")
    sample_rate: SampleRate | None = Field(None, description="Resample to this rate (Hz); default: the engine's own, "
                                           "8000 for mulaw and alaw.")
    timestamps: bool = Field(False, description="Answer JSON: the audio (base64) and when each word is heard "
                             "(SpeechWithTimestamps); with stream_format sse, `speech.word` events.")

    @model_validator(mode="after")
    def _timestamps_need_a_whole_answer_or_events(self) -> Self:
        if self.timestamps and self.stream and self.stream_format != "sse":
            raise ValueError("timestamps come with a whole answer (JSON) or as sse events, not in an audio stream")
        return self


class SpeechWithTimestamps(Timestamps):
    """`POST /v1/personalities/{name}/speech` with `"timestamps": true`."""

    audio: str = Field(description="The audio, base64.")
    format: AudioFormat
    sample_rate: int
    engine: EngineId = Field(description="The engine that spoke.")


class OpenAISpeechRequest(BaseModel):
    """OpenAI's `POST /v1/audio/speech` body; `voice` names a personality."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(description="tts-1, tts-1-hd, gpt-4o-mini-tts, or a Chorus engine id to try first.")
    input: str
    voice: str = Field(description="A personality's name or one of its aliases.")
    response_format: AudioFormat = AudioFormat.mp3
    speed: float = Field(1.0, ge=0.25, le=4.0)
    instructions: str | None = Field(
        None, max_length=4096, description="A style prompt. No Chorus engine takes one: it is accepted, and the answer "
        "says `X-Chorus-Instructions: not-applied`.")
    stream_format: Literal["audio", "sse"] = Field(
        "audio", description="audio: the whole answer; sse: server-sent events as each sentence is ready "
        "(wav, pcm, mp3, mulaw or alaw).")
    sample_rate: SampleRate | None = Field(None, description="A Chorus extension: resample to this rate (Hz); default "
                                           "24000 for pcm (as OpenAI), 8000 for mulaw and alaw, else the engine's own.")


class VoiceOut(BaseModel):
    """A personality as a voice (`GET /v1/audio/voices`)."""

    id: str = Field(description="The personality's name: `voice` on /v1/audio/speech, the path of its speech route.")
    name: str = Field(description="Its display name (the id when it has none).")
    aliases: list[str] = Field(description="Other names `voice` takes for it.")
    languages: list[str]
    primary_language: str
    engine: EngineId = Field(description="The engine that speaks first.")
    engines: list[EngineId] = Field(description="The whole chain, in the order tried.")
    clones: bool = Field(description="Its first engine speaks in the voice of its samples.")
    samples: int = Field(description="How many reference samples it has.")


class VoiceList(BaseModel):
    voices: list[VoiceOut]


class ModelOut(BaseModel):
    """One entry of OpenAI's model list."""

    id: str
    object: Literal["model"] = "model"
    created: int = Field(0, description="Unknown for Chorus's models: 0.")
    owned_by: str = "chorus"


class ModelList(BaseModel):
    """`GET /v1/models`: OpenAI's names (the personality's own chain) and the engine ids
    (that engine first)."""

    object: Literal["list"] = "list"
    data: list[ModelOut]


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
    replicas: ReplicaCount | None = Field(
        None, description="The engine's replicas as Serve's controller counts them (null outside Ray Serve).",
    )
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


class SampleCheckOut(BaseModel):
    """`POST /v1/personalities/{name}/samples/check`: what an upload of the same recording
    would conclude, with nothing stored."""

    accepted: bool = Field(description="An upload of it now would be stored.")
    problems: list[str] = Field(description="Why it would be refused (empty when accepted).")
    duplicate_of: str | None = Field(None, description="The stored sample with the same audio.")
    report: QualityReport


class ScopeOut(BaseModel):
    scope: Scope
    allows: str


class KeyOut(BaseModel):
    """`GET /v1/keys/me`: the key the request came with, and what it may do."""

    auth: bool = Field(description="False when the server runs without keys: every route is open to whoever reaches it.")
    name: str | None = Field(description="The key's name (never the key); null without keys.")
    scopes: list[ScopeOut]
    limits: KeyLimits = Field(description="What the key may spend (absent: unlimited).")
    routes: list[str] = Field(description="Every 'METHOD /path' of the API this key may call.")


class DashboardLinks(BaseModel):
    """Where the dashboard's links lead (`IngressArgs.links`), as `GET /v1/dashboard/links`
    returns them: the Ray dashboard, and a trace viewer (Jaeger, Tempo, ...) by template."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    ray_dashboard: HttpUrlText | None = Field(None, description="The Ray dashboard, e.g. http://127.0.0.1:8265.")
    trace: HttpUrlText | None = Field(
        None, description="One trace, {trace_id} in it; e.g. http://jaeger:16686/trace/{trace_id}. The dashboard "
        "links each Try it answer's trace (its `traceresponse` header).",
    )
    engine_traces: HttpUrlText | None = Field(
        None, description="An engine's recent traces, {engine} in it; e.g. "
        'http://jaeger:16686/search?service=chorus&tags=%7B%22chorus.engine%22%3A%22{engine}%22%7D.',
    )

    @model_validator(mode="after")
    def _placeholders(self) -> Self:
        for field, placeholder in (("trace", "{trace_id}"), ("engine_traces", "{engine}")):
            value = getattr(self, field)
            if value is not None and placeholder not in value:
                raise ValueError(f"links.{field} must contain {placeholder} where the value goes: {value!r}")
        return self


# --- errors (shapes made in chorus.ingress.errors) ---------------------------------------------


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
