"""Voice samples of a personality: check (storing nothing), upload (checked before anything
is stored), list, read (metadata or audio), delete."""

from __future__ import annotations

import asyncio
import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import TypeAdapter, ValidationError

from chorus.auth.scopes import Scope, needs
from chorus.ingress.api import ErrorOut, RejectedOut, SampleCheckOut, UploadOut
from chorus.ingress.deps import AdminCaller, PersonalityDep, ReplicaDep, is_admin
from chorus.ingress.errors import ChorusHTTPError
from chorus.ingress.middleware.auth import caller_name
from chorus.ingress.middleware.request_id import request_id
from chorus.ingress.uploads import read_multipart
from chorus.personalities import LanguageCode, VoiceSample
from chorus.samples.storage import StoredSample

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/personalities/{name}/samples", tags=["samples"])

LanguageCodeCheck = TypeAdapter(LanguageCode)
ForceCheck = TypeAdapter(bool)
BUSY = "The replica is reading or checking as many recordings as it takes at once (Retry-After)."


@router.post(
    "",
    status_code=201,
    response_model=UploadOut,
    responses={403: {"model": ErrorOut, "description": "force=true from a key without admin."},
               404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 413: {"model": ErrorOut},
               415: {"model": ErrorOut}, 503: {"model": ErrorOut, "description": BUSY}, 422: {"model": RejectedOut | ErrorOut,
                                                       "description": "A bad field, or a recording its checks refused."}},
    summary="Upload a reference recording (multipart: file, language, notes?, id?, force?)",
    openapi_extra=needs(Scope.SAMPLES) | {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"}, "language": {"type": "string"},
                       "notes": {"type": "string"}, "id": {"type": "string"},
                       "force": {"type": "boolean", "default": False,
                                 "description": "store it even if the speaker differs from the other samples "
                                                "(needs the admin scope)"}},
    }}}}},
)
async def upload_sample(personality: PersonalityDep, request: Request, replica: ReplicaDep) -> JSONResponse:
    with replica.samples.admitted():  # before the body is read: 503 while the replica is full of uploads
        form, data = await read_multipart(request, replica.config.samples.max_upload_bytes)
        language = str(form.get("language") or personality.spec.languages.primary)
        try:
            LanguageCodeCheck.validate_python(language)
        except Exception:
            raise ChorusHTTPError(422, f"language {language!r} is not a language code like 'en' or 'en-US'") from None
        force = _force(form.get("force"))
        if force and not is_admin(request, replica):
            raise ChorusHTTPError(403, f"force=true needs the {Scope.ADMIN.value!r} scope, which the key "
                                       f"{caller_name(request)!r} lacks", extra={"code": "insufficient_scope"})
        notes = form.get("notes")
        sample_id = form.get("id")
        # The fields as the personality will hold them, refused (422) before the recording's
        # checks spend seconds on it.
        VoiceSample.model_validate({"id": str(sample_id or "unnamed"), "stored": True, "language": language,
                                    "notes": str(notes) if notes else None})
        result = await replica.samples.checked(
            replica.samples.upload, personality, data, language=language,
            notes=str(notes) if notes else None, sample_id=str(sample_id) if sample_id else None, force=force,
        )
    log.info("uploaded sample %r to %r: %d bytes, %.1f s%s [request %s, key %s]", result.sample.id, personality.name,
             len(data), result.sample.duration, " (forced)" if force else "", request_id(request), caller_name(request))
    return JSONResponse(UploadOut(sample=result.sample, report=result.report).model_dump(mode="json"), status_code=201)


@router.post(
    "/check",
    response_model=SampleCheckOut,
    responses={403: {"model": ErrorOut, "description": "force=true from a key without admin."},
               404: {"model": ErrorOut}, 413: {"model": ErrorOut}, 415: {"model": ErrorOut},
               422: {"model": RejectedOut | ErrorOut, "description": "A bad field, or bytes that are no recording."},
               503: {"model": ErrorOut, "description": BUSY}},
    summary="Check a recording as an upload would, storing nothing (multipart: file, force?)",
    openapi_extra=needs(Scope.SAMPLES) | {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": ["file"],
        "properties": {"file": {"type": "string", "format": "binary"},
                       "force": {"type": "boolean", "default": False,
                                 "description": "judge a different speaker as a warning, as a forced upload would"}},
    }}}}},
)
async def check_sample(personality: PersonalityDep, request: Request, replica: ReplicaDep) -> SampleCheckOut:
    """The whole check table (speaker consistency too) and whether an upload would be stored:
    a refused recording is a 200 here, with its `problems`."""
    with replica.samples.admitted():
        form, data = await read_multipart(request, replica.config.samples.max_upload_bytes)
        force = _force(form.get("force"))
        result = await replica.samples.checked(replica.samples.check, personality, data, force=force)
    return SampleCheckOut(accepted=not result.problems, problems=result.problems,
                          duplicate_of=result.duplicate_of, report=result.report)


def _force(value: str | None) -> bool:
    try:
        return ForceCheck.validate_python(value or False)
    except ValidationError:
        raise ChorusHTTPError(422, f"force: {value!r} is not true or false", param="force") from None


@router.get("", response_model=list[StoredSample], responses={404: {"model": ErrorOut}},
            openapi_extra=needs(Scope.SAMPLES))
async def list_samples(personality: PersonalityDep, replica: ReplicaDep) -> list[StoredSample]:
    return await asyncio.to_thread(replica.samples.store.list, replica.samples.key(personality.name))


@router.get("/{sample_id}", response_model=StoredSample, responses={404: {"model": ErrorOut}},
            summary="A sample's metadata", openapi_extra=needs(Scope.SAMPLES))
async def get_sample(personality: PersonalityDep, sample_id: str, replica: ReplicaDep) -> StoredSample:
    return await asyncio.to_thread(replica.samples.store.get, replica.samples.key(personality.name), sample_id)


@router.get(
    "/{sample_id}/audio",
    response_class=Response,
    responses={200: {"content": {"audio/wav": {}}}, 404: {"model": ErrorOut}},
    # A voice recording is what cloning needs, so reading one needs what cloning needs.
    summary="A sample's stored audio (24 kHz 16-bit WAV)", openapi_extra=needs(Scope.CLONE),
)
async def sample_audio(personality: PersonalityDep, sample_id: str, replica: ReplicaDep) -> Response:
    data = await asyncio.to_thread(replica.samples.store.audio, replica.samples.key(personality.name), sample_id)
    return Response(data, media_type="audio/wav")


@router.delete("/{sample_id}", status_code=204, responses={403: {"model": ErrorOut}, 404: {"model": ErrorOut}},
               openapi_extra=needs(Scope.SAMPLES),
               summary="Delete a stored sample (the last one of a personality needs admin)")
async def delete_sample(personality: PersonalityDep, sample_id: str, request: Request, replica: ReplicaDep,
                        admin: AdminCaller) -> Response:
    # New samples are compared with the stored ones: deleting them all would let the next
    # upload be anyone's voice, which only an admin may choose (security audit M-4).
    stored = await asyncio.to_thread(replica.samples.store.list, replica.samples.key(personality.name))
    if not admin and [s.id for s in stored] == [sample_id]:
        raise ChorusHTTPError(403, f"sample {sample_id!r} is the last of personality {personality.name!r}: "
                              f"removing it lets any voice be uploaded next, which needs a key with the "
                              f"'{Scope.ADMIN.value}' scope", extra={"code": "insufficient_scope"})
    await asyncio.to_thread(replica.samples.delete, personality, sample_id)
    log.info("deleted sample %r of %r [request %s, key %s]", sample_id, personality.name, request_id(request),
             caller_name(request))
    return Response(status_code=204)

