"""Azure AI Speech text-to-speech REST protocol.

GET /cognitiveservices/voices/list -> [{"ShortName", "Locale", "SecondaryLocaleList"?,
"StyleList"?, "SampleRateHertz", ...}]; POST /cognitiveservices/v1 with headers
Ocp-Apim-Subscription-Key, Content-Type: application/ssml+xml, X-Microsoft-OutputFormat
(e.g. riff-24khz-16bit-mono-pcm), User-Agent and an SSML body -> audio bytes. A bad key gets
401 with the API gateway's {"error": {"code", "message"}}; other errors have an empty body.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.support.servers import ServiceServer, ssml_speech

KEY = "test-key"
SSML_NS = "{http://www.w3.org/2001/10/synthesis}"
MSTTS_NS = "{https://www.w3.org/2001/mstts}"
_RATE_WORDS = {"x-slow": 0.5, "slow": 0.64, "medium": 1.0, "default": 1.0, "fast": 1.55, "x-fast": 2.0}


def _voice(short: str, locale: str, gender: str, styles: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    name = short.split("-", 2)[2]
    return {
        "Name": f"Microsoft Server Speech Text to Speech Voice ({locale}, {name})",
        "DisplayName": name.removesuffix("Neural"), "LocalName": name.removesuffix("Neural"),
        "ShortName": short, "Gender": gender, "Locale": locale, "LocaleName": locale,
        **({"StyleList": styles} if styles else {}),
        "SampleRateHertz": "24000", "VoiceType": "Neural", "Status": "GA", "WordsPerMinute": "150", **extra,
    }


DEFAULT_VOICES: list[dict[str, Any]] = [
    _voice("en-US-JennyNeural", "en-US", "Female", ["assistant", "chat", "cheerful", "sad"]),
    _voice("en-US-GuyNeural", "en-US", "Male", ["newscast", "cheerful"]),
    _voice("en-US-JennyMultilingualNeural", "en-US", "Female", SecondaryLocaleList=["de-DE", "it-IT"]),
    _voice("pt-BR-FranciscaNeural", "pt-BR", "Female", ["calm"]),
]


def _rate(value: str | None) -> float:
    """SSML prosody rate: a multiplier ("1.2"), a relative percentage ("+20%") or a word."""
    if not value:
        return 1.0
    if value in _RATE_WORDS:
        return _RATE_WORDS[value]
    if value.endswith("%"):
        return 1.0 + float(value[:-1]) / 100
    return float(value)


class AzureTTSServer(ServiceServer):
    default_voices = DEFAULT_VOICES

    def error(self, status: int, message: str) -> Response:
        if status in (401, 403):
            return JSONResponse({"error": {"code": str(status), "message": message}}, status_code=status)
        return Response(status_code=status)  # the speech endpoint's errors carry no body

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("ocp-apim-subscription-key") == KEY:
            return None
        return self.error(
            401,
            "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
            "a valid key for an active subscription and use a correct regional API endpoint for your resource.",
        )

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/cognitiveservices/voices/list")
        async def list_voices(request: Request) -> Response:
            return self._unauthorized(request) or JSONResponse(self.voices)

        @app.post("/cognitiveservices/v1")
        async def synthesize(request: Request) -> Response:
            if (denied := self._unauthorized(request)) is not None:
                return denied
            if not request.headers.get("content-type", "").startswith("application/ssml+xml"):
                return self.error(415, "")
            output_format = request.headers.get("x-microsoft-outputformat", "")
            fmt = re.fullmatch(r"riff-(\d+)(khz|hz)-16bit-mono-pcm", output_format)
            if fmt is None or not request.headers.get("user-agent"):
                return self.error(400, "")
            sample_rate = int(fmt.group(1)) * (1000 if fmt.group(2) == "khz" else 1)
            try:
                speak = ET.fromstring(await request.body())
            except ET.ParseError:
                return self.error(400, "")
            voice = speak.find(f"{SSML_NS}voice")
            known = {v["ShortName"] for v in self.voices}
            if speak.tag != f"{SSML_NS}speak" or voice is None or voice.get("name") not in known:
                return self.error(400, "")
            prosody = voice.find(f".//{SSML_NS}prosody")
            try:
                rate = _rate(prosody.get("rate") if prosody is not None else None)
            except ValueError:
                return self.error(400, "")
            text = re.sub(r"\s+", " ", ssml_speech(voice)).strip()
            if not text or not 0.5 <= rate <= 3.0:
                return self.error(400, "")
            wav = await self.speak(text, sample_rate=sample_rate, rate=rate)
            return Response(wav, media_type="audio/x-wav")
