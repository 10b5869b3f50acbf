"""Personalities: list, read, create or replace (validated first), delete (with its samples)."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import yaml
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from chorus.api import ErrorOut, PersonalityList, PersonalityOut
from chorus.auth.scopes import Scope, needs
from chorus.errors import JSON_TYPES, TOO_DEEP, ChorusHTTPError
from chorus.personalities import (
    NAME_PATTERN,
    Personality,
    PersonalityError,
    parse_document,
    parse_spec,
)
from chorus.state import Chorus, ChorusState, PersonalityDep
from chorus.stores.base import ReadOnlyStoreError

router = APIRouter(prefix="/v1/personalities", tags=["personalities"])

YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml")


def personality_out(chorus: Chorus, personality: Personality) -> PersonalityOut:
    status = chorus.store.status(personality.name)
    assert status is not None
    return PersonalityOut(**personality.to_resource(), status=status)


async def parse_body(raw: bytes, content_type: str) -> Any:
    """The body as data. Parsed in a worker thread: even capped (`chorus.body_limit`), a
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
            return await asyncio.to_thread(yaml.load, raw, Loader=yaml.CSafeLoader)
        except yaml.YAMLError as err:
            raise ChorusHTTPError(422, f"malformed YAML: {err}") from None
        except RecursionError:
            raise ChorusHTTPError(422, f"malformed YAML: {TOO_DEEP}") from None
    raise ChorusHTTPError(415, f"send the spec as application/json or application/yaml (got {ctype or 'no content type'})")


@router.get("", response_model=PersonalityList, response_model_exclude_none=True, openapi_extra=needs(Scope.SPEAK))
async def list_personalities(chorus: ChorusState) -> PersonalityList:
    items = [personality_out(chorus, p) for n in chorus.store.names() if (p := chorus.store.get(n))]
    return PersonalityList(items=items, problems=chorus.store.problems())


@router.get("/{name}", response_model=PersonalityOut, response_model_exclude_none=True,
            responses={404: {"model": ErrorOut}}, openapi_extra=needs(Scope.SPEAK))
async def get_personality(personality: PersonalityDep, chorus: ChorusState) -> PersonalityOut:
    return personality_out(chorus, personality)


@router.put(
    "/{name}",
    response_model=PersonalityOut,
    responses={201: {"model": PersonalityOut}, 405: {"model": ErrorOut}, 415: {"model": ErrorOut}, 422: {"model": ErrorOut}},
    summary="Create or replace a personality (body: its spec, JSON or YAML)",
    openapi_extra=needs(Scope.ADMIN) | {"requestBody": {"required": True, "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/PersonalitySpec"}},
        "application/yaml": {"schema": {"$ref": "#/components/schemas/PersonalitySpec"}},
    }}},
)
async def put_personality(name: str, request: Request, chorus: ChorusState) -> JSONResponse:
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
    try:
        created = await asyncio.to_thread(chorus.store.put, personality)
    except ReadOnlyStoreError as err:
        raise ChorusHTTPError(405, err.reason) from None
    return JSONResponse(
        personality_out(chorus, personality).model_dump(mode="json", by_alias=True, exclude_none=True),
        status_code=201 if created else 200,
    )


@router.delete("/{name}", status_code=204, responses={404: {"model": ErrorOut}, 405: {"model": ErrorOut}},
                openapi_extra=needs(Scope.ADMIN))
async def delete_personality(name: str, chorus: ChorusState) -> Response:
    try:
        deleted = await asyncio.to_thread(chorus.samples.delete_personality, name)
    except ReadOnlyStoreError as err:
        raise ChorusHTTPError(405, err.reason) from None
    if not deleted:
        raise ChorusHTTPError(404, f"personality {name!r} not found")
    return Response(status_code=204)
