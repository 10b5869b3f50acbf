"""Statistics derived from the spans (chorus.telemetry.stats): per engine and per personality."""

from __future__ import annotations

from fastapi import APIRouter

from chorus.auth.scopes import Scope, needs
from chorus.ingress.deps import ReplicaDep
from chorus.ingress.errors import ChorusHTTPError
from chorus.telemetry.stats.models import SeriesOut, StatsOut
from chorus.telemetry.stats.windows import BadStep, SeriesStep, StatsWindow

router = APIRouter()


@router.get("/v1/stats", response_model=StatsOut, tags=["statistics"],
            summary="Requests, outcomes, latency, characters and fallbacks per engine and personality",
            openapi_extra=needs(Scope.ADMIN))
async def stats(replica: ReplicaDep, window: StatsWindow = StatsWindow.HOUR) -> StatsOut:
    return await replica.stats.window(window)


@router.get("/v1/stats/series", response_model=SeriesOut, tags=["statistics"],
            summary="Per-engine request counts and latency percentiles per step, for charts",
            openapi_extra=needs(Scope.ADMIN))
async def series(replica: ReplicaDep, window: StatsWindow = StatsWindow.HOUR,
                 step: SeriesStep = SeriesStep.MINUTE) -> SeriesOut:
    try:
        return await replica.stats.series(window, step)
    except BadStep as err:
        raise ChorusHTTPError(422, str(err), param="step") from None
