"""No cross-talk, shown: many concurrent requests, each with its own text, through every way
of asking (the personality route whole and streamed, server-sent events, OpenAI's route),
with the cache used and bypassed; every answer is transcribed and must be closer to its own
text than to any other. Used by tests/integration/test_crosstalk.py and bench/crosstalk.py."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal

import httpx

from tests.support.speech import CLEAR_SENTENCES, Ear, word_error_rate

Kind = Literal["speech", "stream", "sse", "openai"]
KINDS: tuple[Kind, ...] = ("speech", "stream", "sse", "openai")
# 30 ordered pairs of the sentences the ear hears reliably, then each sentence alone: a pair
# and its reverse differ in word order, a sentence alone is half of several pairs, so a
# swapped or merged answer is closer to another text than to its own.
TEXTS = [f"{a} {b}" for a, b in itertools.permutations(CLEAR_SENTENCES, 2)] + list(CLEAR_SENTENCES)


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    kind: Kind
    cached: bool  # the cache was used (else `Cache-Control: no-store`)
    error: str | None = None  # not 200 with audio
    pcm: bytes = b""
    rate: int = 0


@dataclass(frozen=True, slots=True)
class Verdict:
    answer: Answer
    heard: str
    closest: list[str]  # the texts whose word error rate against what was heard is lowest

    @property
    def matched(self) -> bool:
        return self.answer.error is None and self.closest == [self.answer.text]


async def ask(client: httpx.AsyncClient, personality: str, text: str, kind: Kind, cached: bool) -> Answer:
    headers = {} if cached else {"Cache-Control": "no-store"}
    if kind == "openai":
        url, body = "/v1/audio/speech", {"model": "tts-1", "voice": personality, "input": text,
                                         "response_format": "pcm"}
    else:
        url, body = f"/v1/personalities/{personality}/speech", {"text": text, "format": "pcm"}
        if kind != "speech":
            body["stream"] = True
        if kind == "sse":
            body["stream_format"] = "sse"
    try:
        async with client.stream("POST", url, json=body, headers=headers) as r:
            data = await r.aread()
    except httpx.HTTPError as err:
        return Answer(text, kind, cached, error=f"{type(err).__name__}: {err}")
    if r.status_code != 200:
        return Answer(text, kind, cached, error=f"{r.status_code}: {data[:200]!r}")
    if kind == "sse":
        events = [json.loads(line.removeprefix("data:")) for line in data.decode().splitlines()
                  if line.startswith("data:")]
        if not events or events[-1].get("type") != "speech.audio.done":
            return Answer(text, kind, cached, error=f"the events end with {events[-1:]!r}")
        pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
        rate = _rate(r.headers["x-chorus-audio-type"])
    else:
        pcm, rate = data, _rate(r.headers["content-type"])
    return Answer(text, kind, cached, pcm=pcm, rate=rate)


def _rate(media_type: str) -> int:
    """`audio/L16; rate=22050; channels=1` -> 22050 (24000 when the type says none: OpenAI's pcm)."""
    params = dict(p.strip().split("=", 1) for p in media_type.split(";")[1:] if "=" in p)
    return int(params.get("rate", 24_000))


async def run(base_url: str, personality: str, *, rounds: int = 1, concurrency: int = 32,
              during: Callable[[list[Answer]], Awaitable[None]] | None = None) -> list[Answer]:
    """`rounds` x len(TEXTS) requests, `concurrency` at once. Each round asks every text once:
    text j in KINDS[(j + round) % 4], the cache used for alternate runs of four (so a round
    asks every way, cached and not, and each text comes another way each round). `during`
    runs alongside with the answers as they come."""
    jobs = [(text, KINDS[(j + r) % len(KINDS)], (j // len(KINDS) + r) % 2 == 0)
            for r in range(rounds) for j, text in enumerate(TEXTS)]
    answers: list[Answer] = []
    queue = iter(jobs)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=180, limits=limits) as client:

        async def worker() -> None:
            for text, kind, cached in queue:
                answers.append(await ask(client, personality, text, kind, cached))

        side = asyncio.create_task(during(answers)) if during is not None else None
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        if side is not None:
            await side
    return answers


def judge(answers: list[Answer], ear: Ear) -> list[Verdict]:
    verdicts = []
    for a in answers:
        if a.error is not None:
            verdicts.append(Verdict(a, "", []))
            continue
        heard = ear.hear_pcm(a.pcm, a.rate)
        errors = {t: word_error_rate(t, heard) for t in TEXTS}
        best = min(errors.values())
        verdicts.append(Verdict(a, heard, [t for t, e in errors.items() if e == best]))
    return verdicts


def tally(verdicts: list[Verdict]) -> dict[str, int]:
    failed = sum(v.answer.error is not None for v in verdicts)
    matched = sum(v.matched for v in verdicts)
    return {"n": len(verdicts), "matched": matched, "mismatched": len(verdicts) - matched - failed, "failed": failed}
