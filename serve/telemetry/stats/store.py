"""Where the buckets live: this process's memory, or Redis shared by every ingress replica
(and surviving their restarts). Each bucket is one hash of `Tally` fields; a flush adds to it
with HINCRBY/HINCRBYFLOAT (atomic across replicas) and chains its EMA batches with a small
Lua script, all in one MULTI/EXEC, and gives the bucket its TTL."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Protocol

import redis.asyncio
import redis.exceptions

from chorus.telemetry.stats.ema import ALPHA, EmaBatch
from chorus.telemetry.stats.tally import EMA_SUFFIX, Tally
from chorus.telemetry.stats.windows import Granularity

BucketId = tuple[Granularity, int]  # granularity, start (epoch seconds)
NAMESPACE = "chorus:stats"


class StatsUnavailable(Exception):
    """The shared store cannot be reached (Redis down); `cause` is for the log."""

    retry_after_s = 5

    def __init__(self, cause: BaseException) -> None:
        super().__init__("statistics cannot be read right now (their store is unreachable); try again shortly")
        self.cause = f"{type(cause).__name__}: {cause}"


@asynccontextmanager
async def _reaching_redis() -> AsyncIterator[None]:
    try:
        yield
    except (redis.exceptions.RedisError, OSError) as err:
        raise StatsUnavailable(err) from err


class StatsStore(Protocol):
    async def add(self, tallies: Mapping[BucketId, Tally]) -> None: ...

    async def read(self, granularity: Granularity, starts: list[int]) -> list[Tally]:
        """The buckets' tallies, in the order asked (empty ones for buckets with nothing)."""
        ...

    async def close(self) -> None: ...


class MemoryStore:
    """One replica's own figures; a restart starts from nothing."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._buckets: dict[BucketId, Tally] = {}
        self._clock = clock

    async def add(self, tallies: Mapping[BucketId, Tally]) -> None:
        for bucket_id, tally in tallies.items():
            self._buckets.setdefault(bucket_id, Tally()).then(tally)
        now = self._clock()
        for g, start in [b for b in self._buckets if b[1] + b[0].seconds + b[0].ttl_s < now]:
            del self._buckets[(g, start)]

    async def read(self, granularity: Granularity, starts: list[int]) -> list[Tally]:
        return [self._buckets.get((granularity, s)) or Tally() for s in starts]

    async def close(self) -> None:
        return None


# KEYS[1]: a bucket's hash; ARGV: alpha, then (field, n, c, first) per EMA batch. Applies each
# batch to what the bucket holds: c' = (1 - alpha)^n * c + c_batch (see chorus.telemetry.stats.ema).
_CHAIN_EMA = """
local keep = 1 - tonumber(ARGV[1])
for i = 2, #ARGV, 4 do
  local f = ARGV[i]
  local dn = tonumber(ARGV[i + 1])
  local n = tonumber(redis.call('HGET', KEYS[1], f .. ':n') or '0')
  local c = tonumber(redis.call('HGET', KEYS[1], f .. ':c') or '0')
  if n == 0 then redis.call('HSET', KEYS[1], f .. ':first', ARGV[i + 3]) end
  redis.call('HSET', KEYS[1], f .. ':c', string.format('%.17g', keep ^ dn * c + tonumber(ARGV[i + 2])))
  redis.call('HSET', KEYS[1], f .. ':n', string.format('%d', n + dn))
end
return 1
"""
_EMA_PARTS = (":n", ":c", ":first")


class RedisStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.asyncio.Redis.from_url(url, decode_responses=True)
        self._chain_ema = self._redis.register_script(_CHAIN_EMA)

    @staticmethod
    def _key(granularity: Granularity, start: int) -> str:
        return f"{NAMESPACE}:{granularity.name}:{start}"

    async def add(self, tallies: Mapping[BucketId, Tally]) -> None:
        async with _reaching_redis():
            await self._add(tallies)

    async def _add(self, tallies: Mapping[BucketId, Tally]) -> None:
        pipe = self._redis.pipeline(transaction=True)
        for (g, start), tally in tallies.items():
            key = self._key(g, start)
            for name, count in tally.int_fields():
                pipe.hincrby(key, name, count)
            for name, amount in tally.float_fields():
                pipe.hincrbyfloat(key, name, amount)
            if tally.emas:
                args: list[str | float] = [repr(ALPHA)]
                for name, batch in tally.emas.items():
                    args += [name, str(batch.n), repr(batch.c), repr(batch.first)]
                await self._chain_ema(keys=[key], args=args, client=pipe)
            # From the bucket's end: a bucket is kept as long as a window can still reach it.
            pipe.expireat(key, start + g.seconds + g.ttl_s)
        await pipe.execute()

    async def read(self, granularity: Granularity, starts: list[int]) -> list[Tally]:
        async with _reaching_redis():
            pipe = self._redis.pipeline(transaction=False)
            for start in starts:
                pipe.hgetall(self._key(granularity, start))
            return [_parse(raw) for raw in await pipe.execute()]

    async def close(self) -> None:
        await self._redis.aclose()


def _parse(raw: Mapping[str, str]) -> Tally:
    tally = Tally()
    emas: dict[str, dict[str, str]] = {}
    for name, value in raw.items():
        part = next((p for p in _EMA_PARTS if name.endswith(EMA_SUFFIX + p)), None)
        if part is not None:
            emas.setdefault(name[: -len(part)], {})[part] = value
        else:
            tally.sums[name] += float(value)
    for name, parts in emas.items():
        tally.emas[name] = EmaBatch(
            int(parts.get(":n", 0)), float(parts.get(":c", 0)), float(parts.get(":first", 0))
        )
    return tally


def open_stats_store(redis_url: str | None) -> StatsStore:
    return RedisStore(redis_url) if redis_url else MemoryStore()

