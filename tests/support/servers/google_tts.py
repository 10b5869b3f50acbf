"""Google Cloud Text-to-Speech v1 REST protocol: GET /v1/voices, POST /v1/text:synthesize,
and v1beta1's POST /v1beta1/text:synthesize with time pointing.

Shapes as documented: voices are {"languageCodes", "name", "ssmlGender",
"naturalSampleRateHertz"}; synthesis answers {"audioContent": base64}; LINEAR16 carries a WAV
header; errors are {"error": {"code", "message", "status"}}. v1beta1's `enableTimePointing:
[SSML_MARK]` adds `timepoints: [{"markName", "timeSeconds"}]`, one per `<mark name>` in the
SSML (here: marks directly inside `<speak>`), each part between marks spoken on its own so its
time is exact. The REST client asks for integer
enums ($alt=json;enum-encoding=int), so both spellings are accepted and echoed as asked.
"""

from __future__ import annotations

import asyncio
import base64
import json
import xml.etree.ElementTree as ET
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

from tests.support.servers import ServiceServer, ssml_marked, ssml_speech

MAX_INPUT_BYTES = 5000
_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
_GENDERS = ["SSML_VOICE_GENDER_UNSPECIFIED", "MALE", "FEMALE", "NEUTRAL"]
_ENCODINGS = {0: "AUDIO_ENCODING_UNSPECIFIED", 1: "LINEAR16", 2: "MP3", 3: "OGG_OPUS", 5: "MULAW", 6: "ALAW", 7: "PCM"}

DEFAULT_VOICES: list[dict[str, Any]] = [
    {"languageCodes": ["en-US"], "name": "en-US-Neural2-D", "ssmlGender": "MALE", "naturalSampleRateHertz": 24000},
    {"languageCodes": ["en-GB"], "name": "en-GB-Neural2-B", "ssmlGender": "MALE", "naturalSampleRateHertz": 24000},
    {"languageCodes": ["es-ES"], "name": "es-ES-Neural2-A", "ssmlGender": "FEMALE", "naturalSampleRateHertz": 24000},
    {"languageCodes": ["de-DE"], "name": "de-DE-Neural2-B", "ssmlGender": "MALE", "naturalSampleRateHertz": 24000},
]


class GoogleTTSServer(ServiceServer):
    default_voices = DEFAULT_VOICES

    def error(self, status: int, message: str) -> Response:
        return JSONResponse(
            {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}},
            status_code=status,
        )

    def add_routes(self, app: FastAPI) -> None:
        @app.get("/v1/voices")
        async def list_voices(request: Request) -> Response:
            lang = request.query_params.get("languageCode", "").lower()
            int_enums = "enum-encoding=int" in request.query_params.get("$alt", "")
            voices = []
            for v in self.voices:
                if lang and not any(c.lower().startswith(lang) for c in v["languageCodes"]):
                    continue
                gender = v["ssmlGender"]
                voices.append({**v, "ssmlGender": _GENDERS.index(gender) if int_enums else gender})
            return JSONResponse({"voices": voices})

        @app.post("/v1/text:synthesize")
        @app.post("/v1beta1/text:synthesize")
        async def synthesize(request: Request) -> Response:
            try:
                body = json.loads(await request.body())
            except ValueError:
                return self.error(400, "Invalid JSON payload received.")
            inp = body.get("input") or {}
            voice = body.get("voice") or {}
            audio = body.get("audioConfig") or {}
            text = inp.get("text")
            ssml = inp.get("ssml")
            if not text and not ssml:
                return self.error(400, "Either `input.text` or `input.ssml` must be set.")
            if len((text or ssml).encode()) > MAX_INPUT_BYTES:
                return self.error(
                    400,
                    f"Either `input.text` or `input.ssml` is longer than the limit of {MAX_INPUT_BYTES} bytes. "
                    "This limit is different from quotas. To fix, reduce the byte length of the characters "
                    "in this request, or consider using the Long Audio API.",
                )
            if not voice.get("languageCode"):
                return self.error(400, "Invalid voice: `voice.languageCode` is required.")
            name = voice.get("name")
            known = {v["name"]: v for v in self.voices}
            if name and name not in known:
                return self.error(400, f"Voice '{name}' does not exist. Is it misspelled?")
            encoding = audio.get("audioEncoding", 0)
            encoding = _ENCODINGS.get(encoding, "?") if isinstance(encoding, int) else encoding
            if encoding not in ("LINEAR16", "PCM"):
                return self.error(400, f"Unsupported audio encoding {encoding!r} (this server speaks LINEAR16, PCM).")
            # Zero means "the default" for these proto3 fields, as in the real API.
            rate = float(audio.get("speakingRate") or 1.0)
            pitch = float(audio.get("pitch") or 0.0)
            gain = float(audio.get("volumeGainDb") or 0.0)
            if not 0.25 <= rate <= 4.0:
                return self.error(400, "Invalid audio config: speaking_rate must be in [0.25, 4.0].")
            if not -20.0 <= pitch <= 20.0:
                return self.error(400, "Invalid audio config: pitch must be in [-20.0, 20.0].")
            if not -96.0 <= gain <= 16.0:
                return self.error(400, "Invalid audio config: volume_gain_db must be in [-96.0, 16.0].")
            natural = known[name]["naturalSampleRateHertz"] if name else 24000
            sample_rate = int(audio.get("sampleRateHertz") or natural)
            pointing = body.get("enableTimePointing") or []
            if pointing and not request.url.path.startswith("/v1beta1/"):
                return self.error(400, 'Invalid JSON payload received. Unknown name "enableTimePointing": '
                                  "Cannot find field.")
            marked = any(t in (1, "SSML_MARK") for t in pointing)
            try:
                root = None if text else ET.fromstring(ssml)
            except ET.ParseError as err:
                return self.error(400, f"Invalid SSML: {err}")
            timepoints: dict[str, float] = {}
            if marked and root is not None:
                wav, timepoints = await asyncio.to_thread(
                    self.speaker.marked_wav, ssml_marked(root), sample_rate=sample_rate, rate=rate, gain_db=gain)
            else:
                wav = await self.speak(text or ssml_speech(root), sample_rate=sample_rate, rate=rate, gain_db=gain)
            if encoding == "PCM":
                wav = wav[44:]  # headerless: drop the canonical 44-byte WAV header
            answer: dict[str, Any] = {"audioContent": base64.b64encode(wav).decode()}
            if marked:
                answer["timepoints"] = [{"markName": m, "timeSeconds": t} for m, t in timepoints.items()]
            return JSONResponse(answer)
