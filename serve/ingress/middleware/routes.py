"""What the middleware know of the route a request is for, found the way Starlette's router
will find it: the route a path and method fully match (none: a 404 or 405 follows), and what
that route's OpenAPI operation declares."""

from __future__ import annotations

from starlette.routing import BaseRoute, Match
from starlette.types import Scope


def matched(routes: list[BaseRoute], scope: Scope) -> BaseRoute | None:
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def takes_uploads(route: BaseRoute | None) -> bool:
    """The route's documented body is a multipart upload (the sample and clone routes)."""
    extra = getattr(route, "openapi_extra", None) or {}
    return "multipart/form-data" in extra.get("requestBody", {}).get("content", {})
