"""The ingress deployment: the only one with HTTP routes.

It resolves the personality, asks the router for audio, encodes it and says in headers
which engine spoke and what was tried before. Personalities come from the store; engines
are reached through the deployment handles the app builder passed in.
"""

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import yaml
from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from ray import serve
from ray.serve.handle import DeploymentHandle

from deployments.base import ENGINE_IDS, AudioFormat, BadInputError, EngineId, TextTooLongError, language_matches
from serve import encoding
from serve.api import (
    AllFailedOut,
    ErrorOut,
    OpenAISpeechRequest,
    PersonalityList,
    PersonalityOut,
    ProviderOut,
    ProvidersOut,
    SpeechRequest,
)
from serve.personalities import (
    NAME_PATTERN,
    Personality,
    PersonalityError,
    parse_document,
    parse_spec,
)
from serve.router import AllEnginesFailed, Attempt, EngineBoard, Router, Routed
from serve.store import DirectoryStore

log = logging.getLogger(__name__)

OPENAI_MODELS = frozenset({"tts-1", "tts-1-hd", "gpt-4o-mini-tts"})
JSON_TYPES = ("application/json",)
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


class IngressConfig(BaseModel):
    personalities_dir: Path
    timeouts: dict[EngineId, float] = Field(default_factory=dict)
    max_text_characters: int = Field(10_000, ge=1)
    status_refresh_s: float = Field(5.0, gt=0)


class ChorusHTTPError(Exception):
    """An error answer; the OpenAI-compatible route renders it in OpenAI's shape."""

    def __init__(self, status: int, detail: str, param: str | None = None, extra: dict | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.param, self.extra = status, detail, param, extra or {}


app = FastAPI(
    title="Chorus",
    version="0.1.0",
    description="Text-to-speech for voice personalities. Every speech answer names the engine "
    "that spoke (`X-Chorus-Provider`), the engines tried before it (`X-Chorus-Fallback`) "
    "and the time it took (`X-Chorus-Latency-Ms`).",
)


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/audio/")


def _error_response(request: Request, status: int, detail: str, param: str | None = None, extra: dict | None = None) -> JSONResponse:
    if _is_openai(request):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body: dict[str, Any] = {"error": {"message": detail, "type": kind, "param": param, "code": None}}
    else:
        body = {"detail": detail}
    body.update(extra or {})
    return JSONResponse(body, status_code=status)


@app.exception_handler(ChorusHTTPError)
async def _chorus_error(request: Request, err: ChorusHTTPError) -> JSONResponse:
    return _error_response(request, err.status, err.detail, err.param, err.extra)


@app.exception_handler(BadInputError)
async def _bad_input(request: Request, err: BadInputError) -> JSONResponse:
    extra = {"limit": err.limit} if isinstance(err, TextTooLongError) else None
    return _error_response(request, err.status_code, str(err), extra=extra)


@app.exception_handler(AllEnginesFailed)
async def _all_failed(request: Request, err: AllEnginesFailed) -> JSONResponse:
    detail = "no engine could speak this: " + "; ".join(
        f"{a.engine} {a.outcome} ({a.reason})" for a in err.attempts
    ) if err.attempts else "no engine is configured to speak this"
    return _error_response(
        request, 503, detail, extra={"attempts": [a.model_dump() for a in err.attempts]}
    )


@app.exception_handler(RequestValidationError)
async def _invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
    problems = []
    for e in err.errors():
        if e["type"] == "json_invalid":
            problems.append(f"malformed JSON at character {e['loc'][-1]}: {e.get('ctx', {}).get('error', e['msg'])}")
            continue
        loc = ".".join(str(p) for p in e["loc"] if p != "body")
        problems.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    first_param = next((".".join(str(p) for p in e["loc"] if p != "body") for e in err.errors()), None)
    if _is_openai(request):
        return _error_response(request, 422, "; ".join(problems), param=first_param)
    return JSONResponse({"detail": "; ".join(problems), "errors": jsonable_errors(err)}, status_code=422)


def jsonable_errors(err: RequestValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()]


async def require_json(request: Request) -> None:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise ChorusHTTPError(415, f"send the body as application/json (got {ctype or 'no content type'})")


def fallback_header(attempts: list[Attempt]) -> str:
    """RFC 8941 structured-field list: `piper;outcome=failed;reason="..."`."""
    items = []
    for a in attempts:
        reason = a.reason.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"')
        items.append(f'{a.engine};outcome={a.outcome};reason="{reason[:300]}"')
    return ", ".join(items)


def chorus_headers(routed: Routed, started: float) -> dict[str, str]:
    headers = {
        "X-Chorus-Provider": routed.engine,
        "X-Chorus-Latency-Ms": f"{(time.perf_counter() - started) * 1000:.1f}",
    }
    if routed.attempts:
        headers["X-Chorus-Fallback"] = fallback_header(routed.attempts)
    return headers


SPEECH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"audio/wav": {}, "audio/mpeg": {}, "audio/ogg": {}, "audio/flac": {}, "audio/aac": {}, "audio/L16": {}},
          "description": "The audio."},
    404: {"model": ErrorOut, "description": "Unknown personality."},
    413: {"model": ErrorOut, "description": "Text over the limit."},
    415: {"model": ErrorOut, "description": "Body is not JSON."},
    422: {"model": ErrorOut, "description": "Invalid request."},
    503: {"model": AllFailedOut, "description": "Every engine failed; `attempts` says why."},
}


def _parse_body(raw: bytes, content_type: str) -> Any:
    ctype = content_type.split(";")[0].strip().lower()
    if not raw.strip():
        raise ChorusHTTPError(422, "the body is empty; send the personality spec")
    if ctype in JSON_TYPES:
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChorusHTTPError(422, f"malformed JSON: {err}") from None
    if ctype in YAML_TYPES:
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ChorusHTTPError(422, f"malformed YAML: {err}") from None
    raise ChorusHTTPError(415, f"send the spec as application/json or application/yaml (got {ctype or 'no content type'})")


async def _stream_body(chunks: AsyncIterator[Any], fmt: AudioFormat, sample_rate: int) -> AsyncIterator[bytes]:
    if fmt is AudioFormat.wav:
        yield encoding.wav_stream_header(sample_rate)
    async for chunk in chunks:
        yield chunk.pcm


@serve.deployment(name="Ingress", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=64)
@serve.ingress(app)
class Ingress:
    def __init__(self, engines: dict[EngineId, DeploymentHandle], config: IngressConfig | dict) -> None:
        self.config = IngressConfig.model_validate(config)
        self.store = DirectoryStore(self.config.personalities_dir)
        self.board = EngineBoard(engines, refresh_s=self.config.status_refresh_s)
        self.router = Router(self.board, self.config.timeouts)
        self._stop = asyncio.Event()
        self._watcher = asyncio.get_running_loop().create_task(self.store.watch(self._stop))

    def __del__(self) -> None:
        self._stop.set()

    # --- helpers -------------------------------------------------------------------

    def _personality(self, name: str) -> Personality:
        personality = self.store.get(name)
        if personality is None:
            raise ChorusHTTPError(404, f"personality {name!r} not found", param="voice")
        return personality

    def _check_text(self, text: str) -> None:
        if not text.strip():
            raise ChorusHTTPError(422, "text is empty", param="input")
        limit = self.config.max_text_characters
        if len(text) > limit:
            raise ChorusHTTPError(413, f"text has {len(text)} characters; the limit is {limit}", extra={"limit": limit})

    def _language(self, personality: Personality, language: str | None) -> str:
        langs = personality.spec.languages
        if language is None:
            return langs.primary
        if not language_matches(language, langs.all()):
            raise ChorusHTTPError(
                422, f"personality {personality.name!r} does not speak {language!r} (supported: {langs.all()})",
                param="language",
            )
        return language

    def _check_provider(self, personality: Personality, provider: EngineId | None) -> None:
        if provider is not None and personality.spec.providers.get(provider) is None:
            raise ChorusHTTPError(
                422, f"provider {provider!r} is not configured for personality {personality.name!r} "
                f"(configured: {personality.spec.providers.configured()})", param="provider",
            )

    async def _speak(
        self, personality: Personality, text: str, language: str, provider: EngineId | None,
        fmt: AudioFormat, stream: bool, speed: float = 1.0,
    ) -> Response:
        started = time.perf_counter()
        if stream:
            if fmt not in encoding.STREAMABLE:
                raise ChorusHTTPError(422, f"streaming sends wav or pcm, not {fmt.value}", param="format")
            routed = await self.router.stream(personality, text, language, provider, speed)
            headers = chorus_headers(routed, started)
            return StreamingResponse(
                _stream_body(routed.chunks, fmt, routed.sample_rate),
                media_type=encoding.media_type(fmt, routed.sample_rate),
                headers=headers,
            )
        routed_audio = await self.router.synthesize(personality, text, language, provider, speed)
        audio = routed_audio.audio
        body = await asyncio.to_thread(encoding.encode, audio.pcm, audio.sample_rate, fmt)
        return Response(
            body, media_type=encoding.media_type(fmt, audio.sample_rate), headers=chorus_headers(routed_audio, started)
        )

    # --- speech --------------------------------------------------------------------

    @app.post(
        "/v1/personalities/{name}/speech",
        responses=SPEECH_RESPONSES,
        response_class=Response,
        dependencies=[Depends(require_json)],
        summary="Speak text in a personality's voice",
        tags=["speech"],
    )
    async def speech(self, name: str, body: SpeechRequest) -> Response:
        personality = self._personality(name)
        self._check_text(body.text)
        language = self._language(personality, body.language)
        self._check_provider(personality, body.provider)
        return await self._speak(personality, body.text, language, body.provider, body.format, body.stream)

    @app.post(
        "/v1/audio/speech",
        responses=SPEECH_RESPONSES,
        response_class=Response,
        dependencies=[Depends(require_json)],
        summary="OpenAI-compatible speech (voice = personality name)",
        tags=["speech"],
    )
    async def openai_speech(self, body: OpenAISpeechRequest) -> Response:
        if body.model in ENGINE_IDS:
            provider: EngineId | None = body.model  # type: ignore[assignment]
        elif body.model in OPENAI_MODELS:
            provider = None
        else:
            raise ChorusHTTPError(
                422, f"unknown model {body.model!r}: use one of {sorted(OPENAI_MODELS)} or an engine id "
                f"{list(ENGINE_IDS)}", param="model",
            )
        personality = self._personality(body.voice)
        self._check_text(body.input)
        self._check_provider(personality, provider)
        fmt = body.response_format
        response = await self._speak(
            personality, body.input, personality.spec.languages.primary, provider, fmt,
            stream=False, speed=body.speed,
        )
        if fmt is AudioFormat.pcm:
            # OpenAI's pcm is 24 kHz; clients assume that rate.
            rate = int(response.media_type.split("rate=")[1].split(";")[0])
            response.body = encoding.resample(response.body, rate, 24000)
            response.headers["content-length"] = str(len(response.body))
            response.headers["content-type"] = encoding.media_type(fmt, 24000)
        return response

    # --- engines -------------------------------------------------------------------

    @app.get("/v1/providers", response_model=ProvidersOut, tags=["engines"], summary="Engines: capabilities and health")
    async def providers(self) -> ProvidersOut:
        statuses = await self.board.statuses(fresh=True)
        out = []
        for engine in ENGINE_IDS:
            status = statuses.get(engine)
            if status is not None:
                out.append(ProviderOut(**status.model_dump(), timeout_s=self.config.timeouts.get(engine)))
        return ProvidersOut(providers=out)

    # --- personalities -------------------------------------------------------------

    def _out(self, personality: Personality) -> PersonalityOut:
        status = self.store.status(personality.name)
        assert status is not None
        return PersonalityOut(**personality.to_resource(), status=status)

    @app.get("/v1/personalities", response_model=PersonalityList, response_model_exclude_none=True, tags=["personalities"])
    async def list_personalities(self) -> PersonalityList:
        items = [self._out(p) for n in self.store.names() if (p := self.store.get(n))]
        return PersonalityList(items=items, problems=self.store.problems())

    @app.get("/v1/personalities/{name}", response_model=PersonalityOut, response_model_exclude_none=True, responses={404: {"model": ErrorOut}}, tags=["personalities"])
    async def get_personality(self, name: str) -> PersonalityOut:
        return self._out(self._personality(name))

    @app.put(
        "/v1/personalities/{name}",
        response_model=PersonalityOut,
        responses={201: {"model": PersonalityOut}, 415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
        tags=["personalities"],
        summary="Create or replace a personality (body: its spec, JSON or YAML)",
        openapi_extra={"requestBody": {"required": True, "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/PersonalitySpec"}},
            "application/yaml": {"schema": {"$ref": "#/components/schemas/PersonalitySpec"}},
        }}},
    )
    async def put_personality(self, name: str, request: Request) -> JSONResponse:
        if not re.match(NAME_PATTERN, name) or len(name) > 63:
            raise ChorusHTTPError(422, f"name {name!r}: lowercase letters, digits and '-', at most 63 characters")
        data = _parse_body(await request.body(), request.headers.get("content-type", ""))
        try:
            if isinstance(data, dict) and ("spec" in data or "kind" in data):
                personality = parse_document(data, default_name=name)
                if personality.name != name:
                    raise PersonalityError(f"metadata.name {personality.name!r} differs from the path's {name!r}")
            else:
                personality = Personality(name=name, spec=parse_spec(data, prefix=""))
        except PersonalityError as err:
            raise ChorusHTTPError(422, err.reason) from None
        created = await asyncio.to_thread(self.store.put, personality)
        return JSONResponse(
            self._out(personality).model_dump(mode="json", by_alias=True, exclude_none=True),
            status_code=201 if created else 200,
        )

    @app.delete("/v1/personalities/{name}", status_code=204, responses={404: {"model": ErrorOut}}, tags=["personalities"])
    async def delete_personality(self, name: str) -> Response:
        if not await asyncio.to_thread(self.store.delete, name):
            raise ChorusHTTPError(404, f"personality {name!r} not found")
        return Response(status_code=204)

    # --- probes --------------------------------------------------------------------

    @app.get("/healthz", tags=["probes"])
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["probes"])
    async def readyz(self) -> JSONResponse:
        statuses = await self.board.statuses()
        healthy = [e for e, s in statuses.items() if s.health.healthy]
        body = {
            "ready": bool(healthy),
            "engines": {e: s.health.model_dump() for e, s in statuses.items()},
            "personalities": len(self.store.names()),
        }
        return JSONResponse(body, status_code=200 if healthy else 503)
