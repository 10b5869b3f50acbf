"""Error answers: one shape for the Chorus API, OpenAI's shape on its compatible routes."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from chorus.router import AllEnginesFailed
from chorus.samples.report import SampleRejected
from chorus.samples.storage import (
    DuplicateSample,
    SampleIdConflict,
    SampleLimitReached,
    SampleStoreError,
)
from deployments.base import BadInputError, TextTooLongError


class ChorusHTTPError(Exception):
    """An error answer with a status, a sentence for people and optional extra fields."""

    def __init__(self, status: int, detail: str, param: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.param, self.extra = status, detail, param, extra or {}


def _is_openai(request: Request) -> bool:
    return request.url.path.startswith("/v1/audio/")


def error_response(request: Request, status: int, detail: str, param: str | None = None,
                   extra: dict[str, Any] | None = None) -> JSONResponse:
    if _is_openai(request):
        kind = "invalid_request_error" if status < 500 else "server_error"
        body: dict[str, Any] = {"error": {"message": detail, "type": kind, "param": param, "code": None}}
    else:
        body = {"detail": detail}
    body.update(extra or {})
    return JSONResponse(body, status_code=status)


def install(app: FastAPI) -> None:
    @app.exception_handler(ChorusHTTPError)
    async def _chorus(request: Request, err: ChorusHTTPError) -> JSONResponse:
        return error_response(request, err.status, err.detail, err.param, err.extra)

    @app.exception_handler(BadInputError)
    async def _bad_input(request: Request, err: BadInputError) -> JSONResponse:
        extra = {"limit": err.limit} if isinstance(err, TextTooLongError) else None
        return error_response(request, err.status_code, str(err), extra=extra)

    @app.exception_handler(AllEnginesFailed)
    async def _all_failed(request: Request, err: AllEnginesFailed) -> JSONResponse:
        if err.attempts:
            detail = "no engine could speak this: " + "; ".join(
                f"{a.engine} {a.outcome} ({a.reason})" for a in err.attempts
            )
        else:
            detail = "no engine is configured to speak this"
        return error_response(request, 503, detail, extra={"attempts": [a.model_dump() for a in err.attempts]})

    @app.exception_handler(SampleRejected)
    async def _rejected(request: Request, err: SampleRejected) -> JSONResponse:
        checks = [c.model_dump(mode="json") for c in err.checks]
        return error_response(request, 422, err.reason, extra={"problem": err.problem, "checks": checks})

    @app.exception_handler(SampleStoreError)
    async def _sample_store(request: Request, err: SampleStoreError) -> JSONResponse:
        extra: dict[str, Any] = {}
        if isinstance(err, DuplicateSample):
            extra["existing_id"] = err.existing_id
        if isinstance(err, SampleIdConflict):
            extra["id"] = err.sample_id
        if isinstance(err, SampleLimitReached):
            extra["limit"] = err.limit
        return error_response(request, err.status_code, err.reason, extra=extra)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = []
        for e in err.errors():
            if e["type"] == "json_invalid":
                problems.append(f"malformed JSON at character {e['loc'][-1]}: {e.get('ctx', {}).get('error', e['msg'])}")
                continue
            loc = ".".join(str(p) for p in e["loc"] if p != "body")
            problems.append(f"{loc}: {e['msg']}" if loc else e["msg"])
        first_param = next((".".join(str(p) for p in e["loc"] if p != "body") for e in err.errors()), None)
        if _is_openai(request):
            return error_response(request, 422, "; ".join(problems), param=first_param)
        errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in err.errors()]
        return JSONResponse({"detail": "; ".join(problems), "errors": errors}, status_code=422)


JSON_TYPES = ("application/json",)


async def require_json(request: Request) -> None:
    """A FastAPI dependency: JSON bodies only (415 names what came instead)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in JSON_TYPES:
        raise ChorusHTTPError(415, f"send the body as application/json (got {ctype or 'no content type'})")
