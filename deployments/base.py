"""The engine contract: the only thing TTS engine deployments share.

Every engine deployment (Piper, XTTS v2, StyleTTS2, the cloud engines) implements
`TTSEngine`. The ingress talks to engines only through these types, over Ray Serve
handles, so everything here must pickle: plain pydantic models and exceptions whose
constructor arguments round-trip through `args`.
"""

from __future__ import annotations

import abc
import io
import os
import re
from collections.abc import AsyncIterator
from enum import StrEnum
from typing import Any, ClassVar, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

EngineId = Literal["xtts_v2", "styletts2", "piper", "google_tts", "azure_tts", "ibm_watson"]
ENGINE_IDS: tuple[EngineId, ...] = get_args(EngineId)


class AudioFormat(StrEnum):
    """Encodings a client may ask for. Engines always return PCM; the ingress encodes."""

    wav = "wav"
    mp3 = "mp3"
    opus = "opus"
    aac = "aac"
    flac = "flac"
    pcm = "pcm"


class VoiceSampleRef(BaseModel):
    """A reference recording a cloning engine conditions on: canonical mono 16-bit WAV
    (24 kHz), either at `path` (the shared sample volume every replica mounts) or inline
    in `audio` (one-off cloning, where nothing is stored). `sha256` of the audio keys the
    engines' conditioning caches."""

    model_config = ConfigDict(frozen=True)

    id: str
    language: str
    sha256: str
    path: str | None = None
    audio: bytes | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VoiceSampleRef:
        if (self.path is None) == (self.audio is None):
            raise ValueError("a voice sample needs exactly one of path or audio")
        return self

    def read(self) -> bytes:
        """The WAV bytes: inline, from the shared volume, or from an S3-compatible bucket
        (boto3's usual credential chain; AWS_ENDPOINT_URL for non-AWS stores)."""
        if self.audio is not None:
            return self.audio
        assert self.path is not None
        if self.path.startswith("s3://"):
            import boto3

            bucket, _, key = self.path.removeprefix("s3://").partition("/")
            return boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        with open(self.path, "rb") as f:
            return f.read()


class SynthesisRequest(BaseModel):
    """One utterance for one engine. `settings` were validated against the engine's
    settings model (see `chorus.personalities`) before they got here."""

    text: str
    language: str
    voice: str | None = None
    variant: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    samples: list[VoiceSampleRef] = Field(default_factory=list)
    output_format: AudioFormat = AudioFormat.wav


class AudioResult(BaseModel):
    """Mono signed 16-bit little-endian PCM at the engine's native rate."""

    pcm: bytes
    sample_rate: int
    variant: str | None = Field(None, description="the model variant that spoke, for engines that have variants")

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate

    @classmethod
    def from_wav(cls, data: bytes, engine: str = "") -> AudioResult:
        """Decode a WAV answer (cloud engines get one) to mono s16le, mixing channels."""
        import numpy as np
        import soundfile as sf

        try:
            audio, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
        except (sf.LibsndfileError, RuntimeError, TypeError) as err:
            raise EngineFailedError(f"the engine returned audio that is not WAV: {err}", engine) from None
        mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1).astype(np.int16)
        return cls(pcm=mono.tobytes(), sample_rate=int(rate))


class AudioChunk(AudioResult):
    """One streamed piece of an utterance (Piper: one sentence)."""

    index: int


class VoiceInfo(BaseModel):
    id: str
    languages: list[str]
    sample_rate: int
    speakers: int = 1


class Capabilities(BaseModel):
    """What an engine can really do with the voices/models it has loaded."""

    engine: EngineId
    languages: list[str]
    voices: list[VoiceInfo] = Field(default_factory=list)
    variants: list[str] = Field(default_factory=list)
    cloning: bool = False
    streaming: bool = False
    max_characters: int
    sample_rate: int

    def speaks(self, language: str, voice: str | None = None) -> bool:
        """True when `language` (e.g. `en` or `en-US`) is spoken, by `voice` if given
        and known. An unknown voice is left for the engine to reject."""
        languages = self.languages
        if voice is not None:
            for info in self.voices:
                if info.id == voice:
                    languages = info.languages
                    break
        return language_matches(language, languages)


class Health(BaseModel):
    healthy: bool
    reason: str | None = None


class EngineStatus(BaseModel):
    """What `GET /v1/providers` shows for one engine."""

    engine: EngineId
    health: Health
    capabilities: Capabilities
    stats: dict[str, int] = Field(default_factory=dict, description="engine counters, e.g. conditioning cache hits")


# End of a sentence: terminal punctuation (Latin, CJK, Devanagari), optionally a closing
# quote or bracket, then whitespace. Engines stream one chunk per sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？।…])\s+|(?<=[.!?。！？।…][\"'”’)\]])\s+")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def language_matches(requested: str, spoken: list[str]) -> bool:
    """`en` matches `en-US`, `en-US` matches `en`, `en-GB` does not match `en-US`."""
    req = requested.replace("_", "-").lower()
    req_base = req.split("-")[0]
    for lang in spoken:
        have = lang.replace("_", "-").lower()
        if have == req or have == req_base or have.split("-")[0] == req:
            return True
    return False


# --- errors -----------------------------------------------------------------------
# Raised inside an engine replica, they reach the ingress wrapped in Ray's
# RayTaskError, which is also an instance of the original class. Each keeps its
# constructor arguments in `args` so it pickles.


class EngineError(Exception):
    """Base class; `reason` is shown to clients and in X-Chorus-Fallback."""

    def __init__(self, reason: str, engine: str = "") -> None:
        super().__init__(reason, engine)
        self.reason = reason
        self.engine = engine

    def __str__(self) -> str:
        return f"{self.engine}: {self.reason}" if self.engine else self.reason


class BadInputError(EngineError):
    """The request itself is wrong: never retried on another engine."""

    status_code: ClassVar[int] = 422


class TextTooLongError(BadInputError):
    status_code: ClassVar[int] = 413

    def __init__(self, reason: str, engine: str = "", limit: int = 0) -> None:
        Exception.__init__(self, reason, engine, limit)
        self.reason = reason
        self.engine = engine
        self.limit = limit


class EngineUnavailableError(EngineError):
    """The engine cannot serve this now (weights or voice missing, not deployed)."""


class EngineFailedError(EngineError):
    """The engine tried and failed."""


class EngineTimeoutError(EngineError):
    """No answer within the per-engine timeout."""


# --- where an engine's replicas run ---------------------------------------------------


class EngineEnvironment:
    """An engine whose libraries cannot share the main environment (XTTS, StyleTTS2) runs
    its replicas under its own interpreter: Ray's runtime_env `py_executable`
    (docs/engines.md). Decided where the application is built:

    `$<env_var>` if set (empty or `default`: the node's own Python, as in a cluster image
    made for the engine); else `~/.cache/chorus/venv-<name>` (`scripts/engine-env.sh
    <name>`) if it exists here; else none: the replica starts in the main environment and
    reports itself unhealthy for lack of its libraries. A path that does not exist is never
    used: Ray would retry the worker start forever."""

    def __init__(self, name: str, env_var: str) -> None:
        self.name = name
        self.env_var = env_var

    def python(self) -> str | None:
        value = os.environ.get(self.env_var)
        if value is not None:
            return None if value.strip() in ("", "default") else value.strip()
        path = os.path.expanduser(f"~/.cache/chorus/venv-{self.name}/bin/python")
        return path if os.path.exists(path) else None

    def runtime_env(self) -> dict[str, Any]:
        python = self.python()
        return {"py_executable": python} if python else {}

    def actor_options(self, num_cpus: float = 1.0, **extra: Any) -> dict[str, Any]:
        """`ray_actor_options` that keep the environment. A Serve config file that sets
        `ray_actor_options` replaces the whole dict, so it must repeat the runtime_env."""
        options: dict[str, Any] = {"num_cpus": num_cpus, **extra}
        env = self.runtime_env()
        if env:
            options["runtime_env"] = {**env, **options.get("runtime_env", {})}
        return options


# --- the contract -------------------------------------------------------------------


class TTSEngine(abc.ABC):
    """What every engine deployment implements.

    `check_health` is Ray Serve's replica health hook: it raises only when the
    replica itself is broken (Serve then restarts it). An engine that merely lacks
    weights stays up and reports it through `health()` so the router skips it.
    """

    engine_id: ClassVar[EngineId]

    @abc.abstractmethod
    async def capabilities(self) -> Capabilities: ...

    @abc.abstractmethod
    async def health(self) -> Health: ...

    @abc.abstractmethod
    async def synthesize(self, request: SynthesisRequest) -> AudioResult: ...

    @abc.abstractmethod
    def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]: ...

    async def stats(self) -> dict[str, int]:
        """Counters worth reporting (cloning engines: their conditioning cache)."""
        return {}

    async def status(self) -> EngineStatus:
        return EngineStatus(
            engine=self.engine_id,
            health=await self.health(),
            capabilities=await self.capabilities(),
            stats=await self.stats(),
        )

    def check_health(self) -> None:
        return None
