"""What the router tells of each engine's part in a request: the `Attempt`s (what clients
are told, `reason`, kept apart from the whole story, `detail`), why the plan skipped an
engine, the result of a routed request, and how an engine's error becomes an attempt."""

from __future__ import annotations

import logging
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, Field

from chorus.common.safe_text import PublicText
from chorus.speech.cache.lookup import CacheOutcome
from chorus.speech.deadline import DEADLINE_PASSED, DeadlinePassed
from chorus.speech.verification import Verdict
from deployments.base import AudioResult, EngineError, EngineId, EngineUnavailableError

log = logging.getLogger(__name__)


Outcome = Literal["skipped", "unavailable", "failed", "timeout"]

# What clients are told when the engine said nothing it vouches is safe to show
# (`EngineError.public`): an engine's own reason may name model files, endpoints, buckets
# or quote its provider, so it goes to the log only.
UNAVAILABLE = "the engine cannot serve this now"
FAILED = "the engine failed"
BUSY = "busy: its queue is full; retry shortly"
UNHEALTHY = "unhealthy"


class AttemptOut(BaseModel):
    """What a client is told about one engine's part in a request (the 503 body,
    `X-Chorus-Fallback`): the outcome, and a short message picked by its cause."""

    engine: EngineId
    outcome: Outcome
    reason: PublicText


class Attempt(AttemptOut):
    """An attempt as the ingress knows it: `detail` is the whole reason, for the log."""

    detail: str
    retry_after_s: int | None = Field(None, exclude=True, description="The engine was busy: when a retry may find room.")

    def shown(self) -> AttemptOut:
        return AttemptOut(engine=self.engine, outcome=self.outcome, reason=self.reason)


class Skip(NamedTuple):
    """Why the plan passes over an engine: what clients see, and the whole story."""

    reason: str
    detail: str

    @classmethod
    def plain(cls, reason: str) -> Skip:
        """A reason of the router's own words, the same for clients and the log."""
        return cls(reason, reason)


class AudioTooLong(Exception):
    """The audio of one request grew past `limit` seconds (`IngressArgs.max_audio_seconds`):
    the caller's request, answered 413, not an engine's failure."""

    def __init__(self, limit: float) -> None:
        super().__init__(f"the audio grew past {limit:g} seconds, the most one request may produce; "
                         "send the text in parts")
        self.limit = limit


class EngineBusy(Exception):
    """The engine's queue at this ingress replica was full (Serve's `max_queued_requests`):
    the call was refused before any replica saw it. That is load, not a fault of the engine:
    the plan moves on, the engine's circuit is not told, and an answer that no engine gave
    invites a retry after `retry_after_s`."""

    def __init__(self, reason: str, retry_after_s: int = 1) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class AllEnginesFailed(Exception):
    def __init__(self, attempts: list[Attempt]) -> None:
        super().__init__(attempts)
        self.attempts = attempts

    @property
    def retry_after_s(self) -> int | None:
        """When a retry may succeed: the soonest an engine that was only busy has room."""
        return min((a.retry_after_s for a in self.attempts if a.retry_after_s is not None), default=None)


class Routed(BaseModel):
    engine: EngineId
    attempts: list[Attempt]
    variant: str | None = None
    cache: CacheOutcome = "bypass"


class RoutedAudio(Routed):
    audio: AudioResult
    verdict: Verdict | None = Field(None, description="its pieces' verification, when the personality verifies")


class Switch(BaseModel):
    """A stream carried on by another engine after the one speaking failed or stalled."""

    engine: EngineId
    after: EngineId
    reason: str
    at_s: float = Field(description="seconds of audio the stream had when it switched")


class StreamEnd:
    """What a stream's chunks do not say themselves, known as they go: why they ended before
    the text did, when they end quietly (a chunk that never came, the request's audio
    limit: an audio body just ends there, an SSE stream says so in an error event; an
    engine that fails mid-stream raises instead), the engines that carried it on, and the
    attempts made after it began (the engine that stopped, those that could not carry on)."""

    def __init__(self) -> None:
        self.cut: Attempt | None = None
        self.switches: list[Switch] = []
        self.attempts: list[Attempt] = []


class RoutedStream(Routed):
    """An engine has produced its first chunk; the rest follows from `chunks`."""

    model_config = {"arbitrary_types_allowed": True}
    sample_rate: int
    chunks: Any  # AsyncIterator[AudioChunk]
    end: StreamEnd


def unwrap(err: BaseException) -> BaseException:
    """Ray wraps an engine's exception in RayTaskError; the original is its `cause`."""
    while isinstance(getattr(err, "cause", None), BaseException):
        err = err.cause  # type: ignore[attr-defined]
    return err


def describe(err: BaseException) -> str:
    err = unwrap(err)
    if isinstance(err, EngineError):
        return err.reason
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def attempt_after(engine: EngineId, err: BaseException, timeout: float | None) -> Attempt:
    err = unwrap(err)
    if isinstance(err, DeadlinePassed):
        return Attempt(engine=engine, outcome="timeout", reason=DEADLINE_PASSED, detail=str(err))
    if isinstance(err, TimeoutError):
        said = f"no audio within {timeout:g} s"
        return Attempt(engine=engine, outcome="timeout", reason=said, detail=said)
    if isinstance(err, EngineBusy):
        return Attempt(engine=engine, outcome="unavailable", reason=BUSY, detail=err.reason,
                       retry_after_s=err.retry_after_s)
    public = err.public if isinstance(err, EngineError) else None
    if isinstance(err, EngineUnavailableError):
        return Attempt(engine=engine, outcome="unavailable", reason=public or UNAVAILABLE, detail=err.reason)
    log.warning("engine %s failed: %r", engine, err)
    return Attempt(engine=engine, outcome="failed", reason=public or FAILED, detail=describe(err))
