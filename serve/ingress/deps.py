"""What the routes are handed as FastAPI dependencies: the replica's state, the
personality a path names, whether the caller is an admin, and the request's `Spend`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.requests import HTTPConnection

from chorus.auth.scopes import Scope
from chorus.ingress.errors import ChorusHTTPError
from chorus.ingress.middleware.auth import identified
from chorus.ingress.replica import Replica
from chorus.personalities import Personality
from chorus.quotas.callers import Spend


def replica(request: Request) -> Replica:
    return request.app.state.replica


ReplicaDep = Annotated[Replica, Depends(replica)]


def personality_or_404(replica: Replica, name: str) -> Personality:
    personality = replica.store.get(name)
    if personality is None:
        raise ChorusHTTPError(404, f"personality {name!r} not found")
    return personality


def voice_or_404(replica: Replica, voice: str) -> Personality:
    """OpenAI's `voice`: a personality's name or one of its aliases."""
    personality = replica.store.resolve(voice)
    if personality is None:
        raise ChorusHTTPError(404, f"voice {voice!r} is neither a personality nor an alias of one", param="voice")
    return personality


async def _path_personality(name: str, replica: ReplicaDep) -> Personality:
    return personality_or_404(replica, name)


PersonalityDep = Annotated[Personality, Depends(_path_personality)]
"""The personality named by the path's `{name}` (404 when there is none)."""


def is_admin(request: Request, replica: Replica) -> bool:
    """Whether the caller may see details (file paths, engines' own reasons) and override
    checks: its key has `admin`, or keys are off (then the ingress is loopback only,
    and whoever reaches it runs it). On a public route, only a caller that showed an admin key."""
    if replica.keys is None:
        return True
    key = identified(request)
    return key is not None and key.allows(Scope.ADMIN)


async def _admin(request: Request, replica: ReplicaDep) -> bool:
    return is_admin(request, replica)


AdminCaller = Annotated[bool, Depends(_admin)]
"""True when the caller is an admin (`is_admin`)."""


def _spend(conn: HTTPConnection) -> Spend:
    # Started by the quota middleware (`chorus.ingress.middleware.spend`) for every request.
    return conn.scope["state"]["spend"]


SpendDep = Annotated[Spend, Depends(_spend)]
"""The request's `Spend`, for the speech routes."""
