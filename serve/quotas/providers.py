"""Cloud quotas: the characters Chorus sent to each cloud TTS provider this UTC calendar
month, per voice class where the provider prices classes differently, against a monthly
free-tier allowance (docs/observability.md#cloud-quotas).

Not `chorus.quotas.callers`: that module limits *callers* (an API key's rate and character
budgets, a personality's rate) and answers 429. This one meters *providers*: what
Chorus will be billed by Google, Azure and IBM, whoever asked. An engine whose allowance
is used up is skipped by the router (policy `enforce`, reason `quota exhausted`, the
next engine of the chain speaks) or only flagged (`warn`).

What is counted: the characters of each piece of text the router sent to a cloud engine
and that came back as audio. Providers bill the characters they synthesize ("converted
to speech", Azure; "sent to be synthesized into audio", Google); a call that failed
produced nothing to bill, so failed, timed-out and refused calls are not counted. A
streamed piece counts in full once its first chunk arrived: a client leaving mid-piece
over-counts at most the rest of that piece, the safe side for a free tier.

When an allowance is crossed: an engine is planned while its class has any character
left (used < allowed), so one utterance may end past the allowance, by at most its own
length (times the utterances in flight at that moment); the next one is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from chorus.quotas.provider_counts import CountKey, Counts, CountsUnavailable, RedisCounts, SqliteCounts
from deployments.base import EngineId

log = logging.getLogger(__name__)

Policy = Literal["enforce", "warn"]
QUOTA_UNKNOWN = "its quota cannot be counted now"
QUOTA_EXHAUSTED = "quota exhausted"
"""The reason an attempt is skipped under `enforce` (outcome `skipped`)."""


class _EngineQuota(BaseModel):
    """One engine's monthly allowances (a field per voice class) and its policy."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    policy: Policy = Field("enforce", description="enforce: skip the engine once a class is used up; warn: flag it only.")

    def allowances(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in type(self).model_fields if name != "policy"}


class GoogleQuota(_EngineQuota):
    standard: int = Field(1_000_000, ge=0, description="Standard voices, characters a month.")
    neural: int = Field(100_000, ge=0, description="WaveNet, Neural2, Studio, Chirp... voices, characters a month.")


class AzureQuota(_EngineQuota):
    neural: int = Field(500_000, ge=0, description="Neural voices (Azure's only kind), characters a month.")


class IBMQuota(_EngineQuota):
    standard: int = Field(10_000, ge=0, description="Every voice (IBM prices them alike), characters a month.")


class CloudQuotasConfig(BaseModel):
    """`IngressArgs.cloud_quotas`. Defaults: the free tiers of the original design document."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    google_tts: GoogleQuota = Field(default_factory=GoogleQuota)
    azure_tts: AzureQuota = Field(default_factory=AzureQuota)
    ibm_watson: IBMQuota = Field(default_factory=IBMQuota)
    path: Path | None = Field(
        None, description="Without redis_url: the SQLite file the counts are kept in; default "
        "<samples.directory>/.cloud-quotas.sqlite3 (beside the samples, so it survives restarts).",
    )

    def engines(self) -> dict[EngineId, _EngineQuota]:
        return {"google_tts": self.google_tts, "azure_tts": self.azure_tts, "ibm_watson": self.ibm_watson}


def voice_class(engine: EngineId, voice: str) -> str:
    """The price class of a cloud voice, from its name. Google names the model in the voice
    ('en-US-Standard-A', 'en-US-Neural2-D', 'en-US-Wavenet-B', 'en-US-Studio-O'): only
    Standard voices are standard, every other model is priced higher, so an unknown one
    counts against the smaller allowance. Azure and IBM have one class each."""
    if engine == "google_tts":
        return "standard" if "-Standard-" in voice else "neural"
    if engine == "azure_tts":
        return "neural"
    return "standard"


def month_of(now: datetime) -> str:
    return now.astimezone(UTC).strftime("%Y-%m")


def next_month(now: datetime) -> datetime:
    now = now.astimezone(UTC)
    return datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Usage:
    """One engine and class this month."""

    engine: EngineId
    voice_class: str
    used: int
    allowed: int
    policy: Policy
    resets_at: datetime

    @property
    def remaining(self) -> int:
        return max(0, self.allowed - self.used)

    @property
    def exhausted(self) -> bool:
        return self.used >= self.allowed


@dataclass(frozen=True)
class QuotaSnapshot:
    """Every metered engine and class as one read left them: what the router plans with
    (one read per utterance) and what `GET /v1/quotas` shows."""

    usages: tuple[Usage, ...]
    unreadable: bool = False  # the counts could not be read: enforced classes are skipped

    def usage(self, engine: EngineId, voice_class: str) -> Usage | None:
        return next((u for u in self.usages if (u.engine, u.voice_class) == (engine, voice_class)), None)

    def exhausted_classes(self, engine: EngineId) -> list[str]:
        return [u.voice_class for u in self.usages if u.engine == engine and u.exhausted]


class CloudMeter:
    """One replica's view of the shared monthly counts. `voices` are the engines'
    configured default voices: the one a personality without a voice speaks."""

    def __init__(
        self, config: CloudQuotasConfig, counts: Counts, voices: Mapping[EngineId, str] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.config = config
        self.engines = config.engines()
        self.counts = counts
        self.voices = dict(voices or {})
        self.clock = clock
        # (engine, class) -> (month, characters) as this replica last saw them: read by every
        # plan, raised by every count, so the metrics gauge never has to wait for the store.
        self._seen: dict[tuple[EngineId, str], tuple[str, int]] = {}

    @classmethod
    def open(cls, config: CloudQuotasConfig, redis_url: str | None, samples_directory: Path,
             voices: Mapping[EngineId, str] | None = None) -> CloudMeter:
        counts: Counts = (
            RedisCounts(redis_url) if redis_url
            else SqliteCounts(config.path or samples_directory / ".cloud-quotas.sqlite3")
        )
        return cls(config, counts, voices)

    def class_of(self, engine: EngineId, voice: str | None) -> str | None:
        """The class a request to `engine` with `voice` is billed in; None if not metered.
        No voice: the engine's default voice; not known here either: the engine's
        dearest class (the smallest allowance), so the meter errs on the safe side."""
        quota = self.engines.get(engine)
        if quota is None:
            return None
        voice = voice or self.voices.get(engine)
        if voice is not None:
            return voice_class(engine, voice)
        allowances = quota.allowances()
        return min(allowances, key=allowances.__getitem__)

    async def snapshot(self) -> QuotaSnapshot:
        now = self.clock()
        month = month_of(now)
        pairs = [(e, c, q) for e, q in self.engines.items() for c in q.allowances()]
        used = await self.counts.get([(e, c, month) for e, c, _ in pairs])
        resets = next_month(now)
        self._seen.update({(e, c): (month, n) for (e, c, _), n in zip(pairs, used, strict=True)})
        return QuotaSnapshot(tuple(
            Usage(e, c, n, q.allowances()[c], q.policy, resets) for (e, c, q), n in zip(pairs, used, strict=True)
        ))

    async def used(self) -> dict[tuple[EngineId, str], int]:
        """Characters used this month per (engine, class), read now."""
        return {(u.engine, u.voice_class): u.used for u in (await self.snapshot()).usages}

    def last_used(self) -> list[tuple[str, str, int]]:
        """(engine, class, characters this month) as this replica last read or counted them:
        for the `chorus_quota_used_characters` gauge, which must not block."""
        month = month_of(self.clock())
        return [(e, c, n) for (e, c), (m, n) in self._seen.items() if m == month]

    async def for_plan(self) -> QuotaSnapshot | None:
        """The snapshot a plan uses. When the counts cannot be read (logged) it is
        `unreadable`: closed, not open, for the classes whose policy is `enforce` (a key
        without budgets touches no other counter, so nothing else would stop it spending a
        free tier past its end while the store is down); `warn` classes are used as ever."""
        try:
            return await self.snapshot()
        except CountsUnavailable as err:
            log.warning("cloud quota: counts unreadable, enforced classes skipped until they are: %s", err)
            return QuotaSnapshot((), unreadable=True)

    def refuses(self, snapshot: QuotaSnapshot, engine: EngineId, voice: str | None) -> bool:
        """Whether the plan must skip `engine` (policy enforce, its class used up)."""
        voice_cls = self.class_of(engine, voice)
        if snapshot.unreadable:
            return voice_cls is not None and self.engines[engine].policy == "enforce"
        usage = snapshot.usage(engine, voice_cls) if voice_cls else None
        return usage is not None and usage.exhausted and usage.policy == "enforce"

    async def record(self, engine: EngineId, voice: str | None, characters: int) -> None:
        """Count characters a cloud engine synthesized. Never raises: the audio exists,
        and an unreachable counter must not turn it into an error (logged instead)."""
        voice_cls = self.class_of(engine, voice)
        if voice_cls is None or characters <= 0:
            return
        key: CountKey = (engine, voice_cls, month_of(self.clock()))
        try:
            total = await self.counts.add(key, characters)
        except Exception as err:  # noqa: BLE001 - any backend's failure; the count is lost, the answer is not
            log.warning("cloud quota: %d characters of %s/%s not counted: %s", characters, engine, voice_cls, err)
            return
        self._seen[(engine, voice_cls)] = (key[2], total)
        allowed = self.engines[engine].allowances()[voice_cls]
        if total >= allowed > total - characters:
            log.warning("cloud quota: %s %s used up its %d characters for %s (policy %s)",
                        engine, voice_cls, allowed, key[2], self.engines[engine].policy)
