"""Google Cloud Text-to-Speech engine: the official client over REST.

REST (not gRPC) because it is the transport that works through plain HTTP proxies and that a
local server can speak in tests. The voice list, fetched through the client and refreshed
every `voices_refresh_s`, drives `capabilities()` and `health()`; a missing credential or an
unreachable service never stops the replica from starting, it only makes it unhealthy.
"""

from __future__ import annotations

import asyncio
import io
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import requests
import soundfile as sf
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import texttospeech
from google.oauth2 import service_account
from pydantic import BaseModel, ConfigDict, Field, ValidationError
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
from serve.personalities import GoogleTTSSettings

ENGINE = "google_tts"
SAMPLE_RATE = 24_000
# After a failed voice-list fetch, look again this soon (capped by voices_refresh_s), so a
# service that comes back is noticed without hammering one that is down.
RETRY_AFTER_FAILURE_S = 10.0
# A health probe must answer quickly even when the service hangs.
PROBE_TIMEOUT_S = 10.0
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class GoogleTTSConfig(BaseModel):
    """The engine's part of the app builder args."""

    model_config = ConfigDict(extra="forbid")

    endpoint: str | None = Field(None, description="API endpoint; None = texttospeech.googleapis.com")
    credentials_file: str | None = Field(
        None, description="service-account JSON; None = Application Default Credentials"
    )
    anonymous: bool = Field(False, description="send no credentials (local test servers)")
    default_voice: str = "en-US-Neural2-D"
    max_characters: int = Field(5000, gt=0, description="input limit in UTF-8 bytes (Google's: 5000)")
    timeout_s: float = Field(30.0, gt=0, description="per-request timeout")
    voices_refresh_s: float = Field(300.0, gt=0)


@serve.deployment(name=ENGINE, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
class GoogleTTSEngine(TTSEngine):
    engine_id = "google_tts"

    def __init__(self, config: GoogleTTSConfig | dict[str, Any] | None = None) -> None:
        self.config = GoogleTTSConfig.model_validate(config or {})
        self._client: texttospeech.TextToSpeechClient | None = None
        self._setup_problem: str | None = None
        try:
            self._client = self._make_client()
        except Exception as err:  # noqa: BLE001 - any setup failure must leave the replica up
            self._setup_problem = f"cannot set up the Google TTS client: {_describe_setup(err)}"
        self._voices: list[VoiceInfo] | None = None
        self._problem: str | None = None
        self._next_refresh = 0.0
        self._refresh_lock = asyncio.Lock()

    def _make_client(self) -> texttospeech.TextToSpeechClient:
        cfg = self.config
        if cfg.anonymous:
            credentials = AnonymousCredentials()
        elif cfg.credentials_file:
            credentials = service_account.Credentials.from_service_account_file(
                cfg.credentials_file, scopes=_SCOPES
            )
        else:
            credentials = None  # the client resolves Application Default Credentials
        options = ClientOptions(api_endpoint=cfg.endpoint) if cfg.endpoint else None
        return texttospeech.TextToSpeechClient(
            transport="rest", credentials=credentials, client_options=options
        )

    # --- voice list, health, capabilities ---------------------------------------------

    async def _refresh_voices(self) -> None:
        if self._client is None or time.monotonic() < self._next_refresh:
            return
        async with self._refresh_lock:
            if time.monotonic() < self._next_refresh:
                return  # another caller refreshed while we waited
            timeout = min(self.config.timeout_s, PROBE_TIMEOUT_S)
            try:
                response = await asyncio.to_thread(
                    self._client.list_voices, request={}, timeout=timeout
                )
            except Exception as err:  # noqa: BLE001 - every failure becomes a health reason
                self._problem = self._map_error(err, "listing voices").reason
                self._next_refresh = time.monotonic() + min(
                    self.config.voices_refresh_s, RETRY_AFTER_FAILURE_S
                )
                return
            self._voices = [
                VoiceInfo(id=v.name, languages=list(v.language_codes), sample_rate=SAMPLE_RATE)
                for v in response.voices
            ]
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
            # Nothing listed yet: all we know is the configured default voice, whose name
            # starts with its language ("en-US-Neural2-D").
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
            settings = GoogleTTSSettings.model_validate(request.settings)
        except ValidationError as err:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
            raise BadInputError(f"invalid google_tts settings: {problems}", ENGINE) from None
        if self._client is None:
            raise EngineUnavailableError(self._setup_problem or "no client", ENGINE)
        voice = request.voice or self.config.default_voice
        self._check_voice(voice)
        language = self._language_for(voice, request.language)
        call = dict(
            input=texttospeech.SynthesisInput(text=text),
            voice=texttospeech.VoiceSelectionParams(language_code=language, name=voice),
            audio_config=texttospeech.AudioConfig(
                audio_encoding=texttospeech.AudioEncoding.LINEAR16,
                sample_rate_hertz=SAMPLE_RATE,
                speaking_rate=settings.speaking_rate,
                pitch=settings.pitch,
                volume_gain_db=settings.volume_gain_db,
            ),
        )
        try:
            # No retries here: the router falls back to the next engine, which is faster
            # for the caller than backing off against a struggling service.
            response = await asyncio.to_thread(
                self._client.synthesize_speech, **call, timeout=self.config.timeout_s
            )
        except Exception as err:  # noqa: BLE001 - mapped to the contract's errors below
            mapped = self._map_error(err, "synthesizing")
            if isinstance(mapped, EngineUnavailableError) and "credentials" in mapped.reason:
                # Tell the router now rather than at the next voice-list refresh.
                self._problem = mapped.reason
                self._next_refresh = time.monotonic() + RETRY_AFTER_FAILURE_S
            raise mapped from None
        return _decode_wav(response.audio_content)

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        text = self._checked_text(request.text)  # the whole text must fit, as for synthesize
        for index, sentence in enumerate(_sentences(text)):
            audio = await self.synthesize(request.model_copy(update={"text": sentence}))
            yield AudioChunk(pcm=audio.pcm, sample_rate=audio.sample_rate, index=index)

    # --- helpers ------------------------------------------------------------------------

    def _check_voice(self, voice: str) -> None:
        """Refuse a voice the last voice list lacks, so the router falls back instead of
        the service answering with an error that reads like bad input."""
        if self._voices is not None and voice not in {v.id for v in self._voices}:
            raise EngineUnavailableError(
                f"voice {voice!r} is not among the {len(self._voices)} voices Google TTS lists", ENGINE
            )

    def _checked_text(self, raw: str) -> str:
        text = raw.strip()
        if not text:
            raise BadInputError("text is empty", ENGINE)
        size = len(text.encode())
        if size > self.config.max_characters:
            raise TextTooLongError(
                f"text is {size} bytes; Google TTS takes at most {self.config.max_characters} per request",
                ENGINE,
                self.config.max_characters,
            )
        return text

    def _language_for(self, voice: str, requested: str) -> str:
        """The voice's own language code when it is known and compatible: Google wants the
        full code ("en-US") and callers often say just "en"."""
        for info in self._voices or []:
            if info.id == voice:
                for lang in info.languages:
                    if language_matches(requested, [lang]):
                        return lang
        return requested

    def _map_error(self, err: Exception, doing: str) -> EngineError:
        where = self.config.endpoint or "texttospeech.googleapis.com"
        if isinstance(err, gexc.GoogleAPICallError):
            code = err.code or 0
            message = err.message or type(err).__name__
            if code == 400:
                if "longer than" in message:
                    return TextTooLongError(
                        f"Google TTS: {message}", ENGINE, self.config.max_characters
                    )
                if "does not exist" in message and "oice" in message:
                    return EngineUnavailableError(f"Google TTS has no such voice: {message}", ENGINE)
                return BadInputError(f"Google TTS rejected the request: {message}", ENGINE)
            if code in (401, 403):
                return EngineUnavailableError(
                    f"credentials rejected by Google TTS ({code}: {message}); check credentials_file "
                    "or GOOGLE_APPLICATION_CREDENTIALS and that the Text-to-Speech API is enabled",
                    ENGINE,
                )
            if code == 404:
                return EngineUnavailableError(
                    f"Google TTS answered 404 while {doing} ({message}): unknown voice or wrong endpoint {where}",
                    ENGINE,
                )
            if code == 429:
                return EngineFailedError(f"Google TTS rate limit or quota exceeded: {message}", ENGINE)
            return EngineFailedError(f"Google TTS failed while {doing} ({code}: {message})", ENGINE)
        if isinstance(err, requests.Timeout):
            return EngineFailedError(
                f"Google TTS at {where} did not answer within {self.config.timeout_s:g}s while {doing}",
                ENGINE,
            )
        if isinstance(err, (requests.ConnectionError, auth_exc.TransportError)):
            return EngineFailedError(f"cannot reach Google TTS at {where} while {doing}: {_short(err)}", ENGINE)
        if isinstance(err, auth_exc.GoogleAuthError):
            # A 401 makes google-auth refresh the token and retry; this is what is left when
            # the refresh itself fails (revoked key, or anonymous credentials got a 401).
            return EngineUnavailableError(
                f"credentials rejected by Google TTS while {doing}: {err}; check credentials_file "
                "or GOOGLE_APPLICATION_CREDENTIALS",
                ENGINE,
            )
        if isinstance(err, EngineError):
            return err
        return EngineFailedError(f"Google TTS call failed while {doing}: {type(err).__name__}: {err}", ENGINE)


def _describe_setup(err: Exception) -> str:
    if isinstance(err, auth_exc.DefaultCredentialsError):
        return (
            "no credentials: set credentials_file or GOOGLE_APPLICATION_CREDENTIALS to a "
            "service-account JSON, or run where Application Default Credentials exist"
        )
    if isinstance(err, FileNotFoundError):
        return f"credentials file not found: {err.filename}"
    return f"{type(err).__name__}: {err}"


def _short(err: Exception) -> str:
    """requests' connection errors nest the useful part ("[Errno 111] Connection refused")."""
    match = re.search(r"\[Errno -?\d+\][^'\")]*", str(err))
    return match.group(0).strip() if match else str(err)[:200]


def _languages_from_name(voice: str) -> list[str]:
    match = re.match(r"^([a-z]{2,3}-[A-Z]{2})\b", voice)
    return [match.group(1)] if match else []


_SENTENCE_END = re.compile(r"(?<=[.!?…。！？])\s+")


def _sentences(text: str) -> list[str]:
    """Split after sentence-final punctuation followed by space; good enough to stream."""
    return [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]


def _decode_wav(data: bytes) -> AudioResult:
    """LINEAR16 arrives as a WAV file; the contract wants bare mono s16le PCM."""
    try:
        audio, rate = sf.read(io.BytesIO(data), dtype="int16", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise EngineFailedError(f"Google TTS returned audio that is not WAV: {err}", ENGINE) from None
    mono = audio[:, 0] if audio.shape[1] == 1 else audio.mean(axis=1).astype(np.int16)
    return AudioResult(pcm=mono.astype("<i2").tobytes(), sample_rate=int(rate))
