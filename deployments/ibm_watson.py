"""IBM Watson Text to Speech engine: the official `ibm-watson` SDK (TextToSpeechV1).

Authentication is the SDK's own: an IAM API key (exchanged for access tokens by
`IAMAuthenticator`), a ready bearer token, or, with neither configured, the SDK's external
configuration (TEXT_TO_SPEECH_APIKEY / TEXT_TO_SPEECH_URL or ibm-credentials.env). What all
cloud engines share (voice list, health, streaming, errors) is in `deployments.cloud`.

Word timestamps are IBM's own: only the service's WebSocket interface returns word timings
(`"timings": ["words"]`), so a request asking for them goes there. That interface is spoken
with `websockets` rather than the SDK's `synthesize_using_websocket`, which verifies no TLS
certificate (it passes CERT_NONE whenever `disable_ssl_verification` is set, True or False),
has no timeout, and reports failures to a callback instead of raising them; the SDK's
authenticator still supplies the token.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
from urllib.parse import urlencode

import requests
from ibm_cloud_sdk_core import ApiException
from ibm_cloud_sdk_core.authenticators import (
    Authenticator,
    BearerTokenAuthenticator,
    IAMAuthenticator,
)
from ibm_watson import TextToSpeechV1
from pydantic import Field, SecretStr
from ray import serve
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from deployments.base import (
    EngineError,
    EngineFailedError,
    EngineUnavailableError,
    Pronunciation,
    TextTooLongError,
    VoiceInfo,
)
from deployments.cloud import (
    SAMPLE_RATE,
    CloudEngineConfig,
    CloudTTSEngine,
    TimedWord,
    short_reason,
    ssml_fragment,
)
from deployments.settings import IBMWatsonSettings
from deployments.tracing import traced_engine

ENGINE = "ibm_watson"
ACCEPT = f"audio/wav;rate={SAMPLE_RATE}"
# One WebSocket message at most: IBM sends the audio in small binary frames.
MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ServiceMessageError(Exception):
    """The WebSocket interface's `{"error": ...}` message: the synthesis failed."""


class IBMWatsonConfig(CloudEngineConfig):
    """The engine's part of the app builder args."""

    url: str | None = Field(
        None, description="service instance URL; None = TEXT_TO_SPEECH_URL or the SDK default (us-south)"
    )
    api_key: SecretStr | None = Field(None, description="IAM API key; None = the SDK's external config")
    iam_url: str | None = Field(None, description="IAM endpoint; None = https://iam.cloud.ibm.com")
    bearer_token: SecretStr | None = Field(None, description="a ready access token instead of an API key")
    default_voice: str = "en-US_MichaelV3Voice"
    max_characters: int = Field(5 * 1024, gt=0, description="input limit in UTF-8 bytes (IBM's: 5 KB)")


@serve.deployment(name=ENGINE, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
@traced_engine
class IBMWatsonEngine(CloudTTSEngine):
    engine_id = "ibm_watson"
    service = "IBM Watson"
    protocol = "ibm.text-to-speech.v1"
    config_model = IBMWatsonConfig
    settings_model = IBMWatsonSettings
    timeout_errors = (requests.Timeout, TimeoutError)
    text_unit = "bytes (XML-escaped)"
    word_timings = True

    config: IBMWatsonConfig
    _client: TextToSpeechV1

    def _setup(self) -> None:
        self._client = self._make_client()

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

    def _describe_setup_error(self, err: Exception) -> str:
        if isinstance(err, ValueError) and "authenticator" in str(err).lower():
            return "no credentials: set api_key or bearer_token, or TEXT_TO_SPEECH_APIKEY in the environment"
        return super()._describe_setup_error(err)

    def _where(self) -> str:
        return self.config.url or "the SDK-configured URL"

    def _prepare_text(self, text: str, lexicon: list[Pronunciation]) -> tuple[str, bool]:
        """IBM reads every input as SSML: an unescaped `&` or `<` would be a markup error.
        The 5 KB limit counts the escaped bytes (the lexicon's markup included)."""
        return ssml_fragment(text, lexicon), True

    async def _list_voices(self, timeout: float) -> list[VoiceInfo]:
        response = await asyncio.to_thread(self._client.list_voices, timeout=timeout)
        return [
            VoiceInfo(id=v["name"], languages=[v["language"]], sample_rate=SAMPLE_RATE)
            for v in response.get_result()["voices"]
        ]

    async def _synthesize_wav(self, text: str, voice: str, language: str, settings: IBMWatsonSettings, *,
                              ssml: bool) -> bytes:
        # IBM picks the language from the voice; the router matched the request's language to it.
        response = await asyncio.to_thread(
            self._client.synthesize,
            text,
            accept=ACCEPT,
            voice=voice,
            rate_percentage=settings.rate_percentage,
            pitch_percentage=settings.pitch_percentage,
            timeout=self.config.timeout_s,
        )
        return response.get_result().content

    async def _synthesize_timed(self, text: str, voice: str, language: str, settings: IBMWatsonSettings,
                                ) -> tuple[bytes, list[TimedWord]]:
        """One synthesis over the WebSocket interface (`wss://…/v1/synthesize`): the text
        message asks for the audio and word timings; the service answers with binary audio
        frames and `{"words": [[word, start, end], ...]}` messages, then closes."""
        auth: dict[str, dict[str, str]] = {"headers": {}}
        if self._client.authenticator is not None:  # may ask IAM for a token: off the loop
            await asyncio.to_thread(self._client.authenticator.authenticate, auth)
        url = re.sub(r"^http", "ws", self._client.service_url) + "/v1/synthesize?" + urlencode(
            {"voice": voice, "rate_percentage": settings.rate_percentage,
             "pitch_percentage": settings.pitch_percentage})
        audio, words = bytearray(), []
        async with asyncio.timeout(self.config.timeout_s):
            async with connect(url, additional_headers=auth["headers"], max_size=MAX_MESSAGE_BYTES,
                               compression=None, open_timeout=None) as connection:
                await connection.send(json.dumps({"text": text, "accept": ACCEPT, "timings": ["words"]}))
                async for message in connection:
                    if isinstance(message, bytes):
                        audio += message
                        continue
                    said = json.loads(message)
                    if "error" in said:
                        raise ServiceMessageError(str(said["error"]))
                    words += [TimedWord(str(w), float(start), float(end)) for w, start, end in said.get("words", [])]
        return _sized_wav(bytes(audio)), words

    def _after_failure(self, err: Exception) -> None:
        """After a failed token request the SDK's token manager makes every later caller
        wait up to 60 s before it asks IAM again; a fresh client asks at once."""
        if _is_iam_error(err):
            try:
                self._client = self._make_client()
            except Exception:  # noqa: BLE001 - keep the old client; it still works, slowly
                pass

    def _map_error(self, err: Exception, doing: str, voice: str | None) -> EngineError | None:
        where = f"IBM Watson at {self._where()}"
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
            return self._status_error(
                code, message, doing,
                credentials="check api_key, bearer_token or TEXT_TO_SPEECH_APIKEY and that they belong "
                "to this instance URL",
                not_found=f"unknown voice {voice!r} or wrong instance URL ({where})",
            )
        if isinstance(err, requests.ConnectionError):
            if _is_iam_error(err):
                where = self.config.iam_url or "IBM Cloud IAM (https://iam.cloud.ibm.com)"
            return EngineFailedError(f"cannot reach {where} while {doing}: {short_reason(err)}", ENGINE)
        # The WebSocket interface: its handshake answered with an HTTP error, its error
        # message, the connection cut, or no connection at all.
        if isinstance(err, InvalidStatus):
            code = err.response.status_code
            return self._status_error(
                code, _error_text(err.response.body) or err.response.reason_phrase, doing,
                credentials="check api_key, bearer_token or TEXT_TO_SPEECH_APIKEY and that they belong "
                "to this instance URL",
                not_found=f"unknown voice {voice!r} or wrong instance URL ({where})",
            )
        if isinstance(err, ServiceMessageError):
            return EngineFailedError(f"IBM Watson failed while {doing}: {err}", ENGINE)
        if isinstance(err, ConnectionClosedError):
            return EngineFailedError(f"IBM Watson closed the connection while {doing}: {err}", ENGINE)
        if isinstance(err, OSError):
            return EngineFailedError(f"cannot reach {where} while {doing}: {err}", ENGINE)
        return None


def _sized_wav(data: bytes) -> bytes:
    """A streamed WAV file with its sizes filled in: the service sends the header before it
    knows how long the audio is, so the RIFF and data sizes there are placeholders."""
    at = 12
    while at + 8 <= len(data):
        chunk, size = data[at:at + 4], struct.unpack_from("<I", data, at + 4)[0]
        if chunk == b"data":
            audio = (len(data) - at - 8) & ~1
            return (data[:4] + struct.pack("<I", at + audio) + data[8:at + 4] + struct.pack("<I", audio)
                    + data[at + 8:at + 8 + audio])
        at += 8 + size + (size & 1)
    return data  # not a WAV file: AudioResult.from_wav says so


def _error_text(body: bytes | None) -> str:
    """IBM's error body ({"code", "error"}) as its message, or the body as it is."""
    try:
        return str(json.loads(body or b"")["error"])
    except (ValueError, KeyError, TypeError):
        return (body or b"").decode(errors="replace")[:200]


def _is_iam_error(err: Exception) -> bool:
    """The token request failed (rejected, or IAM unreachable), not the Text to Speech call."""
    if isinstance(err, ApiException):
        url = getattr(err.http_response, "url", "")
    elif isinstance(err, requests.RequestException):
        url = getattr(err.request, "url", "")
    else:
        return False
    return "/identity/token" in (url or "")
