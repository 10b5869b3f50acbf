"""The engine contract: the only thing TTS engine deployments share.

Every engine deployment (Piper, XTTS v2, StyleTTS2, the cloud engines) implements
`TTSEngine`. The ingress talks to engines only through these types, over Ray Serve
handles, so everything here must pickle: plain pydantic models and exceptions whose
constructor arguments round-trip through `args`.
"""

from __future__ import annotations

import abc
import hashlib
import io
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    InstanceOf,
    SerializeAsAny,
    StringConstraints,
    ValidationError,
    computed_field,
    model_validator,
)
from pydantic.alias_generators import to_camel

EngineId = Literal["xtts_v2", "styletts2", "piper", "google_tts", "azure_tts", "ibm_watson"]
ENGINE_IDS: tuple[EngineId, ...] = get_args(EngineId)
# A name an engine or a personality uses: voice, variant, style, sample id.
VoiceId = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$")]


class AudioFormat(StrEnum):
    """Encodings a client may ask for. Engines always return PCM; the ingress encodes."""

    wav = "wav"
    mp3 = "mp3"
    opus = "opus"
    aac = "aac"
    flac = "flac"
    pcm = "pcm"
    mulaw = "mulaw"  # G.711 μ-law (telephony; 8 kHz unless a rate is asked for)
    alaw = "alaw"  # G.711 A-law


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
    # For an `s3://` path: the S3-compatible endpoint the sample store uses (None: AWS) and
    # the account that must own the bucket (a bucket name someone else claimed must not
    # supply the voice).
    endpoint_url: str | None = None
    expected_owner: str | None = None

    @model_validator(mode="after")
    def _one_source(self) -> VoiceSampleRef:
        if (self.path is None) == (self.audio is None):
            raise ValueError("a voice sample needs exactly one of path or audio")
        return self


# --- settings -----------------------------------------------------------------------


class DurationWindow(BaseModel):
    """A range of recording lengths, in seconds, both ends included."""

    model_config = ConfigDict(frozen=True)

    min_s: float = Field(ge=0)
    max_s: float

    @model_validator(mode="after")
    def _ordered(self) -> DurationWindow:
        if self.max_s < self.min_s:
            raise ValueError(f"max_s {self.max_s:g} is below min_s {self.min_s:g}")
        return self

    def __contains__(self, seconds: float) -> bool:
        return self.min_s <= seconds <= self.max_s

    def __str__(self) -> str:
        return f"{self.min_s:g}-{self.max_s:g} s"

    @property
    def bounds(self) -> tuple[float, float]:
        return (self.min_s, self.max_s)


class CloningWindow(BaseModel):
    """How long a reference sample a cloning engine clones from may be (`usable`) and
    should be (`optimal`), from the engine's documentation."""

    model_config = ConfigDict(frozen=True)

    usable: DurationWindow
    optimal: DurationWindow


class EngineSettings(BaseModel):
    """What a personality tells one engine: each engine's model (in `deployments.settings`)
    subclasses this, camelCase on the wire, validated before a request is built."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    engine: ClassVar[EngineId]
    # The field a request-level speed (OpenAI's `speed`) multiplies; None: the engine has none.
    speed_field: ClassVar[str | None] = None
    # The sample durations a cloning engine clones from; None: the engine does not clone.
    cloning_window: ClassVar[CloningWindow | None] = None

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.speed_field is not None and cls.speed_field not in cls.model_fields:
            raise TypeError(f"{cls.__name__}.speed_field {cls.speed_field!r} is not one of its fields")

    def with_speed(self, speed: float) -> Self:
        """These settings with the speed field multiplied by `speed`; a result outside the
        field's bounds is the caller's mistake."""
        field = self.speed_field
        if speed == 1.0 or field is None:
            return self
        scaled = getattr(self, field) * speed
        try:
            return self.model_validate({**self.model_dump(), field: scaled})
        except ValidationError as err:
            alias = type(self).model_fields[field].alias
            said = f"speed {speed} makes {self.engine}'s {alias} {scaled:g}, outside its range: {err.errors()[0]['msg']}"
            raise BadInputError(said, self.engine, public=said) from None  # numbers and our field's bounds


SettingsT = TypeVar("SettingsT", bound=EngineSettings)


# Lexicon text and its spellings go into SSML and Piper's [[ phonemes ]]: none of the
# characters that would end or open markup there.
_LEXICON_TEXT = r"^[^\[\]<>&\"\n]+$"


class Pronunciation(BaseModel):
    """How a word or phrase of a personality's lexicon is said: `ipa` (phonemes, for the
    engines that take them: Piper inline, the cloud engines' SSML `<phoneme>`) and/or `alias`
    (a respelling every engine reads: XTTS and StyleTTS2 speak it, SSML `<sub>`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str = Field(min_length=1, max_length=64, pattern=_LEXICON_TEXT, description="as written in the text")
    ipa: str | None = Field(None, min_length=1, max_length=128, pattern=_LEXICON_TEXT)
    alias: str | None = Field(None, min_length=1, max_length=128, pattern=_LEXICON_TEXT)

    @model_validator(mode="after")
    def _says_how(self) -> Pronunciation:
        if self.ipa is None and self.alias is None:
            raise ValueError(f"lexicon entry {self.text!r}: give ipa, alias or both")
        return self


def lexicon_runs(text: str, lexicon: Sequence[Pronunciation]) -> list[tuple[str, Pronunciation | None]]:
    """`text` as runs: plain text, and each lexicon phrase as written there (whole words, any
    case; the longest phrase wins where two overlap), with its entry."""
    if not lexicon:
        return [(text, None)]
    entries = {p.text.casefold(): p for p in lexicon}
    phrases = sorted(entries, key=len, reverse=True)
    pattern = re.compile(r"(?<!\w)(" + "|".join(re.escape(p) for p in phrases) + r")(?!\w)", re.IGNORECASE)
    runs: list[tuple[str, Pronunciation | None]] = []
    at = 0
    for match in pattern.finditer(text):
        if match.start() > at:
            runs.append((text[at:match.start()], None))
        runs.append((match.group(0), entries[match.group(0).casefold()]))
        at = match.end()
    if at < len(text):
        runs.append((text[at:], None))
    return runs


def respelled(text: str, lexicon: Sequence[Pronunciation]) -> str:
    """`text` with each lexicon phrase replaced by its alias (where it has one): what an engine
    that reads only text says."""
    return "".join(p.alias if p is not None and p.alias else run for run, p in lexicon_runs(text, lexicon))


class SynthesisRequest(BaseModel):
    """One utterance for one engine. `settings` is the engine's own settings model,
    validated before it got here; None means that model's defaults."""

    text: str
    language: str
    voice: str | None = None
    variant: str | None = None
    settings: SerializeAsAny[InstanceOf[EngineSettings]] | None = None
    samples: list[VoiceSampleRef] = Field(default_factory=list)
    output_format: AudioFormat = AudioFormat.wav
    timestamps: bool = Field(False, description="the caller wants word timings: an engine that has its own "
                             "durations reports them in `Sentence.words`")
    lexicon: list[Pronunciation] = Field(
        default_factory=list, description="the personality's pronunciations; each engine says them in its own form")
    trace_context: dict[str, str] = Field(
        default_factory=dict,
        description="W3C trace context (`traceparent`, `tracestate`) of the router's attempt span: the "
        "engine's span continues that trace (`deployments.tracing`). Empty: no trace to continue.",
    )

    def settings_as(self, model: type[SettingsT]) -> SettingsT:
        """The settings as the engine that reads `model` takes them."""
        if self.settings is None:
            return model()
        if not isinstance(self.settings, model):
            raise BadInputError(
                f"{type(self.settings).__name__} sent to {model.engine}, which takes {model.__name__}",
                model.engine,
            )
        return self.settings


class WordSpan(BaseModel):
    """When a word of a sentence is heard, in seconds from the sentence's start."""

    model_config = ConfigDict(frozen=True)

    text: str
    start: float = Field(ge=0)
    end: float = Field(ge=0)


class Sentence(BaseModel):
    """One sentence an engine spoke: the exact text it was given for it and the samples its
    audio took; `words` when the engine knows when each of its words is heard (its own
    durations: Piper's phonemes, Google's marks), one per whitespace-separated token that has a
    letter or digit."""

    model_config = ConfigDict(frozen=True)

    text: str
    samples: int = Field(ge=0)
    words: list[WordSpan] | None = None


class AudioResult(BaseModel):
    """Mono signed 16-bit little-endian PCM at the engine's native rate."""

    pcm: bytes
    sample_rate: int
    variant: str | None = Field(None, description="the model variant that spoke, for engines that have variants")
    sentences: list[Sentence] = Field(
        default_factory=list, description="each sentence of the audio, in order, with the text it says, from an "
        "engine that speaks `split_sentences`' sentences one by one (Piper); empty: not known. The audio cache "
        "keeps a sentence on its own only where this text is exactly the sentence it looked up.",
    )

    @classmethod
    def joined(cls, parts: Sequence[AudioResult]) -> AudioResult:
        """`parts` one after another (one PCM copy, none for a single part); their sentences
        are known if every part knows its own."""
        sentences = [s for p in parts for s in p.sentences] if all(p.sentences for p in parts) else []
        return cls(pcm=b"".join(p.pcm for p in parts), sample_rate=parts[0].sample_rate, variant=parts[0].variant,
                   sentences=sentences)

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
    cloning_window: CloningWindow | None = Field(
        None, description="the sample durations it clones from (from its settings model); None: no cloning"
    )
    streaming: bool = False
    one_chunk_per_call: bool = Field(
        False, description="a stream answers each call with one chunk, its whole audio (the cloud engines: one "
        "provider call, one answer), not chunk by chunk as it is spoken",
    )
    max_characters: int
    sample_rate: int
    model_identity: str = Field(
        description="what the engine speaks with, as it changes the audio: a digest of its model or voice files "
        "(computed once at load), or a cloud service's protocol version and endpoint. The ingress's audio cache "
        "keys on it, so new weights never answer with audio of the old ones."
    )

    @computed_field  # type: ignore[prop-decorator]
    @property
    def cloning(self) -> bool:
        """Clones from reference samples: exactly the engines with a sample window."""
        return self.cloning_window is not None

    @model_validator(mode="before")
    @classmethod
    def _cloning_follows_window(cls, data: Any) -> Any:
        # `cloning` is derived; a dumped copy carries it back, and it must agree.
        if isinstance(data, dict) and "cloning" in data:
            if bool(data["cloning"]) != (data.get("cloning_window") is not None):
                raise ValueError("cloning is true exactly when cloning_window is set")
        return data

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


def files_digest(paths: Iterable[Path]) -> str:
    """sha256 over the files' names and contents, in the order given: a model's identity."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# End of a sentence: terminal punctuation (Latin, CJK, Devanagari), optionally a closing
# quote or bracket, then whitespace. Engines stream one chunk per sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？।…])\s+|(?<=[.!?。！？।…][\"'”’)\]])\s+")


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def spoken_words(sentence: str) -> list[str]:
    """The words of a sentence as timestamps name them: its whitespace-separated tokens that
    have a letter or digit, punctuation kept ("Hello," "world!")."""
    return [t for t in sentence.split() if any(c.isalnum() for c in t)]


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
    """Base class. `reason` is the whole story, for the ingress's log: it may name model
    files, endpoints or quote a provider. Clients see `public` when the engine sets it
    (fixed text built only from validated values, which the engine vouches is safe to
    show), otherwise a message the ingress picks by the error's type."""

    def __init__(self, reason: str, engine: str = "", public: str | None = None) -> None:
        super().__init__(reason, engine, public)
        self.reason = reason
        self.engine = engine
        self.public = public

    def __str__(self) -> str:
        return f"{self.engine}: {self.reason}" if self.engine else self.reason


class BadInputError(EngineError):
    """The request itself is wrong: never retried on another engine."""



class TextTooLongError(BadInputError):
    def __init__(self, reason: str, engine: str = "", limit: int = 0) -> None:
        Exception.__init__(self, reason, engine, limit)
        self.reason = reason
        self.engine = engine
        self.public = None  # the ingress says the limit itself
        self.limit = limit


class EngineUnavailableError(EngineError):
    """The engine cannot serve this now (weights or voice missing, not deployed)."""


class EngineFailedError(EngineError):
    """The engine tried and failed."""


class EngineTimeoutError(EngineError):
    """No answer within the per-engine timeout."""


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


NOTHING_SPEAKABLE = "text contains nothing speakable"


def checked_text(text: str, limit: int, engine: str, speaker: str, *, unit: str = "characters") -> str:
    """The text stripped, refused when empty (422) or over the engine's per-request limit
    (413, naming the limit): every engine checks this before any work."""
    text = text.strip()
    if not text:
        raise BadInputError("text is empty", engine, public="text is empty")
    size = len(text) if unit == "characters" else len(text.encode())
    if size > limit:
        raise TextTooLongError(f"text is {size} {unit}; {speaker} takes at most {limit} per request", engine, limit)
    return text
