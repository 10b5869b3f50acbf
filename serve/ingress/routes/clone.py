"""One-off cloning, the original service's purpose: speak `text` in the voice of an
uploaded reference recording. The reference goes through the sample checks; nothing is
stored."""

from __future__ import annotations

import contextlib
import logging
from typing import Literal, get_args

from fastapi import APIRouter, Request, Response
from pydantic import TypeAdapter, ValidationError

from chorus.auth.scopes import Scope, needs
from chorus.ingress.api import ErrorOut, RejectedOut
from chorus.ingress.deps import ReplicaDep, SpendDep
from chorus.ingress.errors import ChorusHTTPError
from chorus.ingress.middleware.auth import caller, caller_name
from chorus.ingress.middleware.request_id import request_id
from chorus.ingress.speaking import SPEECH_RESPONSES, check_text, checked_utterance, speak
from chorus.ingress.uploads import read_multipart
from chorus.personalities import (
    LanguageCode,
    Personality,
    PersonalityError,
    VoiceId,
    parse_spec,
)
from deployments.base import AudioFormat
from deployments.settings import cloning_windows

log = logging.getLogger(__name__)
router = APIRouter(tags=["speech"])

# The engines whose settings declare a sample window.
CloningEngine = Literal[tuple(cloning_windows())]  # type: ignore[valid-type]


def _field(fields: dict[str, str], name: str, adapter: TypeAdapter, default: object = None) -> object:
    raw = fields.get(name)
    if raw is None or raw == "":
        if default is None:
            raise ChorusHTTPError(422, f"{name}: field required")
        return default
    try:
        return adapter.validate_python(raw)
    except ValidationError as err:
        raise ChorusHTTPError(422, f"{name}: {err.errors()[0]['msg']}") from None


@router.post(
    "/v1/clone",
    response_class=Response,
    responses={**SPEECH_RESPONSES, 422: {"model": RejectedOut | ErrorOut, "description": "A bad field, or a reference its checks refused."},
               413: {"model": ErrorOut}},
    summary="Speak text in the voice of an uploaded reference recording (stores nothing)",
    openapi_extra=needs(Scope.CLONE) | {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file", "text"],
        "properties": {
            "file": {"type": "string", "format": "binary", "description": "reference recording"},
            "text": {"type": "string"}, "language": {"type": "string", "default": "en"},
            "provider": {"type": "string", "enum": list(get_args(CloningEngine)), "default": "xtts_v2"},
            "variant": {"type": "string", "description": "XTTS accent variant, e.g. british, american"},
            "format": {"type": "string", "enum": [f.value for f in AudioFormat], "default": "wav"},
        },
    }}}}},
)
async def clone(request: Request, replica: ReplicaDep, spend: SpendDep) -> Response:
    with contextlib.ExitStack() as reading:
        # A place among the recordings this replica reads and checks, from before the body is
        # read until the reference is checked (503 while the replica is full of uploads).
        reading.enter_context(replica.samples.admitted())
        fields, data = await read_multipart(request, replica.config.samples.max_upload_bytes)
        text = str(_field(fields, "text", TypeAdapter(str)))
        check_text(replica, text)  # now, before the reference's checks spend seconds on it
        language = str(_field(fields, "language", TypeAdapter(LanguageCode), "en"))
        engine = str(_field(fields, "provider", TypeAdapter(CloningEngine), "xtts_v2"))
        variant = fields.get("variant") or None
        if variant is not None:
            _field(fields, "variant", TypeAdapter(VoiceId))
        fmt = AudioFormat(str(_field(fields, "format", TypeAdapter(AudioFormat), AudioFormat.wav)))
        try:
            spec = parse_spec({
                "activeProvider": engine,
                "languages": {"primary": language},
                "providers": {engine: {"variant": variant} if variant else {}},
            }, prefix="")
        except PersonalityError as err:
            raise ChorusHTTPError(422, err.reason) from None
        # Counted before the reference's checks spend seconds on it (a one-off voice has no
        # personality rate); given back if the reference is refused or no engine speaks.
        async with spend.synthesis(None, len(text)) as charge:
            # Checked like an uploaded sample (SampleRejected -> 422 with the check table).
            reference = await replica.samples.checked(replica.samples.ingest.reference, data, engine, language)
            reading.close()
            one_off = Personality(name="one-off-clone", spec=spec)
            log.info("clone with %s: %d-byte reference, %d characters [request %s, key %s]", engine, len(data), len(text),
                     request_id(request), caller_name(request))
            # A one-off voice is not kept: its entries would only push out audio that is asked again.
            return await speak(request, replica, checked_utterance(
                replica, one_off, text, language=language, provider=engine, fmt=fmt, samples=[reference],  # type: ignore[arg-type]
                cache=False, caller=caller(request),
            ), charge=charge)
