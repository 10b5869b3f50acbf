"""One replica's statistics: the span processor, the store its tallies are flushed into
(about every second, by `run`, the task the ingress replica starts) and the figures read
back for a window."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from chorus.telemetry.stats.histogram import percentile
from chorus.telemetry.stats.models import FiguresOut, PointEngineOut, PointOut, SeriesOut, StatsOut, TimingOut
from chorus.telemetry.stats.processor import StatsProcessor
from chorus.telemetry.stats.store import StatsStore, open_stats_store
from chorus.telemetry.stats.tally import ENGINE, KEY, PERSONALITY, Kind, Tally
from chorus.telemetry.stats.windows import SeriesStep, StatsWindow, bucket_starts, check_step

log = logging.getLogger(__name__)

FLUSH_S = 1.0


class Statistics:
    def __init__(self, store: StatsStore, clock: Callable[[], float] = time.time) -> None:
        self.processor = StatsProcessor()
        self.store = store
        self._clock = clock
        # One flush at a time: a reader's flush and the periodic one never interleave.
        self._flushing = asyncio.Lock()

    @classmethod
    def open(cls, redis_url: str | None) -> Statistics:
        return cls(open_stats_store(redis_url))

    async def flush(self) -> None:
        async with self._flushing:
            pending = self.processor.take()
            if not pending:
                return
            try:
                await self.store.add(pending)
            except Exception:
                # Kept for the next flush. Redis unreachable must not lose the figures; the
                # one ambiguous case (EXEC sent, answer lost) may count a second twice.
                self.processor.put_back(pending)
                raise

    async def run(self, stop: asyncio.Event) -> None:
        """Flush about every second until `stop`, then once more."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), FLUSH_S)
            except TimeoutError:
                pass
            try:
                await self.flush()
            except Exception as err:
                log.warning("statistics not stored yet (kept for the next flush): %s", err)
        await self.store.close()

    async def _buckets(self, window: StatsWindow) -> tuple[list[int], list[Tally]]:
        await self.flush()  # this replica's latest figures too, not only what was flushed
        starts = bucket_starts(window, self._clock())
        return starts, await self.store.read(window.granularity, starts)

    async def window(self, window: StatsWindow) -> StatsOut:
        starts, buckets = await self._buckets(window)
        total = Tally()
        for b in buckets:
            total.then(b)
        return StatsOut(window=window.value, since=_utc(starts[0]),
                        engines=_figures(total, ENGINE), personalities=_figures(total, PERSONALITY),
                        keys=_figures(total, KEY))

    async def series(self, window: StatsWindow, step: SeriesStep) -> SeriesOut:
        check_step(window, step)
        starts, buckets = await self._buckets(window)
        per = step.seconds // window.granularity.seconds
        points = []
        for i in range(0, len(buckets), per):
            part = Tally()
            for b in buckets[i:i + per]:
                part.then(b)
            engines = {
                engine: PointEngineOut(
                    requests=round(m.get("requests", 0)),
                    p50=percentile(_hist(m, "lat"), 0.5), p95=percentile(_hist(m, "lat"), 0.95),
                )
                for engine, m in sorted(part.subjects(ENGINE).items())
            }
            points.append(PointOut(start=_utc(starts[i]), engines=engines))
        return SeriesOut(window=window.value, step=step.value, since=_utc(starts[0]), points=points)


def _utc(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


def _hist(metrics: dict[str, float], series: str) -> dict[int, float]:
    prefix = f"{series}:h:"
    return {int(m[len(prefix):]): v for m, v in metrics.items() if m.startswith(prefix)}


def _by(metrics: dict[str, float], prefix: str) -> dict[str, int]:
    return {m[len(prefix):]: round(v) for m, v in sorted(metrics.items()) if m.startswith(prefix) and v}


def _timing(total: Tally, kind: Kind, subject: str, metrics: dict[str, float], series: str) -> TimingOut:
    n = metrics.get(f"{series}:n", 0)
    hist = _hist(metrics, series)
    return TimingOut(avg=metrics[f"{series}:sum"] / n if n else None, ema=total.ema(kind, subject, series),
                     p50=percentile(hist, 0.5), p95=percentile(hist, 0.95), p99=percentile(hist, 0.99))


def _figures(total: Tally, kind: Kind) -> dict[str, FiguresOut]:
    out = {}
    for subject, m in sorted(total.subjects(kind).items()):
        requests, successes = round(m.get("requests", 0)), round(m.get("successes", 0))
        audio = m.get("audio_s", 0.0)
        out[subject] = FiguresOut(
            requests=requests, successes=successes, success_rate=successes / requests if requests else None,
            failures=_by(m, "fail:"), error_types=_by(m, "err:"), skipped=round(m.get("skipped", 0)),
            latency_ms=_timing(total, kind, subject, m, "lat"),
            time_to_first_audio_ms=_timing(total, kind, subject, m, "ttfa"),
            characters=round(m.get("chars", 0)), audio_seconds=audio,
            rtf=m.get("synth_s", 0.0) / audio if audio else None,
            cache_hits=round(m.get("cache_hits", 0)), fallbacks_to=_by(m, "fb:"), verification=_by(m, "verify:"),
        )
    return out
