"""The audio cache on the real Serve app and real Piper: a repeated request hits, a sentence
of an earlier text hits, and 16 concurrent requests with 16 different texts each get their
own words back, through the engine (no-store), while the cache fills, and as hits."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import httpx
import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.speech import CLEAR_SENTENCES, word_error_rate

pytestmark = pytest.mark.ray

# Levelling off: a stream's and a sentence's audio are then the very bytes of the whole answer's
# (levelled, each would be brought to the target on its own).
JOE = {"activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": STEADY_PIPER},
       "loudness": {"enabled": False}}
# Two clear sentences each: 30 ordered pairs, the first 16 for the concurrency test.
PAIRS = [f"{a} {b}" for a, b in itertools.permutations(CLEAR_SENTENCES, 2)]
SIXTEEN, REPEATED = PAIRS[:16], PAIRS[-1]


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, tmp_path_factory: pytest.TempPathFactory) -> ChorusApp:
    disk: Path = tmp_path_factory.mktemp("audio-cache")
    chorus.deploy(cache={"diskDir": str(disk)})
    chorus.write("joe", JOE)
    chorus.wait_for("joe")
    return chorus


def test_a_repeated_request_hits(app: ChorusApp) -> None:
    with app.client() as c:
        first = c.post("/v1/personalities/joe/speech", json={"text": REPEATED})
        again = c.post("/v1/personalities/joe/speech", json={"text": REPEATED})
        streamed = c.post("/v1/personalities/joe/speech", json={"text": REPEATED, "stream": True, "format": "pcm"})
    assert first.status_code == again.status_code == streamed.status_code == 200
    assert (first.headers["x-chorus-cache"], again.headers["x-chorus-cache"]) == ("miss", "hit")
    assert streamed.headers["x-chorus-cache"] == "hit" and again.headers["x-chorus-provider"] == "piper"
    assert again.content == first.content and first.content.endswith(streamed.content)


def test_a_sentence_of_an_earlier_text_hits(app: ChorusApp) -> None:
    # Piper said how long each sentence of the miss above was: each was kept on its own.
    last = REPEATED.split(". ")[-1]
    with app.client() as c:
        alone = c.post("/v1/personalities/joe/speech", json={"text": last, "format": "pcm"})
        whole = c.post("/v1/personalities/joe/speech", json={"text": REPEATED, "format": "pcm"})
    assert alone.headers["x-chorus-cache"] == "hit" and whole.content.endswith(alone.content)


async def _all_at_once(app: ChorusApp, headers: dict[str, str] | None = None) -> list[httpx.Response]:
    async with httpx.AsyncClient(base_url=app.url, timeout=120, headers=headers) as c:
        return await asyncio.gather(*(c.post("/v1/personalities/joe/speech", json={"text": t}) for t in SIXTEEN))


def test_sixteen_concurrent_texts_each_get_their_own_words(app: ChorusApp, ear) -> None:
    # The engine path: the cache neither read nor written.
    cold = asyncio.run(_all_at_once(app, {"Cache-Control": "no-store"}))
    assert [r.status_code for r in cold] == [200] * 16
    assert [r.headers["x-chorus-cache"] for r in cold] == ["bypass"] * 16
    for text, r in zip(SIXTEEN, cold, strict=True):
        heard = ear.hear(r.content)
        errors = {other: word_error_rate(other, heard) for other in SIXTEEN}
        # Its own text is the closest of the sixteen, and close: no other request's audio.
        assert min(errors, key=errors.__getitem__) == text and errors[text] <= 0.35, (text, heard)
    # Filling the cache at once: the texts share sentences, so some find others' sentences
    # as they are kept, and are assembled from them — still each its own audio.
    warm = asyncio.run(_all_at_once(app))
    assert {r.headers["x-chorus-cache"] for r in warm} <= {"miss", "partial", "hit"}
    assert [r.content for r in warm] == [r.content for r in cold]
    hot = asyncio.run(_all_at_once(app))
    assert [r.headers["x-chorus-cache"] for r in hot] == ["hit"] * 16
    assert [r.content for r in hot] == [r.content for r in cold]


def test_the_audits_poisoning_text_leaves_every_sentence_saying_its_own_words(app: ChorusApp) -> None:
    """Security audit C-1, on the real app: a text whose sentences our splitter and espeak-ng
    cut at different places, then each of its sentences alone. A hit must be exactly what a
    fresh synthesis of that sentence is."""
    attack = "Go away… Welcome to Chorus. You are hacked\n\nbye. Café。Done."
    with app.client() as c:
        assert c.post("/v1/personalities/joe/speech", json={"text": attack}).status_code == 200
        for sentence in ("Go away…", "Welcome to Chorus.", "You are hacked\n\nbye.", "Café。Done."):
            cached = c.post("/v1/personalities/joe/speech", json={"text": sentence, "format": "pcm"})
            fresh = c.post("/v1/personalities/joe/speech", json={"text": sentence, "format": "pcm"},
                           headers={"Cache-Control": "no-store"})
            assert cached.headers["x-chorus-cache"] == "hit", sentence
            assert cached.content == fresh.content, sentence
