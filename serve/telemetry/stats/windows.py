"""Time buckets: every utterance is counted in the minute and in the hour it ended in.
Minute buckets answer windows up to a day (kept 25 hours), hour buckets the 30-day window
(kept 31 days). A window is its last whole buckets, the current (partial) one included."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


@dataclass(frozen=True)
class Granularity:
    name: str
    seconds: int
    ttl_s: int

    def start(self, t: float) -> int:
        """The start (epoch seconds) of the bucket holding time t."""
        return int(t // self.seconds) * self.seconds


MINUTE = Granularity("m", 60, 25 * 3600)
HOUR = Granularity("h", 3600, 31 * 24 * 3600)
GRANULARITIES = (MINUTE, HOUR)

_SECONDS = {"m": 60, "h": 3600, "d": 86_400}


def _seconds(text: str) -> int:
    return int(text[:-1]) * _SECONDS[text[-1]]


class StatsWindow(StrEnum):
    FIVE_MINUTES = "5m"
    HOUR = "1h"
    DAY = "24h"
    MONTH = "30d"

    @property
    def seconds(self) -> int:
        return _seconds(self.value)

    @property
    def granularity(self) -> Granularity:
        return HOUR if self is StatsWindow.MONTH else MINUTE


class SeriesStep(StrEnum):
    MINUTE = "1m"
    FIVE_MINUTES = "5m"
    QUARTER = "15m"
    HOUR = "1h"
    SIX_HOURS = "6h"
    DAY = "1d"

    @property
    def seconds(self) -> int:
        return _seconds(self.value)


MAX_POINTS = 1440


class BadStep(ValueError):
    """A step the window cannot be cut into: the reason names what is allowed."""


def allowed_steps(window: StatsWindow) -> list[SeriesStep]:
    g = window.granularity.seconds
    return [
        s for s in SeriesStep
        if s.seconds % g == 0 and s.seconds <= window.seconds and window.seconds // s.seconds <= MAX_POINTS
    ]


def check_step(window: StatsWindow, step: SeriesStep) -> None:
    allowed = allowed_steps(window)
    if step not in allowed:
        raise BadStep(f"step {step.value!r} does not fit window {window.value!r}; "
                      f"allowed: {', '.join(s.value for s in allowed)}")


def bucket_starts(window: StatsWindow, now: float) -> list[int]:
    """The starts of the window's buckets, oldest first."""
    g = window.granularity
    last = g.start(now)
    count = window.seconds // g.seconds
    return [last - (count - 1 - i) * g.seconds for i in range(count)]
