"""Google Cloud Text-to-Speech engine: the official client over REST.

REST (not gRPC) because it is the transport that works through plain HTTP proxies and that a
local server can speak in tests. What all cloud engines share (voice list, health,
streaming, errors) is in `deployments.cloud`. Word timestamps are Google's own: v1beta1's
time pointing says when each `<mark>` before a word is reached (v1 has no word timings).
"""

from __future__ import annotations

import asyncio
from typing import Any

import requests
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth import exceptions as auth_exc
from google.auth.credentials import AnonymousCredentials
from google.cloud import texttospeech, texttospeech_v1beta1
from google.oauth2 import service_account
from pydantic import Field
from ray import serve

from deployments.base import (
    EngineError,
    EngineFailedError,
    EngineUnavailableError,
    TextTooLongError,
    VoiceInfo,
)
from deployments.cloud import (
    SAMPLE_RATE,
    CloudEngineConfig,
    CloudTTSEngine,
    short_reason,
)
from deployments.settings import GoogleTTSSettings
from deployments.tracing import traced_engine

ENGINE = "google_tts"
_SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]


class GoogleTTSConfig(CloudEngineConfig):
    """The engine's part of the app builder args."""

    endpoint: str | None = Field(None, description="API endpoint; None = texttospeech.googleapis.com")
    credentials_file: str | None = Field(
        None, description="service-account JSON; None = Application Default Credentials"
    )
    anonymous: bool = Field(False, description="send no credentials (local test servers)")
    default_voice: str = "en-US-Neural2-D"
    max_characters: int = Field(5000, gt=0, description="input limit in UTF-8 bytes (Google's: 5000)")


@serve.deployment(name=ENGINE, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
@traced_engine
class GoogleTTSEngine(CloudTTSEngine):
    engine_id = "google_tts"
    service = "Google TTS"
    protocol = "google.texttospeech.v1"
    config_model = GoogleTTSConfig
    settings_model = GoogleTTSSettings
    timeout_errors = (requests.Timeout,)
    text_unit = "bytes"
    word_marks = True

    config: GoogleTTSConfig
    _client: texttospeech.TextToSpeechClient
    _marks_client: texttospeech_v1beta1.TextToSpeechClient

    def _setup(self) -> None:
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
        self._client = texttospeech.TextToSpeechClient(
            transport="rest", credentials=credentials, client_options=options
        )
        self._marks_client = texttospeech_v1beta1.TextToSpeechClient(
            transport="rest", credentials=credentials, client_options=options
        )

    def _describe_setup_error(self, err: Exception) -> str:
        if isinstance(err, auth_exc.DefaultCredentialsError):
            return (
                "no credentials: set credentials_file or GOOGLE_APPLICATION_CREDENTIALS to a "
                "service-account JSON, or run where Application Default Credentials exist"
            )
        if isinstance(err, FileNotFoundError):
            return f"credentials file not found: {err.filename}"
        return super()._describe_setup_error(err)

    def _where(self) -> str:
        return self.config.endpoint or "texttospeech.googleapis.com"

    async def _list_voices(self, timeout: float) -> list[VoiceInfo]:
        response = await asyncio.to_thread(self._client.list_voices, request={}, timeout=timeout)
        return [
            VoiceInfo(id=v.name, languages=list(v.language_codes), sample_rate=SAMPLE_RATE)
            for v in response.voices
        ]

    async def _synthesize_wav(self, text: str, voice: str, language: str, settings: GoogleTTSSettings, *,
                              ssml: bool) -> bytes:
        # Plain text, or SSML when the lexicon marked it. LINEAR16 arrives as a WAV file.
        spoken = texttospeech.SynthesisInput(ssml=f"<speak>{text}</speak>") if ssml else texttospeech.SynthesisInput(text=text)
        response = await asyncio.to_thread(
            self._client.synthesize_speech,
            request=_request(texttospeech, spoken, voice, language, settings),
            timeout=self.config.timeout_s,
        )
        return response.audio_content

    async def _synthesize_marked(self, ssml: str, voice: str, language: str, settings: GoogleTTSSettings,
                                 ) -> tuple[bytes, dict[str, float]]:
        beta = texttospeech_v1beta1
        request = _request(beta, beta.SynthesisInput(ssml=f"<speak>{ssml}</speak>"), voice, language, settings)
        request.enable_time_pointing = [beta.SynthesizeSpeechRequest.TimepointType.SSML_MARK]
        response = await asyncio.to_thread(self._marks_client.synthesize_speech, request=request,
                                           timeout=self.config.timeout_s)
        return response.audio_content, {t.mark_name: t.time_seconds for t in response.timepoints}

    def _map_error(self, err: Exception, doing: str, voice: str | None) -> EngineError | None:
        where = self._where()
        if isinstance(err, gexc.GoogleAPICallError):
            code = err.code or 0
            message = err.message or type(err).__name__
            # Google answers 400 for a text over its limit and for an unknown voice too.
            if code == 400 and "longer than" in message:
                return TextTooLongError(f"Google TTS: {message}", ENGINE, self.config.max_characters)
            if code == 400 and "does not exist" in message and "oice" in message:
                return EngineUnavailableError(f"Google TTS has no such voice: {message}", ENGINE)
            return self._status_error(
                code, message, doing,
                credentials="check credentials_file or GOOGLE_APPLICATION_CREDENTIALS and that the "
                "Text-to-Speech API is enabled",
                not_found=f"unknown voice or wrong endpoint {where}",
            )
        if isinstance(err, (requests.ConnectionError, auth_exc.TransportError)):
            return EngineFailedError(f"cannot reach Google TTS at {where} while {doing}: {short_reason(err)}", ENGINE)
        if isinstance(err, auth_exc.GoogleAuthError):
            # A 401 makes google-auth refresh the token and retry; this is what is left when
            # the refresh itself fails (revoked key, or anonymous credentials got a 401).
            return EngineUnavailableError(
                f"credentials rejected by Google TTS while {doing}: {err}; check credentials_file "
                "or GOOGLE_APPLICATION_CREDENTIALS",
                ENGINE,
            )
        return None


def _request(api: Any, spoken: Any, voice: str, language: str, settings: GoogleTTSSettings) -> Any:
    """The synthesis request in `api`'s types (v1 and v1beta1 share these fields): 24 kHz
    LINEAR16 (a WAV file) with the personality's settings."""
    return api.SynthesizeSpeechRequest(
        input=spoken,
        voice=api.VoiceSelectionParams(language_code=language, name=voice),
        audio_config=api.AudioConfig(
            audio_encoding=api.AudioEncoding.LINEAR16,
            sample_rate_hertz=SAMPLE_RATE,
            speaking_rate=settings.speaking_rate,
            pitch=settings.pitch,
            volume_gain_db=settings.volume_gain_db,
        ),
    )
