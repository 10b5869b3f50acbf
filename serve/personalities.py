"""The personality schema, defined once.

A personality is a named voice: which engine speaks first, which ones take over, what
each engine is told, which languages it speaks and which reference samples it clones
from. The same model validates personality files, the HTTP API's PUT body and (later)
the CRD; field names are camelCase on the wire and snake_case in Python. What each engine
is told is that engine's own settings model (`deployments.settings`), composed here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Generic, Literal

import yaml
from pydantic import (
    AnyUrl,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from chorus.common import documents
from chorus.common.constants import API_VERSION, KIND, MAX_VOICE_SAMPLES
from deployments.base import EngineId, EngineSettings, Pronunciation, SettingsT, VoiceId
from deployments.settings import (
    AzureTTSSettings,
    GoogleTTSSettings,
    IBMWatsonSettings,
    PiperSettings,
    StyleTTS2Settings,
    XTTSSettings,
)

# Kubernetes object names (RFC 1123 label): the same name works as a file, a URL path
# segment and a VoicePersonality's metadata.name.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
PersonalityName = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
# Another name `voice` may give a personality by (OpenAI's alloy, nova, ...): the same
# spelling as a name, so an alias is also a valid ConfigMap key and URL segment.
Alias = Annotated[str, StringConstraints(pattern=NAME_PATTERN, max_length=63)]
MAX_ALIASES = 16
MAX_LEXICON = 256
# BCP 47 primary language with an optional region: en, en-US, pt-BR, fil.
LanguageCode = Annotated[
    str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Z]{2}|-[0-9]{3})?$", max_length=8)
]


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ProviderConfig(_Camel, Generic[SettingsT]):
    enabled: bool = True
    voice: VoiceId | None = None
    variant: VoiceId | None = None
    settings: SettingsT


class XTTSProvider(ProviderConfig[XTTSSettings]):
    settings: XTTSSettings = XTTSSettings()


class StyleTTS2Provider(ProviderConfig[StyleTTS2Settings]):
    settings: StyleTTS2Settings = StyleTTS2Settings()


class PiperProvider(ProviderConfig[PiperSettings]):
    settings: PiperSettings = PiperSettings()


class GoogleTTSProvider(ProviderConfig[GoogleTTSSettings]):
    settings: GoogleTTSSettings = GoogleTTSSettings()


class AzureTTSProvider(ProviderConfig[AzureTTSSettings]):
    settings: AzureTTSSettings = AzureTTSSettings()


class IBMWatsonProvider(ProviderConfig[IBMWatsonSettings]):
    settings: IBMWatsonSettings = IBMWatsonSettings()


class Providers(BaseModel):
    """Engine id -> its configuration for this personality (snake_case ids, as engines)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    xtts_v2: XTTSProvider | None = None
    styletts2: StyleTTS2Provider | None = None
    piper: PiperProvider | None = None
    google_tts: GoogleTTSProvider | None = None
    azure_tts: AzureTTSProvider | None = None
    ibm_watson: IBMWatsonProvider | None = None

    def get(self, engine: EngineId) -> ProviderConfig[EngineSettings] | None:
        return getattr(self, engine)

    def configured(self) -> list[EngineId]:
        return [e for e in type(self).model_fields if getattr(self, e) is not None]  # type: ignore[misc]


class Languages(_Camel):
    primary: LanguageCode = "en"
    supported: list[LanguageCode] = Field(default_factory=list, max_length=64)

    @model_validator(mode="after")
    def _primary_supported(self) -> Languages:
        if self.supported and self.primary not in self.supported:
            raise ValueError(
                f"languages.primary {self.primary!r} must be one of languages.supported {self.supported}"
            )
        return self

    def all(self) -> list[str]:
        return self.supported or [self.primary]


# A sample's id names its file and its object key wherever it is stored (the sample store
# validates it again): no path separators, no leading dot (temp files and locks are dot-files),
# nothing a shell or URL must escape.
SAMPLE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
SampleId = Annotated[str, StringConstraints(pattern=SAMPLE_ID_PATTERN)]


class VoiceSample(_Camel):
    id: SampleId
    url: AnyUrl | None = None
    stored: bool = False
    language: LanguageCode = "en"
    notes: str | None = Field(None, max_length=1024)

    @model_validator(mode="after")
    def _source(self) -> VoiceSample:
        if self.url is None and not self.stored:
            raise ValueError(f"voiceSamples[{self.id}]: give a url or mark it stored")
        return self


class CacheSettings(_Camel):
    scope: Literal["personality", "key", "off"] = Field(
        "personality",
        description="Whom audio kept for this personality may answer: any caller of this personality "
        "(personality), only the API key that asked for it (key: no key learns from the cache, or from how fast "
        "it answers, what another key had this voice say), or nobody (off: its audio is never kept).",
    )


class LoudnessSettings(_Camel):
    enabled: bool = Field(True, description="Level every answer (off: each engine's own level, as it spoke).")
    target_lufs: float = Field(
        -16.0, ge=-40.0, le=-5.0,
        description="Integrated loudness (EBU R128, LUFS) every answer is brought to, whichever engine speaks.",
    )
    true_peak_db: float = Field(-1.0, ge=-9.0, le=0.0, description="The ceiling (dBTP) a limiter keeps peaks under.")


class VerifySettings(_Camel):
    """Speech recognition listens to each piece before it is sent (English: pocketsphinx;
    other languages are answered unverified, and say so)."""

    max_word_error_rate: float = Field(
        0.5, ge=0.0, le=1.0,
        description="The most word errors per word of text a piece may have and pass; a word heard as another "
        "counts as the share of its sounds that differ. Ordinary sentences of the bundled Piper voice score 0-0.4, "
        "another text's audio 0.73 and more.",
    )
    mode: Literal["enforce", "report"] = Field(
        "enforce",
        description="enforce: a piece over the limit fails its engine's attempt and the next engine of the chain "
        "speaks; report: it is sent anyway, and the measured rate is told (X-Chorus-Verify, traces, stats).",
    )


class PersonalitySpec(_Camel):
    display_name: str | None = Field(None, max_length=256)
    aliases: list[Alias] = Field(
        default_factory=list, max_length=MAX_ALIASES,
        description="Other names `voice` may call this personality by (e.g. OpenAI's alloy or nova), unique across "
        "personalities.",
    )
    active_provider: EngineId
    fallback_chain: list[EngineId] = Field(default_factory=list, max_length=6)
    languages: Languages = Languages()
    providers: Providers
    voice_samples: list[VoiceSample] = Field(default_factory=list, max_length=MAX_VOICE_SAMPLES)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    loudness: LoudnessSettings = Field(default_factory=LoudnessSettings)
    verify: VerifySettings | None = Field(None, description="Check each piece's words before it is sent; none: "
                                          "not checked.")
    lexicon: list[Pronunciation] = Field(
        default_factory=list, max_length=MAX_LEXICON,
        description="How words and phrases are said: `ipa` (phonemes) and/or `alias` (a respelling); each engine "
        "gets them in its own form (Piper: inline phonemes; Google, Azure, IBM: SSML phoneme or sub; XTTS v2, "
        "StyleTTS2: the alias).",
    )

    @model_validator(mode="after")
    def _chain_is_configured(self) -> PersonalitySpec:
        configured = self.providers.configured()
        if self.active_provider not in configured:
            raise ValueError(
                f"activeProvider {self.active_provider!r} is not configured in providers "
                f"(configured: {configured})"
            )
        seen: set[str] = {self.active_provider}
        for i, engine in enumerate(self.fallback_chain):
            if engine not in configured:
                raise ValueError(
                    f"fallbackChain[{i}] {engine!r} is not configured in providers "
                    f"(configured: {configured})"
                )
            if engine in seen:
                raise ValueError(
                    f"fallbackChain[{i}] {engine!r} appears earlier in the chain or is the "
                    "activeProvider; list each engine once"
                )
            seen.add(engine)
        ids = [s.id for s in self.voice_samples]
        if len(ids) != len(set(ids)):
            raise ValueError(f"voiceSamples ids must be unique, got {ids}")
        if len(self.aliases) != len(set(self.aliases)):
            raise ValueError(f"aliases must be unique, got {self.aliases}")
        said = [p.text.casefold() for p in self.lexicon]
        if len(said) != len(set(said)):
            raise ValueError("lexicon texts must be unique (compared ignoring case)")
        return self

    def chain(self) -> list[EngineId]:
        return [self.active_provider, *self.fallback_chain]


class Metadata(BaseModel):
    model_config = ConfigDict(extra="allow")
    name: PersonalityName


class PersonalityResource(BaseModel):
    """The Kubernetes-shaped document: what `kubectl apply` and the files directory hold."""

    model_config = ConfigDict(extra="allow")
    api_version: Literal["voice.chorus.dev/v1alpha1"] = Field(API_VERSION, alias="apiVersion")
    kind: Literal["VoicePersonality"] = KIND
    metadata: Metadata
    spec: PersonalitySpec


class Personality(BaseModel):
    """A named, validated personality as the router uses it."""

    model_config = ConfigDict(frozen=True)

    name: PersonalityName
    spec: PersonalitySpec

    def to_resource(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"name": self.name},
            "spec": self.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
        }


class PersonalityError(ValueError):
    """A personality document that cannot be used; `reason` names the field."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def describe_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem, each naming the field path in the document's own spelling."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        loc = re.sub(r"\.(\d+)", r"[\1]", loc)
        where = ".".join(p for p in (prefix, loc) if p)
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"{where}: {msg}" if where else msg)
    return "; ".join(lines)


def parse_spec(data: Any, *, prefix: str = "spec") -> PersonalitySpec:
    try:
        return PersonalitySpec.model_validate(data)
    except ValidationError as err:
        raise PersonalityError(describe_validation_error(err, prefix)) from None


def parse_document(data: Any, *, default_name: str) -> Personality:
    """A personality from a parsed file: a VoicePersonality resource or a bare spec
    (then named after its file)."""
    if not isinstance(data, dict):
        raise PersonalityError("a personality document must be a mapping")
    if "spec" in data or "kind" in data or "metadata" in data:
        try:
            res = PersonalityResource.model_validate(data)
        except ValidationError as err:
            raise PersonalityError(describe_validation_error(err)) from None
        return Personality(name=res.metadata.name, spec=res.spec)
    try:
        name = Metadata(name=default_name).name
    except ValidationError:
        raise PersonalityError(
            f"file name {default_name!r} is not a valid personality name "
            f"(lowercase letters, digits and '-', at most 63)"
        ) from None
    return Personality(name=name, spec=parse_spec(data, prefix=""))


def parse_text(text: str, *, default_name: str) -> Personality:
    try:
        docs = documents.load_all(text)
    except yaml.YAMLError as err:
        raise PersonalityError(f"not valid YAML/JSON: {err}") from None
    except documents.DocumentRefused as err:
        raise PersonalityError(err.reason) from None
    if len(docs) != 1:
        raise PersonalityError(f"expected exactly one document, found {len(docs)}")
    return parse_document(docs[0], default_name=default_name)


def dump_yaml(personality: Personality) -> str:
    return yaml.safe_dump(personality.to_resource(), sort_keys=False)
