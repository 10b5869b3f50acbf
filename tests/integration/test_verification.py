"""Verified output through the real Serve app and its Recognizer deployment: Google's
wire-protocol server answering every request with another text's audio (real Piper speech,
the wrong words) is refused by verification, and real Piper answers, whole and streamed; in
report mode the wrong words go out, and say so. The verdicts reach the statistics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.servers.google_tts import GoogleTTSServer
from tests.support.speech import word_error_rate

pytestmark = pytest.mark.ray

TEXT = "Please open the door. I would like a cup of coffee."
OTHER = "The store opens at nine in the morning. Thank you for your help."


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer) -> ChorusApp:
    chorus.deploy(engines={
        "piper": {"timeout_s": 30},
        "google_tts": {"timeout_s": 30, "config": {"endpoint": google.base_url, "anonymous": True}},
    }, recognizer={"enabled": True})
    chain = {"activeProvider": "google_tts", "fallbackChain": ["piper"], "languages": {"primary": "en"},
             "providers": {"google_tts": {"voice": "en-US-Neural2-D"}, "piper": STEADY_PIPER}}
    chorus.write("checked", {**chain, "verify": {"maxWordErrorRate": 0.5, "mode": "enforce"}})
    chorus.write("reported", {**chain, "verify": {"mode": "report"}})
    for name in ("checked", "reported"):
        chorus.wait_for(name)
    return chorus


@pytest.fixture
def wrong_words(google: GoogleTTSServer) -> Iterator[GoogleTTSServer]:
    google.reset()
    google.knobs.say_instead = OTHER
    yield google
    google.reset()


def rate_of(r: Any) -> int:
    return int(r.headers["content-type"].split("rate=")[1].split(";")[0])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_the_wrong_words_are_refused_and_piper_answers(app: ChorusApp, wrong_words: GoogleTTSServer, ear: Any,
                                                        stream: bool) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/checked/speech", json={"text": TEXT, "format": "pcm", "stream": stream})
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "piper"
    fallback = r.headers["x-chorus-fallback"]
    assert fallback.startswith('google_tts;outcome=failed;reason="verification: WER '), fallback
    assert any("synthesize" in q.path for q in wrong_words.requests)  # Google was asked, and answered
    heard = ear.hear_pcm(r.content, rate_of(r))
    assert word_error_rate(TEXT, heard) <= 0.25, heard
    if not stream:  # a stream's headers leave before its pieces are heard
        verdict = r.headers["x-chorus-verify"]
        assert verdict.startswith("passed; wer=") and verdict.endswith("; max=0.50; mode=enforce"), verdict


def test_right_words_pass_and_say_so(app: ChorusApp, google: GoogleTTSServer) -> None:
    google.reset()
    with app.client() as c:
        r = c.post("/v1/personalities/checked/speech", json={"text": TEXT, "format": "wav"})
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts"
    assert "x-chorus-fallback" not in r.headers
    assert r.headers["x-chorus-verify"].startswith("passed; wer=")


def test_reported_wrong_words_go_out_and_say_how_far_off_they_were(app: ChorusApp, wrong_words: GoogleTTSServer,
                                                                   ear: Any) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/reported/speech", json={"text": TEXT, "format": "pcm"})
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "google_tts"
    verdict = r.headers["x-chorus-verify"]
    assert verdict.startswith("failed; wer=") and verdict.endswith("; max=0.50; mode=report"), verdict
    assert float(verdict.split("wer=")[1].split(";")[0]) > 0.5
    heard = ear.hear_pcm(r.content, rate_of(r))  # what it really said (the server's Piper is not pinned)
    assert word_error_rate(OTHER, heard) < min(0.5, word_error_rate(TEXT, heard)), heard


def test_the_verdicts_reach_the_statistics(app: ChorusApp, wrong_words: GoogleTTSServer) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/checked/speech", json={"text": TEXT, "format": "wav"})
        assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
        deadline = time.monotonic() + 15
        while True:  # each replica flushes its figures about every second
            engines = c.get("/v1/stats", params={"window": "5m"}).json()["engines"]
            google, piper = (engines.get(e, {}).get("verification", {}) for e in ("google_tts", "piper"))
            if (google.get("failed", 0) >= 1 and piper.get("passed", 0) >= 1) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
    assert google.get("failed", 0) >= 1 and piper.get("passed", 0) >= 1, engines
