"""Speech as server-sent events (`stream_format: "sse"`, OpenAI's shape) on both routes,
without Ray: base64 audio deltas that join into the same audio an audio stream sends, one
`speech.audio.done` with the usage, and an `error` event (never a silent cut) when the engine
fails or stalls after its first chunk."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from chorus.speech.encoding import resample
from deployments.base import EngineFailedError
from tests.support.ingress_app import Api

TEXT = "One sentence here. Another one there. And a third."


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    api = Api(tmp_path, stream_chunk_timeout_s=0.5)
    async with api.client:
        yield api


def events(body: bytes) -> list[dict[str, Any]]:
    """The events of an SSE body, as a client parses them: blank-line separated, `data:` lines."""
    assert body.endswith(b"\n\n")
    out = []
    for block in body.decode().split("\n\n")[:-1]:
        data = [line.removeprefix("data:").strip() for line in block.split("\n") if line.startswith("data:")]
        out.append(json.loads("\n".join(data)))
    return out


def audio_of(evs: list[dict[str, Any]]) -> bytes:
    return b"".join(base64.b64decode(e["audio"]) for e in evs if e["type"] == "speech.audio.delta")


async def test_sse_carries_the_same_audio_as_an_audio_stream(api: Api) -> None:
    url, body = "/v1/personalities/joe/speech", {"text": TEXT, "format": "pcm"}
    fresh = {"cache-control": "no-store"}  # both from the engine, sentence by sentence
    plain = await api.client.post(url, json=body | {"stream": True}, headers=fresh)
    r = await api.client.post(url, json=body | {"stream_format": "sse"}, headers=fresh)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.headers["x-chorus-audio-type"] == "audio/L16; rate=16000; channels=1"
    assert r.headers["x-chorus-provider"] == "piper"
    evs = events(r.content)
    assert [e["type"] for e in evs] == ["speech.audio.delta"] * 3 + ["speech.audio.done"]  # a delta a sentence
    assert audio_of(evs) == plain.content
    usage = evs[-1]["usage"]
    seconds = len(plain.content) / 2 / 16_000
    assert usage["characters"] == usage["input_tokens"] == usage["total_tokens"] == len(TEXT)
    assert usage["audio_seconds"] == pytest.approx(seconds, abs=0.001) and usage["engine"] == "piper"


async def test_openai_sse_is_mp3_by_default_and_decodes(api: Api) -> None:
    r = await api.client.post("/v1/audio/speech", json={"model": "gpt-4o-mini-tts", "voice": "joe", "input": TEXT,
                                                         "stream_format": "sse"})
    assert r.status_code == 200 and r.headers["x-chorus-audio-type"] == "audio/mpeg"
    evs = events(r.content)
    assert evs[-1]["type"] == "speech.audio.done"
    audio, rate = sf.read(io.BytesIO(audio_of(evs)), dtype="int16")  # libsndfile's MP3 decoder
    said = len(api.piper.pcm("One sentence here.") + api.piper.pcm("Another one there.") + api.piper.pcm("And a third.")) // 2
    assert rate == 16_000 and said <= len(audio) <= said + 2 * 1152 + 1105  # the encoder's delay and last frame
    assert np.abs(audio).max() > 4000


async def test_g711_goes_out_as_sse_too(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": TEXT, "format": "mulaw",
                                                                     "stream_format": "sse"})
    assert r.headers["x-chorus-audio-type"] == "audio/PCMU; rate=8000; channels=1"
    raw = audio_of(events(r.content))
    audio, _ = sf.read(io.BytesIO(raw), format="RAW", subtype="ULAW", samplerate=8000, channels=1, dtype="int16")
    said = sum(len(s) for s in ("One sentence here.", "Another one there.", "And a third.")) * 0.01  # 10 ms a character
    assert abs(len(audio) - said * 8000) <= 2


async def test_an_engine_carrying_a_stream_on_is_an_event_and_the_stream_ends_done(api: Api) -> None:
    api.piper.error, api.piper.fail_at = EngineFailedError("crashed", "piper"), 1
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": TEXT, "format": "pcm",
                                                                     "stream_format": "sse"})
    evs = events(r.content)
    assert [e["type"] for e in evs] == ["speech.audio.delta", "speech.engine.switch", "speech.audio.delta",
                                        "speech.audio.delta", "speech.audio.done"]
    switch = evs[1]
    assert (switch["engine"], switch["after"], switch["reason"]) == ("google_tts", "piper", "the engine failed")
    assert switch["audio_seconds"] == round(len(api.piper.pcm("One sentence here.")) / 2 / 16_000, 3)
    # Piper's first sentence, then Google's two (24 kHz, brought to the stream's 16 kHz).
    assert [r.text for r in api.google.requests] == ["Another one there. And a third."]
    said = [resample(api.google.pcm(t), 24_000, 16_000) for t in ("Another one there.", "And a third.")]
    assert audio_of(evs) == api.piper.pcm("One sentence here.") + b"".join(said)


async def test_an_engine_failing_mid_stream_ends_with_an_error_event(api: Api) -> None:
    api.piper.says_sentences = False  # what it had said is unknown: no other engine can carry on
    api.piper.error, api.piper.fail_at = EngineFailedError("crashed", "piper"), 1
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": TEXT, "format": "pcm",
                                                                     "stream_format": "sse"})
    assert r.status_code == 200  # the first sentence was on its way before the engine failed
    evs = events(r.content)
    assert [e["type"] for e in evs] == ["speech.audio.delta", "error"]
    assert audio_of(evs) == api.piper.pcm("One sentence here.")
    assert evs[-1]["error"] == {"type": "server_error", "code": "failed", "message": "piper: the engine failed"}


async def test_an_engine_stalling_mid_stream_ends_with_an_error_event(api: Api) -> None:
    api.piper.says_sentences = False
    api.piper.stall_at = 1
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": TEXT, "format": "pcm",
                                                                     "stream_format": "sse"})
    evs = events(r.content)
    assert [e["type"] for e in evs] == ["speech.audio.delta", "error"]
    assert evs[-1]["error"] == {"type": "server_error", "code": "timeout", "message": "piper: no audio within 0.5 s"}


async def test_a_stall_ends_an_audio_stream_quietly(api: Api) -> None:
    """The same stall in a plain audio stream: the body ends after the first sentence."""
    api.piper.says_sentences = False
    api.piper.stall_at = 1
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": TEXT, "stream": True, "format": "pcm"})
    assert r.status_code == 200 and r.content == api.piper.pcm("One sentence here.")


@pytest.mark.parametrize(("url", "body", "param"), [
    ("/v1/personalities/joe/speech", {"text": TEXT, "format": "aac", "stream_format": "sse"}, "format"),
    ("/v1/audio/speech", {"model": "tts-1", "voice": "joe", "input": TEXT, "response_format": "opus",
                          "stream_format": "sse"}, "response_format"),
])
async def test_formats_that_cannot_stream_are_refused_by_name(api: Api, url: str, body: dict[str, Any],
                                                              param: str) -> None:
    r = await api.client.post(url, json=body)
    assert r.status_code == 422 and "streaming sends alaw, mp3, mulaw, pcm, wav" in r.text
    assert api.piper.requests == []
    if url == "/v1/audio/speech":
        assert r.json()["error"]["param"] == param
