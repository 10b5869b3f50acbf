"""The audio cache's one route: dropping entries (chorus.speech.cache)."""

from __future__ import annotations

import logging

from fastapi import APIRouter
from pydantic import BaseModel, Field

from chorus.auth.scopes import Scope, needs
from chorus.ingress.deps import ReplicaDep
from chorus.ingress.errors import ChorusHTTPError
from chorus.speech.cache.store import CacheUnavailable

log = logging.getLogger(__name__)
router = APIRouter(tags=["cache"])


class DroppedOut(BaseModel):
    personality: str | None = Field(description="Whose entries were dropped; null: every entry.")
    dropped: dict[str, int] = Field(
        description="Entries dropped per tier this replica reaches (memory, redis or disk); a tier holding "
        "a copy of an entry another holds counts it too. The other ingress replicas drop their memory's copies "
        "within about a second (they follow the shared tier's drop notices)."
    )


@router.delete("/v1/cache", response_model=DroppedOut, summary="Drop a personality's cached audio, or all of it",
               openapi_extra=needs(Scope.ADMIN))
async def drop(replica: ReplicaDep, personality: str | None = None) -> DroppedOut:
    if replica.cache is None:
        return DroppedOut(personality=personality, dropped={})
    try:
        dropped = await replica.cache.drop_personality(personality)
    except CacheUnavailable as err:
        log.warning("dropping cached audio failed: %s (%s)", err, err.reason)
        raise ChorusHTTPError(503, str(err)) from err
    return DroppedOut(personality=personality, dropped=dropped)
