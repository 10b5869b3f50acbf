"""The audio cache (chorus.speech.cache) on its own: keys, each tier, the layering."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from chorus.speech.cache import tiers
from chorus.speech.cache.config import CacheConfig
from chorus.speech.cache.key import cache_key
from chorus.speech.cache.lookup import resolve
from chorus.speech.cache.replay import Replay
from chorus.speech.cache.store import AudioCache, CacheUnavailable, encode
from chorus.speech.cache.tiers import DiskTier, MemoryTier, RedisTier
from deployments.base import AudioResult, Capabilities, Sentence, SynthesisRequest, VoiceInfo, VoiceSampleRef
from deployments.settings import PiperSettings, XTTSSettings
from tests.support.redis_server import _free_port, redis_server

AUDIO = AudioResult(pcm=b"\x01\x02" * 800, sample_rate=16_000, variant="british")


def request(**change: Any) -> SynthesisRequest:
    base: dict[str, Any] = {"text": "Hello there.", "language": "en", "voice": "v1", "variant": None,
                            "settings": PiperSettings(speed=1.0), "samples": []}
    return SynthesisRequest(**(base | change))


SCOPE = "personality:joe"
SAMPLE = VoiceSampleRef(id="s0", language="en", sha256="a" * 64, path="/x.wav")

# --- the key -------------------------------------------------------------------------


@pytest.mark.parametrize("changed", [
    lambda: (request(text="Hello there!"), "piper", "m1", 22050, SCOPE),
    lambda: (request(text="Hello there. "), "piper", "m1", 22050, SCOPE),
    lambda: (request(language="en-GB"), "piper", "m1", 22050, SCOPE),
    lambda: (request(voice="v2"), "piper", "m1", 22050, SCOPE),
    lambda: (request(variant="british"), "piper", "m1", 22050, SCOPE),
    lambda: (request(settings=PiperSettings(speed=1.1)), "piper", "m1", 22050, SCOPE),
    lambda: (request(settings=XTTSSettings()), "piper", "m1", 22050, SCOPE),
    lambda: (request(samples=[SAMPLE]), "piper", "m1", 22050, SCOPE),
    lambda: (request(samples=[SAMPLE.model_copy(update={"sha256": "b" * 64})]), "piper", "m1", 22050, SCOPE),
    lambda: (request(), "google_tts", "m1", 22050, SCOPE),
    lambda: (request(), "piper", "m2", 22050, SCOPE),
    lambda: (request(), "piper", "m1", 24000, SCOPE),
    lambda: (request(), "piper", "m1", 22050, "personality:ann"),
    lambda: (request(), "piper", "m1", 22050, "key:joe:tenant-b"),
], ids=["text", "whitespace", "language", "voice", "variant", "settings", "settings-model", "samples",
        "sample-audio", "engine", "model", "rate", "personality", "key"])
def test_every_field_that_changes_the_audio_changes_the_key(changed: Callable[[], tuple[Any, ...]]) -> None:
    same = cache_key(request(), "piper", "m1", 22050, SCOPE)
    assert cache_key(request(), "piper", "m1", 22050, SCOPE) == same and len(same) == 64
    assert cache_key(*changed()) != same


def sample(sample_id: str, audio: str) -> VoiceSampleRef:
    """A stored sample: `audio` stands for its recording (the digest the store keeps of it)."""
    return VoiceSampleRef(id=sample_id, language="en", sha256=audio * 64, path=f"/{sample_id}.wav")


# Sample ids are per personality and chosen by its spec (`s0`, `studio-1`): two cloning
# personalities may share ids, never the audio behind them. Each pair differs in the audio
# only, or in a sample after the first, or in order (an engine may weigh samples by position).
@pytest.mark.parametrize(("one", "other"), [
    ([sample("s0", "a")], [sample("s0", "b")]),
    ([sample("s0", "a"), sample("s1", "c")], [sample("s0", "a"), sample("s1", "d")]),
    ([sample("s0", "a"), sample("s1", "c")], [sample("s0", "a"), sample("s2", "c")]),
    ([sample("s0", "a"), sample("s1", "c")], [sample("s1", "c"), sample("s0", "a")]),
    ([sample("s0", "a")], [sample("s0", "a"), sample("s1", "c")]),
], ids=["same-id-other-audio", "second-sample-other-audio", "second-sample-other-id", "order", "one-more"])
def test_sample_sets_that_share_ids_but_not_audio_get_different_keys(
    one: list[VoiceSampleRef], other: list[VoiceSampleRef]
) -> None:
    def key(samples: list[VoiceSampleRef]) -> str:
        return cache_key(request(samples=samples, settings=XTTSSettings()), "xtts_v2", "m1", 24000, SCOPE)

    assert key(one) == key([s.model_copy() for s in one])  # the same set, rebuilt, is one entry
    assert key(one) != key(other)


def test_what_does_not_change_the_audio_does_not_change_the_key() -> None:
    same = cache_key(request(), "piper", "m1", 22050, SCOPE)
    assert cache_key(request(trace_context={"traceparent": "00-1-2-01"}, output_format="mp3"),
                     "piper", "m1", 22050, SCOPE) == same


# --- tiers ---------------------------------------------------------------------------------


async def test_memory_is_bounded_in_bytes_least_recently_used_first() -> None:
    memory = MemoryTier(3000)
    for key in "abc":
        await memory.put(key, bytes(1000), "joe")
    await memory.get("a")  # now the most recently used
    await memory.put("d", bytes(1000), "joe")
    assert [await memory.get(k) is not None for k in "abcd"] == [True, False, True, True]
    assert memory.size == 3000
    await memory.put("huge", bytes(3001), "joe")  # never pushes everything out
    assert await memory.get("huge") is None and memory.size == 3000


async def test_memory_drops_one_personality_or_all() -> None:
    memory = MemoryTier(10_000)
    await memory.put("a", b"1", "joe")
    await memory.put("b", b"2", "ann")
    assert await memory.drop_personality("joe") == 1
    assert await memory.get("a") is None and await memory.get("b") == b"2"
    assert await memory.drop_personality(None) == 1 and await memory.get("b") is None


async def test_disk_survives_a_reopen_and_drops_by_personality(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path / "cache", 10 * 1024 * 1024)
    await disk.put("a", b"audio-a" * 10_000, "joe")  # large: a file of its own
    await disk.put("b", b"audio-b", "ann")
    disk.close()
    again = DiskTier(tmp_path / "cache", 10 * 1024 * 1024)
    assert await again.get("a") == b"audio-a" * 10_000 and await again.get("b") == b"audio-b"
    assert await again.drop_personality("joe") == 1
    assert await again.get("a") is None and await again.get("b") == b"audio-b"
    assert await again.drop_personality(None) == 1 and await again.get("b") is None


async def test_disk_is_bounded(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path / "cache", 1024 * 1024)
    for i in range(40):
        await disk.put(f"k{i}", bytes(100_000), "joe")
    assert disk._cache.volume() <= 2 * 1024 * 1024  # diskcache culls past the limit (its own pages aside)
    assert await disk.get("k0") is None and await disk.get("k39") is not None


async def test_redis_keeps_entries_with_a_ttl_and_drops_by_personality(tmp_path: Path) -> None:
    with redis_server(tmp_path) as url:
        redis = RedisTier(url, ttl_s=60, max_bytes=1 << 24)
        await redis.put("a", b"A", "joe")
        await redis.put("b", b"B", "ann")
        assert await redis.get("a") == b"A"
        assert 0 < await redis._redis.ttl("chorus:audio:entry:a") <= 60
        assert await redis.drop_personality("joe") == 1
        assert (await redis.get("a"), await redis.get("b")) == (None, b"B")
        assert await redis.drop_personality(None) == 1
        assert await redis._redis.keys("chorus:audio:*") == []
        await redis.close()


async def test_redis_keeps_the_cache_under_its_byte_bound_beside_the_counters(tmp_path: Path) -> None:
    """Security audit M-5: the cache had a TTL and no bound, in the Redis the rate limits and
    budgets count in: filled, Redis evicted the counters (limits reset) or refused their writes."""
    mib = 1 << 20
    with redis_server(tmp_path) as url:
        tier = RedisTier(url, ttl_s=600, max_bytes=4 * mib)
        await tier._redis.set("chorus:key_rate:alice", b"7")  # a counter of chorus.quotas'
        for i in range(12):
            await tier.put(f"k{i}", bytes([i]) * mib, "joe")
            if i == 2:
                assert await tier.get("k0") is not None  # used again: kept longer than k1
            if i == 4:  # one past the bound: the least recently used went, not the oldest stored
                assert await tier.get("k1") is None and await tier.get("k0") is not None
        assert await tier.stored_bytes() <= 4 * mib
        entries = sorted(k.decode() for k in await tier._redis.keys("chorus:audio:entry:*"))
        assert len(entries) == 4 and "chorus:audio:entry:k11" in entries
        assert await tier.get("k1") is None
        assert await tier._redis.get("chorus:key_rate:alice") == b"7"
        # Dropping by personality gives its bytes back.
        await tier.drop_personality("joe")
        assert await tier.stored_bytes() == 0
        await tier.put("big", b"x" * (5 * mib), "joe")  # over the bound alone: not kept at all
        assert await tier.get("big") is None and await tier.stored_bytes() == 0
        await tier.close()


# --- the layers ----------------------------------------------------------------------


async def test_shared_writes_happen_in_the_background(tmp_path: Path) -> None:
    shared = DiskTier(tmp_path / "cache", 10 * 1024 * 1024)
    cache = AudioCache(MemoryTier(1 << 20), shared)
    await cache.put("k", AUDIO, "joe")
    assert await cache.memory.get("k") is not None  # type: ignore[union-attr]
    await cache.settled()
    assert await shared.get("k") == encode(AUDIO)


async def test_a_shared_hit_fills_memory(tmp_path: Path) -> None:
    shared = DiskTier(tmp_path / "cache", 10 * 1024 * 1024)
    cache = AudioCache(MemoryTier(1 << 20), shared)
    await shared.put("k", encode(AUDIO), "joe")
    assert await cache.memory.get("k") is None  # type: ignore[union-attr]
    assert await cache.get("k", "joe") == AUDIO
    assert await cache.memory.get("k") is not None  # type: ignore[union-attr]
    assert await cache.drop_personality("joe") == {"memory": 1, "disk": 1}


async def test_redis_down_is_a_miss_and_puts_are_dropped(caplog: pytest.LogCaptureFixture) -> None:
    cache = AudioCache(MemoryTier(1 << 20), RedisTier(f"redis://127.0.0.1:{_free_port()}/0", ttl_s=60, max_bytes=1 << 24))
    await cache.put("k", AUDIO, "joe")  # memory keeps it; Redis's failure is only logged
    await cache.settled()
    assert await cache.get("k", "joe") == AUDIO
    assert await cache.get("other", "joe") is None
    assert "writing the redis tier failed" in caplog.text and "reading the redis tier failed" in caplog.text
    with pytest.raises(CacheUnavailable, match="redis tier"):
        await cache.drop_personality("joe")


@pytest.mark.parametrize("shared", ["disk", "redis"])
async def test_a_drop_through_one_replica_reaches_the_others_memory(tmp_path: Path, shared: str) -> None:
    """Two replicas, each with its own memory, one shared tier: what one drops, the other
    drops from its memory on its next round of following the drop notices."""
    with contextlib.ExitStack() as stack:
        def tier() -> Any:
            if shared == "disk":
                return DiskTier(tmp_path / "cache", 10 * 1024 * 1024)
            return RedisTier(url, ttl_s=60, max_bytes=1 << 24)

        url = stack.enter_context(redis_server(tmp_path)) if shared == "redis" else ""
        a, b = (AudioCache(MemoryTier(1 << 20), tier(), follow_s=0.05) for _ in range(2))
        stop = asyncio.Event()
        following = asyncio.gather(a.follow_drops(stop), b.follow_drops(stop))
        await a.put("joe-1", AUDIO, "joe")
        await a.put("ann-1", AUDIO, "ann")
        await a.settled()
        assert await b.get("joe-1", "joe") == AUDIO and await b.get("ann-1", "ann") == AUDIO  # now in b's memory

        assert (await a.drop_personality("joe"))[shared] == 1
        await until(lambda: b.memory.get("joe-1"), None)  # type: ignore[union-attr]
        assert await b.get("joe-1", "joe") is None
        assert await b.memory.get("ann-1") is not None  # type: ignore[union-attr]  # only joe's

        await b.put("joe-2", AUDIO, "joe")  # made after the drop: kept
        await asyncio.sleep(0.2)
        assert await b.memory.get("joe-2") is not None  # type: ignore[union-attr]
        await a.drop_personality(None)
        await until(lambda: b.memory.get("ann-1"), None)  # type: ignore[union-attr]
        assert b.memory.size == 0  # type: ignore[union-attr]
        stop.set()
        await following


@pytest.mark.parametrize("shared", ["disk", "redis"])
async def test_a_replica_too_far_behind_the_notices_drops_everything(tmp_path: Path, shared: str) -> None:
    with contextlib.ExitStack() as stack:
        if shared == "disk":
            tier: Any = DiskTier(tmp_path / "cache", 10 * 1024 * 1024)
        else:
            tier = RedisTier(stack.enter_context(redis_server(tmp_path)), ttl_s=60, max_bytes=1 << 24)
        seen, _ = await tier.drops_after(None)
        await tier.announce_drop("joe")
        await tier.announce_drop(None)
        assert await tier.drops_after(seen) == (seen + 2, ["joe", None])
        for _ in range(tiers.KEPT_DROPS):
            await tier.announce_drop("ann")
        last = seen + 2 + tiers.KEPT_DROPS
        assert await tier.drops_after(seen) == (last, [None])  # the oldest notices are gone: all of it
        assert await tier.drops_after(last - 1) == (last, ["ann"])
        if shared == "disk":
            assert len(tier._drops) == 1 + tiers.KEPT_DROPS  # the count and the notices kept


async def until(read: Callable[[], Any], expected: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await read() != expected:
        assert asyncio.get_running_loop().time() < deadline, "the replica never followed the drop"
        await asyncio.sleep(0.02)


def test_open_picks_the_tiers(tmp_path: Path) -> None:
    assert AudioCache.open(CacheConfig(enabled=False), None) is None
    memory_only = AudioCache.open(CacheConfig(), None)
    assert memory_only is not None and [t.name for t in memory_only.tiers] == ["memory"]
    disk = AudioCache.open(CacheConfig.model_validate({"diskDir": str(tmp_path), "memoryBytes": 0}), None)
    assert disk is not None and [t.name for t in disk.tiers] == ["disk"]
    redis = AudioCache.open(CacheConfig(disk_dir=tmp_path), "redis://127.0.0.1:1/0")
    assert redis is not None and [t.name for t in redis.tiers] == ["memory", "redis"]  # Redis wins over disk
    with pytest.raises(ValueError, match="extra"):
        CacheConfig.model_validate({"memoryMegabytes": 1})


# --- lookups ------------------------------------------------------------------------------


CAPS = Capabilities(engine="piper", languages=["en"], voices=[VoiceInfo(id="v1", languages=["en"], sample_rate=22050)],
                    max_characters=1000, sample_rate=16000, model_identity="m1")


async def test_cached_sentences_at_the_start_and_end_of_a_piece_answer_and_the_rest_goes_whole() -> None:
    cache = AudioCache(MemoryTier(1 << 20), None)
    for text in ("One.", "Two.", "Five six."):
        await cache.put(cache_key(request(text=text), "piper", "m1", 22050, SCOPE), _pcm(text), "joe")
    lookup = await resolve(cache, [request(text="One. Two. Three. Four. Five six.")], CAPS, "joe", SCOPE)
    assert [(p.request.text, p.cached is not None) for p in lookup.parts] == [
        ("One. Two.", True), ("Three. Four.", False), ("Five six.", True)]
    assert lookup.parts[0].cached == _pcm("One.Two.")
    assert lookup.outcome == "partial"
    await lookup.made(1, _pcm("Three.Four."))
    # The run is kept alone, and the whole piece too once all its parts are known.
    whole = await resolve(cache, [request(text="One. Two. Three. Four. Five six.")], CAPS, "joe", SCOPE)
    assert whole.outcome == "hit" and len(whole.parts) == 1
    assert whole.parts[0].cached.pcm == b"".join(  # type: ignore[union-attr]
        _pcm(t).pcm for t in ("One.", "Two.", "Three.Four.", "Five six."))
    assert (await resolve(cache, [request(text="Three. Four.")], CAPS, "joe", SCOPE)).outcome == "hit"


async def test_a_piece_is_never_more_than_three_parts_however_its_sentences_are_cached() -> None:
    """Every other sentence cached: one engine call for the piece, not one per run between
    cached sentences (each would be a provider call, or a Ray hop)."""
    cache = AudioCache(MemoryTier(1 << 20), None)
    words = [f"W{i}." for i in range(40)]
    for text in words[::2]:
        await cache.put(cache_key(request(text=text), "piper", "m1", 22050, SCOPE), _pcm(text), "joe")
    lookup = await resolve(cache, [request(text=" ".join(words))], CAPS, "joe", SCOPE)
    assert [(p.request.text, p.cached is not None) for p in lookup.parts] == [
        ("W0.", True), (" ".join(words[1:]), False)]


async def test_a_piece_with_no_cached_sentence_at_either_end_goes_whole() -> None:
    cache = AudioCache(MemoryTier(1 << 20), None)
    await cache.put(cache_key(request(text="Two."), "piper", "m1", 22050, SCOPE), _pcm("Two."), "joe")
    lookup = await resolve(cache, [request(text="One. Two. Three.")], CAPS, "joe", SCOPE)
    assert [p.request.text for p in lookup.parts] == ["One. Two. Three."] and lookup.outcome == "miss"


async def test_an_engine_that_answers_a_piece_in_one_call_only_hits_whole_pieces() -> None:
    """A cloud engine pays per call: its pieces are never split around cached sentences."""
    cache = AudioCache(MemoryTier(1 << 20), None)
    cloud = CAPS.model_copy(update={"engine": "google_tts", "one_chunk_per_call": True})
    for text in ("One.", "Three."):
        await cache.put(cache_key(request(text=text), "google_tts", "m1", 22050, SCOPE), _pcm(text), "joe")
    lookup = await resolve(cache, [request(text="One. Two. Three.")], cloud, "joe", SCOPE)
    assert [(p.request.text, p.cached is not None) for p in lookup.parts] == [("One. Two. Three.", False)]


async def test_a_sentence_is_kept_only_under_the_text_the_engine_says_it_spoke() -> None:
    """An engine whose sentences are cut elsewhere than `split_sentences` cuts them (as
    espeak-ng does after a blank line, and not after `...`) would have each sentence's key
    store the next sentence's audio: then nothing is kept per sentence, the whole still is."""
    cache = AudioCache(MemoryTier(1 << 20), None)
    text = "Go away... Welcome to Chorus. You are hacked\n\nbye."
    lookup = await resolve(cache, [request(text=text)], CAPS, "joe", SCOPE)
    assert [t for t, _ in lookup.parts[0].sentences] == ["Go away...", "Welcome to Chorus.", "You are hacked\n\nbye."]
    shifted = ["Go away... Welcome to Chorus.", "You are hacked", "bye."]  # the same count, other boundaries
    await lookup.made(0, AudioResult(pcm=b"".join(_pcm(t).pcm for t in shifted), sample_rate=22050,
                                     sentences=[Sentence(text=t, samples=len(_pcm(t).pcm) // 2) for t in shifted]))
    for sentence in ("Go away...", "Welcome to Chorus.", "You are hacked\n\nbye."):
        assert await cache.get(cache_key(request(text=sentence), "piper", "m1", 22050, SCOPE), "joe") is None
    assert await cache.get(cache_key(request(text=text), "piper", "m1", 22050, SCOPE), "joe") is not None
    # Reported with the texts looked up, each sentence is kept with its own audio.
    said = ["Go away...", "Welcome to Chorus.", "You are hacked\n\nbye."]
    again = await resolve(cache, [request(text="Go away... Welcome to Chorus. You are hacked\n\nbye, then.")],
                          CAPS, "joe", SCOPE)
    await again.made(0, AudioResult(pcm=b"".join(_pcm(t).pcm for t in [*said[:2], said[2][:-1] + ", then."]),
                                    sample_rate=22050, sentences=[
                                        Sentence(text=t, samples=len(_pcm(t).pcm) // 2)
                                        for t in [*said[:2], said[2][:-1] + ", then."]]))
    welcome = await cache.get(cache_key(request(text="Welcome to Chorus."), "piper", "m1", 22050, SCOPE), "joe")
    assert welcome is not None and welcome.pcm == _pcm("Welcome to Chorus.").pcm


async def test_every_piece_of_an_utterance_is_looked_up_whatever_the_ones_before_found() -> None:
    """Pieces after a whole hit, after a one-sentence piece and after a piece with no cached
    sentence at either end are still looked up (and kept, in order)."""
    cache = AudioCache(MemoryTier(1 << 20), None)
    for text in ("Whole piece. Cached.", "Six."):
        await cache.put(cache_key(request(text=text), "piper", "m1", 22050, SCOPE), _pcm(text), "joe")
    pieces = ["Whole piece. Cached.", "Alone.", "Three. Four. Five.", "Six. Seven."]
    lookup = await resolve(cache, [request(text=t) for t in pieces], CAPS, "joe", SCOPE)
    assert [(p.request.text, p.cached is not None) for p in lookup.parts] == [
        ("Whole piece. Cached.", True), ("Alone.", False), ("Three. Four. Five.", False), ("Six.", True),
        ("Seven.", False)]
    assert lookup.outcome == "partial"


async def test_cached_sentences_at_the_end_only_answer_too() -> None:
    cache = AudioCache(MemoryTier(1 << 20), None)
    await cache.put(cache_key(request(text="Three."), "piper", "m1", 22050, SCOPE), _pcm("Three."), "joe")
    lookup = await resolve(cache, [request(text="One. Two. Three.")], CAPS, "joe", SCOPE)
    assert [(p.request.text, p.cached is not None) for p in lookup.parts] == [("One. Two.", False), ("Three.", True)]


async def test_a_two_sentence_piece_is_looked_up_sentence_by_sentence() -> None:
    cache = AudioCache(MemoryTier(1 << 20), None)
    await cache.put(cache_key(request(text="One."), "piper", "m1", 22050, SCOPE), _pcm("One."), "joe")
    lookup = await resolve(cache, [request(text="One. Two.")], CAPS, "joe", SCOPE)
    assert [(p.request.text, p.cached is not None) for p in lookup.parts] == [("One.", True), ("Two.", False)]


async def test_a_voice_of_its_own_rate_is_keyed_at_that_rate() -> None:
    """The voice a request names (as it arrives: a string of its own, not the literal) keys its
    audio at the voice's rate (22.05 kHz), not the engine's default (16 kHz)."""
    cache = AudioCache(MemoryTier(1 << 20), None)
    voice = "".join(["v", "1"])
    await cache.put(cache_key(request(text="Hi."), "piper", "m1", 22050, SCOPE), _pcm("Hi."), "joe")
    assert (await resolve(cache, [request(text="Hi.", voice=voice)], CAPS, "joe", SCOPE)).outcome == "hit"
    for other in ("v0", "v9"):  # voices the engine does not list (before and after v1): its default rate
        await cache.put(cache_key(request(text="Hi.", voice=other), "piper", "m1", 16000, SCOPE), _pcm("Hi."), "joe")
        assert (await resolve(cache, [request(text="Hi.", voice=other)], CAPS, "joe", SCOPE)).outcome == "hit"


@pytest.mark.parametrize("said", [
    ["Alpha.", "Beta."],  # other texts, sorting before the ones looked up
    ["Gamma.", "Delta.", "Epsilon."],  # the same texts and one more
])
async def test_sentences_that_are_not_the_ones_looked_up_are_not_kept(said: list[str]) -> None:
    cache = AudioCache(MemoryTier(1 << 20), None)
    lookup = await resolve(cache, [request(text="Gamma. Delta.")], CAPS, "joe", SCOPE)
    await lookup.made(0, AudioResult(pcm=b"".join(_pcm(t).pcm for t in said), sample_rate=22050,
                                     sentences=[Sentence(text=t, samples=len(_pcm(t).pcm) // 2) for t in said]))
    for text in {*said, "Gamma.", "Delta."}:
        assert await cache.get(cache_key(request(text=text), "piper", "m1", 22050, SCOPE), "joe") is None


@pytest.mark.parametrize("extra_samples", [-1, 1])
async def test_sentences_that_do_not_account_for_all_the_audio_are_not_kept(extra_samples: int) -> None:
    cache = AudioCache(MemoryTier(1 << 20), None)
    lookup = await resolve(cache, [request(text="Gamma. Delta.")], CAPS, "joe", SCOPE)
    said = [Sentence(text="Gamma.", samples=3), Sentence(text="Delta.", samples=3 + extra_samples)]
    await lookup.made(0, AudioResult(pcm=b"\1\2" * 6, sample_rate=22050, sentences=said))
    for text in ("Gamma.", "Delta."):
        assert await cache.get(cache_key(request(text=text), "piper", "m1", 22050, SCOPE), "joe") is None
    assert await cache.get(cache_key(request(text="Gamma. Delta."), "piper", "m1", 22050, SCOPE), "joe") is not None


async def test_a_replay_streams_the_cached_pcm_in_chunks() -> None:
    audio = AudioResult(pcm=bytes(range(256)) * 250, sample_rate=16_000)  # 2 s at 16 kHz
    chunks = [c async for c in Replay(audio)]
    assert len(chunks) == 4 and b"".join(c.pcm for c in chunks) == audio.pcm  # half a second each
    assert [c.index for c in chunks] == [0, 1, 2, 3]


def _pcm(text: str) -> AudioResult:
    """Stand-in audio that says its text: its bytes (an even number, as 16-bit PCM is)."""
    data = text.encode()
    return AudioResult(pcm=data + b"\0" * (len(data) % 2), sample_rate=22050)


async def test_the_indexes_forget_what_the_bound_pushed_out(tmp_path: Path) -> None:
    """Security audit L-9: keys stayed in the per-personality indexes after their entries were
    evicted (200,000 puts left 31 MB of index for 52 live entries)."""
    memory = MemoryTier(10 * 1024)
    for i in range(2_000):
        await memory.put(f"k{i}", b"x" * 1024, f"p{i % 3}")
    assert sum(len(keys) for keys in memory._index.values()) == len(memory._entries) == 10
    assert len(memory._owner) == 10
    kept_of_p0 = sum(int(key[1:]) % 3 == 0 for key in memory._entries)  # k1992, k1995, k1998
    assert kept_of_p0 == 3 and await memory.drop_personality("p0") == kept_of_p0
    with redis_server(tmp_path) as url:
        tier = RedisTier(url, ttl_s=600, max_bytes=1 << 20)
        for i in range(40):
            await tier.put(f"k{i}", b"x" * (128 * 1024), f"p{i % 2}")
        members = sum([await tier._redis.scard(f"chorus:audio:personality:p{n}") for n in (0, 1)])
        assert members == len(await tier._redis.keys("chorus:audio:entry:*")) == 8
        assert await tier._redis.hlen("chorus:audio:owners") == 8
        await tier.close()
