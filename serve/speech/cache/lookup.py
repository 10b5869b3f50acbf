"""One engine's requests for an utterance, resolved against the cache: which parts the
cache answers and which the engine must still synthesize.

A piece (one engine request, `chorus.speech.sentences.pack`) is looked up whole first. On a
miss, an engine that speaks sentence by sentence (not `one_chunk_per_call`: a cloud engine
pays per call, so its pieces are never split) has the piece's sentences looked up too: the
cached sentences at its start and at its end are answered from the cache, and everything
between goes to the engine as one request. A piece is so never more than three parts, and
never more than one engine call, however its sentences are cached. Once every part is known
the whole piece is stored too.

An engine that reports each sentence it spoke with its text (`AudioResult.sentences`) has
each sentence of a part kept on its own as well, so a later text sharing sentences with this
one finds them. Only where the engine's texts are exactly the sentences looked up: audio is
never stored under words it does not say.

Every key carries the utterance's cache scope (the personality, or the personality and the
API key: `cache.scope` of the personality), so one personality's or one key's entries never
answer another's requests.
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
    sentences: tuple[tuple[str, str], ...] = ()  # (text, key) of each of its sentences, if it has several


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
        cached = [p.cached is not None for p in self.parts]
        return "hit" if all(cached) else "partial" if any(cached) else "miss"

    async def made(self, index: int, audio: AudioResult) -> None:
        """The engine's complete audio for part `index`: kept under its key, and so is any
        piece whose parts are now all known."""
        self._audio[index] = audio
        if self._cache is None:
            return
        part = self.parts[index]
        if part.key is not None:
            await self._cache.put(part.key, audio, self._personality)
        for key, sentence in each_sentence(part.sentences, audio):
            await self._cache.put(key, sentence, self._personality)
        for whole in self._wholes:
            if index in whole.parts and all(self._audio[i] is not None for i in whole.parts):
                joined = AudioResult.joined([a for i in whole.parts if (a := self._audio[i]) is not None])
                await self._cache.put(whole.key, joined, self._personality)


def uncached(requests: list[SynthesisRequest]) -> Lookup:
    """The requests as they are, nothing looked up or kept."""
    return Lookup([Part(r, None, None) for r in requests], [], None, "")


async def resolve(
    cache: AudioCache | None, requests: list[SynthesisRequest], capabilities: Capabilities, personality: str,
    scope: str,
) -> Lookup:
    """`requests` (one engine's pieces of an utterance) resolved against `cache`, every key
    in `scope` (`chorus.speech.cache.key.cache_key`)."""
    if cache is None:
        return uncached(requests)
    rate = next((v.sample_rate for v in capabilities.voices if v.id == requests[0].voice), capabilities.sample_rate)

    def key(request: SynthesisRequest) -> str:
        return cache_key(request, capabilities.engine, capabilities.model_identity, rate, scope)

    parts: list[Part] = []
    wholes: list[_Whole] = []
    for request in requests:
        whole = key(request)
        if (audio := await cache.get(whole, personality)) is not None:
            parts.append(Part(request, audio, None))
            continue
        sentences = [request.model_copy(update={"text": s}) for s in split_sentences(request.text)]
        if capabilities.one_chunk_per_call or len(sentences) < 2:
            parts.append(Part(request, None, whole, _keyed(sentences, key)))
            continue
        # Side by side: on a disk or Redis tier each lookup is a round trip of its own.
        found = await asyncio.gather(*(cache.get(key(s), personality) for s in sentences))
        head = _cached_run(found)
        tail = _cached_run(found[head:][::-1])
        if not head and not tail:
            parts.append(Part(request, None, whole, _keyed(sentences, key)))
            continue
        first = len(parts)
        if head:
            parts.append(Part(_joined(sentences[:head]), AudioResult.joined(found[:head]), None))  # type: ignore[arg-type]
        middle = sentences[head:len(sentences) - tail]
        if middle:
            run = _joined(middle)
            parts.append(Part(run, None, key(run), _keyed(middle, key)))
        if tail:
            parts.append(Part(_joined(sentences[-tail:]), AudioResult.joined(found[-tail:]), None))  # type: ignore[arg-type]
        wholes.append(_Whole(whole, range(first, len(parts))))
    return Lookup(parts, wholes, cache, personality)


def _cached_run(found: list[AudioResult | None]) -> int:
    """How many entries at the start of `found` the cache had."""
    return next((i for i, audio in enumerate(found) if audio is None), len(found))


def _joined(sentences: list[SynthesisRequest]) -> SynthesisRequest:
    """Consecutive sentences as one request: what the engine is sent, and its entry's text."""
    return sentences[0].model_copy(update={"text": " ".join(s.text for s in sentences)})


def _keyed(sentences: list[SynthesisRequest], key: Callable[[SynthesisRequest], str]) -> tuple[tuple[str, str], ...]:
    return tuple((s.text, key(s)) for s in sentences) if len(sentences) > 1 else ()


def each_sentence(keyed: tuple[tuple[str, str], ...], audio: AudioResult) -> Iterator[tuple[str, AudioResult]]:
    """Each sentence's audio with its key, cut where the engine says each sentence ended,
    only when the engine's sentences say exactly the texts looked up (`keyed`), in order,
    and account for all of the audio. Otherwise nothing: a sentence kept under another
    sentence's text would answer every later caller of that text with the wrong words."""
    said = audio.sentences
    if (not keyed or [s.text for s in said] != [text for text, _ in keyed]
            or 2 * sum(s.samples for s in said) != len(audio.pcm)):
        return
    start = 0
    for (_, key), sentence in zip(keyed, said, strict=True):
        end = start + 2 * sentence.samples
        yield key, AudioResult(pcm=audio.pcm[start:end], sample_rate=audio.sample_rate, variant=audio.variant,
                               sentences=[sentence])
        start = end
