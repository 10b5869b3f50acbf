"""The tiers layered: this replica's memory first, then the shared tier (Redis, or the disk
of the embedded default). A hit from the shared tier fills the memory tier.

A tier that fails to read or write (Redis out of reach, a full disk) is logged and taken as
a miss: the cache must never fail speech the engines can still make. Writes to the shared
tier run in the background: an answer never waits for a disk or a network write, only the
memory tier is written before it leaves (so this replica hits at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct

from chorus.speech.cache.config import CacheConfig
from chorus.speech.cache.tiers import DiskTier, MemoryTier, RedisTier, SharedTier, Tier
from deployments.base import AudioResult

log = logging.getLogger(__name__)

# An entry: sample rate (u32), variant length (u8), variant (UTF-8), then the PCM.
_HEADER = struct.Struct("<IB")


def encode(audio: AudioResult) -> bytes:
    variant = (audio.variant or "").encode()
    return _HEADER.pack(audio.sample_rate, len(variant)) + variant + audio.pcm


def decode(blob: bytes) -> AudioResult:
    rate, size = _HEADER.unpack_from(blob)
    start = _HEADER.size + size
    variant = blob[_HEADER.size:start].decode() or None
    return AudioResult(pcm=blob[start:], sample_rate=rate, variant=variant)


class CacheUnavailable(Exception):
    """A tier could not drop entries; `reason` says which and why, for the log."""

    def __init__(self, tier: str, reason: str) -> None:
        super().__init__(tier, reason)
        self.tier = tier
        self.reason = reason

    def __str__(self) -> str:
        return f"the {self.tier} tier of the audio cache cannot be reached"


class AudioCache:
    def __init__(self, memory: MemoryTier | None, shared: SharedTier | None, follow_s: float = 1.0) -> None:
        self.memory = memory
        self.shared = shared
        self.follow_s = follow_s
        self._writing: set[asyncio.Task[None]] = set()  # referenced until done, or the loop drops them

    @classmethod
    def open(cls, config: CacheConfig, redis_url: str | None) -> AudioCache | None:
        """The configured tiers; None when the cache is off (or has no tier at all)."""
        if not config.enabled:
            return None
        memory = MemoryTier(config.memory_bytes) if config.memory_bytes > 0 else None
        shared: SharedTier | None = None
        if (url := config.redis_url or redis_url) is not None:
            shared = RedisTier(url, config.redis_ttl_s, config.redis_bytes)
        elif config.disk_dir is not None:
            shared = DiskTier(config.disk_dir, config.disk_bytes)
        return cls(memory, shared) if memory is not None or shared is not None else None

    @property
    def tiers(self) -> list[Tier]:
        return [t for t in (self.memory, self.shared) if t is not None]

    async def get(self, key: str, personality: str) -> AudioResult | None:
        """The entry from the first tier that has it; `personality` indexes the copy a
        shared-tier hit leaves in memory."""
        for tier in self.tiers:
            try:
                blob = await tier.get(key)
            except Exception as err:  # noqa: BLE001 - a miss, see the module docstring
                log.warning("audio cache: reading the %s tier failed, a miss: %s: %s", tier.name, type(err).__name__, err)
                continue
            if blob is None:
                continue
            if tier is not self.memory and self.memory is not None:
                await self.memory.put(key, blob, personality)
            return decode(blob)
        return None

    async def put(self, key: str, audio: AudioResult, personality: str) -> None:
        blob = encode(audio)
        if self.memory is not None:
            await _written(self.memory, key, blob, personality)
        if self.shared is not None:
            task = asyncio.create_task(_written(self.shared, key, blob, personality))
            self._writing.add(task)
            task.add_done_callback(self._writing.discard)

    async def settled(self) -> None:
        """Waits for the shared tier's writes in flight."""
        while self._writing:
            await asyncio.gather(*self._writing)

    async def drop_personality(self, personality: str | None) -> dict[str, int]:
        """Drops `personality`'s entries (None: all) from every tier this replica reaches,
        and tells the other replicas through the shared tier (`follow_drops`): how many each
        tier here dropped. A tier that fails raises `CacheUnavailable`: an admin must know
        the entries may still be there."""
        dropped: dict[str, int] = {}
        for tier in self.tiers:
            try:
                dropped[tier.name] = await tier.drop_personality(personality)
            except Exception as err:
                raise CacheUnavailable(tier.name, f"{type(err).__name__}: {err}") from err
        if self.shared is not None:
            try:
                await self.shared.announce_drop(personality)
            except Exception as err:
                raise CacheUnavailable(self.shared.name, f"{type(err).__name__}: {err}") from err
        return dropped

    async def follow_drops(self, stop: asyncio.Event) -> None:
        """Until `stop`: every `follow_s`, drops from this replica's memory what any replica
        dropped (the shared tier's notices), so `DELETE /v1/cache` reaches every replica's
        copies within about that long. The ingress runs one per replica."""
        if self.memory is None or self.shared is None:
            return
        seen: int | None = None
        while not stop.is_set():
            try:
                last, drops = await self.shared.drops_after(seen)
                for personality in drops:
                    await self.memory.drop_personality(personality)
                seen = last
            except Exception as err:  # noqa: BLE001 - tried again next round
                log.warning("audio cache: reading drop notices failed: %s: %s", type(err).__name__, err)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.follow_s)


async def _written(tier: Tier, key: str, blob: bytes, personality: str) -> None:
    try:
        await tier.put(key, blob, personality)
    except Exception as err:  # noqa: BLE001 - not kept there, see the module docstring
        log.warning("audio cache: writing the %s tier failed: %s: %s", tier.name, type(err).__name__, err)
