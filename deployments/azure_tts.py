"""Azure AI Speech text-to-speech engine over the documented REST API.

The Speech SDK synthesizes over a websocket; the REST API (POST SSML to
/cognitiveservices/v1, GET /cognitiveservices/voices/list) is the same service over plain
HTTPS, which is what we call with httpx. The voice list drives `capabilities()` and
`health()`; a missing key or an unreachable region never stops the replica from starting,
it only makes it unhealthy.
"""

from __future__ import annotations

import asyncio
import io
import os
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from xml.sax.saxutils import escape, quoteattr

import httpx
import numpy as np
import soundfile as sf
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError
from ray import serve

from deployments.base import (
    AudioChunk,
    AudioResult,
    BadInputError,
    Capabilities,
    EngineError,
    EngineFailedError,
    EngineUnavailableError,
    Health,
    SynthesisRequest,
    TextTooLongError,
    TTSEngine,
    VoiceInfo,
    language_matches,
)
from serve.personalities import AzureTTSSettings

ENGINE = "azure_tts"
SAMPLE_RATE = 24_000
OUTPUT_FORMAT = "riff-24khz-16bit-mono-pcm"
KEY_ENV = "AZURE_SPEECH_KEY"
REGION_ENV = "AZURE_SPEECH_REGION"
# After a failed voice-list fetch, look again this soon (capped by voices_refresh_s).
RETRY_AFTER_FAILURE_S = 10.0
# A health probe must answer quickly even when the service hangs.
PROBE_TIMEOUT_S = 10.0


class AzureTTSConfig(BaseModel):
    """The engine's part of the app builder args."""

    model_config = ConfigDict(extra="forbid")

    region: str | None = Field(None, description=f"e.g. westeurope; None = ${REGION_ENV}")
    endpoint: str | None = Field(
        None,
        description="base URL instead of https://{region}.tts.speech.microsoft.com "
        "(sovereign clouds, on-premises containers, tests)",
    )
    key: SecretStr | None = Field(None, description=f"Speech resource key; None = ${KEY_ENV}")
    default_voice: str = "en-US-JennyNeural"
    max_characters: int = Field(5000, gt=0, description="text characters per request")
    timeout_s: float = Field(30.0, gt=0, description="per-request timeout")
    voices_refresh_s: float = Field(300.0, gt=0)
    user_agent: str = Field("chorus", max_length=255, description="the service requires one")


@serve.deployment(name=ENGINE, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class AzureTTSEngine(TTSEngine):
    engine_id = "azure_tts"

    def __init__(self, config: AzureTTSConfig | dict[str, Any] | None = None) -> None:
        self.config = AzureTTSConfig.model_validate(config or {})
        key = self.config.key.get_secret_value() if self.config.key else os.environ.get(KEY_ENV)
        region = self.config.region or os.environ.get(REGION_ENV)
        self._key = key or ""
        self._base_url = (
            self.config.endpoint.rstrip("/")
            if self.config.endpoint
            else f"https://{region}.tts.speech.microsoft.com" if region else ""
        )
        self._setup_problem: str | None = None
        if not self._base_url:
            self._setup_problem = f"no Azure region: set region or endpoint, or ${REGION_ENV}"
        elif not key:
            self._setup_problem = f"no Azure Speech key: set key or ${KEY_ENV}"
        # Created on first use, inside the event loop that will drive it.
        self._http: httpx.AsyncClient | None = None
        self._voices: list[VoiceInfo] | None = None
        self._problem: str | None = None
        self._next_refresh = 0.0
        self._refresh_lock = asyncio.Lock()

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self.config.timeout_s,
                headers={"Ocp-Apim-Subscription-Key": self._key, "User-Agent": self.config.user_agent},
            )
        return self._http

    # --- voice list, health, capabilities ---------------------------------------------

    async def _refresh_voices(self) -> None:
        if self._setup_problem or time.monotonic() < self._next_refresh:
            return
        async with self._refresh_lock:
            if time.monotonic() < self._next_refresh:
                return  # another caller refreshed while we waited
            timeout = min(self.config.timeout_s, PROBE_TIMEOUT_S)
            try:
                response = await self._client().get("/cognitiveservices/voices/list", timeout=timeout)
                if response.status_code != 200:
                    raise self._status_error(response.status_code, _body_message(response), "listing voices")
                voices = [
                    VoiceInfo(
                        id=v["ShortName"],
                        languages=[v["Locale"], *v.get("SecondaryLocaleList", [])],
                        sample_rate=SAMPLE_RATE,
                    )
                    for v in response.json()
                ]
            except Exception as err:  # noqa: BLE001 - every failure becomes a health reason
                self._problem = self._map_error(err, "listing voices", timeout).reason
                self._next_refresh = time.monotonic() + min(
                    self.config.voices_refresh_s, RETRY_AFTER_FAILURE_S
                )
                return
            self._voices = voices
            self._problem = None
            self._next_refresh = time.monotonic() + self.config.voices_refresh_s

    async def health(self) -> Health:
        if self._setup_problem:
            return Health(healthy=False, reason=self._setup_problem)
        await self._refresh_voices()
        if self._problem:
            return Health(healthy=False, reason=self._problem)
        return Health(healthy=True)

    async def capabilities(self) -> Capabilities:
        await self._refresh_voices()
        if self._voices is not None:
            voices = self._voices
            languages = sorted({lang for v in voices for lang in v.languages})
        else:
            # Nothing listed yet: all we know is the default voice, named after its
            # locale ("en-US-JennyNeural").
            voices = []
            match = re.match(r"^([a-z]{2,3}-[A-Z]{2})-", self.config.default_voice)
            languages = [match.group(1)] if match else []
        return Capabilities(
            engine=ENGINE,
            languages=languages,
            voices=voices,
            cloning=False,
            streaming=True,
            max_characters=self.config.max_characters,
            sample_rate=SAMPLE_RATE,
        )

    # --- synthesis ----------------------------------------------------------------------

    async def synthesize(self, request: SynthesisRequest) -> AudioResult:
        text = self._checked_text(request.text)
        try:
            settings = AzureTTSSettings.model_validate(request.settings)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise BadInputError(f"invalid azure_tts settings: {problems}", ENGINE) from None
        if self._setup_problem:
            raise EngineUnavailableError(self._setup_problem, ENGINE)
        voice = request.voice or self.config.default_voice
        self._check_voice(voice)
        ssml = _ssml(text, voice, self._language_for(voice, request.language), settings)
        try:
            response = await self._client().post(
                "/cognitiveservices/v1",
                content=ssml.encode(),
                headers={
                    "Content-Type": "application/ssml+xml",
                    "X-Microsoft-OutputFormat": OUTPUT_FORMAT,
                },
            )
            if response.status_code != 200:
                raise self._status_error(
                    response.status_code, _body_message(response), "synthesizing", voice
                )
        except Exception as err:  # noqa: BLE001 - mapped to the contract's errors below
            mapped = self._map_error(err, "synthesizing", self.config.timeout_s)
            if isinstance(mapped, EngineUnavailableError) and "credentials" in mapped.reason:
                # Tell the router now rather than at the next voice-list refresh.
                self._problem = mapped.reason
                self._next_refresh = time.monotonic() + RETRY_AFTER_FAILURE_S
            raise mapped from None
        return _decode_wav(response.content)

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        self._checked_text(request.text)  # the whole text must fit, as for synthesize
        for index, sentence in enumerate(_sentences(request.text)):
            audio = await self.synthesize(request.model_copy(update={"text": sentence}))
            yield AudioChunk(pcm=audio.pcm, sample_rate=audio.sample_rate, index=index)

    # --- helpers ------------------------------------------------------------------------

    def _check_voice(self, voice: str) -> None:
        """Refuse a voice the last voice list lacks, so the router falls back instead of
        the service answering with an error that reads like bad input."""
        if self._voices is not None and voice not in {v.id for v in self._voices}:
            raise EngineUnavailableError(
                f"voice {voice!r} is not among the {len(self._voices)} voices Azure Speech lists", ENGINE
            )

    def _checked_text(self, raw: str) -> str:
        text = raw.strip()
        if not text:
            raise BadInputError("text is empty", ENGINE)
        if len(text) > self.config.max_characters:
            raise TextTooLongError(
                f"text is {len(text)} characters; azure_tts takes at most "
                f"{self.config.max_characters} per request",
                ENGINE,
                self.config.max_characters,
            )
        return text

    def _language_for(self, voice: str, requested: str) -> str:
        """SSML's xml:lang: the voice's own locale when known and compatible ("en" -> "en-US")."""
        for info in self._voices or []:
            if info.id == voice:
                for lang in info.languages:
                    if language_matches(requested, [lang]):
                        return lang
        return requested

    def _status_error(self, code: int, message: str, doing: str, voice: str | None = None) -> EngineError:
        detail = f" ({message})" if message else ""
        if code in (401, 403):
            return EngineUnavailableError(
                f"credentials rejected by Azure Speech ({code}{detail}); check key or ${KEY_ENV} "
                f"and that it belongs to the resource at {self._base_url}",
                ENGINE,
            )
        if code == 404:
            return EngineUnavailableError(
                f"Azure Speech answered 404 while {doing}{detail}: unknown voice {voice!r} or "
                f"wrong region/endpoint {self._base_url}",
                ENGINE,
            )
        if code == 413:
            return TextTooLongError(f"Azure Speech: SSML too large{detail}", ENGINE, self.config.max_characters)
        if code == 400:
            return BadInputError(
                f"Azure Speech rejected the request (400{detail}): a setting such as the style or "
                f"the voice {voice!r} may not be valid for this resource",
                ENGINE,
            )
        if code == 429:
            return EngineFailedError(f"Azure Speech rate limit or quota exceeded (429{detail})", ENGINE)
        return EngineFailedError(f"Azure Speech failed while {doing} ({code}{detail})", ENGINE)

    def _map_error(self, err: Exception, doing: str, timeout: float) -> EngineError:
        if isinstance(err, EngineError):
            return err
        if isinstance(err, httpx.TimeoutException):
            return EngineFailedError(
                f"Azure Speech at {self._base_url} did not answer within {timeout:g}s while {doing}",
                ENGINE,
            )
        if isinstance(err, httpx.TransportError):
            return EngineFailedError(
                f"cannot reach Azure Speech at {self._base_url} while {doing}: {type(err).__name__}: {err}",
                ENGINE,
            )
        return EngineFailedError(f"Azure Speech call failed while {doing}: {type(err).__name__}: {err}", ENGINE)


def _ssml(text: str, voice: str, language: str, settings: AzureTTSSettings) -> str:
    """The request body. Text is XML-escaped: a bare `&` or `<` would make the SSML invalid."""
    body = f'<prosody rate="{settings.rate:g}" pitch="{settings.pitch:+g}%">{escape(text)}</prosody>'
    if settings.style:
        body = f"<mstts:express-as style={quoteattr(settings.style)}>{body}</mstts:express-as>"
    return (
        '<speak version="1.0" xmlns="http://www.w3.org/2001/10/synthesis" '
        f'xmlns:mstts="https://www.w3.org/2001/mstts" xml:lang={quoteattr(language)}>'
        f"<voice name={quoteattr(voice)}>{body}</voice></speak>"
    )


def _body_message(response: httpx.Response) -> str:
    """The gateway's {"error": {"message"}} when present; speech errors come with no body."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text.strip()[:200]


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def _sentences(text: str) -> list[str]:
    """Split after sentence-final punctuation followed by space; good enough to stream."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text.strip())) if s]


def _decode_wav(data: bytes) -> AudioResult:
    """riff-24khz-16bit-mono-pcm is a WAV file; the contract wants bare mono s16le PCM."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise EngineFailedError(f"Azure Speech returned audio that is not WAV: {err}", ENGINE) from None
    mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1).astype(np.int16)
    return AudioResult(pcm=mono.astype("<i2").tobytes(), sample_rate=int(rate))
