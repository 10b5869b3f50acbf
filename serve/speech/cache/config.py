"""How the audio cache is set up (`IngressArgs.cache`)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class CacheConfig(BaseModel):
    """The tiers: memory in each ingress replica, then one shared tier: Redis when
    `redis_url` is set, else a disk directory when `disk_dir` is set (`chorus serve` sets it
    under its data directory), else none."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    enabled: bool = Field(True, description="Off: every request goes to an engine, nothing is kept.")
    memory_bytes: int = Field(
        64 * 1024 * 1024, ge=0, description="PCM kept in each ingress replica's memory (least recently used "
        "dropped first); 0: no memory tier.",
    )
    disk_dir: Path | None = Field(None, description="Directory of the disk tier (used when no Redis is set).")
    disk_bytes: int = Field(1024 * 1024 * 1024, ge=1024 * 1024, description="Size bound of the disk tier.")
    redis_ttl_s: int = Field(7 * 24 * 3600, ge=1, description="How long an entry lives in Redis.")
    redis_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, description="The most the cache keeps in Redis (least recently used "
        "dropped first). The counters of rate limits and budgets may share that Redis: size it above this, and "
        "cache pressure never evicts them nor fills it.",
    )
    redis_url: str | None = Field(
        None, pattern=r"^rediss?://", description="A Redis of the cache's own; default: the one every replica "
        "counts in (`redis_url`), under the bound above.",
    )

    @field_validator("disk_dir", mode="after")
    @classmethod
    def _expand(cls, v: Path | None) -> Path | None:
        return v.expanduser() if v is not None else None
