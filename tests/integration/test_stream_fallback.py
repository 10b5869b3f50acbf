"""Mid-stream fallback on the real Serve app: the Google engine (its wire-protocol server, real
Piper speech) answers a stream's first piece, then the service breaks; real Piper carries the
stream on from the next sentence, and the one stream, transcribed, says the whole text. As
server-sent events the switch is an event, and the stream ends done."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.servers.google_tts import GoogleTTSServer
from tests.support.speech import word_error_rate

pytestmark = pytest.mark.ray

TEXT = "Please open the door. I would like a cup of coffee. Thank you for your help."


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer) -> ChorusApp:
    chorus.deploy(engines={
        "piper": {"timeout_s": 30},
        # 30 characters a request: the stream's three sentences are three calls to the service.
        "google_tts": {"timeout_s": 30, "config": {"endpoint": google.base_url, "anonymous": True,
                                                   "max_characters": 30}},
    })
    chorus.write("ava", {"activeProvider": "google_tts", "fallbackChain": ["piper"], "languages": {"primary": "en"},
                         "providers": {"google_tts": {"voice": "en-US-Neural2-D"}, "piper": STEADY_PIPER}})
    chorus.wait_for("ava")
    return chorus


@pytest.fixture
def breaks_after_one(google: GoogleTTSServer) -> GoogleTTSServer:
    google.reset()
    google.knobs.fail_after = 1  # the first piece is spoken, every later one gets a 500
    return google


def test_a_stream_whose_engine_breaks_is_carried_on_and_says_the_whole_text(
    app: ChorusApp, breaks_after_one: GoogleTTSServer, ear,  # type: ignore[no-untyped-def]
) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/ava/speech", json={"text": TEXT, "stream": True, "format": "pcm"})
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts"
    rate = int(r.headers["content-type"].split("rate=")[1].split(";")[0])
    heard = ear.hear_pcm(r.content, rate)
    assert word_error_rate(TEXT, heard) <= 0.25, heard
    # Google said the first sentence only; nothing was said twice: the stream is about as long
    # as Piper's whole answer to the text.
    said = [json.loads(q.body)["input"]["text"] for q in breaks_after_one.requests if "synthesize" in q.path]
    assert said[0] == "Please open the door."
    with app.client() as c:
        whole = c.post("/v1/personalities/ava/speech", json={"text": TEXT, "format": "pcm", "provider": "piper"})
    whole_rate = int(whole.headers["content-type"].split("rate=")[1].split(";")[0])
    seconds, alone = len(r.content) / 2 / rate, len(whole.content) / 2 / whole_rate
    assert 0.8 * alone <= seconds <= 1.25 * alone, (seconds, alone)


def test_as_events_the_switch_is_told_and_the_stream_ends_done(
    app: ChorusApp, breaks_after_one: GoogleTTSServer, ear,  # type: ignore[no-untyped-def]
) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/ava/speech", json={"text": TEXT, "stream": True, "format": "pcm",
                                                         "stream_format": "sse"})
    events = [json.loads(line.removeprefix("data:")) for line in r.text.splitlines() if line.startswith("data:")]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "speech.audio.delta" and kinds[-1] == "speech.audio.done" and "error" not in kinds
    (switch,) = [e for e in events if e["type"] == "speech.engine.switch"]
    assert (switch["after"], switch["engine"]) == ("google_tts", "piper") and switch["audio_seconds"] > 0
    pcm = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    rate = int(r.headers["x-chorus-audio-type"].split("rate=")[1].split(";")[0])
    assert word_error_rate(TEXT, ear.hear_pcm(pcm, rate)) <= 0.25
    assert np.frombuffer(pcm, "<i2").size / rate > 3.0
