"""Azure AI Speech text-to-speech engine over the documented REST API.

The Speech SDK synthesizes over a websocket; the REST API (POST SSML to
/cognitiveservices/v1, GET /cognitiveservices/voices/list) is the same service over plain
HTTPS, which is what we call with httpx. What all cloud engines share (voice list, health,
streaming, errors) is in `deployments.cloud`.
"""

from __future__ import annotations

import os
from xml.sax.saxutils import quoteattr

import httpx
from pydantic import Field, SecretStr
from ray import serve

from deployments.base import (
    EngineError,
    EngineFailedError,
    Pronunciation,
    VoiceInfo,
)
from deployments.cloud import SAMPLE_RATE, CloudEngineConfig, CloudTTSEngine, ssml_fragment
from deployments.settings import AzureTTSSettings
from deployments.tracing import traced_engine

ENGINE = "azure_tts"
OUTPUT_FORMAT = "riff-24khz-16bit-mono-pcm"
KEY_ENV = "AZURE_SPEECH_KEY"
REGION_ENV = "AZURE_SPEECH_REGION"


class AzureTTSConfig(CloudEngineConfig):
    """The engine's part of the app builder args."""

    region: str | None = Field(None, description=f"e.g. westeurope; None = ${REGION_ENV}")
    endpoint: str | None = Field(
        None,
        description="base URL instead of https://{region}.tts.speech.microsoft.com "
        "(sovereign clouds, on-premises containers, tests)",
    )
    key: SecretStr | None = Field(None, description=f"Speech resource key; None = ${KEY_ENV}")
    default_voice: str = "en-US-JennyNeural"
    max_characters: int = Field(5000, gt=0, description="text characters per request")
    user_agent: str = Field("chorus", max_length=255, description="the service requires one")


@serve.deployment(name=ENGINE, ray_actor_options={"num_cpus": 0.1}, max_ongoing_requests=32)
@traced_engine
class AzureTTSEngine(CloudTTSEngine):
    engine_id = "azure_tts"
    service = "Azure Speech"
    protocol = "azure.cognitiveservices.v1"
    config_model = AzureTTSConfig
    settings_model = AzureTTSSettings
    timeout_errors = (httpx.TimeoutException,)

    config: AzureTTSConfig

    def _setup(self) -> str | None:
        key = self.config.key.get_secret_value() if self.config.key else os.environ.get(KEY_ENV)
        region = self.config.region or os.environ.get(REGION_ENV)
        self._key = key or ""
        self._base_url = (
            self.config.endpoint.rstrip("/")
            if self.config.endpoint
            else f"https://{region}.tts.speech.microsoft.com" if region else ""
        )
        # Created on first use, inside the event loop that will drive it.
        self._http: httpx.AsyncClient | None = None
        if not self._base_url:
            return f"no Azure region: set region or endpoint, or ${REGION_ENV}"
        if not key:
            return f"no Azure Speech key: set key or ${KEY_ENV}"
        return None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._base_url,
                timeout=self.config.timeout_s,
                headers={"Ocp-Apim-Subscription-Key": self._key, "User-Agent": self.config.user_agent},
            )
        return self._http

    def _where(self) -> str:
        return self._base_url

    async def _list_voices(self, timeout: float) -> list[VoiceInfo]:
        response = await self._client().get("/cognitiveservices/voices/list", timeout=timeout)
        if response.status_code != 200:
            raise self._http_error(response, "listing voices")
        return [
            VoiceInfo(
                id=v["ShortName"],
                languages=[v["Locale"], *v.get("SecondaryLocaleList", [])],
                sample_rate=SAMPLE_RATE,
            )
            for v in response.json()
        ]

    def _prepare_text(self, text: str, lexicon: list[Pronunciation]) -> tuple[str, bool]:
        """Azure takes SSML only: the text escaped (a bare `&` or `<` would make it invalid)."""
        return ssml_fragment(text, lexicon), True

    async def _synthesize_wav(self, text: str, voice: str, language: str, settings: AzureTTSSettings, *,
                              ssml: bool) -> bytes:
        response = await self._client().post(
            "/cognitiveservices/v1",
            content=_ssml(text, voice, language, settings).encode(),
            headers={"Content-Type": "application/ssml+xml", "X-Microsoft-OutputFormat": OUTPUT_FORMAT},
        )
        if response.status_code != 200:
            raise self._http_error(response, "synthesizing", voice)
        return response.content  # riff-24khz-16bit-mono-pcm is a WAV file

    def _http_error(self, response: httpx.Response, doing: str, voice: str | None = None) -> EngineError:
        return self._status_error(
            response.status_code, _body_message(response), doing,
            credentials=f"check key or ${KEY_ENV} and that it belongs to the resource at {self._base_url}",
            not_found=f"unknown voice {voice!r} or wrong region/endpoint {self._base_url}",
            bad_request=f": a setting such as the style or the voice {voice!r} may not be valid for this resource",
        )

    def _map_error(self, err: Exception, doing: str, voice: str | None) -> EngineError | None:
        if isinstance(err, httpx.TransportError):
            return EngineFailedError(
                f"cannot reach Azure Speech at {self._base_url} while {doing}: {type(err).__name__}: {err}",
                ENGINE,
            )
        return None


def _ssml(fragment: str, voice: str, language: str, settings: AzureTTSSettings) -> str:
    """The request body around the text's SSML (`ssml_fragment`: escaped, the lexicon marked)."""
    body = f'<prosody rate="{settings.rate:g}" pitch="{settings.pitch:+g}%">{fragment}</prosody>'
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
