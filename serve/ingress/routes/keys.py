"""What the caller's key may do: its name, scopes, limits and the routes they open, so a
client (the dashboard) can show it and offer only what will work."""

from __future__ import annotations

from fastapi import APIRouter, Request

from chorus.auth.keys import KeyLimits
from chorus.auth.scopes import ALLOWS, ANY_KEY, OPENAPI_KEY, PUBLIC, Scope, needs
from chorus.ingress.api import KeyOut, ScopeOut
from chorus.ingress.deps import ReplicaDep
from chorus.ingress.middleware.auth import caller

router = APIRouter(prefix="/v1/keys", tags=["keys"])


@router.get("/me", response_model=KeyOut, summary="The key this request was sent with, and what it may do",
            openapi_extra=needs(ANY_KEY))
async def me(request: Request, replica: ReplicaDep) -> KeyOut:
    key = caller(request)
    if replica.keys is None or key is None:  # keys off: whoever reaches the server may do everything
        scopes, name, limits = set(Scope), None, KeyLimits()
    else:
        scopes, name = set(key.scopes), key.name
        limits = KeyLimits.model_validate(key.model_dump(include=set(KeyLimits.model_fields)))
    may = set(Scope) if Scope.ADMIN in scopes else scopes
    # The API document names each operation's scope, as the guard reads it from the route.
    routes = [
        f"{method.upper()} {path}"
        for path, operations in request.app.openapi()["paths"].items()
        for method, operation in operations.items()
        if (needed := operation.get(OPENAPI_KEY, Scope.ADMIN.value)) != PUBLIC
        and (needed == ANY_KEY or Scope(needed) in may)
    ]
    return KeyOut(auth=replica.keys is not None, name=name, limits=limits, routes=routes,
                  scopes=[ScopeOut(scope=s, allows=ALLOWS[s]) for s in Scope if s in scopes])
