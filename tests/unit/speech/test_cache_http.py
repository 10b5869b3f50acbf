"""The audio cache through the HTTP layer (tests/unit/ingress/test_http.py's app: scripted engines,
the personality `joe`, httpx over ASGI): headers, no-store, sentences, streams, DELETE."""

from __future__ import annotations

import io

import pytest
import soundfile as sf

from deployments.base import EngineFailedError
from tests.support.ingress_app import JOE, Api

SPEECH = "/v1/personalities/joe/speech"


def pcm_of(wav: bytes) -> bytes:
    audio, _ = sf.read(io.BytesIO(wav), dtype="int16")
    return audio.tobytes()


async def test_a_repeated_request_is_a_hit_in_any_format(api: Api) -> None:
    first = await api.client.post(SPEECH, json={"text": "Hello there."})
    again = await api.client.post(SPEECH, json={"text": "Hello there."})
    pcm = await api.client.post(SPEECH, json={"text": "Hello there.", "format": "pcm"})
    assert (first.headers["x-chorus-cache"], again.headers["x-chorus-cache"], pcm.headers["x-chorus-cache"]) == (
        "miss", "hit", "hit")
    assert again.headers["x-chorus-provider"] == "piper"  # the engine that made it
    assert len(api.piper.requests) == 1
    assert again.content == first.content and pcm.content == api.piper.pcm("Hello there.")


async def test_openai_route_shares_the_entries_and_says_so(api: Api) -> None:
    await api.client.post(SPEECH, json={"text": "Hello there."})
    r = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "joe", "input": "Hello there.",
                                                        "response_format": "wav"})
    assert r.status_code == 200 and r.headers["x-chorus-cache"] == "hit" and len(api.piper.requests) == 1


async def test_no_store_neither_reads_nor_writes(api: Api) -> None:
    await api.client.post(SPEECH, json={"text": "Hello there."})
    bypass = await api.client.post(SPEECH, json={"text": "Hello there."}, headers={"Cache-Control": "No-Store"})
    fresh = await api.client.post(SPEECH, json={"text": "Something new."}, headers={"cache-control": "max-age=0, no-store"})
    later = await api.client.post(SPEECH, json={"text": "Something new."})
    assert (bypass.headers["x-chorus-cache"], fresh.headers["x-chorus-cache"], later.headers["x-chorus-cache"]) == (
        "bypass", "bypass", "miss")
    assert [r.text for r in api.piper.requests] == ["Hello there.", "Hello there.", "Something new.", "Something new."]


async def test_a_paragraph_only_synthesizes_its_new_sentence(api: Api) -> None:
    for sentence in ("One is here.", "Two is here.", "Three is here."):
        await api.client.post(SPEECH, json={"text": sentence})
    text = "One is here. Two is here. New words. Three is here."
    r = await api.client.post(SPEECH, json={"text": text, "format": "pcm"})
    assert r.headers["x-chorus-cache"] == "partial"
    assert [q.text for q in api.piper.requests[3:]] == ["New words."]
    assert r.content == b"".join(api.piper.pcm(s) for s in ("One is here.", "Two is here.", "New words.",
                                                              "Three is here."))
    whole = await api.client.post(SPEECH, json={"text": text, "format": "pcm"})
    assert whole.headers["x-chorus-cache"] == "hit" and whole.content == r.content and len(api.piper.requests) == 4


async def test_a_miss_keeps_each_sentence_for_later_texts(api: Api) -> None:
    first = await api.client.post(SPEECH, json={"text": "One is here. Two is here. Three is here."})
    assert first.headers["x-chorus-cache"] == "miss" and len(api.piper.requests) == 1
    text = "Two is here. New words. Three is here. One is here."
    r = await api.client.post(SPEECH, json={"text": text, "format": "pcm"})
    assert r.headers["x-chorus-cache"] == "partial"
    assert [q.text for q in api.piper.requests[1:]] == ["New words."]
    assert r.content == b"".join(api.piper.pcm(s) for s in ("Two is here.", "New words.", "Three is here.",
                                                              "One is here."))


async def test_a_streamed_miss_keeps_each_sentence_too(api: Api) -> None:
    async with api.client.stream("POST", SPEECH, json={"text": "One is here. Two is here.", "stream": True}) as r:
        assert r.headers["x-chorus-cache"] == "miss"
        await r.aread()
    again = await api.client.post(SPEECH, json={"text": "Two is here.", "format": "pcm"})
    assert again.headers["x-chorus-cache"] == "hit" and again.content == api.piper.pcm("Two is here.")


async def test_a_stream_hit_streams_from_the_cache(api: Api) -> None:
    body = {"text": "One. Two.", "stream": True, "format": "pcm"}
    first = await api.client.post(SPEECH, json=body)
    again = await api.client.post(SPEECH, json=body)
    assert (first.headers["x-chorus-cache"], again.headers["x-chorus-cache"]) == ("miss", "hit")
    assert again.content == first.content == api.piper.pcm("One.") + api.piper.pcm("Two.")
    assert len(api.piper.requests) == 1
    # Streamed and whole answers share the entry.
    whole = await api.client.post(SPEECH, json={"text": "One. Two."})
    assert whole.headers["x-chorus-cache"] == "hit" and pcm_of(whole.content) == first.content


async def test_a_stream_cut_short_is_not_kept_nor_a_failure(api: Api) -> None:
    api.piper.says_sentences = False  # no other engine can carry it on
    api.piper.error, api.piper.fail_at = EngineFailedError("broke", "piper"), 1
    with pytest.raises(EngineFailedError):  # after "One." the body breaks off (ASGI hands the test the error)
        await api.client.post(SPEECH, json={"text": "One. Two.", "stream": True, "format": "pcm"})
    api.piper.error = EngineFailedError("broke", "piper")
    api.piper.fail_at = 0
    failed = await api.client.post(SPEECH, json={"text": "Three."})
    assert failed.headers["x-chorus-provider"] == "google_tts" and failed.headers["x-chorus-cache"] == "miss"
    api.piper.error = None
    for text in ("One. Two.", "Three."):
        r = await api.client.post(SPEECH, json={"text": text})
        assert (r.headers["x-chorus-provider"], r.headers["x-chorus-cache"]) == ("piper", "miss")


async def test_a_changed_personality_never_hits_old_entries(api: Api) -> None:
    await api.client.post(SPEECH, json={"text": "Hello there."})
    faster = {**JOE, "providers": {**JOE["providers"], "piper": {"voice": "en_US-joe-medium", "settings": {"speed": 1.2}}}}
    assert (await api.client.put("/v1/personalities/joe", json=faster)).status_code in (200, 201)
    changed = await api.client.post(SPEECH, json={"text": "Hello there."})
    assert changed.headers["x-chorus-cache"] == "miss" and api.piper.requests[-1].settings.speed == 1.2
    other_voice = {**faster, "providers": {**faster["providers"], "piper": {"voice": "en_US-other"}}}
    assert (await api.client.put("/v1/personalities/joe", json=other_voice)).status_code in (200, 201)
    assert (await api.client.post(SPEECH, json={"text": "Hello there."})).headers["x-chorus-cache"] == "miss"
    assert len(api.piper.requests) == 3


async def test_cloud_characters_are_not_billed_for_cached_pieces(api: Api) -> None:
    for _ in range(3):
        await api.client.post(SPEECH, json={"text": "Hello there.", "provider": "google_tts"})
    used = await api.replica.meter.used()
    assert sum(used.values()) == len("Hello there.") and len(api.google.requests) == 1


async def test_delete_drops_a_personality_or_everything(api: Api) -> None:
    await api.client.post(SPEECH, json={"text": "Hello there."})
    await api.client.post(SPEECH, json={"text": "Hello again."})
    r = await api.client.delete("/v1/cache", params={"personality": "joe"})
    assert r.status_code == 200 and r.json() == {"personality": "joe", "dropped": {"memory": 2}}
    assert (await api.client.post(SPEECH, json={"text": "Hello there."})).headers["x-chorus-cache"] == "miss"
    assert (await api.client.delete("/v1/cache", params={"personality": "ann"})).json()["dropped"] == {"memory": 0}
    everything = await api.client.delete("/v1/cache")
    assert everything.json() == {"personality": None, "dropped": {"memory": 1}}
    assert (await api.client.post(SPEECH, json={"text": "Hello there."})).headers["x-chorus-cache"] == "miss"


async def test_hits_count_in_the_statistics(api: Api) -> None:
    for _ in range(3):
        await api.client.post(SPEECH, json={"text": "Hello there."})
    await api.replica.stats.flush()
    stats = (await api.client.get("/v1/stats", params={"window": "5m"})).json()
    assert (stats["personalities"]["joe"]["cacheHits"], stats["engines"]["piper"]["cacheHits"]) == (2, 2)
