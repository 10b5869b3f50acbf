"""Rate limits and character budgets at the HTTP layer, without Ray: `create_app` over
in-process engines (as in tests/unit/ingress/test_http.py), counting in this process's memory and
in a real `redis-server` started here. Concurrent requests must be admitted exactly up to
the limit, the rest refused with 429, `Retry-After` and the limit named."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chorus.app import AppArgs
from chorus.auth.keys import KeyEntry
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.quotas.callers import Charge, LimitName, QuotaExceeded, Window, _utc_periods
from chorus.speech.board import EngineBoard
from deployments.base import EngineFailedError, Health
from tests.support import recordings as rec
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine
from tests.support.redis_server import command, redis_server

KEY = "chorus_test-key-0123456789abcdef"
JOE = {"activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": {}}}
TEN = "Ten chars."  # every speech request below says exactly this


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
def storage(request: pytest.FixtureRequest) -> str | None:
    """Where the app counts: None (its memory) or a Redis URL, emptied for each test."""
    if request.param == "memory":
        return None
    url = request.getfixturevalue("redis_url")
    command(redis_port(url), "FLUSHALL")
    return url


def redis_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


class Quota:
    """An app with the personality `joe` (scripted Piper) and, given `key_limits`, keys on
    with one `speak` key carrying them."""

    def __init__(self, root: Path, storage: str | None, key_limits: dict[str, Any] | None = None,
                 **quotas: Any) -> None:
        (root / "personalities").mkdir()
        (root / "personalities" / "joe.yaml").write_text(yaml.safe_dump(personality("joe", JOE)))
        self.piper = ScriptedEngine("piper", languages=("en",))
        config = IngressConfig(
            personalities={"directory": root / "personalities"}, samples={"directory": root / "samples"},
            timeouts={"piper": 5}, auth={} if key_limits is not None else None,
            redis_url=storage, quotas=quotas, cache={"enabled": False},  # counting, not caching
        )
        self.replica = Replica(config, EngineBoard({"piper": LocalHandle(self.piper)}))
        if key_limits is not None:
            # The key sources fill the ring in a replica; here the test does.
            assert self.replica.keys is not None
            self.replica.keys.replace("test", [KeyEntry(name="alice", key=KEY, scopes=["speak", "clone"],
                                                       **key_limits).api_key()])
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.replica)),
                                        base_url="http://127.0.0.1", headers={"x-api-key": KEY})

    async def speak(self, text: str = TEN) -> httpx.Response:
        return await self.client.post("/v1/personalities/joe/speech", json={"text": text})

    async def at_once(self, n: int, send: Any = None) -> list[httpx.Response]:
        return list(await asyncio.gather(*(send() if send else self.speak() for _ in range(n))))


@pytest.fixture
async def make(tmp_path: Path, storage: str | None) -> AsyncIterator[Any]:
    made: list[Quota] = []

    def factory(key_limits: dict[str, Any] | None = None, **quotas: Any) -> Quota:
        root = tmp_path / f"app-{len(made)}"
        root.mkdir()
        made.append(Quota(root, storage, key_limits, **quotas))
        return made[-1]

    yield factory
    for quota in made:
        await quota.client.aclose()


def refused(responses: list[httpx.Response], limit: LimitName) -> list[httpx.Response]:
    """The 429s, each checked: `Retry-After` in whole seconds, the limit named in the body."""
    out = [r for r in responses if r.status_code == 429]
    for r in out:
        assert int(r.headers["Retry-After"]) >= 1
        body = r.json()
        assert body["limit"]["name"] == limit.value, body
        assert body["limit"]["resets_in"] == int(r.headers["Retry-After"])
        assert r.headers["X-RateLimit-Remaining"] == str(body["limit"]["remaining"])
    return out


def ok(responses: list[httpx.Response]) -> list[httpx.Response]:
    return [r for r in responses if r.status_code == 200]


async def test_a_keys_rate_admits_exactly_its_limit_under_concurrency(make: Any, storage: str | None) -> None:
    api = make({"rate_limit": "5/minute"})
    responses = await api.at_once(9)
    assert len(ok(responses)) == 5, [(r.status_code, r.text[:300]) for r in responses]
    out = refused(responses, LimitName.KEY_RATE)
    assert len(out) == 4 and all(r.json()["limit"]["remaining"] == 0 for r in out)
    assert re.fullmatch(r"API key 'alice' is over its key_rate limit of 5 requests per 1 minute; it resets in \d+ s",
                        out[0].json()["detail"]), out[0].json()["detail"]
    assert 55 <= int(out[0].headers["Retry-After"]) <= 60
    assert len(api.piper.requests) == 5  # the refused never reached an engine
    if storage is not None:  # counted in Redis, not in this process
        assert command(redis_port(storage), "DBSIZE") != b":0\r\n"


async def test_two_replicas_on_one_redis_share_a_keys_rate_exactly(tmp_path: Path, redis_url: str) -> None:
    """Two apps (each its own `Replica` and `Quotas`, as two ingress replicas have) on one
    Redis: requests alternate between them, and the limit holds for their sum, not for each."""
    command(redis_port(redis_url), "FLUSHALL")
    replicas = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        replicas.append(Quota(tmp_path / name, redis_url, {"rate_limit": "3/minute"}))
    a, b = replicas
    try:
        statuses = [(await api.speak()).status_code for api in (a, b, a, b, a)]
        assert statuses == [200, 200, 200, 429, 429]  # 2 + 1 admitted; the 4th refused on either
        assert (len(a.piper.requests), len(b.piper.requests)) == (2, 1)
    finally:
        for api in replicas:
            await api.client.aclose()


async def test_every_authenticated_route_counts_against_the_keys_rate(make: Any) -> None:
    api = make({"rate_limit": "3/minute"})
    statuses = [(await api.client.get(path)).status_code
                for path in ("/v1/personalities", "/v1/providers", "/v1/personalities/joe", "/v1/providers")]
    assert statuses == [200, 200, 200, 429]
    # Probes need no key, so no key's rate.
    assert (await api.client.get("/healthz")).status_code == 200


async def test_success_carries_the_tightest_limits_headers(make: Any) -> None:
    api = make({"rate_limit": "100/minute", "characters_per_day": 30})
    first = await api.speak()
    assert first.status_code == 200
    # Characters: 20 of 30 left is tighter than 99 of 100 requests.
    assert (first.headers["X-RateLimit-Limit"], first.headers["X-RateLimit-Remaining"]) == ("30", "20")
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
    assert abs(int(first.headers["X-RateLimit-Reset"]) - (midnight.timestamp() - time.time())) <= 2
    # A route without characters: the key's rate alone.
    listed = await api.client.get("/v1/personalities")
    assert (listed.headers["X-RateLimit-Limit"], listed.headers["X-RateLimit-Remaining"]) == ("100", "98")
    assert 1 <= int(listed.headers["X-RateLimit-Reset"]) <= 60


async def test_a_personalitys_rate_applies_with_keys_off_and_in_openais_shape(make: Any) -> None:
    api = make(personalityRateLimit="3/minute", personalityRateLimits={"bob": "1/minute"})
    responses = await api.at_once(5, lambda: api.client.post(
        "/v1/audio/speech", json={"model": "tts-1", "voice": "joe", "input": TEN}))
    assert len(ok(responses)) == 3
    out = refused(responses, LimitName.PERSONALITY_RATE)
    assert len(out) == 2
    error = out[0].json()["error"]
    assert error["code"] == "rate_limit_exceeded" and "personality 'joe'" in error["message"]
    assert out[0].json()["limit"]["limit"] == 3


async def test_a_daily_budget_is_exact_under_concurrency(make: Any) -> None:
    api = make({"characters_per_day": 100})
    responses = await api.at_once(13)
    assert len(ok(responses)) == 10
    out = refused(responses, LimitName.CHARACTERS_PER_DAY)
    assert len(out) == 3
    assert re.fullmatch(r"API key 'alice' is over its characters_per_day limit of 100 characters per UTC day "
                        r"\(10 asked, 0 left\); it resets in \d+ s", out[0].json()["detail"]), out[0].json()["detail"]
    assert out[0].json()["limit"]["resets_at"].startswith(
        (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00"))
    assert sum(len(r.text) for r in api.piper.requests) == 100
    # A refused request took nothing: one character still does not fit, none left over.
    assert (await api.speak("A")).status_code == 429


async def test_characters_no_engine_worked_on_are_given_back(make: Any) -> None:
    """An engine that fails the text, or none healthy to send it to: nothing was spent."""
    api = make({"characters_per_day": 30})
    api.piper.error = EngineFailedError("piper", "down")
    assert (await api.speak()).status_code == 503
    api.piper.error = None
    api.piper.healthy = Health(healthy=False, reason="no voice")
    await api.replica.board.refresh()
    assert (await api.speak()).status_code == 503
    api.piper.healthy = Health(healthy=True)
    await api.replica.board.refresh()
    statuses = [(await api.speak()).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]


async def test_a_client_that_leaves_pays_for_what_the_engine_was_sent(make: Any) -> None:
    """Security audit M-1: leaving once the engine has the text used to refund it all, so a
    budget never ran out however much engines worked."""
    api = make({"characters_per_day": 30})
    api.piper.delay_s = 5
    for _ in range(3):
        asked = len(api.piper.requests)
        leaving = asyncio.create_task(api.speak())
        while len(api.piper.requests) == asked:  # the engine has the text
            await asyncio.sleep(0.01)
        leaving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leaving
    api.piper.delay_s = 0
    after = await api.speak()
    assert after.status_code == 429 and refused([after], LimitName.CHARACTERS_PER_DAY)  # 30 of 30 were spent


async def test_a_monthly_budget_refuses_and_gives_the_days_reservation_back(make: Any) -> None:
    api = make({"characters_per_day": 30, "characters_per_month": 25})
    statuses = [(await api.speak()).status_code for _ in range(2)]
    third = await api.speak()  # fits the day (30 of 30), not the month (30 of 25)
    assert statuses == [200, 200]
    assert len(refused([third], LimitName.CHARACTERS_PER_MONTH)) == 1
    assert "10 asked, 5 left" in third.json()["detail"] and third.headers["X-RateLimit-Remaining"] == "5"
    assert third.json()["limit"]["resets_at"].endswith("-01T00:00:00+00:00")
    # The day's 10 were taken back: 20 + 5 fits both.
    last = await api.speak("abcde")
    assert last.status_code == 200, last.json()


async def test_a_refused_clone_reference_gives_its_characters_back(make: Any) -> None:
    api = make({"characters_per_day": 15})
    clone = await api.client.post("/v1/clone", data={"text": TEN, "provider": "xtts_v2"},
                                  files={"file": ("ref.wav", rec.minimal_wav(0.2), "audio/wav")})
    assert clone.status_code == 422, clone.text  # too short to clone from
    assert (await api.speak()).status_code == 200


def test_a_charge_gives_back_only_what_no_engine_took() -> None:
    """The characters refunded when an utterance raises: none once an engine took them all,
    all of them if the engine failed them, and a fallback engine's retake is not paid twice."""
    charge = Charge(12)
    assert charge.unsent() == 12
    charge.sent("piper", 12)
    assert charge.unsent() == 0
    charge.failed("piper", 12)
    assert charge.unsent() == 12
    charge.sent("google_tts", 5)
    charge.sent("azure_tts", 7)
    assert charge.unsent() == 5  # the most one engine took (7) is paid


@pytest.mark.parametrize(("now", "day_ends", "month_ends"), [
    ("2026-11-15T10:00:00", "2026-11-16", "2026-12-01"),
    ("2026-12-31T23:59:59", "2027-01-01", "2027-01-01"),
    ("2027-01-31T00:00:00", "2027-02-01", "2027-02-01"),
    ("2028-02-28T12:00:00", "2028-02-29", "2028-03-01"),
])
def test_budgets_end_with_the_utc_day_and_month(now: str, day_ends: str, month_ends: str) -> None:
    periods = _utc_periods(datetime.fromisoformat(now).replace(tzinfo=UTC))
    assert periods[LimitName.CHARACTERS_PER_DAY] == (now[:10], datetime.fromisoformat(day_ends).replace(tzinfo=UTC))
    assert periods[LimitName.CHARACTERS_PER_MONTH] == (now[:7], datetime.fromisoformat(month_ends).replace(tzinfo=UTC))


def test_the_redis_url_comes_from_the_environment_unless_given() -> None:
    args = AppArgs.model_validate({"personalities": {"directory": "/tmp/p"}})
    env = {"CHORUS_REDIS_URL": "redis://cache:6379/2"}
    assert args.with_environment(env).ingress_config().redis_url == "redis://cache:6379/2"
    assert args.with_environment({}).redis_url is None
    given = AppArgs.model_validate({"personalities": {"directory": "/tmp/p"}, "redis_url": "redis://mine:1"})
    assert given.with_environment(env).redis_url == "redis://mine:1"
    with pytest.raises(ValueError, match="redis://"):
        args.with_environment({"CHORUS_REDIS_URL": "cache:6379"})


async def test_an_unreachable_limits_store_fails_closed_with_503(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}"
    for name in ("limited", "unlimited"):
        (tmp_path / name).mkdir()
    limited = Quota(tmp_path / "limited", dead, {"rate_limit": "5/minute"})
    async with limited.client:
        r = await limited.speak()
        assert r.status_code == 503, r.text
        assert r.json()["code"] == "rate_limits_unavailable" and r.headers["Retry-After"] == "5"
        assert "unreachable" in r.json()["detail"] and "127.0.0.1" not in r.text
        assert limited.piper.requests == []  # nothing spoken that could not be counted
        assert (await limited.client.get("/healthz")).status_code == 200
    # A key with nothing to count is not held up by the store.
    unlimited = Quota(tmp_path / "unlimited", dead, {})
    async with unlimited.client:
        assert (await unlimited.speak()).status_code == 200


async def test_a_keys_requests_under_way_at_once_are_capped(make: Any) -> None:
    """Security audit H2 (what was left): no cap on one key's concurrent requests."""
    api = make({"max_concurrent": 2})
    api.piper.delay_s = 0.5
    responses = await api.at_once(4)
    assert sorted(r.status_code for r in responses) == [200, 200, 429, 429]
    (over, _) = [r for r in responses if r.status_code == 429]
    assert over.json()["limit"]["name"] == "concurrent" and over.headers["Retry-After"] == "1"
    assert over.json()["detail"] == ("API key 'alice' already has 2 requests under way on this replica, its most at "
                                     "once; retry in 1 s")
    api.piper.delay_s = 0
    assert (await api.speak()).status_code == 200  # a finished request frees its place


def a_window(limit: int = 10, remaining: int = 4, reset_in_s: float = 30.0,
             name: LimitName = LimitName.CHARACTERS_PER_DAY) -> Window:
    return Window(name=name, subject="ci", limit=limit, per="UTC day", remaining=remaining,
                  reset_at=time.time() + reset_in_s)


def test_the_tightest_window_is_the_least_share_left_not_the_fewest_left() -> None:
    roomy, tight = a_window(limit=100, remaining=20), a_window(limit=5, remaining=2)
    assert (roomy.share_left(), tight.share_left()) == (0.2, 0.4)
    assert min([tight, roomy], key=Window.share_left) is roomy


def test_a_window_that_has_reset_is_said_to_reset_in_a_second_not_zero() -> None:
    assert a_window(reset_in_s=-5).resets_in() == 1  # a client told 0 would retry at once
    assert a_window(reset_in_s=41.2).resets_in() == 42


def test_a_refusal_for_several_characters_says_how_many_were_asked_and_none_left() -> None:
    over = QuotaExceeded(a_window(limit=10, remaining=-3), asked=2)
    assert "(2 asked, 0 left)" in str(over)
    assert "asked" not in str(QuotaExceeded(a_window(limit=10, remaining=0), asked=1))


def test_a_failed_piece_gives_back_its_own_characters() -> None:
    charge = Charge(15)
    charge.sent("piper", 10)
    charge.sent("piper", 5)
    charge.failed("piper", 5)  # the second piece failed: the first was worked on
    assert charge.unsent() == 5


async def test_a_monthly_budget_alone_is_counted(make: Any) -> None:
    api = make({"characters_per_month": 25})  # no daily budget before it
    assert [(await api.speak()).status_code for _ in range(2)] == [200, 200]
    assert len(refused([await api.speak()], LimitName.CHARACTERS_PER_MONTH)) == 1


async def test_characters_not_given_back_to_an_unreachable_store_leave_the_first_error_standing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import limits

    from chorus.quotas.callers import Quotas, QuotasConfig, _Reservation

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        quotas = Quotas(QuotasConfig(), f"redis://127.0.0.1:{s.getsockname()[1]}")
    reservation = _Reservation(limits.RateLimitItemPerDay(30, 1), ("chorus", "characters_per_day", "alice", "x"), 10)
    await quotas.give_back([reservation])  # only called while another error is on its way out
    assert any("characters not given back" in r.getMessage() for r in caplog.records)
