"""The audio cache never answers a text with audio of other words (security audit C-1).

Real Piper in process (its bundled voice, noise pinned so a text always sounds the same)
behind the ingress app: every sentence of every text in a corpus of punctuation where our
sentence splitter and espeak-ng's disagree is asked for on its own after the text, and each
answer the cache gives must be the audio a fresh synthesis of that sentence gives."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import yaml

from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from deployments.base import split_sentences
from deployments.piper import BUNDLED_VOICE, Piper
from tests.support.chorus_app import STEADY_PIPER, personality
from tests.support.engine_handles import LocalHandle

SPEECH = "/v1/personalities/{}/speech"
# Where the two splitters part (the audit's list), and what else a text may hold.
DIVERGENT = ["… ", "...", "... ", "\n\n", "。", "।", "\xa0", "e.g. ", "Dr. ", " etc. ", "?!", "!) ", ".\" "]
WORDS = ["Welcome to Chorus", "you are hacked", "go away", "bye", "the shop opens at nine", "thank you",
         "it costs 3.50 today", "see you soon", "call us back", "good morning"]


def corpus() -> list[str]:
    """The audit's own text, each divergence between two sentences, and mixes of them."""
    texts = ["Go away… Welcome to Chorus. You are hacked\n\nbye."]
    texts += [f"First words{sep}Welcome to Chorus. Last words." for sep in DIVERGENT]
    rng = random.Random(7)
    for _ in range(16):
        parts = [rng.choice(WORDS) + rng.choice(DIVERGENT + [". ", "! ", "? "]) for _ in range(rng.randint(3, 5))]
        texts.append("".join(parts).strip())
    return texts


class App:
    def __init__(self, root: Path, piper: Piper) -> None:
        folder = root / "personalities"
        folder.mkdir()
        for name in ("joe", "ann"):  # the same voice, two personalities
            spec = {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}}
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(personality(name, spec)))
        config = IngressConfig(personalities={"directory": folder}, samples={"directory": root / "samples"},
                               timeouts={"piper": 30}, cache={"enabled": True, "diskDir": None})
        self.replica = Replica(config, EngineBoard({"piper": LocalHandle(piper)}))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.replica)),
                                        base_url="http://127.0.0.1", timeout=60)

    async def pcm(self, text: str, name: str = "joe", **headers: str) -> httpx.Response:
        r = await self.client.post(SPEECH.format(name), json={"text": text, "format": "pcm"}, headers=headers)
        assert r.status_code == 200, r.text
        return r


@pytest.fixture(scope="module")
def piper() -> Piper:
    return Piper({})


@pytest.fixture
async def app(tmp_path: Path, piper: Piper) -> AsyncIterator[App]:
    app = App(tmp_path, piper)
    async with app.client:
        yield app


def test_the_corpus_holds_texts_where_espeak_splits_elsewhere(piper: Piper) -> None:
    """The property below is only worth something on texts where the splitters disagree."""
    voice = piper.voices[BUNDLED_VOICE].voice
    differ = [t for t in corpus() if len(voice.phonemize(t)) != len(split_sentences(t))]
    assert len(differ) >= 8, differ


async def test_no_cached_sentence_says_other_words_than_its_own(app: App) -> None:
    fresh: dict[str, bytes] = {}
    hits = 0
    for text in corpus():
        assert (await app.pcm(text)).headers["x-chorus-cache"] in ("miss", "partial", "hit")
        for sentence in split_sentences(text):
            answer = await app.pcm(sentence)
            if sentence not in fresh:
                fresh[sentence] = (await app.pcm(sentence, **{"Cache-Control": "no-store"})).content
            if answer.headers["x-chorus-cache"] == "hit":
                hits += 1
                assert answer.content == fresh[sentence], (text, sentence)
    # Sentences of misses are kept: most of them answered from the cache.
    assert hits >= len(fresh) // 2


async def test_the_audits_attack_leaves_welcome_saying_welcome(app: App) -> None:
    await app.pcm("Go away… Welcome to Chorus. You are hacked\n\nbye.")
    honest = (await app.pcm("Welcome to Chorus.", **{"Cache-Control": "no-store"})).content
    later = await app.pcm("Welcome to Chorus.")
    assert later.headers["x-chorus-cache"] == "hit" and later.content == honest


async def test_one_personalitys_entries_never_answer_another_sharing_its_voice(app: App) -> None:
    await app.pcm("Welcome to Chorus.", name="ann")
    assert (await app.pcm("Welcome to Chorus.", name="joe")).headers["x-chorus-cache"] == "miss"
    # And a drop by personality takes every entry it wrote.
    assert (await app.client.delete("/v1/cache", params={"personality": "ann"})).status_code == 200
    assert (await app.pcm("Welcome to Chorus.", name="ann")).headers["x-chorus-cache"] == "miss"
