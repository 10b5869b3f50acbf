"""Where cached audio is kept: one small protocol, three tiers.

A tier keeps opaque blobs (`chorus.speech.cache.store` encodes the audio) under cache keys, with an
index of which keys each personality made, so an admin can drop one personality's entries.
A shared tier (disk, Redis) also keeps the drops made through any replica as numbered
notices, so every replica can drop the same entries from its own memory (`SharedTier`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import cachetools
import diskcache
import redis.asyncio

NAMESPACE = "chorus:audio"
# Outside the entries' namespace: dropping every entry leaves the notices (and their count).
_DROPS = "chorus:audio-drops"
# The byte bound's bookkeeping (RedisTier): recency of each entry, each one's size, the total.
_RECENCY = f"{NAMESPACE}:recency"
_SIZES = f"{NAMESPACE}:sizes"
_BYTES = f"{NAMESPACE}:bytes"
_OWNERS = f"{NAMESPACE}:owners"  # each entry's personality set, to leave it when the entry goes
_DROPS_LAST = f"{_DROPS}:last"


class Tier(Protocol):
    name: str

    async def get(self, key: str) -> bytes | None: ...

    async def put(self, key: str, blob: bytes, personality: str) -> None: ...

    async def drop_personality(self, personality: str | None) -> int:
        """Drops the entries `personality` made (None: every entry); how many were dropped."""
        ...


class SharedTier(Tier, Protocol):
    async def announce_drop(self, personality: str | None) -> None:
        """Tells every replica that `personality`'s entries (None: all) were dropped."""
        ...

    async def drops_after(self, seen: int | None) -> tuple[int, list[str | None]]:
        """The drops announced after notice `seen` (None: none, only where the notices stand
        now) and the number of the last; the oldest are forgotten after `KEPT_DROPS`."""
        ...


# Notices kept: a replica that fell further behind than this drops everything to be safe.
KEPT_DROPS = 1000
_ALL = "*"  # a drop of every entry, in the notices (personality names never hold "*")


def _notices(seen: int | None, last: int, read: Callable[[int], str | None]) -> list[str | None]:
    if seen is None or seen >= last:
        return []
    if last - seen > KEPT_DROPS:
        return [None]
    said = [read(n) for n in range(seen + 1, last + 1)]
    return [None if p in (None, _ALL) else p for p in said]


class _Entries(cachetools.LRUCache[str, bytes]):
    """An LRU that says which key it pushed out, so the index forgets it too."""

    def __init__(self, max_bytes: int, evicted: Callable[[str], None]) -> None:
        super().__init__(maxsize=max_bytes, getsizeof=len)
        self._evicted = evicted

    def popitem(self) -> tuple[str, bytes]:
        key, blob = super().popitem()
        self._evicted(key)
        return key, blob


class MemoryTier:
    """This replica's least recently used entries, bounded in bytes of PCM, not entries; the
    index of each personality's keys loses a key when the entry goes, so it stays as small
    as what is kept."""

    name = "memory"

    def __init__(self, max_bytes: int) -> None:
        self._entries = _Entries(max_bytes, self._forget)
        self._index: dict[str, set[str]] = {}
        self._owner: dict[str, str] = {}

    def _forget(self, key: str) -> None:
        personality = self._owner.pop(key, None)
        if personality is not None and (keys := self._index.get(personality)) is not None:
            keys.discard(key)
            if not keys:
                del self._index[personality]

    @property
    def size(self) -> int:
        return int(self._entries.currsize)

    async def get(self, key: str) -> bytes | None:
        return self._entries.get(key)

    async def put(self, key: str, blob: bytes, personality: str) -> None:
        if len(blob) > self._entries.maxsize:
            return  # larger than the whole tier: it would only push everything else out
        self._entries[key] = blob
        if (owner := self._owner.get(key)) is not None and owner != personality:
            self._forget(key)
        self._owner[key] = personality
        self._index.setdefault(personality, set()).add(key)

    async def drop_personality(self, personality: str | None) -> int:
        if personality is None:
            dropped = len(self._entries)
            self._entries.clear()
            self._index.clear()
            self._owner.clear()
            return dropped
        keys = self._index.pop(personality, set())
        for key in keys:
            self._owner.pop(key, None)
        return sum(self._entries.pop(key, None) is not None for key in keys)


class DiskTier:
    """A bounded directory that survives restarts (the embedded default). diskcache keeps
    the least recently used entries under `max_bytes`, writes each entry atomically (a file
    is renamed into place before its row commits) and tags it with its personality. Every
    call blocks on SQLite or the file system, so it runs in a worker thread."""

    name = "disk"

    def __init__(self, directory: Path, max_bytes: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self._cache = diskcache.Cache(
            str(directory), size_limit=max_bytes, eviction_policy="least-recently-used", tag_index=True
        )
        # Apart from the entries, so no eviction of audio ever takes a notice with it.
        self._drops = diskcache.Cache(str(directory / "drops"), eviction_policy="none")

    async def get(self, key: str) -> bytes | None:
        return await asyncio.to_thread(self._cache.get, key)

    async def put(self, key: str, blob: bytes, personality: str) -> None:
        await asyncio.to_thread(self._cache.set, key, blob, tag=personality)

    async def drop_personality(self, personality: str | None) -> int:
        if personality is None:
            return await asyncio.to_thread(self._cache.clear)
        return await asyncio.to_thread(self._cache.evict, personality)

    async def announce_drop(self, personality: str | None) -> None:
        await asyncio.to_thread(self._announce, personality or _ALL)

    def _announce(self, said: str) -> None:
        with self._drops.transact():  # numbered without a gap, also across processes
            n = self._drops.incr("last")
            self._drops.set(n, said)
            self._drops.delete(n - KEPT_DROPS)

    async def drops_after(self, seen: int | None) -> tuple[int, list[str | None]]:
        def read() -> tuple[int, list[str | None]]:
            last = int(self._drops.get("last", 0))
            return last, _notices(seen, last, self._drops.get)

        return await asyncio.to_thread(read)

    def close(self) -> None:
        self._cache.close()
        self._drops.close()


# Storing an entry and dropping the least recently used ones past the byte bound, in one step
# on the server, so replicas storing at once never overshoot it, and taking what goes out of
# its personality's set. KEYS: the entry, the recency set, the byte count, the sizes, the
# owners; ARGV: the blob, its TTL, now, the bound, the short key, the entries' prefix, the
# personality's set.
_PUT = """
local old = redis.call('HGET', KEYS[4], ARGV[5])
if old then redis.call('DECRBY', KEYS[3], old) end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[5], string.len(ARGV[1]))
redis.call('HSET', KEYS[5], ARGV[5], ARGV[7])
local total = redis.call('INCRBY', KEYS[3], string.len(ARGV[1]))
local dropped = 0
while total > tonumber(ARGV[4]) do
  local oldest = redis.call('ZPOPMIN', KEYS[2])
  if #oldest == 0 then break end
  local size = redis.call('HGET', KEYS[4], oldest[1])
  local owner = redis.call('HGET', KEYS[5], oldest[1])
  if owner then redis.call('SREM', owner, oldest[1]) end
  redis.call('HDEL', KEYS[4], oldest[1])
  redis.call('HDEL', KEYS[5], oldest[1])
  redis.call('DEL', ARGV[6] .. oldest[1])
  total = size and redis.call('DECRBY', KEYS[3], size) or total
  dropped = dropped + 1
end
return dropped
"""
# Forgetting entries (a drop by personality): KEYS: the byte count, the sizes, the recency
# set, the owners; ARGV: the entries' prefix, then the short keys. Returns how many entries there were.
_FORGET = """
local gone = 0
for i = 2, #ARGV do
  local size = redis.call('HGET', KEYS[2], ARGV[i])
  if size then redis.call('DECRBY', KEYS[1], size) end
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[4], ARGV[i])
  redis.call('ZREM', KEYS[3], ARGV[i])
  gone = gone + redis.call('DEL', ARGV[1] .. ARGV[i])
end
return gone
"""


class RedisTier:
    """Shared by every ingress replica, each entry for `ttl_s`, under `chorus:audio:`; a
    set per personality names its keys. At most `max_bytes` of entries: the least recently
    used go first (a recency set, each entry's size and their total, kept by the scripts
    above), so the cache never grows into the memory the rate and budget counters use."""

    name = "redis"

    def __init__(self, url: str, ttl_s: int, max_bytes: int) -> None:
        self._redis = redis.asyncio.Redis.from_url(
            url, decode_responses=False, socket_connect_timeout=1.0, socket_timeout=2.0
        )
        self._ttl_s = ttl_s
        self._max_bytes = max_bytes
        self._put = self._redis.register_script(_PUT)
        self._forget = self._redis.register_script(_FORGET)

    @staticmethod
    def _entry(key: str) -> str:
        return f"{NAMESPACE}:entry:{key}"

    @staticmethod
    def _index(personality: str) -> str:
        return f"{NAMESPACE}:personality:{personality}"

    async def get(self, key: str) -> bytes | None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.get(self._entry(key))
        pipe.zadd(_RECENCY, {key: time.time()}, xx=True)  # used now: the last to go
        blob, _ = await pipe.execute()
        return blob

    async def put(self, key: str, blob: bytes, personality: str) -> None:
        if len(blob) > self._max_bytes:
            return  # would only push everything else out, itself included
        await self._put(keys=[self._entry(key), _RECENCY, _BYTES, _SIZES, _OWNERS],
                        args=[blob, self._ttl_s, time.time(), self._max_bytes, key, self._entry(""),
                              self._index(personality)])
        pipe = self._redis.pipeline(transaction=False)
        pipe.sadd(self._index(personality), key)
        # The index lives as long as its newest entry.
        pipe.expire(self._index(personality), self._ttl_s)
        await pipe.execute()

    async def stored_bytes(self) -> int:
        return int(await self._redis.get(_BYTES) or 0)

    async def drop_personality(self, personality: str | None) -> int:
        if personality is not None:
            keys = [k.decode() for k in await self._redis.smembers(self._index(personality))]
            dropped = await self._forget(keys=[_BYTES, _SIZES, _RECENCY, _OWNERS],
                                         args=[self._entry(""), *keys]) if keys else 0
            await self._redis.delete(self._index(personality))
            return int(dropped)
        dropped = 0
        async for name in self._redis.scan_iter(match=f"{NAMESPACE}:*"):
            removed = await self._redis.delete(name)
            if name.startswith(f"{NAMESPACE}:entry:".encode()):  # indexes are not entries
                dropped += removed
        return dropped

    async def announce_drop(self, personality: str | None) -> None:
        n = await self._redis.incr(_DROPS_LAST)
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(f"{_DROPS}:{n}", personality or _ALL, ex=self._ttl_s)
        pipe.delete(f"{_DROPS}:{n - KEPT_DROPS}")
        await pipe.execute()

    async def drops_after(self, seen: int | None) -> tuple[int, list[str | None]]:
        last = int(await self._redis.get(_DROPS_LAST) or 0)
        if seen is None or seen >= last or last - seen > KEPT_DROPS:
            return last, _notices(seen, last, lambda n: None)
        said = await self._redis.mget([f"{_DROPS}:{n}" for n in range(seen + 1, last + 1)])
        # A notice not yet written (INCR came first) or expired reads as a drop of everything.
        return last, [None if s in (None, _ALL.encode()) else s.decode() for s in said]

    async def close(self) -> None:
        await self._redis.aclose()

