"""One engine's requests for an utterance, resolved against the cache: which parts the
cache answers and which the engine must still synthesize.

A piece (one engine request, `chorus.speech.sentences.pack`) is looked up whole first. On a miss
its sentences are looked up one by one: if some are cached, only the runs of sentences that
are not go to the engine, each as one request, and each run is stored under its own key
once made (a run of one sentence is that sentence's entry); once every part of the piece
is known, the whole piece is stored too. A piece none of whose sentences is cached goes to
the engine whole, as it would without a cache.

An engine that says how long each sentence of its answer is (`AudioResult.sentence_samples`:
Piper speaks sentence by sentence) has each sentence of a part kept on its own as well, so a
later text sharing sentences with this one finds them even though it was a miss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Literal, NamedTuple

from chorus.speech.cache.key import cache_key
from chorus.speech.cache.store import AudioCache
from deployments.base import AudioResult, Capabilities, SynthesisRequest, split_sentences

CacheOutcome = Literal["hit", "miss", "partial", "bypass"]
"""`X-Chorus-Cache`: all from the cache, none, some parts, or the cache not used (off, or
the request said `Cache-Control: no-store`)."""


class Part(NamedTuple):
    request: SynthesisRequest
    cached: AudioResult | None  # from the cache: the engine is not asked
    key: str | None  # where the engine's audio for it is kept once complete; None: nowhere
    sentence_keys: tuple[str, ...] = ()  # where each of its sentences is kept, if it has several


class _Whole(NamedTuple):
    """A piece answered in several parts: stored whole once all of them are known."""

    key: str
    parts: range


class Lookup:
    """The parts of one engine's answer, in order. The router synthesizes the parts that
    are not `cached` and reports each complete one with `made`; nothing is stored
    otherwise, so failures and streams cut short never are."""

    def __init__(self, parts: list[Part], wholes: list[_Whole], cache: AudioCache | None, personality: str) -> None:
        self.parts = parts
        self._wholes = wholes
        self._cache = cache
        self._personality = personality
        self._audio: list[AudioResult | None] = [p.cached for p in parts]

    @property
    def outcome(self) -> CacheOutcome:
        if self._cache is None:
            return "bypass"
        hits = sum(p.cached is not None for p in self.parts)
        return "hit" if hits == len(self.parts) else "partial" if hits else "miss"

    async def made(self, index: int, audio: AudioResult) -> None:
        """The engine's complete audio for part `index`: kept under its key, and so is any
        piece whose parts are now all known."""
        self._audio[index] = audio
        if self._cache is None:
            return
        part = self.parts[index]
        if part.key is not None:
            await self._cache.put(part.key, audio, self._personality)
        for key, sentence in _each_sentence(part.sentence_keys, audio):
            await self._cache.put(key, sentence, self._personality)
        for whole in self._wholes:
            if index in whole.parts and all(self._audio[i] is not None for i in whole.parts):
                joined = AudioResult.joined([a for i in whole.parts if (a := self._audio[i]) is not None])
                await self._cache.put(whole.key, joined, self._personality)


def uncached(requests: list[SynthesisRequest]) -> Lookup:
    """The requests as they are, nothing looked up or kept."""
    return Lookup([Part(r, None, None) for r in requests], [], None, "")


async def resolve(
    cache: AudioCache | None, requests: list[SynthesisRequest], capabilities: Capabilities, personality: str
) -> Lookup:
    """`requests` (one engine's pieces of an utterance) resolved against `cache`."""
    if cache is None:
        return uncached(requests)
    rate = next((v.sample_rate for v in capabilities.voices if v.id == requests[0].voice), capabilities.sample_rate)

    def key(request: SynthesisRequest) -> str:
        return cache_key(request, capabilities.engine, capabilities.model_identity, rate)

    parts: list[Part] = []
    wholes: list[_Whole] = []
    for request in requests:
        whole = key(request)
        if (audio := await cache.get(whole, personality)) is not None:
            parts.append(Part(request, audio, None))
            continue
        sentences = [request.model_copy(update={"text": s}) for s in split_sentences(request.text)]
        # Side by side: on a disk or Redis tier each lookup is a round trip of its own.
        found = await asyncio.gather(*(cache.get(key(s), personality) for s in sentences)) if len(sentences) > 1 else []
        if not any(a is not None for a in found):
            parts.append(Part(request, None, whole, _keys(sentences, key)))
            continue
        first = len(parts)
        run: list[SynthesisRequest] = []
        for sentence, audio in zip(sentences, found, strict=True):
            if audio is None:
                run.append(sentence)
                continue
            if run:
                parts.append(_run(run, key))
                run = []
            parts.append(Part(sentence, audio, None))
        if run:
            parts.append(_run(run, key))
        wholes.append(_Whole(whole, range(first, len(parts))))
    return Lookup(parts, wholes, cache, personality)


def _run(sentences: list[SynthesisRequest], key: Callable[[SynthesisRequest], str]) -> Part:
    """Consecutive sentences the cache lacks: one request to the engine, one entry."""
    request = sentences[0].model_copy(update={"text": " ".join(s.text for s in sentences)})
    return Part(request, None, key(request), _keys(sentences, key))


def _keys(sentences: list[SynthesisRequest], key: Callable[[SynthesisRequest], str]) -> tuple[str, ...]:
    return tuple(key(s) for s in sentences) if len(sentences) > 1 else ()


def _each_sentence(keys: tuple[str, ...], audio: AudioResult) -> Iterator[tuple[str, AudioResult]]:
    """Each sentence's audio with its key, cut where the engine says each sentence ended.
    Only when the engine counted the sentences as `split_sentences` does (one that splits
    elsewhere, say after "Dr.", gives no sentence entries rather than misplaced ones)."""
    lengths = audio.sentence_samples
    if not keys or len(lengths) != len(keys) or 2 * sum(lengths) != len(audio.pcm):
        return
    start = 0
    for key, samples in zip(keys, lengths, strict=True):
        end = start + 2 * samples
        yield key, AudioResult(pcm=audio.pcm[start:end], sample_rate=audio.sample_rate, variant=audio.variant,
                               sentence_samples=[samples])
        start = end
