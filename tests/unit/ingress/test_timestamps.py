"""Word timestamps through the HTTP layer, without Ray: the JSON answer (the audio itself,
base64, and when each word is heard), each sentence timed by the best source there is (the
engine's own durations, else forced alignment, else shared by length; sentence-level in a
language with no aligner), and `speech.word` events in an SSE stream. What the aligner finds in
real speech is tested against real Piper in tests/integration/test_timestamps.py."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest
import soundfile as sf

from tests.support.ingress_app import Api

URL = "/v1/personalities/joe/speech"
TEXT = "Hello there. How are you today?"


async def test_the_answer_is_json_with_the_audio_and_its_words(api: Api) -> None:
    plain = await api.client.post(URL, json={"text": TEXT}, headers={"cache-control": "no-store"})
    r = await api.client.post(URL, json={"text": TEXT, "timestamps": True}, headers={"cache-control": "no-store"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["x-chorus-provider"] == "piper"
    body = r.json()
    assert base64.b64decode(body["audio"]) == plain.content  # the same wav
    assert (body["format"], body["sample_rate"], body["engine"], body["granularity"]) == ("wav", 16_000, "piper", "word")
    # The scripted engine's own durations: 10 ms a character, a character's pause between words,
    # the second sentence after the first's 12 characters (0.12 s).
    assert [(w["text"], w["start"], w["end"]) for w in body["words"]] == [
        ("Hello", 0.0, 0.05), ("there.", 0.06, 0.12),
        ("How", 0.12, 0.15), ("are", 0.16, 0.19), ("you", 0.2, 0.23), ("today?", 0.24, 0.3)]
    assert [(s["text"], s["start"], s["end"], s["words_from"]) for s in body["sentences"]] == [
        ("Hello there.", 0.0, 0.12, "engine"), ("How are you today?", 0.12, 0.3, "engine")]


async def test_the_rate_and_format_asked_for_are_what_the_json_carries(api: Api) -> None:
    r = await api.client.post(URL, json={"text": TEXT, "timestamps": True, "format": "mulaw"})
    body = r.json()
    assert (body["format"], body["sample_rate"]) == ("mulaw", 8000)
    assert sf.info(io.BytesIO(base64.b64decode(body["audio"]))).subtype == "ULAW"
    assert body["words"][-1]["end"] == 0.3  # seconds do not depend on the rate


async def test_an_engine_without_durations_is_aligned_or_estimated(api: Api) -> None:
    """The scripted engine's audio is a tone, which the aligner cannot place "Zyxwv" in (not in
    its dictionary): the sentence's 0.23 s are shared among its words by their length."""
    api.piper.word_timings = False
    r = await api.client.post(URL, json={"text": "Zyxwv is not a word.", "timestamps": True})
    body = r.json()
    assert body["sentences"] == [{"text": "Zyxwv is not a word.", "start": 0.0, "end": 0.2, "words_from": "estimate"}]
    ends = [w["end"] for w in body["words"]]
    assert [w["text"] for w in body["words"]] == ["Zyxwv", "is", "not", "a", "word."]
    assert ends == pytest.approx([0.2 * n / 16 for n in (5, 7, 10, 11, 16)], abs=0.001)  # by their characters


async def test_audio_the_aligner_finds_no_speech_in_is_estimated_not_an_error(api: Api) -> None:
    """Known words, but a tone: the aligner finds no alignment at all (pocketsphinx gives no
    segments), which is an estimate, not a 500."""
    api.piper.word_timings = False
    r = await api.client.post(URL, json={"text": "Open the door.", "timestamps": True})
    assert r.status_code == 200, r.text
    assert [(s["words_from"], s["end"]) for s in r.json()["sentences"]] == [("estimate", 0.14)]


async def test_a_language_without_an_aligner_gets_sentence_timestamps_and_says_so(api: Api) -> None:
    api.google.word_timings = False
    r = await api.client.post(URL, json={"text": "Hola. ¿Qué tal?", "language": "es", "timestamps": True})
    body = r.json()
    assert body["engine"] == "google_tts" and body["granularity"] == "sentence" and body["words"] == []
    assert [(s["start"], s["end"], s["words_from"]) for s in body["sentences"]] == [
        (0.0, 0.05, "sentence"), (0.05, 0.14, "sentence")]


async def test_sse_streams_word_events_where_their_audio_is(api: Api) -> None:
    r = await api.client.post(URL, json={"text": TEXT, "format": "pcm", "stream_format": "sse", "timestamps": True})
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    kinds = [e["type"] for e in events]
    assert kinds == ["speech.audio.delta"] + ["speech.word"] * 2 + ["speech.audio.delta"] + ["speech.word"] * 4 + [
        "speech.audio.done"]  # each sentence's words right after its audio
    words = [(e["text"], e["start"], e["end"]) for e in events if e["type"] == "speech.word"]
    assert words[1] == ("there.", 0.06, 0.12) and words[2] == ("How", 0.12, 0.15)


async def test_a_stream_that_does_not_say_its_sentences_gets_its_words_at_its_end(api: Api) -> None:
    """The cloning engines stream model steps, not sentences: once all the audio is there, it
    is timed against the whole text (here shared by length: a tone), before the stream's end."""
    api.piper.says_sentences = False
    r = await api.client.post(URL, json={"text": TEXT, "format": "pcm", "stream_format": "sse", "timestamps": True},
                              headers={"cache-control": "no-store"})
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    assert [e["type"] for e in events] == ["speech.audio.delta"] * 2 + ["speech.word"] * 6 + ["speech.audio.done"]
    words = [e for e in events if e["type"] == "speech.word"]
    assert [w["text"] for w in words] == TEXT.split()
    # 0.3 s of audio (10 ms a character, 12 + 18 characters), shared by the 26 characters of the words.
    assert words[0]["start"] == 0 and words[-1]["end"] == pytest.approx(0.3, abs=0.001)
    assert [w["end"] for w in words] == pytest.approx([0.3 * n / 26 for n in (5, 11, 14, 17, 20, 26)], abs=0.002)


async def test_a_cut_stream_gets_no_words_it_cannot_place(api: Api) -> None:
    """A stream that fails after its first chunk is not timed against the whole text."""
    api.piper.says_sentences = False
    api.piper.error, api.piper.fail_at = RuntimeError("boom"), 1
    r = await api.client.post(URL, json={"text": TEXT, "format": "pcm", "stream_format": "sse", "timestamps": True},
                              headers={"cache-control": "no-store"})
    kinds = [json.loads(line[5:])["type"] for line in r.text.splitlines() if line.startswith("data:")]
    assert kinds == ["speech.audio.delta", "error"]


@pytest.mark.parametrize(("body", "message"), [
    ({"text": TEXT, "timestamps": True, "stream": True}, "timestamps come with a whole answer (JSON) or as sse events"),
    ({"text": TEXT, "timestamps": "yes please"}, "timestamps: Input should be a valid boolean"),
])
async def test_timestamps_in_an_audio_stream_are_refused(api: Api, body: dict[str, Any], message: str) -> None:
    r = await api.client.post(URL, json=body)
    assert r.status_code == 422 and message in r.json()["detail"]


async def test_words_are_aligned_by_the_recognizer_and_estimated_when_it_is_down(api: Api) -> None:
    api.piper.word_timings = False
    r = await api.client.post(URL, json={"text": "Open the door.", "timestamps": True})
    assert r.status_code == 200 and [a.words for a in api.recognizer.aligned] == [["Open", "the", "door."]]
    assert api.recognizer.aligned[0].sample_rate == 16_000
    api.recognizer.down = RuntimeError("recognizer replica died")
    r = await api.client.post(URL, json={"text": "Open the door.", "timestamps": True})
    assert r.status_code == 200, r.text
    assert [s["words_from"] for s in r.json()["sentences"]] == ["estimate"]
