"""A replica dying under a call: the call goes once more to the deployment (a live
replica), a stream resumes without repeating what was heard, a second death and an
engine's own errors are left to the router (chorus.ingress.handles)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from ray.exceptions import ActorDiedError

from chorus.ingress.handles import RetryingHandle
from deployments.base import EngineFailedError


class FakeResponse:
    def __init__(self, outcome: Callable[[], Any]) -> None:
        self.outcome = outcome
        self.cancelled = False

    def __await__(self) -> Any:
        async def result() -> Any:
            return self.outcome()

        return result().__await__()

    def cancel(self) -> None:
        self.cancelled = True


class FakeStream:
    """Chunks `chunks` (one per sentence), raising `dies_after` chunks in if given."""

    def __init__(self, chunks: list[str], dies_after: int | None) -> None:
        self.gen = self._run(chunks, dies_after)

    @staticmethod
    async def _run(chunks: list[str], dies_after: int | None) -> AsyncIterator[str]:
        for i, chunk in enumerate(chunks):
            if i == dies_after:
                raise ActorDiedError()
            yield chunk
        if dies_after == len(chunks):
            raise ActorDiedError()

    async def __anext__(self) -> str:
        return await self.gen.__anext__()

    def cancel(self) -> None:
        pass


class Replicas:
    """A deployment whose calls, in order, meet the given fates (None: a healthy replica)."""

    def __init__(self, *fates: Any) -> None:
        self.fates = list(fates)
        self.calls = 0

    def _fate(self) -> Any:
        self.calls += 1
        return self.fates.pop(0) if self.fates else None

    @property
    def synthesize(self) -> Any:
        outer = self

        class Method:
            def remote(self, request: str) -> FakeResponse:
                fate = outer._fate()

                def outcome() -> str:
                    if fate is not None:
                        raise fate
                    return f"audio of {request}"

                return FakeResponse(outcome)

        return Method()

    @property
    def stream(self) -> Any:
        outer = self

        class Method:
            def remote(self, request: str) -> FakeStream:
                return FakeStream(request.split(". "), outer._fate())

        return Method()

    def options(self, *, stream: bool) -> Replicas:
        return self


async def test_a_call_whose_replica_died_is_sent_once_more() -> None:
    replicas = Replicas(ActorDiedError())
    assert await RetryingHandle(replicas).synthesize.remote("hi") == "audio of hi"
    assert replicas.calls == 2


async def test_a_second_death_and_engine_errors_are_the_routers() -> None:
    replicas = Replicas(ActorDiedError(), ActorDiedError())
    with pytest.raises(ActorDiedError):
        await RetryingHandle(replicas).synthesize.remote("hi")
    assert replicas.calls == 2
    replicas = Replicas(EngineFailedError("broken voice"))
    with pytest.raises(EngineFailedError):
        await RetryingHandle(replicas).synthesize.remote("hi")
    assert replicas.calls == 1


@pytest.mark.parametrize("dies_after", [0, 1, 2, 3])
async def test_a_stream_resumes_where_its_replica_died(dies_after: int) -> None:
    replicas = Replicas(dies_after)
    stream = RetryingHandle(replicas).options(stream=True).stream.remote("One. Two. Three")
    assert [chunk async for chunk in stream] == ["One", "Two", "Three"]  # each sentence once
    assert replicas.calls == 2


async def test_a_stream_dies_at_most_once() -> None:
    stream = RetryingHandle(Replicas(1, 1)).options(stream=True).stream.remote("One. Two. Three")
    with pytest.raises(ActorDiedError):
        [chunk async for chunk in stream]
