"""Error answers: one shape for the Chorus API, OpenAI's shape on its compatible routes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from chorus.auth.scopes import Scope
from chorus.common.safe_text import loggable, scrubbed
from chorus.ingress.middleware.auth import caller_name
from chorus.ingress.middleware.body_limit import BodyTooLarge
from chorus.ingress.middleware.request_id import id_header, request_id
from chorus.quotas.callers import QuotaExceeded, QuotasUnavailable
from chorus.quotas.provider_counts import CountsUnavailable
from chorus.samples.report import SampleRejected, SpeakerMismatch
from chorus.samples.storage import (
    DuplicateSample,
    SampleIdConflict,
    SampleLimitReached,
    SampleStoreError,
)
from chorus.speech.attempts import AllEnginesFailed, Attempt, AudioTooLong
from chorus.telemetry.stats.store import StatsUnavailable
from deployments.base import BadInputError, TextTooLongError

log = logging.getLogger(__name__)

TOO_DEEP = "the body nests too deeply to read (deeply nested lists or mappings)"


class ChorusHTTPError(Exception):
    """An error answer with a status, a sentence for people and optional extra fields."""

    def __init__(self, status: int, detail: str, param: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.param, self.extra = status, detail, param, extra or {}


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/audio/")


def error_response(request: Request, status: int, detail: str, param: str | None = None,
                   extra: dict[str, Any] | None = None, code: str | None = None,
                   logged: str | None = None, retry_after_s: int | None = None, quiet: bool = False) -> JSONResponse:
    """`code` is a machine-readable reason (OpenAI's `error.code`, e.g. `invalid_api_key`);
    `logged` the whole story when the client is told less (`detail`); `retry_after_s` the
    `Retry-After` of a refusal worth retrying (every error that invites one carries it as
    its `retry_after_s` attribute); `quiet` logs it at DEBUG (one of many alike)."""
    if _is_openai(request):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body: dict[str, Any] = {"error": {"message": detail, "type": kind, "param": param, "code": code}}
    else:
        body = {"detail": detail} | ({"code": code} if code else {})
    body.update(extra or {})
    _log(request, status, logged or detail, logging.DEBUG if quiet else None)
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(body, status_code=status, headers=headers)


def quota_refusal(request: Request, err: QuotaExceeded | QuotasUnavailable) -> JSONResponse:
    """429 naming the limit (which, its value, when it resets), `Retry-After` in seconds;
    503 when the limits cannot be counted."""
    if isinstance(err, QuotasUnavailable):
        return error_response(request, 503, err.detail, code="rate_limits_unavailable", logged=err.cause,
                              retry_after_s=err.retry_after_s)
    response = error_response(request, 429, err.detail, code="rate_limit_exceeded", extra={"limit": err.window.describe()},
                              retry_after_s=err.retry_after_s)
    response.headers.update(err.window.headers())
    return response


def bad_input_detail(err: BadInputError) -> str:
    """What a caller is told about input an engine refused: the engine's own words only
    when it vouches they are safe (`public`); a provider's answer stays in the log."""
    if err.public:
        return scrubbed(err.public)
    if isinstance(err, TextTooLongError):
        return f"the text is too long for {err.engine} (its limit per request is {err.limit})"
    return f"{err.engine or 'the engine'} refused the input as invalid"


def _log(request: Request, status: int, detail: str, level: int | None = None) -> None:
    # The full reason stays here, under the id the client got back in X-Request-Id.
    log.log(level or (logging.WARNING if status >= 500 else logging.INFO), "%s %s -> %d: %s [request %s, key %s]",
            request.method, loggable(request.url.path), status, loggable(detail), request_id(request),
            caller_name(request))


def _problems(errors: list[Any]) -> list[str]:
    """One line per pydantic error: where (without FastAPI's `body`) and what."""
    problems = []
    for e in errors:
        if e["type"] == "json_invalid":
            problems.append(f"malformed JSON at character {e['loc'][-1]}: {e.get('ctx', {}).get('error', e['msg'])}")
            continue
        loc = ".".join(str(p) for p in e["loc"] if p != "body")
        problems.append(f"{loc}: {e['msg']}" if loc else e["msg"])
    return problems


def install(app: FastAPI) -> None:
    @app.exception_handler(ChorusHTTPError)
    async def _chorus(request: Request, err: ChorusHTTPError) -> JSONResponse:
        return error_response(request, err.status, err.detail, err.param, err.extra)

    @app.exception_handler(BadInputError)
    async def _bad_input(request: Request, err: BadInputError) -> JSONResponse:
        # Text over an engine's own limit is 413 like text over ours; any other input an
        # engine refuses is 422.
        if isinstance(err, TextTooLongError):
            return error_response(request, 413, bad_input_detail(err), extra={"limit": err.limit}, logged=str(err))
        return error_response(request, 422, bad_input_detail(err), logged=str(err))

    @app.exception_handler(QuotaExceeded)
    @app.exception_handler(QuotasUnavailable)
    async def _quota(request: Request, err: QuotaExceeded | QuotasUnavailable) -> JSONResponse:
        return quota_refusal(request, err)

    @app.exception_handler(StatsUnavailable)
    @app.exception_handler(CountsUnavailable)
    async def _store_unavailable(request: Request, err: StatsUnavailable | CountsUnavailable) -> JSONResponse:
        # A shared store (Redis) a route reads is unreachable: the caller may retry shortly.
        code = "stats_unavailable" if isinstance(err, StatsUnavailable) else "quotas_unavailable"
        return error_response(request, 503, str(err), code=code, logged=err.cause, retry_after_s=err.retry_after_s)

    @app.exception_handler(AudioTooLong)
    async def _audio_too_long(request: Request, err: AudioTooLong) -> JSONResponse:
        return error_response(request, 413, str(err), extra={"limit_seconds": err.limit})

    @app.exception_handler(AllEnginesFailed)
    async def _all_failed(request: Request, err: AllEnginesFailed) -> JSONResponse:
        def said(reason: Callable[[Attempt], str]) -> str:
            if not err.attempts:
                return "no engine is configured to speak this"
            return "no engine could speak this: " + "; ".join(f"{a.engine} {a.outcome} ({reason(a)})" for a in err.attempts)

        shown = [a.shown().model_dump() for a in err.attempts]
        return error_response(request, 503, said(lambda a: a.reason), extra={"attempts": shown},
                              logged=said(lambda a: a.detail), retry_after_s=err.retry_after_s)

    @app.exception_handler(SampleRejected)
    async def _rejected(request: Request, err: SampleRejected) -> JSONResponse:
        checks = [c.model_dump(mode="json") for c in err.checks]
        extra: dict[str, Any] = {"problem": err.problem, "checks": checks}
        detail = err.reason
        if isinstance(err, SpeakerMismatch):
            extra["similarity"] = err.similarity
            detail += f"; a key with the {Scope.ADMIN.value!r} scope may store it anyway with the form field force=true"
        return error_response(request, 422, detail, extra=extra)

    @app.exception_handler(SampleStoreError)
    async def _sample_store(request: Request, err: SampleStoreError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(err, DuplicateSample):
            extra["existing_id"] = err.existing_id
        if isinstance(err, SampleIdConflict):
            extra["id"] = err.sample_id
        if isinstance(err, SampleLimitReached):
            extra["limit"] = err.limit
        return error_response(request, err.status_code, err.reason, extra=extra, retry_after_s=err.retry_after_s)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = _problems(err.errors())
        first_param = next((".".join(str(p) for p in e["loc"] if p != "body") for e in err.errors()), None)
        if _is_openai(request):
            return error_response(request, 422, "; ".join(problems), param=first_param)
        _log(request, 422, "; ".join(problems))
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": errors}, status_code=422)

    @app.exception_handler(ValidationError)
    async def _late_invalid(request: Request, err: ValidationError) -> JSONResponse:
        # A model built by a route from what the caller sent, after FastAPI's validation:
        # still the caller's input, so 422 like any other invalid field.
        return error_response(request, 422, "; ".join(_problems(err.errors(include_url=False))))

    @app.exception_handler(RecursionError)
    async def _too_deep(request: Request, err: RecursionError) -> JSONResponse:
        # What recurses on a request is the decoding or validation of what the caller sent.
        return error_response(request, 422, TOO_DEEP)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, err: BodyTooLarge) -> JSONResponse:
        return error_response(request, 413, err.detail, extra={"limit": err.limit})

    @app.exception_handler(HTTPException)
    async def _http(request: Request, err: HTTPException) -> Response:
        # FastAPI turns any error while decoding a JSON body into a 400; nesting too deep
        # for the decoder is the caller's body, refused like other invalid input.
        if isinstance(err.__cause__, RecursionError):
            return error_response(request, 422, TOO_DEEP)
        _log(request, err.status_code, str(err.detail))
        return await http_exception_handler(request, err)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        # Sent by Starlette's outermost layer, around the request-id middleware, so the
        # header is added here; the traceback goes to the log, never to the client.
        rid = request_id(request)
        log.exception("%s %s -> 500 [request %s]", request.method, request.url.path, rid)
        response = error_response(request, 500, f"internal error (request id {rid})")
        response.headers.update(id_header(request))
        return response


JSON_TYPES = ("application/json",)


async def require_json(request: Request) -> None:
    """A FastAPI dependency: JSON bodies only (415 names what came instead)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise ChorusHTTPError(415, f"send the body as application/json (got {ctype or 'no content type'})")
