"""How long one request may take in the router, as a whole and, for a stream, between chunks.

The request's deadline covers every piece, every fallback and the rest of a stream, so a
request ends in the router (with what it can say about the engines) before Serve's proxy
gives up on it (`http_options.request_timeout_s`, which must stay above it). Each call
waits the engine's own timeout or what is left of the deadline, whichever is shorter."""

from __future__ import annotations

import time

from pydantic import BaseModel, ConfigDict, Field

DEADLINE_PASSED = "the request's deadline passed"


class Deadlines(BaseModel):
    """`IngressArgs`' deadlines as the router takes them; None: no limit."""

    model_config = ConfigDict(frozen=True)

    request_s: float | None = Field(None, gt=0)
    stream_chunk_s: float | None = Field(None, gt=0)


class DeadlinePassed(TimeoutError):
    """The request's deadline, not the engine's own timeout, cut a call short."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request's {seconds:g} s deadline passed")
        self.seconds = seconds


class Deadline:
    """One request's deadline, started when the router gets the request."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self._at = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._at is None else max(0.0, self._at - time.monotonic())

    @property
    def passed(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def cuts(self, timeout: float | None) -> bool:
        """Whether what is left of the deadline is shorter than `timeout`: then it, not the
        timeout, limits the call."""
        left = self.remaining()
        return left is not None and (timeout is None or left < timeout)

    def cut_short(self) -> DeadlinePassed:
        """The error for a call this deadline cut short (`cuts` said so, so there is one)."""
        assert self.seconds is not None, "no deadline cuts anything short"
        return DeadlinePassed(self.seconds)

    def limit(self, timeout: float | None) -> float | None:
        """How long a call may wait: `timeout`, or what is left of the deadline if less."""
        return self.remaining() if self.cuts(timeout) else timeout
