"""A bounded load run against a deployed Chorus: a fixed number of requests at a fixed
concurrency, mixing the personality speech route, its streaming form and OpenAI's route.
Every answer is checked for complete audio, so a stream cut short counts as a failure.
Used by tests/integration/test_load_fault.py and bench/fault.py."""

from __future__ import annotations

import asyncio
import io
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

import httpx
import soundfile as sf

Kind = Literal["speech", "stream", "openai"]
KINDS: tuple[Kind, ...] = ("speech", "stream", "openai")
TEXTS = (
    "The store opens at nine in the morning.",
    "Thank you for your help with the order. Please open the door and come inside.",
    "We will meet again tomorrow. Bring the blue folder. Do not be late.",
)
WAV_HEADER_BYTES = 44


@dataclass(frozen=True, slots=True)
class Outcome:
    kind: Kind
    started: float  # time.monotonic()
    elapsed: float  # seconds to the last byte
    error: str | None  # None: 200 with complete audio


@dataclass(slots=True)
class LoadRun:
    outcomes: list[Outcome] = field(default_factory=list)

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    def latencies(self, start: float = float("-inf"), end: float = float("inf")) -> list[float]:
        """Seconds of the successful requests that started in [start, end)."""
        return [o.elapsed for o in self.outcomes if o.error is None and start <= o.started < end]


def summary(values: list[float]) -> str:
    p95 = statistics.quantiles(values, n=20, method="inclusive")[-1] if len(values) > 1 else values[0]
    return f"n={len(values)} p50={statistics.median(values):.3f}s p95={p95:.3f}s"


async def one(client: httpx.AsyncClient, kind: Kind, personality: str, text: str,
              reference: dict[str, int] | None = None) -> str | None:
    """One request; None when it answered 200 with complete audio, else what went wrong.
    `reference`: each text's PCM bytes as one unhurried whole answer gave them (`references`);
    an answer more than 2% shorter or longer is incomplete, a stream that ended cleanly but
    early included (the product ends a stalled stream on its chunk deadline)."""
    if kind == "openai":
        body = {"model": "tts-1", "voice": personality, "input": text, "response_format": "wav"}
        url = "/v1/audio/speech"
    else:
        body = {"text": text, "format": "wav", "stream": kind == "stream"}
        url = f"/v1/personalities/{personality}/speech"
    try:
        async with client.stream("POST", url, json=body) as r:
            data = await r.aread()
    except httpx.HTTPError as err:  # a stream cut short ends here
        return f"{type(err).__name__}: {err}"
    if r.status_code != 200:
        return f"{r.status_code}: {data[:300]!r}"
    if kind == "stream":
        # A stream's WAV header cannot know the length; whole sentences of 16-bit PCM follow.
        pcm = len(data) - WAV_HEADER_BYTES
        if pcm <= 0 or pcm % 2:
            return f"stream of {len(data)} bytes"
    else:
        try:
            pcm = 2 * sf.info(io.BytesIO(data)).frames
        except RuntimeError as err:
            return f"undecodable audio: {err}"
        if pcm <= 0:
            return "no audio frames"
    expected = (reference or {}).get(text)
    if expected is not None and abs(pcm - expected) > 0.02 * expected:
        return f"{pcm} bytes of PCM where the whole answer has {expected}"
    return None


async def references(base_url: str, personality: str) -> dict[str, int]:
    """Each of TEXTS' PCM bytes in a whole (not streamed) answer, asked one at a time before
    any load: what every answer of the run must match (Piper's noise pinned)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=120) as client:
        out = {}
        for text in TEXTS:
            r = await client.post(f"/v1/personalities/{personality}/speech", json={"text": text, "format": "pcm"})
            assert r.status_code == 200, r.text
            out[text] = len(r.content)
        return out


async def run_load(
    base_url: str, personality: str, *, requests: int = 400, concurrency: int = 8,
    during: Callable[[LoadRun], Awaitable[None]] | None = None, timeout_s: float = 120,
    reference: dict[str, int] | None = None,
) -> LoadRun:
    """`requests` requests, `concurrency` at a time, kinds and texts in rotation. `during`,
    if given, runs alongside with the run as it fills (e.g. waits for `len(run.outcomes)`
    to reach a count, then kills a replica)."""
    run = LoadRun()
    queue = iter(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        for i in queue:
            kind, text = KINDS[i % len(KINDS)], TEXTS[i // len(KINDS) % len(TEXTS)]  # every kind says every text
            started = time.monotonic()
            error = await one(client, kind, personality, text, reference)
            run.outcomes.append(Outcome(kind, started, time.monotonic() - started, error))

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout_s, limits=limits) as client:
        workers = [asyncio.create_task(worker(client)) for _ in range(concurrency)]
        side = asyncio.create_task(during(run)) if during is not None else None
        await asyncio.gather(*workers)
        if side is not None:
            await side
    return run


async def completed(run: LoadRun, n: int) -> None:
    """Wait until `n` requests of `run` have answered."""
    while len(run.outcomes) < n:
        await asyncio.sleep(0.05)
