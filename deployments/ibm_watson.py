"""IBM Watson Text to Speech engine: the official `ibm-watson` SDK (TextToSpeechV1).

Authentication is the SDK's own: an IAM API key (exchanged for access tokens by
`IAMAuthenticator`), a ready bearer token, or, with neither configured, the SDK's external
configuration (TEXT_TO_SPEECH_APIKEY / TEXT_TO_SPEECH_URL or ibm-credentials.env). The voice
list drives `capabilities()` and `health()`; missing credentials or an unreachable service
never stop the replica from starting, they only make it unhealthy.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import requests
import soundfile as sf
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import Authenticator, BearerTokenAuthenticator, IAMAuthenticator
from ibm_watson import TextToSpeechV1
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
)
from serve.personalities import IBMWatsonSettings

ENGINE = "ibm_watson"
SAMPLE_RATE = 24_000
ACCEPT = f"audio/wav;rate={SAMPLE_RATE}"
# After a failed voice-list fetch, look again this soon (capped by voices_refresh_s).
RETRY_AFTER_FAILURE_S = 10.0
# A health probe must answer quickly even when the service hangs.
PROBE_TIMEOUT_S = 10.0


class IBMWatsonConfig(BaseModel):
    """The engine's part of the app builder args."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(
        None, description="service instance URL; None = TEXT_TO_SPEECH_URL or the SDK default (us-south)"
    )
    api_key: SecretStr | None = Field(None, description="IAM API key; None = the SDK's external config")
    iam_url: str | None = Field(None, description="IAM endpoint; None = https://iam.cloud.ibm.com")
    bearer_token: SecretStr | None = Field(None, description="a ready access token instead of an API key")
    default_voice: str = "en-US_MichaelV3Voice"
    max_characters: int = Field(5 * 1024, gt=0, description="input limit in UTF-8 bytes (IBM's: 5 KB)")
    timeout_s: float = Field(30.0, gt=0, description="per-request timeout")
    voices_refresh_s: float = Field(300.0, gt=0)


@serve.deployment(name=ENGINE, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class IBMWatsonEngine(TTSEngine):
    engine_id = "ibm_watson"

    def __init__(self, config: IBMWatsonConfig | dict[str, Any] | None = None) -> None:
        self.config = IBMWatsonConfig.model_validate(config or {})
        self._client: TextToSpeechV1 | None = None
        self._setup_problem: str | None = None
        try:
            self._client = self._make_client()
        except Exception as err:  # noqa: BLE001 - any setup failure must leave the replica up
            self._setup_problem = f"cannot set up the IBM Watson client: {_describe_setup(err)}"
        self._voices: list[VoiceInfo] | None = None
        self._problem: str | None = None
        self._next_refresh = 0.0
        self._refresh_lock = asyncio.Lock()

    def _make_client(self) -> TextToSpeechV1:
        cfg = self.config
        authenticator: Authenticator | None = None
        if cfg.bearer_token:
            authenticator = BearerTokenAuthenticator(cfg.bearer_token.get_secret_value())
        elif cfg.api_key:
            iam = IAMAuthenticator(cfg.api_key.get_secret_value(), url=cfg.iam_url)
            # Token requests otherwise wait up to the SDK's 60 s default.
            iam.token_manager.http_config = {"timeout": cfg.timeout_s}
            authenticator = iam
        client = TextToSpeechV1(authenticator=authenticator)  # None: the SDK reads its env config
        if cfg.url:
            client.set_service_url(cfg.url)
        return client

    # --- voice list, health, capabilities ---------------------------------------------

    async def _refresh_voices(self) -> None:
        if self._client is None or time.monotonic() < self._next_refresh:
            return
        async with self._refresh_lock:
            if time.monotonic() < self._next_refresh:
                return  # another caller refreshed while we waited
            timeout = min(self.config.timeout_s, PROBE_TIMEOUT_S)
            try:
                response = await asyncio.to_thread(self._client.list_voices, timeout=timeout)
                voices = [
                    VoiceInfo(id=v["name"], languages=[v["language"]], sample_rate=SAMPLE_RATE)
                    for v in response.get_result()["voices"]
                ]
            except Exception as err:  # noqa: BLE001 - every failure becomes a health reason
                self._after_iam_failure(err)
                self._problem = self._map_error(err, "listing voices").reason
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
            # language ("en-US_MichaelV3Voice").
            voices = []
            languages = _languages_from_name(self.config.default_voice)
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
            settings = IBMWatsonSettings.model_validate(request.settings)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise BadInputError(f"invalid ibm_watson settings: {problems}", ENGINE) from None
        if self._client is None:
            raise EngineUnavailableError(self._setup_problem or "no client", ENGINE)
        voice = request.voice or self.config.default_voice
        self._check_voice(voice)
        # IBM picks the language from the voice; the router matched request.language to it.
        try:
            response = await asyncio.to_thread(
                self._client.synthesize,
                text,
                accept=ACCEPT,
                voice=voice,
                rate_percentage=settings.rate_percentage,
                pitch_percentage=settings.pitch_percentage,
                timeout=self.config.timeout_s,
            )
            data = response.get_result().content
        except Exception as err:  # noqa: BLE001 - mapped to the contract's errors below
            self._after_iam_failure(err)
            mapped = self._map_error(err, "synthesizing", voice=voice)
            if isinstance(mapped, EngineUnavailableError) and "credentials" in mapped.reason:
                # Tell the router now rather than at the next voice-list refresh.
                self._problem = mapped.reason
                self._next_refresh = time.monotonic() + RETRY_AFTER_FAILURE_S
            raise mapped from None
        return _decode_wav(data)

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
                f"voice {voice!r} is not among the {len(self._voices)} voices IBM Watson lists", ENGINE
            )

    def _after_iam_failure(self, err: Exception) -> None:
        """After a failed token request the SDK's token manager makes every later caller
        wait up to 60 s before it asks IAM again; a fresh client asks at once."""
        if _is_iam_error(err):
            try:
                self._client = self._make_client()
            except Exception:  # noqa: BLE001 - keep the old client; it still works, slowly
                pass

    def _checked_text(self, raw: str) -> str:
        """Plain text made safe for IBM, which reads every input as SSML: an unescaped
        `&` or `<` would be a markup error. The 5 KB limit counts the escaped bytes."""
        text = escape(raw.strip())
        if not text:
            raise BadInputError("text is empty", ENGINE)
        size = len(text.encode())
        if size > self.config.max_characters:
            raise TextTooLongError(
                f"text is {size} bytes (XML-escaped); IBM Watson takes at most "
                f"{self.config.max_characters} per request",
                ENGINE,
                self.config.max_characters,
            )
        return text

    def _map_error(self, err: Exception, doing: str, voice: str | None = None) -> EngineError:
        where = f"IBM Watson at {self.config.url or 'the SDK-configured URL'}"
        if isinstance(err, ApiException):
            code = err.status_code
            message = err.message or f"HTTP {code}"
            if _is_iam_error(err):  # IAM answered: the API key is wrong, revoked or unknown
                return EngineUnavailableError(
                    f"credentials rejected by IBM Cloud IAM ({code}: {message}); check api_key "
                    "or TEXT_TO_SPEECH_APIKEY",
                    ENGINE,
                )
            if code == 413 or (code == 400 and re.search(r"exceed|too long|too large", message, re.I)):
                return TextTooLongError(f"IBM Watson: {message}", ENGINE, self.config.max_characters)
            if code == 400:
                return BadInputError(f"IBM Watson rejected the request: {message}", ENGINE)
            if code in (401, 403):
                return EngineUnavailableError(
                    f"credentials rejected by IBM Watson ({code}: {message}); check api_key, "
                    "bearer_token or TEXT_TO_SPEECH_APIKEY and that they belong to this instance URL",
                    ENGINE,
                )
            if code == 404:
                return EngineUnavailableError(
                    f"IBM Watson answered 404 while {doing} ({message}): unknown voice "
                    f"{voice!r} or wrong instance URL ({where})",
                    ENGINE,
                )
            if code == 429:
                return EngineFailedError(f"IBM Watson rate limit exceeded: {message}", ENGINE)
            return EngineFailedError(f"IBM Watson failed while {doing} ({code}: {message})", ENGINE)
        if isinstance(err, requests.Timeout):
            return EngineFailedError(
                f"{where} did not answer within {self.config.timeout_s:g}s while {doing}",
                ENGINE,
            )
        if isinstance(err, requests.ConnectionError):
            if _is_iam_error(err):
                where = self.config.iam_url or "IBM Cloud IAM (https://iam.cloud.ibm.com)"
            return EngineFailedError(f"cannot reach {where} while {doing}: {_short(err)}", ENGINE)
        if isinstance(err, EngineError):
            return err
        return EngineFailedError(f"IBM Watson call failed while {doing}: {type(err).__name__}: {err}", ENGINE)


def _is_iam_error(err: Exception) -> bool:
    """The token request failed (rejected, or IAM unreachable), not the Text to Speech call."""
    if isinstance(err, ApiException):
        url = getattr(err.http_response, "url", "")
    elif isinstance(err, requests.RequestException):
        url = getattr(err.request, "url", "")
    else:
        return False
    return "/identity/token" in (url or "")


def _describe_setup(err: Exception) -> str:
    if isinstance(err, ValueError) and "authenticator" in str(err).lower():
        return "no credentials: set api_key or bearer_token, or TEXT_TO_SPEECH_APIKEY in the environment"
    return f"{type(err).__name__}: {err}"


def _short(err: Exception) -> str:
    """requests' connection errors nest the useful part ("[Errno 111] Connection refused")."""
    match = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
    return match.group(0).strip() if match else str(err)[:200]


def _languages_from_name(voice: str) -> list[str]:
    match = re.match(r"^([a-z]{2,3}-[A-Z]{2})_", voice)
    return [match.group(1)] if match else []


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def _sentences(text: str) -> list[str]:
    """Split after sentence-final punctuation followed by space; good enough to stream."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text.strip())) if s]


def _decode_wav(data: bytes) -> AudioResult:
    """audio/wav arrives as a WAV file; the contract wants bare mono s16le PCM."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise EngineFailedError(f"IBM Watson returned audio that is not WAV: {err}", ENGINE) from None
    mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1).astype(np.int16)
    return AudioResult(pcm=mono.astype("<i2").tobytes(), sample_rate=int(rate))
