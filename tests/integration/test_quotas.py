"""Rate limits and character budgets on the real Serve app: two ingress replicas counting
in one real `redis-server` started here, keys from a key file (`auth: {keysFile}`).
Concurrent requests spread over both replicas must be admitted exactly up to each limit."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
import yaml

from chorus.deploy import APP_NAME
from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.redis_server import redis_server
from tests.support.serve_logs import answered_by

pytestmark = pytest.mark.ray

JOE = {"activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": STEADY_PIPER}}
RATE_KEY = "chorus_rate-limited-key-0123456789"
BUDGET_KEY = "chorus_budgeted-key-0123456789ab"
RATE = 5  # requests per minute
BUDGET = 30  # characters per day
TEN = "Ten chars."


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChorusApp]:
    root = tmp_path_factory.mktemp("quotas")
    keys = root / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [
        {"name": "rate", "key": RATE_KEY, "scopes": ["speak"], "rateLimit": f"{RATE}/minute"},
        {"name": "budget", "key": BUDGET_KEY, "scopes": ["speak"], "charactersPerDay": BUDGET},
    ]}))
    with redis_server(root) as redis_url:
        two = {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}
        chorus.deploy(deployments={"Ingress": {"autoscaling_config": two}},
                      auth={"keysFile": str(keys)}, redis_url=redis_url)
        chorus.write("joe", JOE)
        _wait_for_joe(chorus)
        yield chorus


def _wait_for_joe(app: ChorusApp, timeout: float = 30) -> None:
    # The budget key has no rate limit, so polling spends nothing the tests count.
    deadline = time.monotonic() + timeout
    with app.client(headers={"x-api-key": BUDGET_KEY}) as c:
        while c.get("/v1/personalities/joe").status_code != 200:
            assert time.monotonic() < deadline, "joe never appeared (is the key file loaded?)"
            time.sleep(0.2)


def test_two_ingress_replicas_share_the_counters(app: ChorusApp) -> None:
    from ray import serve

    ingress = serve.status().applications[APP_NAME].deployments["Ingress"]
    assert ingress.replica_states.get("RUNNING") == 2


async def _at_once(app: ChorusApp, key: str, n: int) -> list[httpx.Response]:
    """n requests at once; they must have reached both replicas, or exactness across
    replicas was not shown (tests audit D3)."""
    ids = [f"{key[7:14]}-{uuid.uuid4().hex}" for _ in range(n)]
    async with httpx.AsyncClient(base_url=app.url, timeout=120, headers={"x-api-key": key}) as c:
        responses = list(await asyncio.gather(*(
            c.post("/v1/personalities/joe/speech", json={"text": TEN}, headers={"x-request-id": rid}) for rid in ids)))
    assert len(set(answered_by(ids).values())) == 2, "every request reached one replica"
    return responses


def _split(responses: list[httpx.Response], limit: str) -> tuple[int, int]:
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    for r in responses:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
            assert r.json()["limit"]["name"] == limit
    return statuses.count(200), statuses.count(429)


async def test_a_keys_rate_is_exact_across_replicas(app: ChorusApp) -> None:
    assert _split(await _at_once(app, RATE_KEY, RATE + 4), "key_rate") == (RATE, 4)


async def test_a_character_budget_is_exact_across_replicas(app: ChorusApp) -> None:
    fits = BUDGET // len(TEN)
    # Twelve at once, so that both replicas answer some (six all went to one, once in a CI run).
    assert _split(await _at_once(app, BUDGET_KEY, fits + 9), "characters_per_day") == (fits, 9)
