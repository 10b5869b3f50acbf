"""Personalities: list, read, create or replace (validated first), delete (with its samples)."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import AnyUrl

from chorus.auth.scopes import Scope, needs
from chorus.common import documents
from chorus.common.safe_text import public_source, public_url, scrubbed
from chorus.ingress.api import ErrorOut, PersonalityList, PersonalityOut
from chorus.ingress.deps import AdminCaller, PersonalityDep, ReplicaDep
from chorus.ingress.errors import JSON_TYPES, TOO_DEEP, ChorusHTTPError
from chorus.ingress.middleware.auth import caller_name
from chorus.ingress.middleware.request_id import request_id
from chorus.ingress.replica import Replica
from chorus.personalities import (
    NAME_PATTERN,
    Personality,
    PersonalityError,
    parse_document,
    parse_spec,
)
from chorus.stores.base import FileProblem, ReadOnlyStoreError

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/personalities", tags=["personalities"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def personality_out(replica: Replica, personality: Personality, admin: bool) -> PersonalityOut:
    """A personality as the caller may see it: without `admin`, no absolute paths (where
    the file lives says how the host is laid out), no samples named by other URLs than
    http(s) (a `file://` URL is a path, an `s3://` one names a bucket; nothing fetches
    them, the operator fetches http(s) only), and sample URLs without their user info and
    query (credentials, signed-URL tokens)."""
    status = replica.store.status(personality.name)
    assert status is not None
    if admin:
        return PersonalityOut(**personality.to_resource(), status=status)
    samples = [
        s.model_copy(update={"url": AnyUrl(public_url(str(s.url)))}) if s.url is not None else s
        for s in personality.spec.voice_samples if s.url is None or s.url.scheme in ("http", "https")
    ]
    shown = personality.model_copy(update={"spec": personality.spec.model_copy(update={"voice_samples": samples})})
    status = status.model_copy(update={
        "source": public_source(status.source), "error": status.error and scrubbed(status.error),
    })
    return PersonalityOut(**shown.to_resource(), status=status)


def shown_problems(replica: Replica, admin: bool) -> list[FileProblem]:
    problems = replica.store.problems()
    if admin:
        return problems
    return [FileProblem(source=public_source(p.source), error=scrubbed(p.error)) for p in problems]


async def parse_body(raw: bytes, content_type: str) -> Any:
    """The body as data. Parsed in a worker thread: even capped (`chorus.ingress.middleware.body_limit`), a
    body can take long enough to parse to stall every other request on this replica."""
    ctype = content_type.split(";")[0].strip().lower()
    if not raw.strip():
        raise ChorusHTTPError(422, "the body is empty; send the personality spec")
    if ctype in JSON_TYPES:
        try:
            return await asyncio.to_thread(json.loads, raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ChorusHTTPError(422, f"malformed JSON: {err}") from None
        except RecursionError:
            raise ChorusHTTPError(422, f"malformed JSON: {TOO_DEEP}") from None
    if ctype in YAML_TYPES:
        try:
            return await asyncio.to_thread(documents.load, raw)
        except yaml.YAMLError as err:
            raise ChorusHTTPError(422, f"malformed YAML: {err}") from None
        except documents.DocumentRefused as err:
            raise ChorusHTTPError(422, f"YAML refused: {err.reason}") from None
    raise ChorusHTTPError(415, f"send the spec as application/json or application/yaml (got {ctype or 'no content type'})")


def check_aliases_free(replica: Replica, personality: Personality) -> None:
    """409 when another personality is already called by one of its names. (Two PUTs racing
    for one alias can both land: the store then lets the alias call neither, and says so.)"""
    taken = {a: owner for a in personality.spec.aliases
             if (owner := replica.store.alias_owner(a)) not in (None, personality.name)}
    if (owner := replica.store.alias_owner(personality.name)) not in (None, personality.name):
        raise ChorusHTTPError(409, f"name {personality.name!r} is an alias of personality {owner!r}")
    if taken:
        raise ChorusHTTPError(409, "; ".join(f"alias {a!r} already belongs to personality {o!r}" for a, o in taken.items()),
                              extra={"taken": taken})


@router.get("", response_model=PersonalityList, response_model_exclude_none=True, openapi_extra=needs(Scope.SPEAK))
async def list_personalities(replica: ReplicaDep, admin: AdminCaller) -> PersonalityList:
    items = [personality_out(replica, p, admin) for n in replica.store.names() if (p := replica.store.get(n))]
    return PersonalityList(items=items, problems=shown_problems(replica, admin))


@router.get("/{name}", response_model=PersonalityOut, response_model_exclude_none=True,
            responses={404: {"model": ErrorOut}}, openapi_extra=needs(Scope.SPEAK))
async def get_personality(personality: PersonalityDep, replica: ReplicaDep, admin: AdminCaller) -> PersonalityOut:
    return personality_out(replica, personality, admin)


@router.put(
    "/{name}",
    response_model=PersonalityOut,
    responses={201: {"model": PersonalityOut}, 405: {"model": ErrorOut}, 409: {"model": ErrorOut, "description": "An alias "
               "(or the name) already calls another personality; `taken` names the owners."}, 415: {"model": ErrorOut},
               422: {"model": ErrorOut}},
    summary="Create or replace a personality (body: its spec, JSON or YAML)",
    openapi_extra=needs(Scope.ADMIN) | {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PersonalitySpec"}},
        "application/yaml": {"schema": {"$ref": "#/components/schemas/PersonalitySpec"}},
    }}},
)
async def put_personality(name: str, request: Request, replica: ReplicaDep) -> JSONResponse:
    # fullmatch: re.match's `$` also matches before a trailing newline ("alice\n").
    if not re.fullmatch(NAME_PATTERN, name) or len(name) > 63:
        raise ChorusHTTPError(422, f"name {name!r}: lowercase letters, digits and '-', at most 63 characters")
    data = await parse_body(await request.body(), request.headers.get("content-type", ""))
    try:
        if isinstance(data, dict) and ("spec" in data or "kind" in data):
            personality = parse_document(data, default_name=name)
            if personality.name != name:
                raise PersonalityError(f"metadata.name {personality.name!r} differs from the path's {name!r}")
        else:
            personality = Personality(name=name, spec=parse_spec(data, prefix=""))
    except PersonalityError as err:
        raise ChorusHTTPError(422, err.reason) from None
    check_aliases_free(replica, personality)
    try:
        created = await asyncio.to_thread(replica.store.put, personality)
    except ReadOnlyStoreError as err:
        raise ChorusHTTPError(405, err.reason) from None
    return JSONResponse(  # writing needs `admin`, so the writer sees everything
        personality_out(replica, personality, admin=True).model_dump(mode="json", by_alias=True, exclude_none=True),
        status_code=201 if created else 200,
    )


@router.delete("/{name}", status_code=204, responses={404: {"model": ErrorOut}, 405: {"model": ErrorOut}},
                openapi_extra=needs(Scope.ADMIN))
async def delete_personality(name: str, request: Request, replica: ReplicaDep) -> Response:
    try:
        deleted = await asyncio.to_thread(replica.samples.delete_personality, name)
    except ReadOnlyStoreError as err:
        raise ChorusHTTPError(405, err.reason) from None
    if not deleted:
        raise ChorusHTTPError(404, f"personality {name!r} not found")
    log.info("deleted personality %r and its samples [request %s, key %s]", name, request_id(request),
             caller_name(request))
    return Response(status_code=204)
