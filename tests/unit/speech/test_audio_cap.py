"""No request produces more than `max_audio_seconds` of audio (security audit M-8): refused
before synthesis when its text at its speed would, cut off while its parts arrive when the
engines' audio grows past it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.ingress_app import Api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    api = Api(tmp_path, max_audio_seconds=5.0)
    async with api.client:
        yield api


async def test_a_text_that_would_be_too_long_at_its_speed_is_refused_before_synthesis(api: Api) -> None:
    # 30 characters: about 2 s at speed 1, about 9 s at OpenAI's slowest speed.
    text = "Say this slowly, if you would."
    body = {"model": "tts-1", "voice": "joe", "input": text, "response_format": "wav"}
    assert (await api.client.post("/v1/audio/speech", json={**body, "speed": 1.0})).status_code == 200
    slow = await api.client.post("/v1/audio/speech", json={**body, "speed": 0.25})
    assert slow.status_code == 413 and slow.json()["limit_seconds"] == 5.0
    assert "would be about 9 s of audio" in slow.json()["error"]["message"]
    assert len(api.piper.requests) == 1  # the slow one never reached an engine


async def test_audio_growing_past_the_limit_ends_the_request_without_falling_back(api: Api) -> None:
    api.piper.seconds_per_character = 1.0  # an engine that speaks far slower than estimated
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": "Too long."})
    assert r.status_code == 413 and "the audio grew past 5 seconds" in r.json()["detail"]
    assert len(api.piper.requests) == 1 and api.google.requests == []  # the size is the caller's


async def test_a_stream_ends_at_the_limit(api: Api) -> None:
    api.piper.seconds_per_character = 0.3  # 3 s a sentence of 10 characters
    body = {"text": "Sentence 1. Sentence 2. Sentence 3.", "stream": True, "format": "pcm"}
    r = await api.client.post("/v1/personalities/joe/speech", json=body)
    assert r.status_code == 200
    sentence = len(api.piper.pcm("Sentence 1."))
    assert len(r.content) == sentence  # the second would pass 5 s: the body ends after the first
