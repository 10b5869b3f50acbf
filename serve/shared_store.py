"""Where ingress replicas share what they count (rate limits, budgets, statistics, cloud
quotas): one Redis, named by `IngressArgs.redis_url` (default `$CHORUS_REDIS_URL`, read
when the app is built). Without it each replica counts on its own."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator

REDIS_URL_ENV = "CHORUS_REDIS_URL"


def _redis_url(url: str) -> str:
    if not url.startswith(("redis://", "rediss://")):
        raise ValueError("a Redis URL starts with redis:// or rediss://")
    return url


RedisUrl = Annotated[str, AfterValidator(_redis_url)]
