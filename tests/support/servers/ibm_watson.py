"""IBM Watson Text to Speech v1 protocol, plus the IAM token endpoint its SDK calls first.

GET /v1/voices -> {"voices": [{"name", "language", "gender", "url", "description", ...}]};
POST /v1/synthesize?voice=&rate_percentage=&pitch_percentage= with Accept: audio/wav;rate=N and
{"text": ...} (plain text or SSML, at most 5 KB) -> audio bytes. Errors are
{"code", "code_description", "error"}. POST /identity/token (IAM) trades an API key for a JWT
access token, which is how `IAMAuthenticator` works against the real IAM.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import jwt
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.support.servers import PiperSpeaker, ServiceServer, ssml_speech

MAX_TEXT_BYTES = 5 * 1024
API_KEY = "test-apikey"
DEFAULT_VOICES: list[dict[str, Any]] = [
    {"name": "en-US_MichaelV3Voice", "language": "en-US", "gender": "male"},
    {"name": "en-US_AllisonV3Voice", "language": "en-US", "gender": "female"},
    {"name": "en-GB_KateV3Voice", "language": "en-GB", "gender": "female"},
    {"name": "fr-FR_NicolasV3Voice", "language": "fr-FR", "gender": "male"},
    {"name": "ja-JP_EmiV3Voice", "language": "ja-JP", "gender": "female"},
]


class IBMWatsonServer(ServiceServer):
    default_voices = DEFAULT_VOICES

    def __init__(self, speaker: PiperSpeaker, voices: list[dict[str, Any]] | None = None) -> None:
        super().__init__(speaker, voices)
        self.tokens: set[str] = {"test-token"}  # bearer tokens the service accepts
        self._signing_key = secrets.token_hex(32)  # the SDK reads the JWT without verifying it

    def error(self, status: int, message: str) -> Response:
        return JSONResponse(
            {"code": status, "code_description": HTTPStatus(status).phrase, "error": message},
            status_code=status,
        )

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token in self.tokens

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/identity/token")
        async def iam_token(request: Request) -> Response:
            form = {k: v[0] for k, v in parse_qs((await request.body()).decode()).items()}
            if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey" or "apikey" not in form:
                return JSONResponse(
                    {"errorCode": "BXNIM0109E", "errorMessage": "Property missing or empty.", "context": {}},
                    status_code=400,
                )
            if form["apikey"] != API_KEY:
                return JSONResponse(
                    {"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found.", "context": {}},
                    status_code=400,
                )
            now = int(time.time())
            token = jwt.encode(
                {"iat": now, "exp": now + 3600, "jti": secrets.token_hex(8)}, self._signing_key, algorithm="HS256"
            )
            self.tokens.add(token)
            return JSONResponse(
                {"access_token": token, "refresh_token": "not_supported", "token_type": "Bearer",
                 "expires_in": 3600, "expiration": now + 3600}
            )

        @app.get("/v1/voices")
        async def list_voices(request: Request) -> Response:
            if not self._authorized(request):
                return self.error(401, "Unauthorized")
            base = str(request.base_url).rstrip("/")
            return JSONResponse({"voices": [
                {**v, "url": f"{base}/v1/voices/{v['name']}", "description": f"{v['name']} voice.",
                 "customizable": True,
                 "supported_features": {"custom_pronunciation": True, "voice_transformation": False}}
                for v in self.voices
            ]})

        @app.post("/v1/synthesize")
        async def synthesize(request: Request) -> Response:
            if not self._authorized(request):
                return self.error(401, "Unauthorized")
            query = request.query_params
            accept = query.get("accept") or request.headers.get("accept", "audio/ogg;codecs=opus")
            mime, *params = [p.strip() for p in accept.split(";")]
            if mime != "audio/wav":
                return self.error(406, f"Unsupported accept type '{accept}' (this server speaks audio/wav)")
            rate_param = dict(p.split("=", 1) for p in params if "=" in p).get("rate", "22050")
            try:
                body = json.loads(await request.body())
                text = body["text"]
            except (ValueError, KeyError, TypeError):
                return self.error(400, "Required parameter 'text' is missing in the request body")
            if len(text.encode()) > MAX_TEXT_BYTES:
                return self.error(413, "Input text exceeds the maximum of 5 KB")
            voice = query.get("voice", "en-US_MichaelV3Voice")
            if voice not in {v["name"] for v in self.voices}:
                return self.error(404, f"Model '{voice}' not found")
            try:
                rate_pct = int(query.get("rate_percentage", 0))
                pitch_pct = int(query.get("pitch_percentage", 0))
                sample_rate = int(rate_param)
            except ValueError:
                return self.error(400, "rate_percentage, pitch_percentage and rate must be integers")
            if not (-100 <= rate_pct <= 100 and -100 <= pitch_pct <= 100 and 8000 <= sample_rate <= 192000):
                return self.error(400, "rate_percentage/pitch_percentage out of [-100, 100] or rate out of range")
            try:
                # The service reads every input as (possibly) SSML: unescaped & or < are errors.
                spoken = ssml_speech(ET.fromstring(f"<speak>{text}</speak>"))
            except ET.ParseError as err:
                return self.error(400, f"Invalid SSML: {err}")
            spoken = re.sub(r"\s+", " ", spoken).strip()
            if not spoken:
                return self.error(400, "The text contains nothing to synthesize")
            wav = await self.speak(spoken, sample_rate=sample_rate, rate=max(0.25, 1 + rate_pct / 100))
            return Response(wav, media_type="audio/wav")
