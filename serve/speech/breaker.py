"""Circuit breakers: one per engine in each ingress replica.

An engine that failed `failures` times in a row (unavailable, failed, timed out: not bad
input, not a skip) is opened for `cool_down_s`: the router skips it (`circuit open`)
without calling it. After the cool-down exactly one request probes it (half-open): its
success closes the circuit, its failure opens it for another cool-down. While the probe
is out, every other request skips the engine, so a struggling engine gets one call, not
a burst.

The state is the replica's own (a replica sees its own failures soon enough, and sharing
it would put Redis on every request's path); `GET /v1/providers` and the attempt spans
show it.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

CIRCUIT_OPEN = "circuit open"


class BreakerConfig(BaseModel):
    """`IngressArgs.circuit_breaker`."""

    model_config = ConfigDict(extra="forbid")

    failures: int = Field(5, ge=1, description="Consecutive failures of an engine that open its circuit.")
    cool_down_s: float = Field(30.0, gt=0, description="How long an open circuit skips the engine before one "
                               "request probes it.")


class CircuitState(StrEnum):
    closed = "closed"
    open = "open"
    half_open = "half_open"  # the cool-down is over: one probe is out, or the next request is it


class CircuitOut(BaseModel):
    """One engine's circuit in `GET /v1/providers`."""

    state: CircuitState
    failures: int = Field(description="Consecutive failures counted so far.")
    retry_at: datetime | None = Field(None, description="When an open circuit lets one request probe the engine.")


class Breaker:
    """One engine's circuit. Every call happens on the replica's event loop with no await
    between a check and its change, so `admit` hands out the single probe atomically."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self._failures = 0
        self._retry_at: float | None = None  # monotonic; set while open
        self._probing = False

    @property
    def state(self) -> CircuitState:
        if self._retry_at is None:
            return CircuitState.closed
        if self._probing or time.monotonic() >= self._retry_at:
            return CircuitState.half_open
        return CircuitState.open

    def admit(self) -> bool:
        """Whether a request may call the engine now; the first one after a cool-down
        becomes the probe, and the others are refused until it reports."""
        state = self.state
        if state is CircuitState.closed:
            return True
        if state is CircuitState.half_open and not self._probing:
            self._probing = True
            return True
        return False

    def succeeded(self) -> None:
        self._failures = 0
        self._retry_at = None
        self._probing = False

    def failed(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.config.failures:
            self._retry_at = time.monotonic() + self.config.cool_down_s
        self._probing = False

    def abandoned(self) -> None:
        """A call that says nothing about the engine (bad input, the caller went away, the
        request's deadline): a probe's place goes to the next request."""
        self._probing = False

    def shown(self) -> CircuitOut:
        retry_at = None
        if self._retry_at is not None:
            retry_at = datetime.now(UTC).timestamp() + max(0.0, self._retry_at - time.monotonic())
        return CircuitOut(state=self.state, failures=self._failures,
                          retry_at=datetime.fromtimestamp(retry_at, UTC) if retry_at is not None else None)


class Breakers:
    """The replica's breakers, one per engine, made on first use."""

    def __init__(self, config: BreakerConfig | None = None) -> None:
        self.config = config or BreakerConfig()
        self._by_engine: dict[str, Breaker] = {}

    def __getitem__(self, engine: str) -> Breaker:
        breaker = self._by_engine.get(engine)
        if breaker is None:
            breaker = self._by_engine[engine] = Breaker(self.config)
        return breaker
