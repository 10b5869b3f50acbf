"""What the routes of one ingress replica share, handed to them as FastAPI dependencies:
the replica's state, the personality a path names, and whether the caller is an admin."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.sdk.trace import SpanProcessor
from pydantic import BaseModel, ConfigDict, Field

from chorus.auth.config import AuthConfig
from chorus.auth.ring import KeyRing
from chorus.auth.scopes import Scope
from chorus.ingress.api import DashboardLinks
from chorus.ingress.errors import ChorusHTTPError
from chorus.ingress.middleware.auth import caller
from chorus.personalities import Personality
from chorus.quotas.callers import Quotas, QuotasConfig
from chorus.quotas.providers import CloudMeter, CloudQuotasConfig
from chorus.samples.service import SamplesConfig, SampleService
from chorus.shared_store import RedisUrl
from chorus.speech.breaker import BreakerConfig, Breakers
from chorus.speech.cache.config import CacheConfig
from chorus.speech.cache.store import AudioCache
from chorus.speech.deadline import Deadlines
from chorus.speech.replicas import Replicas
from chorus.speech.router import EngineBoard, Router
from chorus.stores import open_store
from chorus.stores.sources import PersonalitySource
from chorus.telemetry.ray_metrics import RayMetrics
from chorus.telemetry.stats.service import Statistics
from deployments.base import EngineId
from deployments.tracing import Tracing, ingress_tracing


class IngressArgs(BaseModel):
    """The application args the ingress takes as they are (`chorus.app.AppArgs` adds the engines)."""

    model_config = ConfigDict(extra="forbid")

    personalities: PersonalitySource = Field(
        description="Where personalities come from: {directory: PATH} (embedded default) or "
        "{kubernetes: {...}} (the operator's ConfigMaps)."
    )
    samples: SamplesConfig = Field(default_factory=SamplesConfig, description="Where voice samples are stored.")
    max_text_characters: int = Field(10_000, ge=1)
    max_body_bytes: int = Field(
        64 * 1024, ge=1024,
        description="Largest JSON or YAML request body; larger ones get 413 before parsing "
        "(multipart uploads are capped by samples.max_upload_bytes instead).",
    )
    status_refresh_s: float = Field(
        5.0, gt=0, description="How often the engines are asked for their status (at most; `GET /v1/providers` and "
        "every request read the last answer).",
    )
    request_deadline_s: float = Field(
        120.0, gt=0, description="The most one speech request may take in the router, over all its pieces, "
        "fallbacks and the rest of a stream. Keep it below Serve's http_options.request_timeout_s, so the router "
        "ends a request (and cancels its engine call) before the proxy drops it.",
    )
    stream_chunk_timeout_s: float = Field(
        30.0, gt=0, description="After a stream's first chunk, how long the next may take; a stalled engine ends "
        "the stream there (the body ends early) and its call is cancelled.",
    )
    circuit_breaker: BreakerConfig = Field(
        default_factory=BreakerConfig, description="When an engine failing again and again is skipped "
        "(`circuit open`) and for how long (docs/architecture.md#one-request).",
    )
    auth: AuthConfig | None = Field(
        None, description="API keys (docs/security.md). Absent, every route is open: loopback only."
    )
    redis_url: RedisUrl | None = Field(
        None, description="redis:// or rediss:// URL every replica shares its counts through (rate limits, "
        "budgets, statistics, cloud quotas); default $CHORUS_REDIS_URL, read when the app is built. "
        "Absent, each replica counts on its own.",
    )
    quotas: QuotasConfig = Field(
        default_factory=QuotasConfig,
        description="Rate limits and where they are counted (docs/security.md#rate-limits-and-budgets); "
        "keys bring their own rate and character budgets.",
    )
    cache: CacheConfig = Field(
        default_factory=CacheConfig,
        description="The audio cache: each replica's memory, then Redis (when redis_url is set) or a disk "
        "directory (docs/architecture.md#audio-cache).",
    )
    links: DashboardLinks = Field(
        default_factory=DashboardLinks,
        description="Where the dashboard links to: the Ray dashboard and a trace viewer (docs/dashboard.md).",
    )
    cloud_quotas: CloudQuotasConfig = Field(
        default_factory=CloudQuotasConfig,
        description="Monthly free-tier allowances of the cloud engines per voice class, and what to do when one "
        "is used up (enforce: fall back; warn: flag only); docs/observability.md#cloud-quotas.",
    )


class IngressConfig(IngressArgs):
    """What an ingress replica is built from: its args and the enabled engines' timeouts."""

    timeouts: dict[EngineId, float] = Field(default_factory=dict)
    default_voices: dict[EngineId, str] = Field(
        default_factory=dict, description="The cloud engines' configured default voices (what a personality "
        "naming no voice speaks), for the cloud quota meter's voice classes.",
    )


class Replica:
    def __init__(self, config: IngressConfig, board: EngineBoard, tracing: Tracing | None = None,
                 replicas: Replicas | None = None) -> None:
        self.config = config
        # This replica's own tracer provider (default: from the OTEL_* variables of this
        # process); every span of its requests is made through it, none through a global.
        self.tracing = tracing or ingress_tracing()
        self.store = open_store(config.personalities)
        self.samples = SampleService(config.samples, self.store)
        self.board = board
        self.replicas = replicas or Replicas()
        self.cache = AudioCache.open(config.cache, config.redis_url)
        self.meter = CloudMeter.open(config.cloud_quotas, config.redis_url, config.samples.directory,
                                     config.default_voices)
        self.router = Router(
            board, config.timeouts, sample_refs=self.samples.refs, meter=self.meter, tracer=self.tracing.tracer,
            deadlines=Deadlines(request_s=config.request_deadline_s, stream_chunk_s=config.stream_chunk_timeout_s),
            breakers=Breakers(config.circuit_breaker), cache=self.cache,
        )
        # Filled by the key sources (`chorus.auth.sources`); None when keys are off.
        self.keys: KeyRing | None = KeyRing() if config.auth else None
        self.quotas = Quotas(config.quotas, config.redis_url)
        # Its processor reads this replica's completed spans; its store is shared through Redis.
        self.stats = Statistics.open(config.redis_url)
        self.add_span_processor(self.stats.processor)
        # The same spans as Ray metrics, for the Ray dashboard and Prometheus.
        self.add_span_processor(RayMetrics(quota_source=self.meter.last_used))

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Where the statistics, metrics and quota meters attach: they see every span this
        replica records, sampled for export or not (`deployments.tracing.RecordAll`)."""
        self.tracing.add_span_processor(processor)


def replica(request: Request) -> Replica:
    return request.app.state.replica


ReplicaDep = Annotated[Replica, Depends(replica)]


def personality_or_404(replica: Replica, name: str) -> Personality:
    personality = replica.store.get(name)
    if personality is None:
        # `voice` is the field that names a personality in OpenAI's request shape.
        raise ChorusHTTPError(404, f"personality {name!r} not found", param="voice")
    return personality


async def _path_personality(name: str, replica: ReplicaDep) -> Personality:
    return personality_or_404(replica, name)


PersonalityDep = Annotated[Personality, Depends(_path_personality)]
"""The personality named by the path's `{name}` (404 when there is none)."""


def is_admin(request: Request, replica: Replica) -> bool:
    """Whether the caller may see details (file paths, engines' own reasons) and override
    checks: its key has `admin`, or keys are off (then the ingress is loopback only,
    and whoever reaches it runs it). A public route's caller has no key: not an admin."""
    if replica.keys is None:
        return True
    key = caller(request)
    return key is not None and key.allows(Scope.ADMIN)


async def _admin(request: Request, replica: ReplicaDep) -> bool:
    return is_admin(request, replica)


AdminCaller = Annotated[bool, Depends(_admin)]
"""True when the caller is an admin (`is_admin`)."""
