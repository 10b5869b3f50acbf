"""Replica counts for `GET /v1/providers`: read from a source (Serve's controller in the
Ingress) at most once per interval however often asked, the last counts kept when a read
fails, and shown per engine."""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path

import httpx
import pytest

from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from chorus.speech.replicas import ReplicaCount, Replicas
from tests.support.engine_handles import LocalHandle, ScriptedEngine


class Controller:
    """Counts like Serve's, answering in a worker thread; `fail` makes the next reads raise."""

    def __init__(self) -> None:
        self.reads = 0
        self.fail = False
        self.threads: set[str] = set()
        self.states = {"RUNNING": 2, "STARTING": 1}

    def __call__(self) -> dict[str, ReplicaCount]:
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        if self.fail:
            raise RuntimeError("controller restarting")
        return {"piper": ReplicaCount.from_states(self.states)}


async def test_counts_are_read_once_per_interval_off_the_loop() -> None:
    controller = Controller()
    replicas = Replicas(controller, refresh_s=60)
    first = await asyncio.gather(*(replicas.counts() for _ in range(20)))
    assert all(counts == {"piper": ReplicaCount(running=2, starting=1)} for counts in first)
    assert controller.reads == 1 and threading.main_thread().name not in controller.threads


async def test_a_failed_read_keeps_the_last_counts(caplog: pytest.LogCaptureFixture) -> None:
    controller = Controller()
    replicas = Replicas(controller, refresh_s=0)
    assert (await replicas.counts())["piper"].running == 2
    controller.fail, controller.states = True, {"RUNNING": 5}
    caplog.set_level(logging.WARNING, logger="chorus.speech.replicas")
    await replicas.counts()  # starts a read that fails
    # The read has finished once it says so (the warning is its last step but one, no await between).
    deadline = asyncio.get_running_loop().time() + 5
    while "replica counts unavailable: controller restarting" not in caplog.text:
        assert asyncio.get_running_loop().time() < deadline, "the failing read never finished"
        await asyncio.sleep(0.01)
    assert (await replicas.counts())["piper"].running == 2 and controller.reads >= 2
    controller.fail = False
    for _ in range(50):  # the next read after a failure is not held back
        if (await replicas.counts())["piper"].running == 5:
            break
        await asyncio.sleep(0.01)
    assert (await replicas.counts())["piper"].running == 5


def test_serves_replica_states_are_summed_into_three() -> None:
    states = {"RUNNING": 3, "STARTING": 1, "UPDATING": 1, "RECOVERING": 1, "STOPPING": 2, "STOPPED": 4}
    assert ReplicaCount.from_states(states) == ReplicaCount(running=3, starting=3, stopping=2)


@pytest.mark.parametrize("source", [None, Controller()], ids=["outside Serve", "in Serve"])
async def test_providers_show_each_engines_replicas(tmp_path: Path, source: Controller | None) -> None:
    (tmp_path / "personalities").mkdir()
    config = IngressConfig(personalities={"directory": tmp_path / "personalities"}, samples={"directory": tmp_path / "s"},
                           timeouts={"piper": 5})
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper"))}), replicas=Replicas(source))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)), base_url="http://127.0.0.1") as c:
        (piper,) = (await c.get("/v1/providers")).json()["providers"]
    assert piper["replicas"] == (None if source is None else {"running": 2, "starting": 1, "stopping": 0})
