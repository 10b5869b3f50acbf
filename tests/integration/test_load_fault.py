"""Load with a fault: 400 requests at concurrency 8 (speech, streams, OpenAI's route) while a
Piper replica actor is killed. With 2 replicas configured, every request must succeed."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.load import LoadRun, completed, references, run_load, summary
from tests.support.replica_fault import back_to, kill_replica, replica_names
from tests.support.serve_logs import lines_saying

pytestmark = pytest.mark.ray

REQUESTS, CONCURRENCY = 400, 8
# What chorus.ingress.handles logs when an engine replica dies under a call or a stream.
RETRIES = ("sending it once more", "resuming once")
TWO_PIPERS = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp) -> ChorusApp:
    chorus.deploy(engines={"piper": {"timeout_s": 30}}, deployments={"piper": TWO_PIPERS})
    chorus.write("joe", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
    chorus.wait_for("joe")
    return chorus


async def test_every_request_succeeds_while_a_piper_replica_is_killed(app: ChorusApp) -> None:
    assert len(replica_names("piper")) == 2
    reference = await references(app.url, "joe")
    retried = [lines_saying(p) for p in RETRIES]
    fault: dict[str, float] = {}

    async def kill_a_quarter_in(run: LoadRun) -> None:
        await completed(run, REQUESTS // 4)
        fault["killed"] = time.monotonic()
        before = await asyncio.to_thread(kill_replica, "piper")
        fault["back"] = await back_to("piper", 2, before)

    run = await run_load(app.url, "joe", requests=REQUESTS, concurrency=CONCURRENCY, during=kill_a_quarter_in,
                         reference=reference)

    assert len(run.outcomes) == REQUESTS
    assert {o.kind for o in run.outcomes} == {"speech", "stream", "openai"}
    assert [f"{o.kind}: {o.error}" for o in run.failed] == []
    # Requests were in flight on the killed replica, and the ingress sent them again: without
    # its retry they would have failed (tests audit D5).
    again = [lines_saying(p) - before for p, before in zip(RETRIES, retried, strict=True)]
    assert sum(again) >= 1, again
    # The kill happened mid-run: requests were sent while Serve replaced the replica, and after.
    during = run.latencies(fault["killed"], fault["back"])
    after = run.latencies(fault["back"])
    assert during and after, (len(during), len(after))
    print(f"\nbefore the kill {summary(run.latencies(end=fault['killed']))}; until replaced {summary(during)}; "
          f"after {summary(after)}")
