"""What an ingress replica is configured with: `IngressArgs` (the application args it
takes as they are) and `IngressConfig` (those plus what the app builder adds from the
enabled engines). Validated once, where the app is built; every replica part reads it."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from chorus.auth.config import AuthConfig
from chorus.ingress.api import DashboardLinks
from chorus.quotas.callers import QuotasConfig
from chorus.quotas.providers import CloudQuotasConfig
from chorus.samples.service import SamplesConfig
from chorus.speech.breaker import BreakerConfig
from chorus.speech.cache.config import CacheConfig
from chorus.stores.sources import PersonalitySource
from deployments.base import EngineId

# Where ingress replicas share what they count (rate limits, budgets, statistics, cloud
# quotas, the audio cache): one Redis, `IngressArgs.redis_url`, default $CHORUS_REDIS_URL
# (read when the app is built). Without it each replica counts on its own.
REDIS_URL_ENV = "CHORUS_REDIS_URL"


def _redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError("a Redis URL starts with redis:// or rediss://")
    return url


RedisUrl = Annotated[str, AfterValidator(_redis_url)]


class IngressArgs(BaseModel):
    """The application args the ingress takes as they are (`chorus.app.AppArgs` adds the engines)."""

    model_config = ConfigDict(extra="forbid")

    personalities: PersonalitySource = Field(
        description="Where personalities come from: {directory: PATH} (embedded default) or "
        "{kubernetes: {...}} (the operator's ConfigMaps)."
    )
    samples: SamplesConfig = Field(default_factory=SamplesConfig, description="Where voice samples are stored.")
    max_text_characters: int = Field(10_000, ge=1)
    max_audio_seconds: float = Field(
        900.0, gt=0, description="The most audio one request may produce: refused (413) before synthesis when the "
        "text at its speed would be longer (estimated at 14 characters a second), and ended there when the engines' "
        "audio grows past it. At 24 kHz, 900 s is 43 MB of PCM held for one answer.",
    )
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
    insecure_no_auth: bool = Field(
        False, description="Serve a non-loopback address without keys (refused otherwise): only when something "
        "in front of Chorus guards it. Keys off on loopback also checks each request's Host and Origin; this "
        "turns that check off too, since the guard in front answers to other names.",
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
    recognizer_timeout_s: float = Field(30.0, gt=0, description="How long a piece waits to be heard (verification).")
    default_voices: dict[EngineId, str] = Field(
        default_factory=dict, description="The cloud engines' configured default voices (what a personality "
        "naming no voice speaks), for the cloud quota meter's voice classes.",
    )
