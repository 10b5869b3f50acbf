"""Where the cloud quota meter (`chorus.quotas.providers`) keeps its monthly counts.

Two backends behind one small surface (`add`, `get`):

- `RedisCounts` when `IngressArgs.redis_url` is set: one INCRBY per count, atomic across
  every replica and every machine (redis-py's asyncio client, as `chorus.quotas.callers` uses).
- `SqliteCounts` otherwise (the embedded default): one SQLite file on local disk, in WAL
  mode, one UPSERT per count. Chosen over a JSON file rewritten through
  `chorus.common.atomic_write` because replicas on one machine count concurrently: a rewritten
  file needs a read-modify-write under an inter-process lock, and the last writer would
  drop the others' counts; SQLite's own locking makes each UPSERT atomic between
  processes, its journal makes it durable (a restart keeps the month), and it is in the
  standard library. WAL lets readers go on while one replica writes.

A count is keyed by engine, voice class and UTC month ("2026-11"), so a new month starts
at zero without anything being reset.
"""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Protocol

import redis.asyncio
import redis.exceptions

# Every Redis key this module writes starts with it, so a shared Redis can hold other data.
REDIS_PREFIX = "chorus:cloud_quota"

CountKey = tuple[str, str, str]
"""(engine, voice class, UTC month "YYYY-MM")"""


class CountsUnavailable(Exception):
    """The counts cannot be read (Redis unreachable, the SQLite file locked or unreadable);
    `cause` is for the log."""

    retry_after_s = 5

    def __init__(self, cause: BaseException) -> None:
        super().__init__("cloud quotas cannot be read right now (their store is unreachable); try again shortly")
        self.cause = f"{type(cause).__name__}: {cause}"


class Counts(Protocol):
    async def add(self, key: CountKey, characters: int) -> int:
        """Add `characters` to a count atomically; the count after it."""
        ...

    async def get(self, keys: list[CountKey]) -> list[int]:
        """The counts of `keys` (0 for one never counted), in their order; CountsUnavailable."""
        ...


class RedisCounts:
    def __init__(self, url: str) -> None:
        self.redis: redis.asyncio.Redis = redis.asyncio.Redis.from_url(url, decode_responses=True)

    @staticmethod
    def _key(key: CountKey) -> str:
        return ":".join((REDIS_PREFIX, *key))

    async def add(self, key: CountKey, characters: int) -> int:
        return int(await self.redis.incrby(self._key(key), characters))

    async def get(self, keys: list[CountKey]) -> list[int]:
        if not keys:
            return []
        try:
            values = await self.redis.mget([self._key(k) for k in keys])
        except (redis.exceptions.RedisError, OSError) as err:
            raise CountsUnavailable(err) from err
        return [int(v or 0) for v in values]


class SqliteCounts:
    """The counts in one SQLite file; every call opens its own connection in a worker
    thread (SQLite blocks, and a connection may not cross threads)."""

    # A replica waits this long for another replica's write lock before giving up.
    BUSY_TIMEOUT_S = 5.0

    def __init__(self, path: Path) -> None:
        self.path = path.expanduser()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            # WAL is a property of the file: set once, every later connection uses it.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS usage (engine TEXT NOT NULL, class TEXT NOT NULL, month TEXT NOT NULL,"
                " characters INTEGER NOT NULL, PRIMARY KEY (engine, class, month))"
            )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=self.BUSY_TIMEOUT_S)
        # NORMAL under WAL: a commit survives the process dying (a restart, a crash); only a
        # power cut may lose the last commits, which a free-tier meter can afford.
        db.execute("PRAGMA synchronous=NORMAL")
        return db

    def _add(self, key: CountKey, characters: int) -> int:
        with closing(self._connect()) as db, db:
            row = db.execute(
                "INSERT INTO usage (engine, class, month, characters) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (engine, class, month) DO UPDATE SET characters = characters + excluded.characters"
                " RETURNING characters",
                (*key, characters),
            ).fetchone()
        return int(row[0])

    def _get(self, keys: list[CountKey]) -> list[int]:
        months = sorted({month for _, _, month in keys})
        with closing(self._connect()) as db:
            rows = db.execute(
                "SELECT engine, class, month, characters FROM usage"
                f" WHERE month IN ({', '.join('?' * len(months))})", months,
            ).fetchall()
        found = {(e, c, m): n for e, c, m, n in rows}
        return [found.get(k, 0) for k in keys]

    async def add(self, key: CountKey, characters: int) -> int:
        return await asyncio.to_thread(self._add, key, characters)

    async def get(self, keys: list[CountKey]) -> list[int]:
        try:
            return await asyncio.to_thread(self._get, keys) if keys else []
        except (sqlite3.Error, OSError) as err:
            raise CountsUnavailable(err) from err
