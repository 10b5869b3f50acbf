"""Rate limits and character budgets (docs/security.md#rate-limits-and-budgets).

Two kinds of limit, both kept by the `limits` library in one storage shared by every
ingress replica (Redis when configured, this process's memory otherwise):

- rates, in a moving window: a key's `rateLimit` counts every request the key sends
  (`chorus.ingress.middleware.spend`), a personality's rate counts the utterances it speaks;
- character budgets of a key, per UTC day and per UTC calendar month, charged on the text a
  speech route hands the router: reserved before synthesis, given back if nothing was spoken.

One request's use of them is a `Spend`, kept in the request's state; its tightest window
becomes the answer's `X-RateLimit-*` headers, a refused one a 429 (`QuotaExceeded`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import limits
from limits.aio.strategies import FixedWindowRateLimiter, MovingWindowRateLimiter
from limits.errors import StorageError
from limits.storage import storage_from_string
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from chorus.auth.keys import ApiKey, RateLimit

log = logging.getLogger(__name__)

T = TypeVar("T")
# Every storage key this module writes starts with it, so a shared Redis can hold other data.
NAMESPACE = "chorus"


class QuotasConfig(BaseModel):
    """`IngressArgs.quotas`: where limits are counted and what a personality may speak."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    personality_rate_limit: RateLimit | None = Field(
        None, description="Utterances per window any one personality speaks, e.g. '120/minute' (moving window).",
    )
    personality_rate_limits: dict[str, RateLimit] = Field(
        default_factory=dict, description="Per personality name, replacing personalityRateLimit.",
    )

    def personality_limit(self, name: str) -> str | None:
        return self.personality_rate_limits.get(name, self.personality_rate_limit)


class LimitName(StrEnum):
    KEY_RATE = "key_rate"
    PERSONALITY_RATE = "personality_rate"
    CHARACTERS_PER_DAY = "characters_per_day"
    CHARACTERS_PER_MONTH = "characters_per_month"
    FAILED_KEYS = "failed_keys"  # requests with a missing or wrong key, per client address
    CONCURRENT = "concurrent"  # a key's requests under way at once on one replica


RATES = frozenset({LimitName.KEY_RATE, LimitName.PERSONALITY_RATE, LimitName.FAILED_KEYS, LimitName.CONCURRENT})


@dataclass(frozen=True)
class Window:
    """One limit as this request left it."""

    name: LimitName
    subject: str  # the key's name or the personality's
    limit: int
    per: str  # "1 minute", "UTC day", ...
    remaining: int
    reset_at: float  # epoch seconds

    def resets_in(self) -> int:
        """Whole seconds until it resets (at least 1: a client told 0 would retry at once)."""
        return max(1, math.ceil(self.reset_at - time.time()))

    def share_left(self) -> float:
        return self.remaining / self.limit

    def headers(self) -> dict[str, str]:
        return {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(max(0, self.remaining)),
            "X-RateLimit-Reset": str(self.resets_in()),
        }

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name.value, "subject": self.subject, "limit": self.limit, "per": self.per,
            "remaining": max(0, self.remaining), "resets_in": self.resets_in(),
            "resets_at": datetime.fromtimestamp(self.reset_at, UTC).isoformat(timespec="seconds"),
        }


class QuotaExceeded(Exception):
    """A request over one of its limits: 429, `Retry-After` when `window` resets."""

    def __init__(self, window: Window, asked: int = 1) -> None:
        personality = window.name is LimitName.PERSONALITY_RATE
        what = f"personality {window.subject!r}" if personality else f"API key {window.subject!r}"
        unit = "requests" if window.name in RATES else "characters"
        if window.name is LimitName.CONCURRENT:
            detail = f"{what} already has {window.limit} requests under way on this replica, its most at once"
        else:
            detail = f"{what} is over its {window.name.value} limit of {window.limit} {unit} per {window.per}"
        if asked > 1:
            detail += f" ({asked} asked, {max(0, window.remaining)} left)"
        again = "retry in" if window.name is LimitName.CONCURRENT else "it resets in"
        super().__init__(f"{detail}; {again} {window.resets_in()} s")
        self.window = window

    @property
    def retry_after_s(self) -> int:
        return self.window.resets_in()

    @property
    def detail(self) -> str:
        return str(self)


class QuotasUnavailable(Exception):
    """The shared counters cannot be reached (Redis down): 503. Closed, not open: a limit
    that cannot be counted would let one key spend the whole cloud quota."""

    retry_after_s = 5

    def __init__(self, err: StorageError) -> None:
        super().__init__("rate limits cannot be counted right now (their store is unreachable); try again shortly")
        self.cause = f"{type(err.storage_error).__name__}: {err.storage_error}"

    @property
    def detail(self) -> str:
        return str(self)


def _utc_periods(now: datetime) -> dict[LimitName, tuple[str, datetime]]:
    """The current UTC day and month: the storage key's suffix and when each ends."""
    day_end = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    month_end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
    return {
        LimitName.CHARACTERS_PER_DAY: (now.strftime("%Y-%m-%d"), day_end),
        LimitName.CHARACTERS_PER_MONTH: (now.strftime("%Y-%m"), month_end),
    }


# A budget's counter lives in a fixed window keyed by its UTC day or month. The library's
# fixed window starts at the first hit, not at midnight, so the calendar period is part of
# the key and the window only has to outlive it: a day, or 32 days for any month.
_BUDGET_WINDOW = {
    LimitName.CHARACTERS_PER_DAY: ("UTC day", 1),
    LimitName.CHARACTERS_PER_MONTH: ("UTC month", 32),
}


@dataclass(frozen=True)
class _Reservation:
    item: limits.RateLimitItem
    identifiers: tuple[str, ...]
    cost: int


class Quotas:
    """One replica's handle on the shared counters."""

    def __init__(self, config: QuotasConfig, redis_url: str | None) -> None:
        self.config = config
        # `async+` picks the library's asyncio storage. For Redis, redis-py's client: coredis
        # (the library's default) shares a connection between concurrent commands, and an
        # error on one (the first EVALSHA of a script) drops the others' replies, which it
        # then retries: hits counted twice, a key refused below its limit. Wrapped: any
        # client's failure is one `StorageError`.
        uri = f"async+{redis_url}" if redis_url else "async+memory://"
        client = {"implementation": "redispy"} if redis_url else {}
        self.storage = storage_from_string(uri, wrap_exceptions=True, **client)
        self.moving = MovingWindowRateLimiter(self.storage)
        self.fixed = FixedWindowRateLimiter(self.storage)

    async def rate(self, name: LimitName, subject: str, rate_limit: str) -> Window:
        """Count one request against `rate_limit` (moving window); QuotaExceeded when full,
        QuotasUnavailable when the counters cannot be reached."""
        item = limits.parse(rate_limit)
        ids = (NAMESPACE, name.value, subject)
        try:
            allowed = await self.moving.hit(item, *ids)
            stats = await self.moving.get_window_stats(item, *ids)
        except StorageError as err:
            raise QuotasUnavailable(err) from None
        per = f"{item.multiples} {item.GRANULARITY.name}"
        window = Window(name, subject, item.amount, per, stats.remaining, stats.reset_time)
        if not allowed:
            raise QuotaExceeded(window)
        return window

    async def reserve(self, key: ApiKey, characters: int) -> tuple[list[Window], list[_Reservation]]:
        """Take `characters` from each of the key's budgets, or none of them (QuotaExceeded;
        QuotasUnavailable when the counters cannot be reached).

        The fixed window's `hit(cost=n)` is one atomic INCRBY: concurrent reservations get
        distinct totals, so exactly those that fit succeed and a budget is never overshot,
        however many replicas ask at once. A reservation that does not fit is taken back
        (the library has no decrement for Redis; an increment by -n is one). A moving window
        would also be exact, but it stores one entry per unit: a character each.
        """
        try:
            return await self._reserve(key, characters)
        except StorageError as err:
            raise QuotasUnavailable(err) from None

    async def _reserve(self, key: ApiKey, characters: int) -> tuple[list[Window], list[_Reservation]]:
        now = datetime.now(UTC)
        periods = _utc_periods(now)
        budgets = {
            LimitName.CHARACTERS_PER_DAY: key.characters_per_day,
            LimitName.CHARACTERS_PER_MONTH: key.characters_per_month,
        }
        windows: list[Window] = []
        taken: list[_Reservation] = []
        for name, amount in budgets.items():
            if amount is None:
                continue
            per, days = _BUDGET_WINDOW[name]
            period, ends = periods[name]
            reservation = _Reservation(limits.RateLimitItemPerDay(amount, days), (NAMESPACE, name.value, key.name, period),
                                       characters)
            allowed = await self.fixed.hit(reservation.item, *reservation.identifiers, cost=characters)
            if not allowed:
                await self.give_back([*taken, reservation])
            stats = await self.fixed.get_window_stats(reservation.item, *reservation.identifiers)
            window = Window(name, key.name, amount, per, stats.remaining, ends.timestamp())
            if not allowed:
                raise QuotaExceeded(window, asked=characters)
            taken.append(reservation)
            windows.append(window)
        return windows, taken

    async def give_back(self, reservations: list[_Reservation], characters: int | None = None) -> None:
        """Return `characters` (default: all) of each reservation to its budget."""
        try:
            for r in reservations:
                back = r.cost if characters is None else min(characters, r.cost)
                await self.storage.incr(r.item.key_for(*r.identifiers), r.item.get_expiry(), amount=-back)
        except StorageError as err:
            # Only called while another error is on its way out: that one is the answer.
            log.warning("characters not given back (the limits store is unreachable): %s", err.storage_error)


class Charge:
    """What of one utterance's characters engines worked on: the router says when it sends
    a piece (`sent`) and when the engine failed it (`failed`: the engine's doing, not the
    caller's). An utterance that raises (every engine failing, the client gone) is refunded
    only the rest: a client that leaves pays for what engines were already working on. A
    fallback engine sent the same text again is not the key's to pay twice: the most any
    one engine took counts."""

    def __init__(self, characters: int) -> None:
        self.characters = characters
        self._by_engine: dict[str, int] = {}

    def sent(self, engine: str, characters: int) -> None:
        self._by_engine[engine] = self._by_engine.get(engine, 0) + characters

    def failed(self, engine: str, characters: int) -> None:
        self._by_engine[engine] = self._by_engine.get(engine, 0) - characters

    def unsent(self) -> int:
        return max(0, self.characters - max(self._by_engine.values(), default=0))


class Spend:
    """What one request has used: the windows it touched, for its headers."""

    def __init__(self, quotas: Quotas, key: ApiKey | None) -> None:
        self.quotas, self.key = quotas, key
        self.windows: list[Window] = []

    async def _counted(self, check: Awaitable[T]) -> T:
        try:
            return await check
        except QuotaExceeded as refused:
            self.windows.append(refused.window)
            raise

    async def request(self) -> None:
        """Count the request against its key's rate (every authenticated route)."""
        if self.key is not None and self.key.rate_limit is not None:
            self.windows.append(await self._counted(
                self.quotas.rate(LimitName.KEY_RATE, self.key.name, self.key.rate_limit)))

    @asynccontextmanager
    async def synthesis(self, personality: str | None, characters: int) -> AsyncIterator[Charge]:
        """Around one utterance: count it against its personality's rate, reserve its
        characters from the key's budgets, and if it raises (an error, every engine failing,
        the client gone) give back only the characters no engine was sent (`Charge`): what
        an engine worked on is spent, spoken to the caller or not. A stream is counted once
        its first chunk arrived (the context has exited by then): from there on the
        utterance is that engine's to finish."""
        if personality is not None and (rate := self.quotas.config.personality_limit(personality)):
            self.windows.append(await self._counted(self.quotas.rate(LimitName.PERSONALITY_RATE, personality, rate)))
        charge = Charge(characters)
        if self.key is None:
            yield charge
            return
        windows, reserved = await self._counted(self.quotas.reserve(self.key, characters))
        self.windows.extend(windows)
        try:
            yield charge
        except BaseException:
            if unsent := charge.unsent():
                await self.quotas.give_back(reserved, unsent)
            raise

    def tightest(self) -> Window | None:
        """The window closest to refusing (the least share left), for `X-RateLimit-*`."""
        return min(self.windows, key=lambda w: (w.share_left(), w.reset_at), default=None)

