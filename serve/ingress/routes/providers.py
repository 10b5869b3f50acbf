"""Engines, their cloud quotas, and probes."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from chorus.auth.scopes import PUBLIC, Scope, needs
from chorus.ingress.api import ProviderOut, ProvidersOut, QuotaOut, QuotasOut
from chorus.ingress.deps import AdminCaller, ReplicaDep
from deployments.base import ENGINE_IDS, EngineStatus, Health

router = APIRouter()


@router.get("/v1/providers", response_model=ProvidersOut, tags=["engines"], summary="Engines: capabilities and health",
            openapi_extra=needs(Scope.SPEAK))
async def providers(replica: ReplicaDep, admin: AdminCaller) -> ProvidersOut:
    # The board's cached view: a flood of these asks the engines nothing more.
    statuses = await replica.board.statuses()
    quota = await replica.meter.for_plan()
    replicas = await replica.replicas.counts()
    return ProvidersOut(providers=[
        ProviderOut(**shown_status(statuses[e], admin).model_dump(), timeout_s=replica.config.timeouts.get(e),
                    circuit=replica.router.breakers[e].shown(), checked_at=replica.board.checked_at,
                    quota_exhausted=quota.exhausted_classes(e) if quota else [], replicas=replicas.get(e))
        for e in ENGINE_IDS if e in statuses
    ])


@router.get("/v1/quotas", response_model=QuotasOut, tags=["engines"],
            summary="Cloud engines' characters this UTC month against their free-tier allowances",
            openapi_extra=needs(Scope.ADMIN))
async def quotas(replica: ReplicaDep) -> QuotasOut:
    snapshot = await replica.meter.snapshot()
    return QuotasOut(quotas=[
        QuotaOut(engine=u.engine, voice_class=u.voice_class, used=u.used, allowed=u.allowed, remaining=u.remaining,
                 resets_at=u.resets_at, policy=u.policy, exhausted=u.exhausted)
        for u in snapshot.usages
    ])


def shown_health(health: Health, admin: bool) -> Health:
    """An engine's health as the caller may see it: an engine's reason names model files,
    endpoints or quotes its provider, so only admins read it."""
    if admin or health.reason is None:
        return health
    said = "unhealthy" if not health.healthy else "serving, with problems"
    return health.model_copy(update={"reason": f"{said} (details for admin keys and in the server log)"})


def shown_status(status: EngineStatus, admin: bool) -> EngineStatus:
    return status.model_copy(update={"health": shown_health(status.health, admin)})


@router.get("/healthz", tags=["probes"], summary="The ingress process is up", openapi_extra=needs(PUBLIC))
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", tags=["probes"], summary="Ready when the personalities are loaded, at least one engine is "
            "healthy and the API keys are current", openapi_extra=needs(PUBLIC))
async def readyz(replica: ReplicaDep, admin: AdminCaller) -> JSONResponse:
    statuses = await replica.board.statuses()
    healthy = [e for e, s in statuses.items() if s.health.healthy]
    keys = replica.keys
    stale = keys.stale_sources if keys is not None else {}
    # Not ready before the personalities are listed (a new replica would answer 404), nor
    # while a key source's last reload could not be read: a key removed there may still work.
    ready = bool(healthy) and replica.store.loaded and not stale
    body: dict[str, object] = {"ready": ready, "personalitiesLoaded": replica.store.loaded, "keysStale": bool(stale)}
    if admin:  # the engines, personalities and key problems are the operator's, not the public's
        body |= {
            "engines": {e: shown_health(s.health, True).model_dump() for e, s in statuses.items()},
            "personalities": len(replica.store.names()),
        }
        if keys is not None:
            body["keys"] = {"stale": stale, "leftOut": [p for ps in keys.problems.values() for p in ps]}
    return JSONResponse(body, status_code=200 if ready else 503)
