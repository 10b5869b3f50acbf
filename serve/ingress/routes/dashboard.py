"""The web dashboard: static files shipped in the package (`chorus/dashboard/`), no build step.

The page and its scripts are public, so a browser can load them before it has a key; every
data call the page makes goes to the API routes with the key (their own scopes apply)."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from chorus.auth.scopes import PUBLIC, Scope, needs
from chorus.ingress.api import DashboardLinks
from chorus.ingress.deps import ReplicaDep
from chorus.ingress.errors import ChorusHTTPError

router = APIRouter(tags=["dashboard"])

STATIC = Path(__file__).resolve().parents[2] / "dashboard"
MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
# Only the files shipped, by name: a request can never name a path outside the folder.
ASSETS = {p.name: p for p in STATIC.iterdir() if p.suffix in MEDIA_TYPES}
# Scripts and styles only from the page's own origin, no inline script: even a name that
# slipped into the markup could not run. Audio from Try it plays from a blob: URL.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "media-src 'self' blob:; connect-src 'self'; object-src 'none'; "
                               "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _asset(name: str) -> FileResponse:
    path = ASSETS.get(name)
    if path is None:
        raise ChorusHTTPError(404, f"the dashboard has no file {name!r}")
    return FileResponse(path, media_type=MEDIA_TYPES[path.suffix], headers=HEADERS)


@router.get("/dashboard", summary="The web dashboard", response_class=FileResponse, openapi_extra=needs(PUBLIC))
async def page() -> FileResponse:
    return _asset("index.html")


@router.get("/dashboard/{name}", summary="The dashboard's scripts and styles", response_class=FileResponse,
            openapi_extra=needs(PUBLIC))
async def asset(name: str) -> FileResponse:
    return _asset(name)


@router.get("/v1/dashboard/links", response_model=DashboardLinks,
            summary="Where the dashboard links to (internal addresses: admins only)", openapi_extra=needs(Scope.ADMIN))
async def links(replica: ReplicaDep) -> DashboardLinks:
    return replica.config.links
