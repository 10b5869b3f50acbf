"""A replica dying under a call: the call goes once more to the deployment (a live
replica), a stream resumes without repeating what was heard, a second death and an
engine's own errors are left to the router (chorus.ingress.handles). A call refused by the
engine's full queue is the router's `EngineBusy`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from ray.exceptions import ActorDiedError
from ray.serve.exceptions import BackPressureError

from chorus.ingress.handles import RetryingHandle
from chorus.speech.attempts import EngineBusy
from chorus.speech.sentences import rest_of
from deployments.base import AudioChunk, EngineFailedError, Sentence, SynthesisRequest, split_sentences


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
    """A chunk for each of `sentences` (`made(index, sentence)`, else the sentence itself),
    raising `dies_after` chunks in if given."""

    def __init__(self, sentences: list[str], dies_after: int | None,
                 made: Callable[[int, str], Any] = lambda _, sentence: sentence) -> None:
        self.gen = self._run(sentences, dies_after, made)

    @staticmethod
    async def _run(sentences: list[str], dies_after: int | None, made: Callable[[int, str], Any]) -> AsyncIterator[Any]:
        for i, sentence in enumerate(sentences):
            if i == dies_after:
                raise ActorDiedError()
            yield made(i, sentence)
        if dies_after == len(sentences):
            raise ActorDiedError()

    async def __anext__(self) -> Any:
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


class Speaker:
    """A streaming engine deployment speaking `SynthesisRequest`s one sentence a chunk, whose
    first replica dies after `dies_after` chunks; `tells` whether a chunk says its sentence
    (Piper, the cloud engines) or not (XTTS, StyleTTS2)."""

    def __init__(self, dies_after: int, *, tells: bool) -> None:
        self.dies_after, self.tells = dies_after, tells
        self.asked: list[str] = []

    @property
    def stream(self) -> Any:
        outer = self

        class Method:
            def remote(self, request: SynthesisRequest) -> Any:
                outer.asked.append(request.text)
                dies = outer.dies_after if len(outer.asked) == 1 else None
                return FakeStream(split_sentences(request.text), dies, made=outer.chunk)

        return Method()

    def chunk(self, index: int, sentence: str) -> AudioChunk:
        said = [Sentence(text=sentence, samples=len(sentence))] if self.tells else []
        return AudioChunk(pcm=sentence.encode(), sample_rate=16000, index=index, sentences=said)

    def options(self, *, stream: bool) -> Speaker:
        return self


TEXT = "One.  Two!\nThree? Four."


async def heard(speaker: Speaker) -> list[bytes]:
    request = SynthesisRequest(text=TEXT, language="en")
    return [c.pcm async for c in RetryingHandle(speaker).options(stream=True).stream.remote(request)]


@pytest.mark.parametrize(("dies_after", "rest"), [(1, "Two!\nThree? Four."), (2, "Three? Four."), (3, "Four.")])
async def test_a_stream_that_told_its_sentences_resumes_with_the_rest_of_the_text(dies_after: int, rest: str) -> None:
    speaker = Speaker(dies_after, tells=True)
    assert await heard(speaker) == [b"One.", b"Two!", b"Three?", b"Four."]
    # The live replica is asked for what was not yet spoken, as it was written, nothing again.
    assert speaker.asked == [TEXT, rest]


async def test_a_stream_that_died_after_its_last_sentence_asks_nothing_again() -> None:
    speaker = Speaker(4, tells=True)
    assert await heard(speaker) == [b"One.", b"Two!", b"Three?", b"Four."]
    assert speaker.asked == [TEXT]


async def test_a_stream_that_did_not_tell_its_sentences_repeats_and_skips() -> None:
    speaker = Speaker(2, tells=False)
    assert await heard(speaker) == [b"One.", b"Two!", b"Three?", b"Four."]
    assert speaker.asked == [TEXT, TEXT]


def test_the_rest_is_found_only_where_the_sentences_were_said_in_order() -> None:
    assert rest_of("One. Two. Three.", ["One.", "Two."]) == "Three."
    assert rest_of("One. Two. Three.", ["Two.", "One."]) is None  # out of order: not this text's
    assert rest_of("One. Two. Three.", ["Uno."]) is None


class Refused:
    """A Serve call refused by the deployment's full queue: awaiting or iterating it raises
    `BackPressureError`, and so does `cancel()`, as Serve's do (it fetches the failed send)."""

    def __init__(self, retry_after_s: float | None) -> None:
        self.error = BackPressureError(num_queued_requests=4, max_queued_requests=4, retry_after_s=retry_after_s)

    def __await__(self) -> Any:
        raise self.error
        yield

    async def __anext__(self) -> Any:
        raise self.error

    def cancel(self) -> None:
        raise self.error


class FullQueue:
    def __init__(self, retry_after_s: float | None = None) -> None:
        self.retry_after_s = retry_after_s
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        outer = self

        class Method:
            def remote(self, *args: Any) -> Refused:
                outer.calls += 1
                return Refused(outer.retry_after_s)

        return Method()

    def options(self, *, stream: bool) -> FullQueue:
        return self


@pytest.mark.parametrize(("retry_after_s", "told"), [(None, 1), (2.5, 3)])
async def test_a_full_queue_is_the_routers_busy_engine_and_never_sent_again(retry_after_s: float | None,
                                                                            told: int) -> None:
    queue = FullQueue(retry_after_s)
    call = RetryingHandle(queue).synthesize.remote("hi")
    with pytest.raises(EngineBusy) as caught:
        await call
    assert caught.value.retry_after_s == told and "max_queued_requests=4" in caught.value.reason
    call.cancel()  # nothing was sent: nothing to cancel, and no error in place of the caller's
    stream = RetryingHandle(queue).options(stream=True).stream.remote("One. Two.")
    with pytest.raises(EngineBusy):
        await anext(stream)
    stream.cancel()
    assert queue.calls == 2  # refused calls are not repeated (only a dead replica's are)
