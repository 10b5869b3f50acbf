"""Multipart audio uploads with a size limit enforced while the body streams in."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile

from chorus.ingress.errors import ChorusHTTPError

# Room for the form fields around the audio.
FORM_OVERHEAD = 64 * 1024


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit`: a declared length is
    checked before reading, a chunked body while it streams in, never read whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ChorusHTTPError(413, f"upload is {declared} bytes; the limit is {limit}", extra={"limit": limit})
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ChorusHTTPError(413, f"upload exceeds the {limit}-byte limit", extra={"limit": limit})
    return bytes(body)


async def read_multipart(request: Request, limit: int, file_field: str = "file") -> tuple[dict[str, str], bytes]:
    """(text fields, file bytes) of a multipart/form-data body of at most `limit` bytes
    of audio; 415 for another content type, 422 when malformed or the file is missing."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "multipart/form-data":
        raise ChorusHTTPError(
            415, f"send multipart/form-data with a {file_field!r} part (got {ctype or 'no content type'})"
        )
    body = await read_limited(request, limit + FORM_OVERHEAD)

    async def replay() -> dict:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
    except Exception as err:  # python-multipart's errors: malformed or truncated bodies
        raise ChorusHTTPError(422, f"malformed multipart body: {err}") from None
    upload = form.get(file_field)
    if not isinstance(upload, UploadFile):
        raise ChorusHTTPError(422, f"the {file_field!r} part with the audio is missing")
    data = await upload.read()
    if len(data) > limit:
        raise ChorusHTTPError(413, f"audio is {len(data)} bytes; the limit is {limit}", extra={"limit": limit})
    fields = {k: v for k, v in form.multi_items() if isinstance(v, str)}
    return fields, data
