"""IBM Watson Text to Speech v1 protocol, plus the IAM token endpoint its SDK calls first.

GET /v1/voices -> {"voices": [{"name", "language", "gender", "url", "description", ...}]};
POST /v1/synthesize?voice=&rate_percentage=&pitch_percentage= with Accept: audio/wav;rate=N and
{"text": ...} (plain text or SSML, at most 5 KB) -> audio bytes. Errors are
{"code", "code_description", "error"}. POST /identity/token (IAM) trades an API key for a JWT
access token, which is how `IAMAuthenticator` works against the real IAM.

The WebSocket interface, the only one with word timings: wss://…/v1/synthesize?voice=&
rate_percentage=&pitch_percentage= (the handshake refused with the HTTP error for a bad token
or an unknown voice); the client sends one text message {"text", "accept", "timings"?}; the
service sends {"binary_streams": [{"content_type"}]}, the audio as binary frames (a WAV file
whose header went out before its length was known: sizes 0), {"words": [[word, start, end],
...]} messages when asked for ["words"] (each word as written, without the punctuation around
it), and closes; a failure is an {"error": ...} message, then the close.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

import jwt
from fastapi import FastAPI, Request, Response, WebSocket
from fastapi.responses import JSONResponse

from tests.support.servers import PiperSpeaker, ServiceServer, ssml_speech

MAX_TEXT_BYTES = 5 * 1024
FRAME_BYTES = 8 * 1024  # audio per binary WebSocket frame
API_KEY = "test-apikey"
DEFAULT_VOICES: list[dict[str, Any]] = [
    {"name": "en-US_MichaelV3Voice", "language": "en-US", "gender": "male"},
    {"name": "en-US_AllisonV3Voice", "language": "en-US", "gender": "female"},
    {"name": "en-GB_KateV3Voice", "language": "en-GB", "gender": "female"},
    {"name": "fr-FR_NicolasV3Voice", "language": "fr-FR", "gender": "male"},
    {"name": "ja-JP_EmiV3Voice", "language": "ja-JP", "gender": "female"},
]


class Refused(Exception):
    """The service refuses a synthesis: its HTTP status and message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


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

    def _authorized(self, request: Request | WebSocket) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and token in self.tokens

    def _checked(self, query: Any, accept: str) -> tuple[float, int]:
        """A synthesis' speaking rate (1 = normal) and sample rate from its query and Accept;
        `Refused` as the service refuses it."""
        mime, *params = [p.strip() for p in accept.split(";")]
        if mime != "audio/wav":
            raise Refused(406, f"Unsupported accept type '{accept}' (this server speaks audio/wav)")
        voice = query.get("voice", "en-US_MichaelV3Voice")
        if voice not in {v["name"] for v in self.voices}:
            raise Refused(404, f"Model '{voice}' not found")
        try:
            rate_pct = int(query.get("rate_percentage", 0))
            pitch_pct = int(query.get("pitch_percentage", 0))
            sample_rate = int(dict(p.split("=", 1) for p in params if "=" in p).get("rate", "22050"))
        except ValueError:
            raise Refused(400, "rate_percentage, pitch_percentage and rate must be integers") from None
        if not (-100 <= rate_pct <= 100 and -100 <= pitch_pct <= 100 and 8000 <= sample_rate <= 192000):
            raise Refused(400, "rate_percentage/pitch_percentage out of [-100, 100] or rate out of range")
        return max(0.25, 1 + rate_pct / 100), sample_rate

    @staticmethod
    def _spoken(body: bytes | str, where: str) -> str:
        """What a request's JSON `text` says (the service reads every input as SSML)."""
        try:
            text = json.loads(body)["text"]
        except (ValueError, KeyError, TypeError):
            raise Refused(400, f"Required parameter 'text' is missing in the request {where}") from None
        if len(text.encode()) > MAX_TEXT_BYTES:
            raise Refused(413, "Input text exceeds the maximum of 5 KB")
        try:
            spoken = ssml_speech(ET.fromstring(f"<speak>{text}</speak>"))
        except ET.ParseError as err:
            raise Refused(400, f"Invalid SSML: {err}") from None
        if not (spoken := re.sub(r"\s+", " ", spoken).strip()):
            raise Refused(400, "The text contains nothing to synthesize")
        return spoken

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
            try:
                rate, sample_rate = self._checked(
                    query, query.get("accept") or request.headers.get("accept", "audio/ogg;codecs=opus"))
                spoken = self._spoken(await request.body(), "body")
            except Refused as refused:
                return self.error(refused.status, refused.message)
            wav = await self.speak(spoken, sample_rate=sample_rate, rate=rate)
            return Response(wav, media_type="audio/wav")

        @app.websocket("/v1/synthesize")
        async def synthesize_socket(websocket: WebSocket) -> None:
            try:  # the handshake: refused with the HTTP error, as the service does
                if not self._authorized(websocket):
                    raise Refused(401, "Unauthorized")
                self._checked(websocket.query_params, "audio/wav")
            except Refused as refused:
                return await websocket.send_denial_response(self.error(refused.status, refused.message))
            await websocket.accept()
            message = await websocket.receive_text()
            self.record(websocket, "WEBSOCKET", message.encode())
            try:
                frames = await self._socket_frames(message, websocket.query_params)
            except Refused as refused:
                await websocket.send_json({"error": refused.message})
                return await websocket.close(1011 if refused.status >= 500 else 1008)
            for frame in frames:
                await (websocket.send_bytes(frame) if isinstance(frame, bytes) else websocket.send_json(frame))
            await websocket.close(1000)

    async def _socket_frames(self, message: str, query: Any) -> list[bytes | dict[str, Any]]:
        """What the service sends for a WebSocket session's text message, in order."""
        if (forced := await self.forced("/v1/synthesize")) is not None:
            raise Refused(*forced)
        spoken = self._spoken(message, "message")
        asked = json.loads(message)
        accept = asked.get("accept", "audio/ogg;codecs=opus")
        rate, sample_rate = self._checked(query, accept)
        if asked.get("timings") == ["words"]:
            wav, words = await asyncio.to_thread(self._timed_wav, spoken, sample_rate, rate)
        else:
            wav, words = streamed_wav(await self.speak(spoken, sample_rate=sample_rate, rate=rate)), []
        half = len(words) // 2  # the service sends its timings in several messages
        return [{"binary_streams": [{"content_type": accept}]},
                *(wav[at:at + FRAME_BYTES] for at in range(0, len(wav), FRAME_BYTES)),
                *({"words": part} for part in (words[:half], words[half:]) if part)]

    def _timed_wav(self, spoken: str, sample_rate: int, rate: float) -> tuple[bytes, list[list]]:
        """The streamed WAV of `spoken` and its word timings: each word (with the tokens
        without letters after it) synthesized on its own, so its times are exact."""
        parts: list[tuple[str | None, str]] = []
        for token in spoken.split():
            if any(c.isalnum() for c in token) or not parts:
                parts.append((str(len(parts)), token))
            else:
                parts[-1] = (parts[-1][0], f"{parts[-1][1]} {token}")
        wav, marks = self.speaker.marked_wav(parts, sample_rate=sample_rate, rate=rate)
        seconds = (len(wav) - 44) / 2 / sample_rate
        starts = [marks[m] for m, _ in parts]
        words = [[re.sub(r"^\W+|\W+$", "", text.split()[0]), round(start, 3), round(end, 3)]
                 for (_, text), start, end in zip(parts, starts, [*starts[1:], seconds], strict=True)]
        return streamed_wav(wav), words


def streamed_wav(wav: bytes) -> bytes:
    """`wav` (a canonical 44-byte-header file) as the service streams it: the header sent
    before the audio's length was known (RIFF and data sizes 0), with an INFO list chunk
    between fmt and data as in IBM's own header."""
    info = b"INFO" + b"ISFT" + struct.pack("<I", 6) + b"chorus"
    return (b"RIFF" + struct.pack("<I", 0) + wav[8:36] + b"LIST" + struct.pack("<I", len(info)) + info
            + b"data" + struct.pack("<I", 0) + wav[44:])
