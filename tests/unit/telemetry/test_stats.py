"""Statistics from spans (chorus.telemetry.stats): a span processor fed hand-made spans
(tests/support/stat_spans.py), its figures in this process's memory and in a real `redis-server`
shared by two "replicas", read back by a third (a restart), and the HTTP routes."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from typing import Any

import pytest

from chorus.telemetry.stats import histogram
from chorus.telemetry.stats.ema import ALPHA
from chorus.telemetry.stats.models import StatsOut
from chorus.telemetry.stats.service import Statistics
from chorus.telemetry.stats.store import MemoryStore, RedisStore
from chorus.telemetry.stats.windows import StatsWindow
from tests.support.ingress_app import Api
from tests.support.redis_server import command, redis_server
from tests.support.stat_spans import SCRIPT, Said, SpanMaker, Try

NOW = 1_800_000_030.0  # 30 s into a minute


class Clock:
    def __init__(self, t: float = NOW) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def memory_stats(clock: Clock | None = None) -> tuple[Statistics, SpanMaker]:
    clock = clock or Clock()
    stats = Statistics(MemoryStore(clock), clock)
    return stats, SpanMaker(stats.processor)


def play(maker: SpanMaker, script: list[Said], end_s: float = NOW - 5) -> None:
    for i, said in enumerate(script):
        maker.say(said, end_s + i * 0.001)


def sequential_ema(xs: list[float]) -> float:
    e = xs[0]
    for x in xs[1:]:
        e = ALPHA * x + (1 - ALPHA) * e
    return e


def check_script_figures(out: StatsOut) -> None:
    """The exact figures of tests/stat_spans.SCRIPT."""
    piper, google = out.engines["piper"], out.engines["google_tts"]
    assert (piper.requests, piper.successes, piper.skipped) == (4, 2, 1)
    assert piper.success_rate == 0.5
    assert piper.failures == {"failed": 1, "unavailable": 1}
    assert piper.error_types == {"EngineUnavailableError": 1, "TextTooLongError": 1}
    assert piper.fallbacks_to == {"google_tts": 2}  # unavailable, then skipped: both moved on to Google
    assert (piper.characters, piper.cache_hits) == (15, 1)
    # ann's utterance came from the cache: it counts for piper, but not in how fast piper is.
    assert piper.audio_seconds == pytest.approx(2.0) and piper.rtf == pytest.approx(0.5)
    assert piper.latency_ms.avg == pytest.approx(100) and piper.latency_ms.ema == pytest.approx(100)
    assert piper.time_to_first_audio_ms.avg is None
    assert (google.requests, google.successes, google.skipped) == (2, 1, 0)
    assert google.failures == {"timeout": 1} and google.error_types == {"EngineTimeoutError": 1}
    assert google.fallbacks_to == {} and google.characters == 12 and google.rtf == pytest.approx(0.2)
    assert google.time_to_first_audio_ms.avg is None and google.time_to_first_audio_ms.p50 is None

    joe, ann = out.personalities["joe"], out.personalities["ann"]
    assert (joe.requests, joe.successes, joe.failures) == (3, 2, {"bad_input": 1})
    assert joe.characters == 22 and joe.fallbacks_to == {"google_tts": 1}
    assert joe.latency_ms.avg == pytest.approx(220) and joe.latency_ms.ema == pytest.approx(140)
    assert joe.audio_seconds == pytest.approx(5.0) and joe.rtf == pytest.approx(1.6 / 5)
    assert (ann.requests, ann.successes, ann.success_rate) == (2, 1, 0.5)
    assert ann.failures == {"failed": 1} and ann.error_types == {"EnginesFailed": 1}
    assert (ann.characters, ann.cache_hits, ann.fallbacks_to) == (5, 1, {"google_tts": 1})
    assert ann.time_to_first_audio_ms.avg == pytest.approx(40)


# --- the processor, in memory --------------------------------------------------------------


async def test_a_scripted_sequence_gives_exact_figures() -> None:
    stats, maker = memory_stats()
    play(maker, SCRIPT)
    out = await stats.window(StatsWindow.FIVE_MINUTES)
    check_script_figures(out)
    assert set(out.engines) == {"piper", "google_tts"} and set(out.personalities) == {"joe", "ann"}


async def test_each_key_counts_the_utterances_it_asked_for() -> None:
    stats, maker = memory_stats()
    maker.say(Said("joe", "ok", [Try("piper", "ok", characters=5)], engine="piper", characters=5, key="app"), NOW - 9)
    maker.say(Said("ann", "ok", [Try("piper", "ok", characters=7)], engine="piper", characters=7, key="app",
                   ttfa_ms=80), NOW - 8)
    maker.say(Said("joe", "failed", [Try("piper", "failed")], key="ops", error_type="AllEnginesFailed"), NOW - 7)
    maker.say(Said("joe", "ok", [Try("piper", "ok", characters=3)], engine="piper", characters=3), NOW - 6)
    out = await stats.window(StatsWindow.FIVE_MINUTES)
    app, ops = out.keys["app"], out.keys["ops"]
    assert (app.requests, app.successes, app.characters, app.time_to_first_audio_ms.p50 is not None) == (2, 2, 12, True)
    assert (ops.requests, ops.successes, ops.failures, ops.error_types) == (1, 0, {"failed": 1}, {"AllEnginesFailed": 1})
    assert set(out.keys) == {"app", "ops"}  # the keyless utterance counts for no key


async def test_a_cache_hit_counts_for_the_engine_but_not_in_its_speed() -> None:
    """The engine did no work for a hit: its latency, first audio and real-time factor are
    those of what it synthesized; the personality got the audio either way."""
    stats, maker = memory_stats()
    maker.say(Said("joe", "ok", [Try("piper", "ok", 100, 10, 2.0, 0.5, cache="miss")], ms=110, characters=10,
                   engine="piper", ttfa_ms=90, cache="miss"), NOW - 9)
    maker.say(Said("joe", "ok", [Try("piper", "ok", 2, 10, 2.0, 0.0, cache="hit")], ms=3, characters=10,
                   engine="piper", ttfa_ms=2, cache="hit"), NOW - 8)
    out = await stats.window(StatsWindow.FIVE_MINUTES)
    piper, joe = out.engines["piper"], out.personalities["joe"]
    assert (piper.requests, piper.successes, piper.characters, piper.cache_hits) == (2, 2, 20, 1)
    assert piper.latency_ms.avg == pytest.approx(100) and piper.latency_ms.ema == pytest.approx(100)
    assert piper.time_to_first_audio_ms.avg == pytest.approx(90)
    assert piper.audio_seconds == pytest.approx(2.0) and piper.rtf == pytest.approx(0.5)
    assert (joe.requests, joe.cache_hits, joe.audio_seconds) == (2, 1, pytest.approx(4.0))
    assert joe.latency_ms.avg == pytest.approx(56.5) and joe.time_to_first_audio_ms.avg == pytest.approx(46)


async def test_attempts_wait_for_their_utterance_and_count_once() -> None:
    stats, maker = memory_stats()
    maker.say(SCRIPT[1], NOW - 5)
    assert (await stats.window(StatsWindow.HOUR)).engines["piper"].requests == 1
    # Flushed: nothing is counted twice, nothing buffered stays behind.
    assert (await stats.window(StatsWindow.HOUR)).engines["piper"].requests == 1
    assert stats.processor._attempts == {}


async def test_percentiles_are_within_one_histogram_bucket_of_exact() -> None:
    stats, maker = memory_stats()
    rng = random.Random(12)
    latencies = [rng.lognormvariate(math.log(300), 0.8) for _ in range(500)]
    for i, ms in enumerate(latencies):
        maker.say(Said("joe", "ok", [Try("piper", "ok", ms, 3)], ms=ms + 1, characters=3, engine="piper"),
                  NOW - 20 + i * 0.01)
    lat = (await stats.window(StatsWindow.FIVE_MINUTES)).engines["piper"].latency_ms
    ordered = sorted(latencies)
    for q, estimate in ((0.5, lat.p50), (0.95, lat.p95), (0.99, lat.p99)):
        exact = ordered[math.ceil(q * len(ordered)) - 1]
        assert estimate is not None
        assert histogram.bucket(estimate) == histogram.bucket(exact), (q, estimate, exact)
    assert lat.avg == pytest.approx(sum(latencies) / len(latencies))


async def test_the_ema_is_exact_across_flushes_and_buckets() -> None:
    stats, maker = memory_stats()
    latencies = [100.0, 200.0, 50.0, 400.0, 80.0]
    # Across a minute boundary, with a flush in the middle.
    for i, ms in enumerate(latencies):
        maker.say(Said("joe", "ok", [Try("piper", "ok", ms, 1)], ms=ms, characters=1, engine="piper"),
                  NOW - 45 + 10 * i)
        if i == 2:
            await stats.flush()
    out = await stats.window(StatsWindow.FIVE_MINUTES)
    assert out.engines["piper"].latency_ms.ema == pytest.approx(sequential_ema(latencies), rel=1e-12)


async def test_windows_cut_off_at_their_buckets() -> None:
    clock = Clock()
    stats, maker = memory_stats(clock)
    one = [Said("joe", "ok", [Try("piper", "ok", 10, 1)], ms=10, characters=1, engine="piper")]
    play(maker, one, NOW - 10 * 60)  # ten minutes ago
    play(maker, one, NOW - 60)  # one minute ago
    requests = {w: (await stats.window(w)).personalities["joe"].requests for w in StatsWindow}
    assert requests == {StatsWindow.FIVE_MINUTES: 1, StatsWindow.HOUR: 2, StatsWindow.DAY: 2, StatsWindow.MONTH: 2}
    out = await stats.window(StatsWindow.FIVE_MINUTES)
    assert out.since.timestamp() == NOW - 30 - 4 * 60  # the current minute and the four before it
    clock.t += 2 * 3600
    assert (await stats.window(StatsWindow.HOUR)).personalities == {}
    assert (await stats.window(StatsWindow.DAY)).personalities["joe"].requests == 2
    clock.t += 40 * 24 * 3600
    assert (await stats.window(StatsWindow.MONTH)).personalities == {}


async def test_a_failed_flush_keeps_the_figures_for_the_next() -> None:
    class Flaky(MemoryStore):
        down = True

        async def add(self, tallies: Any) -> None:
            if self.down:
                raise ConnectionError("store down")
            await super().add(tallies)

    store = Flaky(Clock())
    stats = Statistics(store, Clock())
    play(SpanMaker(stats.processor), SCRIPT)
    with pytest.raises(ConnectionError):
        await stats.flush()
    store.down = False
    check_script_figures(await stats.window(StatsWindow.HOUR))


# --- shared through Redis ----------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture
def redis(redis_url: str) -> str:
    command(int(redis_url.rsplit(":", 1)[1].split("/")[0]), "FLUSHALL")
    return redis_url


async def test_two_replicas_add_up_exactly_in_redis_and_a_restart_reads_the_same(redis: str) -> None:
    clock = Clock()
    replicas = [Statistics(RedisStore(redis), clock) for _ in range(2)]
    makers = [SpanMaker(r.processor) for r in replicas]
    # Interleaved: each replica speaks every other utterance, and each flushes its own share.
    for i, said in enumerate(SCRIPT):
        makers[i % 2].say(said, NOW - 5 + i * 0.001)
    for replica in replicas:
        await replica.flush()
    seen = [await r.window(StatsWindow.FIVE_MINUTES) for r in replicas]
    check_script_figures(seen[0])
    assert seen[1] == seen[0]
    restarted = Statistics(RedisStore(redis), clock)
    assert await restarted.window(StatsWindow.FIVE_MINUTES) == seen[0]
    month = await restarted.window(StatsWindow.MONTH)  # the hour buckets hold the same
    assert (month.engines, month.personalities) == (seen[0].engines, seen[0].personalities)
    for r in [*replicas, restarted]:
        await r.store.close()


async def test_the_ema_chains_across_replicas_in_flush_order(redis: str) -> None:
    clock = Clock()
    a, b = (Statistics(RedisStore(redis), clock) for _ in range(2))
    latencies = {a: [100.0, 300.0], b: [40.0, 900.0, 120.0]}
    for replica, xs in latencies.items():
        maker = SpanMaker(replica.processor)
        for i, ms in enumerate(xs):
            maker.say(Said("joe", "ok", [Try("piper", "ok", ms, 1)], ms=ms, characters=1, engine="piper"),
                      NOW - 5 + i * 0.001)
        await replica.flush()
    out = await a.window(StatsWindow.HOUR)
    assert out.engines["piper"].latency_ms.ema == pytest.approx(sequential_ema(latencies[a] + latencies[b]), rel=1e-12)
    assert out.personalities["joe"].requests == 5
    for r in (a, b):
        await r.store.close()


async def test_verification_counts_each_attempt_heard_by_its_verdict() -> None:
    stats, maker = memory_stats()
    play(maker, [
        Said("joe", "ok", [Try("xtts_v2", "failed", verify="failed"), Try("piper", "ok", 50, 5, 1.0, 0.1, verify="passed")],
             engine="piper"),
        Said("joe", "ok", [Try("piper", "ok", 50, 5, 1.0, 0.1, verify="passed")], engine="piper"),
        Said("ann", "ok", [Try("piper", "ok", 50, 5, 1.0, 0.1, verify="unverified")], engine="piper"),
        Said("ann", "ok", [Try("piper", "ok", 50, 5, 1.0, 0.1)], engine="piper"),  # ann's verify off then
    ])
    out = await stats.window(StatsWindow.FIVE_MINUTES)
    assert out.engines["xtts_v2"].verification == {"failed": 1}
    assert out.engines["piper"].verification == {"passed": 2, "unverified": 1}
    assert out.personalities["joe"].verification == {"failed": 1, "passed": 2}
    assert out.personalities["ann"].verification == {"unverified": 1}


# --- the HTTP API ----------------------------------------------------------------------------


async def test_stats_over_http_in_the_documented_shape(api: Api) -> None:
    import time

    play(SpanMaker(api.replica.stats.processor), SCRIPT, time.time() - 1)
    r = await api.client.get("/v1/stats", params={"window": "5m"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["window"] == "5m" and "since" in body
    piper = body["engines"]["piper"]
    assert set(piper) >= {"requests", "successes", "successRate", "failures", "latencyMs", "timeToFirstAudioMs",
                          "characters", "audioSeconds", "rtf", "cacheHits", "fallbacksTo"}
    assert set(piper["latencyMs"]) == {"avg", "ema", "p50", "p95", "p99"}
    assert (piper["requests"], piper["fallbacksTo"], piper["failures"]) == (4, {"google_tts": 2},
                                                                            {"failed": 1, "unavailable": 1})
    assert body["personalities"]["joe"]["characters"] == 22

    r = await api.client.get("/v1/stats/series", params={"window": "1h", "step": "5m"})
    assert r.status_code == 200, r.text
    series = r.json()
    assert (series["window"], series["step"], len(series["points"])) == ("1h", "5m", 12)
    last = series["points"][-1]["engines"]
    assert last["piper"]["requests"] == 4 and last["google_tts"]["requests"] == 2
    assert last["piper"]["p50"] is not None and set(last["piper"]) == {"requests", "p50", "p95"}
    assert all(p["engines"] == {} for p in series["points"][:-2])


@pytest.mark.parametrize("path,params,allowed", [
    ("/v1/stats", {"window": "2h"}, ["'5m'", "'1h'", "'24h'", "'30d'"]),
    ("/v1/stats/series", {"window": "1h", "step": "2m"}, ["'1m'", "'5m'", "'15m'", "'1h'"]),
    ("/v1/stats/series", {"window": "30d", "step": "1m"}, ["1h", "6h", "1d"]),
    ("/v1/stats/series", {"window": "5m", "step": "1h"}, ["1m", "5m"]),
])
async def test_a_bad_window_or_step_is_422_naming_the_allowed_values(api: Api, path: str, params: dict[str, str],
                                                                     allowed: list[str]) -> None:
    r = await api.client.get(path, params=params)
    assert r.status_code == 422, r.text
    for value in allowed:
        assert value in r.text


async def test_an_unreachable_store_is_503_and_the_figures_wait(api: Api) -> None:
    import socket
    import time

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = RedisStore(f"redis://127.0.0.1:{s.getsockname()[1]}")
    memory, api.replica.stats.store = api.replica.stats.store, dead
    play(SpanMaker(api.replica.stats.processor), SCRIPT, time.time() - 1)
    r = await api.client.get("/v1/stats", params={"window": "5m"})
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "stats_unavailable" and r.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in r.text
    api.replica.stats.store = memory  # back: nothing was lost meanwhile
    r = await api.client.get("/v1/stats", params={"window": "5m"})
    assert r.json()["engines"]["piper"]["requests"] == 4


async def test_a_stream_carried_on_by_another_engine_counts_for_both(api: Api) -> None:
    """The request's spans, the carrying engine's included, end under its speech span: the
    engine that stopped counts a failure and a fallback, the one that carried on a success."""
    from deployments.base import EngineFailedError

    api.piper.error, api.piper.fail_at = EngineFailedError("crashed", "piper"), 1
    body = {"text": "One sentence here. Another one there.", "stream": True, "format": "pcm"}
    r = await api.client.post("/v1/personalities/joe/speech", json=body)
    assert r.status_code == 200 and len(api.google.requests) == 1
    await api.replica.stats.flush()
    stats = (await api.client.get("/v1/stats", params={"window": "5m"})).json()
    piper, google = stats["engines"]["piper"], stats["engines"]["google_tts"]
    assert (piper["requests"], piper["failures"], piper["fallbacksTo"]) == (1, {"failed": 1}, {"google_tts": 1})
    assert (google["requests"], google["successes"]) == (1, 1)
    assert stats["personalities"]["joe"]["requests"] == 1
