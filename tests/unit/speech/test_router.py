"""The router without Ray: in-process engines behind the handle surface it uses
(tests/support/engine_handles.py), so fallback order, skips, timeouts and streams are checked
in milliseconds."""

from __future__ import annotations

import asyncio
import io
import math
import time
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import numpy as np
import pytest
import soundfile as sf
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from chorus.personalities import Personality, parse_spec
from chorus.speech.attempts import BUSY, FAILED, UNAVAILABLE, AllEnginesFailed, AudioTooLong, EngineBusy
from chorus.speech.board import EngineBoard
from chorus.speech.breaker import CIRCUIT_OPEN, BreakerConfig, Breakers, CircuitState
from chorus.speech.cache.store import AudioCache
from chorus.speech.cache.tiers import MemoryTier
from chorus.speech.deadline import DEADLINE_PASSED, Deadlines
from chorus.speech.encoding import resample
from chorus.speech.router import Router
from chorus.speech.utterance import Utterance
from chorus.speech.verification import Verifier
from deployments import spans
from deployments.base import (
    AudioChunk,
    BadInputError,
    EngineFailedError,
    EngineId,
    EngineUnavailableError,
    Health,
    SynthesisRequest,
    TextTooLongError,
    VoiceInfo,
    VoiceSampleRef,
)
from deployments.cloud import CloudEngineConfig, CloudTTSEngine
from deployments.settings import GoogleTTSSettings, IBMWatsonSettings, PiperSettings
from tests.support.engine_handles import LocalHandle, ScriptedEngine

ENGINES: tuple[EngineId, ...] = ("piper", "google_tts", "azure_tts")


def personality(**spec: Any) -> Personality:
    spec.setdefault("activeProvider", "piper")
    spec.setdefault("fallbackChain", ["google_tts", "azure_tts"])
    spec.setdefault("providers", {e: {} for e in ["piper", "google_tts", "azure_tts"]})
    return Personality(name="ava", spec=parse_spec(spec, prefix=""))


def say(text: str = "Hello there.", who: Personality | None = None, **fields: Any) -> Utterance:
    who = who or personality()
    return Utterance(personality=who, text=text, language=fields.pop("language", who.spec.languages.primary), **fields)


class Setup:
    """Scripted engines behind local handles, a board and a router over them."""

    def __init__(self, *engines: Any, timeouts: dict[str, float] | None = None,
                 sample_refs: Any = None, deadlines: Deadlines | None = None, breaker: BreakerConfig | None = None,
                 verifier: Verifier | None = None) -> None:
        engines = engines or tuple(ScriptedEngine(e) for e in ENGINES)
        self.engines = {e.engine_id: e for e in engines}
        self.handles = {e.engine_id: LocalHandle(e) for e in engines}
        self.board = EngineBoard(self.handles, refresh_s=60)
        self.spans = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.router = Router(self.board, timeouts or {}, sample_refs=sample_refs, tracer=provider.get_tracer("test"),
                             deadlines=deadlines, breakers=Breakers(breaker) if breaker else None, verifier=verifier)

    def __getitem__(self, engine: str) -> ScriptedEngine:
        return self.engines[engine]  # type: ignore[index]

    def attempts(self, routed_or_err: Any) -> list[tuple[str, str]]:
        return [(a.engine, a.outcome) for a in routed_or_err.attempts]

    def attempt_spans(self) -> list[dict[str, Any]]:
        """The ended attempt spans' attributes, oldest first."""
        return [dict(sp.attributes or {}) for sp in self.spans.get_finished_spans() if sp.name == spans.ATTEMPT]


# --- order and fallback -----------------------------------------------------------------


async def test_the_active_engine_speaks_first() -> None:
    s = Setup()
    routed = await s.router.synthesize(say())
    assert routed.engine == "piper" and routed.attempts == []
    assert routed.audio.pcm == s["piper"].pcm("Hello there.") and routed.audio.sample_rate == 16_000
    assert [len(s[e].requests) for e in ENGINES] == [1, 0, 0]


async def test_failures_hand_over_along_the_chain_and_are_recorded() -> None:
    s = Setup()
    s["piper"].error = EngineUnavailableError("voice 'x' is not loaded", "piper")
    s["google_tts"].error = EngineFailedError("HTTP 500 from Google", "google_tts")
    routed = await s.router.synthesize(say())
    assert routed.engine == "azure_tts"
    # Clients see a message picked by the outcome; the engines' own words are the detail, for the log.
    assert [a.model_dump() for a in routed.attempts] == [
        {"engine": "piper", "outcome": "unavailable", "reason": UNAVAILABLE, "detail": "voice 'x' is not loaded"},
        {"engine": "google_tts", "outcome": "failed", "reason": FAILED, "detail": "HTTP 500 from Google"},
    ]


async def test_an_engine_may_vouch_for_a_public_reason() -> None:
    s = Setup()
    s["piper"].error = EngineUnavailableError("model /models/joe.onnx missing", "piper", public="voice not loaded")
    routed = await s.router.synthesize(say())
    assert (routed.attempts[0].reason, routed.attempts[0].detail) == ("voice not loaded", "model /models/joe.onnx missing")


async def test_an_unexpected_error_is_a_failure_named_by_its_type() -> None:
    s = Setup()
    s["piper"].error = RuntimeError("out of memory\nmore lines")
    routed = await s.router.synthesize(say())
    assert routed.engine == "google_tts"
    assert (routed.attempts[0].reason, routed.attempts[0].detail) == (FAILED, "RuntimeError: out of memory")


async def test_a_requested_provider_goes_first_then_the_chain_without_it() -> None:
    s = Setup()
    for e in ENGINES:
        s[e].error = EngineFailedError("down", e)
    with pytest.raises(AllEnginesFailed) as err:
        await s.router.synthesize(say(provider="google_tts"))
    assert s.attempts(err.value) == [("google_tts", "failed"), ("piper", "failed"), ("azure_tts", "failed")]


# --- skips ----------------------------------------------------------------------------------


async def test_skipped_engines_say_why_and_are_never_called() -> None:
    piper = ScriptedEngine("piper")
    piper.healthy = Health(healthy=False, reason="voice file missing")
    google = ScriptedEngine("google_tts", languages=("de",))
    azure = ScriptedEngine("azure_tts", voices=("en-GB-Ryan",), languages=("en",))
    s = Setup(piper, google, azure)
    who = personality(
        fallbackChain=["google_tts", "azure_tts", "ibm_watson"],
        providers={"piper": {}, "google_tts": {}, "azure_tts": {"voice": "en-GB-Ryan"}, "ibm_watson": {}},
    )
    routed = await s.router.synthesize(say(who=who))
    assert routed.engine == "azure_tts"
    assert [(a.engine, a.outcome, a.reason, a.detail) for a in routed.attempts] == [
        ("piper", "skipped", "unhealthy", "unhealthy: voice file missing"),
        ("google_tts", "skipped", "no loaded voice does not speak 'en'", "no loaded voice does not speak 'en'"),
    ]
    assert piper.requests == [] and google.requests == []

    with pytest.raises(AllEnginesFailed) as err:
        await s.router.synthesize(say(who=who, language="fr"))
    assert [a.reason for a in err.value.attempts] == [
        "unhealthy",
        "no loaded voice does not speak 'fr'",
        "voice 'en-GB-Ryan' does not speak 'fr'",
        "not deployed in this application",
    ]


async def test_disabled_and_silent_engines_are_skipped() -> None:
    google = ScriptedEngine("google_tts")
    google.status_error = TimeoutError("no answer")  # never answered: status unknown
    s = Setup(ScriptedEngine("piper"), google, ScriptedEngine("azure_tts"))
    who = personality(providers={"piper": {"enabled": False}, "google_tts": {}, "azure_tts": {}})
    routed = await s.router.synthesize(say(who=who))
    assert routed.engine == "azure_tts"
    assert [(a.engine, a.reason) for a in routed.attempts] == [
        ("piper", "disabled for this personality"),
        ("google_tts", "status unknown (engine not answering)"),
    ]


async def test_a_failing_status_check_marks_a_known_engine_unhealthy() -> None:
    s = Setup()
    await s.board.statuses()
    s["piper"].status_error = ConnectionError("replica gone")
    statuses = await s.board.refresh()
    assert statuses["piper"].health == Health(healthy=False, reason="status check failed: ConnectionError: replica gone")
    assert statuses["piper"].capabilities.engine == "piper"  # the last known capabilities stay


async def test_one_status_snapshot_per_request(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Setup(ScriptedEngine("xtts_v2"), ScriptedEngine("piper"), sample_refs=lambda name, engine: [])
    s["xtts_v2"].error = EngineFailedError("down", "xtts_v2")  # a cloning engine tried, then the next
    who = personality(activeProvider="xtts_v2", fallbackChain=["piper"], providers={"xtts_v2": {}, "piper": {}})
    reads = 0
    statuses = s.board.statuses

    async def counted(**kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await statuses(**kwargs)

    monkeypatch.setattr(s.board, "statuses", counted)
    await s.router.synthesize(say(who=who))
    assert reads == 1
    await (await s.router.stream(say(who=who))).chunks.aclose()
    assert reads == 2


# --- timeouts -------------------------------------------------------------------------------


async def test_each_engine_has_its_own_timeout_and_a_late_call_is_cancelled() -> None:
    s = Setup(timeouts={"piper": 0.05, "google_tts": 5})
    s["piper"].delay_s = 2
    s["google_tts"].delay_s = 0.1  # later than piper's limit, within its own
    routed = await s.router.synthesize(say())
    assert routed.engine == "google_tts"
    assert [a.model_dump() for a in routed.attempts] == [
        {"engine": "piper", "outcome": "timeout", "reason": "no audio within 0.05 s", "detail": "no audio within 0.05 s"},
    ]
    assert s.handles["piper"].cancelled == ["synthesize"] and s.handles["google_tts"].cancelled == []


# --- bad input ------------------------------------------------------------------------------


async def test_bad_input_is_raised_at_once_and_never_retried() -> None:
    s = Setup()
    s["piper"].error = BadInputError("nothing speakable in '.....'", "piper")
    with pytest.raises(BadInputError, match="nothing speakable") as err:
        await s.router.synthesize(say("....."))
    assert type(err.value) is BadInputError  # unwrapped from Ray's RayTaskError
    with pytest.raises(BadInputError, match="nothing speakable"):
        await s.router.stream(say("....."))
    assert s["google_tts"].requests == [] and s["azure_tts"].requests == []


async def test_text_is_packed_to_the_engines_limit() -> None:
    s = Setup(ScriptedEngine("piper", max_characters=30), *(ScriptedEngine(e) for e in ENGINES[1:]))
    text = "The train leaves at noon. Please open the door. Thank you."
    routed = await s.router.synthesize(say(text))
    assert [r.text for r in s["piper"].requests] == ["The train leaves at noon.", "Please open the door.", "Thank you."]
    assert routed.audio.pcm == b"".join(s["piper"].pcm(r.text) for r in s["piper"].requests)
    with pytest.raises(TextTooLongError) as err:
        await s.router.synthesize(say("This one sentence is longer than thirty characters."))
    assert err.value.limit == 30 and s["google_tts"].requests == []


# --- what each engine is asked ------------------------------------------------------------------


async def test_speed_multiplies_each_engines_speed_setting() -> None:
    s = Setup(*(ScriptedEngine(e) for e in ("piper", "google_tts", "ibm_watson")))
    who = personality(fallbackChain=["google_tts", "ibm_watson"], providers={
        "piper": {"voice": "en_US-joe-medium", "settings": {"speed": 1.5, "noiseScale": 0.0}},
        "google_tts": {"settings": {"speakingRate": 1.2}},
        "ibm_watson": {"settings": {"ratePercentage": 10}},
    })
    s["piper"].error = EngineFailedError("down", "piper")
    s["google_tts"].error = EngineFailedError("down", "google_tts")
    assert (await s.router.synthesize(say(who=who, speed=2.0))).engine == "ibm_watson"
    piper, google, ibm = (s[e].requests[0] for e in ("piper", "google_tts", "ibm_watson"))
    assert piper.voice == "en_US-joe-medium"
    assert piper.settings == PiperSettings(speed=3.0, noise_scale=0.0)
    assert google.settings.speaking_rate == pytest.approx(2.4)
    assert ibm.settings == IBMWatsonSettings(rate_percentage=10)  # no speed setting: unchanged

    with pytest.raises(BadInputError, match=r"speed 4.0 makes piper's speed 6"):
        await s.router.synthesize(say(who=who, speed=4.0))


async def test_cloning_engines_get_the_stored_samples_or_the_given_ones() -> None:
    stored = VoiceSampleRef(id="studio-1", language="en", sha256="a" * 64, path="/samples/ava/studio-1.wav")
    given = VoiceSampleRef(id="reference", language="en", sha256="b" * 64, audio=b"RIFF")
    asked: list[tuple[str, str]] = []

    def sample_refs(name: str, engine: str) -> list[VoiceSampleRef]:
        asked.append((name, engine))
        return [stored]

    s = Setup(ScriptedEngine("xtts_v2"), ScriptedEngine("piper"), sample_refs=sample_refs)
    who = personality(activeProvider="xtts_v2", fallbackChain=["piper"],
                      providers={"xtts_v2": {"variant": "british"}, "piper": {}})
    s["xtts_v2"].error = EngineUnavailableError("no reference samples to clone from", "xtts_v2")
    await s.router.synthesize(say(who=who))
    await s.router.synthesize(say(who=who, samples=[given]))
    assert [r.samples for r in s["xtts_v2"].requests] == [[stored], [given]]
    assert s["xtts_v2"].requests[0].variant == "british"
    assert [r.samples for r in s["piper"].requests] == [[], []]  # not a cloning engine
    assert asked == [("ava", "xtts_v2")]


# --- streams --------------------------------------------------------------------------------


async def chunks(routed: Any) -> list[Any]:
    return [c async for c in routed.chunks]


async def test_a_stream_falls_back_until_the_first_chunk() -> None:
    s = Setup(timeouts={"google_tts": 0.05})
    s["piper"].error = EngineUnavailableError("voice missing", "piper")
    s["google_tts"].delay_s = 2
    routed = await s.router.stream(say("One. Two. Three."))
    assert routed.engine == "azure_tts" and s.attempts(routed) == [("piper", "unavailable"), ("google_tts", "timeout")]
    assert "stream" in s.handles["piper"].cancelled and "stream" in s.handles["google_tts"].cancelled
    got = await chunks(routed)
    assert [c.index for c in got] == [0, 1, 2]
    assert [c.pcm for c in got] == [s["azure_tts"].pcm(t) for t in ("One.", "Two.", "Three.")]


async def test_a_stream_whose_engine_fails_midway_is_carried_on_by_the_next_engine() -> None:
    s = Setup(*(ScriptedEngine(e, sample_rate=24_000 if e == "google_tts" else 16_000) for e in ENGINES))
    s["piper"].error = EngineFailedError("decoder crashed", "piper")
    s["piper"].fail_at = 1  # the first sentence comes out, the second fails
    routed = await s.router.stream(say("One. Two. Three."))
    assert routed.engine == "piper" and routed.attempts == [] and routed.sample_rate == 16_000
    got = await chunks(routed)
    # Google is asked for what Piper had not said, nothing again, and its audio comes at the
    # stream's rate, each sentence's samples with it.
    assert [r.text for r in s["google_tts"].requests] == ["Two. Three."]
    assert [sentence.text for c in got for sentence in c.sentences] == ["One.", "Two.", "Three."]
    assert {c.sample_rate for c in got} == {16_000}
    assert [c.pcm for c in got[1:]] == [resample(s["google_tts"].pcm(t), 24_000, 16_000) for t in ("Two.", "Three.")]
    assert all(sum(x.samples for x in c.sentences) * 2 == len(c.pcm) for c in got)
    assert [(a.engine, a.outcome) for a in routed.end.attempts] == [("piper", "failed")]
    assert [(w.engine, w.after, w.reason) for w in routed.end.switches] == [("google_tts", "piper", "the engine failed")]
    assert routed.end.switches[0].at_s == pytest.approx(len(got[0].pcm) / 2 / 16_000)
    assert routed.end.cut is None and s.handles["piper"].cancelled == ["stream"]
    assert [a[spans.OUTCOME] for a in s.attempt_spans()] == ["failed", "ok"]


class OneChunkPerCall(ScriptedEngine):
    """Streams each call's audio as one chunk that says all of its sentences, as the cloud
    engines do."""

    async def stream(self, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        audio = await self.synthesize(request)
        yield AudioChunk(pcm=audio.pcm, sample_rate=audio.sample_rate, variant=audio.variant, index=0,
                         sentences=audio.sentences)


async def test_a_chunk_of_several_sentences_keeps_each_ones_share_when_resampled() -> None:
    google = OneChunkPerCall("google_tts", sample_rate=24_000)
    # 241.2 samples a letter at 24 kHz: "Two." is 964 samples (642.67 at 16 kHz), each
    # 7-letter sentence 1688 (1125.33 at 16 kHz); 7716 in all, 5144 at 16 kHz.
    google.seconds_per_character = 0.01005
    s = Setup(ScriptedEngine("piper"), google, ScriptedEngine("azure_tts"))
    s["piper"].error, s["piper"].fail_at = EngineFailedError("decoder crashed", "piper"), 1
    routed = await s.router.stream(say("One. Two. Eleven. Twelve. Eighty. Ninety."))
    _, carried = await chunks(routed)
    assert carried.sample_rate == 16_000 and len(carried.pcm) // 2 == 5144
    assert [x.text for x in carried.sentences] == ["Two.", "Eleven.", "Twelve.", "Eighty.", "Ninety."]
    # Each rounded (643, not 642), and the last takes what is left: 1126, where its own
    # share would round to 1125 and leave a sample to no sentence.
    assert [x.samples for x in carried.sentences] == [643, 1125, 1125, 1125, 1126]
    assert {type(x.samples) for x in carried.sentences} == {int}  # counts: the cache slices audio by them


async def test_the_last_of_hundreds_of_sentences_in_a_chunk_takes_what_is_left() -> None:
    """A cloud engine's chunk may say hundreds of sentences ("a. a. a. ..."): the last is
    found by its position, not by the identity of small ints (which stops at 256)."""
    google = OneChunkPerCall("google_tts", sample_rate=24_000, max_characters=5000)
    google.seconds_per_character = 0.01003  # "Ab." is 722 samples at 24 kHz: 481.33 at 16 kHz
    s = Setup(ScriptedEngine("piper"), google, ScriptedEngine("azure_tts"))
    s["piper"].error, s["piper"].fail_at = EngineFailedError("decoder crashed", "piper"), 1
    routed = await s.router.stream(say("One. " + " ".join(["Ab."] * 300)))
    _, carried = await chunks(routed)
    shares = [x.samples for x in carried.sentences]
    assert len(shares) == 300 and len(carried.pcm) // 2 == 144_400  # 300 x 722 samples at 24 kHz
    assert shares[:-1] == [481] * 299 and shares[-1] == 144_400 - 299 * 481


async def test_a_stream_carried_on_at_a_lower_rate_is_brought_up_to_the_streams() -> None:
    s = Setup(*(ScriptedEngine(e, sample_rate=24_000 if e == "piper" else 16_000) for e in ENGINES))
    s["piper"].error, s["piper"].fail_at = EngineFailedError("decoder crashed", "piper"), 1
    routed = await s.router.stream(say("One. Two. Three."))
    got = await chunks(routed)
    assert routed.sample_rate == 24_000 and {c.sample_rate for c in got} == {24_000}
    assert [c.pcm for c in got[1:]] == [resample(s["google_tts"].pcm(t), 16_000, 24_000) for t in ("Two.", "Three.")]


async def test_a_stream_carried_on_twice_never_goes_back_along_the_chain() -> None:
    s = Setup()
    for engine in ("piper", "google_tts"):  # each says one sentence, then fails
        s[engine].error, s[engine].fail_at = EngineFailedError("decoder crashed", engine), 1
    routed = await s.router.stream(say("One. Two. Three."))
    got = await chunks(routed)
    assert [x.text for c in got for x in c.sentences] == ["One.", "Two.", "Three."]
    assert [(w.engine, w.after) for w in routed.end.switches] == [("google_tts", "piper"), ("azure_tts", "google_tts")]
    assert [len(s[e].requests) for e in ENGINES] == [1, 1, 1]


async def test_a_stream_whose_chunks_do_not_say_their_sentences_stays_with_its_engine() -> None:
    s = Setup()
    s["piper"].says_sentences = False  # model steps (XTTS): what is left cannot be known
    s["piper"].error = EngineFailedError("decoder crashed", "piper")
    s["piper"].fail_at = 1
    routed = await s.router.stream(say("One. Two. Three."))
    first = await anext(routed.chunks)
    assert first.index == 0
    with pytest.raises(EngineFailedError, match="decoder crashed"):
        await anext(routed.chunks)
    assert s["google_tts"].requests == [] and s["azure_tts"].requests == []
    assert s.handles["piper"].cancelled == ["stream"]  # the engine's generator is let go


async def test_a_stream_whose_engine_failed_after_its_last_sentence_is_whole() -> None:
    s = Setup()
    s["piper"].error = EngineFailedError("decoder crashed", "piper")
    s["piper"].fail_at = 3  # after "Three."
    routed = await s.router.stream(say("One. Two. Three."))
    assert [x.text for c in await chunks(routed) for x in c.sentences] == ["One.", "Two.", "Three."]
    assert s["google_tts"].requests == [] and routed.end.switches == [] and routed.end.cut is None


async def test_a_stream_no_later_engine_can_carry_on_raises_its_engines_error() -> None:
    s = Setup()
    s["piper"].error, s["piper"].fail_at = EngineFailedError("decoder crashed", "piper"), 1
    for e in ENGINES[1:]:
        s[e].error = EngineFailedError(f"{e} is down", e)
    routed = await s.router.stream(say("One. Two. Three."))
    with pytest.raises(EngineFailedError, match="decoder crashed"):
        await chunks(routed)
    assert [(a.engine, a.outcome) for a in routed.end.attempts] == [(e, "failed") for e in ENGINES]
    assert [r.text for r in s["google_tts"].requests] == ["Two. Three."]


async def test_a_long_stream_runs_piece_after_piece_on_one_engine() -> None:
    s = Setup(ScriptedEngine("piper", max_characters=10), *(ScriptedEngine(e) for e in ENGINES[1:]))
    routed = await s.router.stream(say("One. Two. Three. Four."))
    got = await chunks(routed)
    assert [r.text for r in s["piper"].requests] == ["One. Two.", "Three.", "Four."]
    assert b"".join(c.pcm for c in got) == b"".join(s["piper"].pcm(t) for t in ("One.", "Two.", "Three.", "Four."))


async def test_every_engine_failing_before_a_first_chunk_fails_the_stream() -> None:
    s = Setup()
    for e in ENGINES:
        s[e].error = EngineFailedError(f"{e} is down", e)
    with pytest.raises(AllEnginesFailed) as err:
        await s.router.stream(say())
    assert [a.detail for a in err.value.attempts] == [f"{e} is down" for e in ENGINES]


# --- deadlines ------------------------------------------------------------------------------


async def test_a_stalled_stream_is_carried_on_and_the_stalled_call_cancelled() -> None:
    s = Setup(deadlines=Deadlines(stream_chunk_s=0.1))
    s["piper"].stall_at = 1  # the first sentence comes, then nothing
    routed = await s.router.stream(say("One. Two. Three."))
    got = await asyncio.wait_for(chunks(routed), timeout=5)
    assert [x.text for c in got for x in c.sentences] == ["One.", "Two.", "Three."]
    assert [r.text for r in s["google_tts"].requests] == ["Two. Three."]
    assert s.handles["piper"].cancelled == ["stream"] and routed.end.cut is None
    assert [(w.after, w.engine, w.reason) for w in routed.end.switches] == [("piper", "google_tts", "no audio within 0.1 s")]
    stalled = s.attempt_spans()[0]
    assert stalled[spans.OUTCOME] == "timeout" and stalled[spans.AUDIO_SECONDS] > 0
    assert stalled[spans.ERROR_TYPE] == "TimeoutError"


async def test_a_stream_stalled_at_the_request_deadline_ends_early_and_cleanly() -> None:
    s = Setup(deadlines=Deadlines(request_s=0.3))
    s["piper"].stall_at = 1
    routed = await s.router.stream(say("One. Two. Three."))
    began = time.monotonic()
    got = await asyncio.wait_for(chunks(routed), timeout=5)  # today's bug: waits forever
    assert time.monotonic() - began < 1
    assert [c.index for c in got] == [0]  # the body ends early, cleanly
    assert s.handles["piper"].cancelled == ["stream"]
    assert s["google_tts"].requests == []  # the deadline passed: no engine is asked any more
    assert routed.end.cut is not None and routed.end.cut.reason == DEADLINE_PASSED
    assert [(a.engine, a.outcome, a.reason) for a in routed.end.attempts] == [
        ("piper", "timeout", DEADLINE_PASSED), ("google_tts", "skipped", DEADLINE_PASSED),
        ("azure_tts", "skipped", DEADLINE_PASSED)]
    [attempt, *_] = s.attempt_spans()
    assert attempt[spans.OUTCOME] == "timeout" and attempt[spans.AUDIO_SECONDS] > 0
    assert attempt[spans.ERROR_TYPE] == "DeadlinePassed"


async def test_the_request_deadline_covers_every_piece_and_fallback() -> None:
    s = Setup(ScriptedEngine("piper", max_characters=10), *(ScriptedEngine(e) for e in ENGINES[1:]),
              timeouts={"piper": 0.15, "google_tts": 5, "azure_tts": 5}, deadlines=Deadlines(request_s=0.4))
    s["piper"].delay_s = 0.1  # each piece within piper's own timeout, the pieces together not
    s["google_tts"].delay_s = 2
    began = time.monotonic()
    with pytest.raises(AllEnginesFailed) as err:
        await s.router.synthesize(say("One. Two. Three. Four. Five."))
    assert time.monotonic() - began < 1
    assert [(a.engine, a.outcome, a.reason) for a in err.value.attempts] == [
        ("piper", "timeout", DEADLINE_PASSED),  # its third piece ran into the deadline
        ("google_tts", "skipped", DEADLINE_PASSED),
        ("azure_tts", "skipped", DEADLINE_PASSED),
    ]
    assert err.value.attempts[0].detail == "the request's 0.4 s deadline passed"
    assert s.handles["piper"].cancelled == ["synthesize"] and s["google_tts"].requests == []
    assert [(a[spans.OUTCOME], a[spans.REASON]) for a in s.attempt_spans()] == [
        ("timeout", DEADLINE_PASSED), ("skipped", DEADLINE_PASSED), ("skipped", DEADLINE_PASSED)]
    # The deadline, not the engine, cut the call short: the engine's breaker holds nothing against it.
    assert s.router.breakers["piper"].shown().failures == 0


async def leave_while_piper_works(s: Setup, call: Any) -> None:
    """The caller goes away 50 ms into `call`, while piper takes 5 s to answer."""
    s["piper"].delay_s = 5
    task = asyncio.ensure_future(call)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_caller_going_away_cancels_the_engine_call() -> None:
    s = Setup()
    await leave_while_piper_works(s, s.router.synthesize(say()))
    assert s.handles["piper"].cancelled == ["synthesize"]


async def test_a_caller_going_away_before_the_first_chunk_cancels_the_stream_call() -> None:
    s = Setup(breaker=BreakerConfig(failures=1, cool_down_s=60))
    await leave_while_piper_works(s, s.router.stream(say()))
    assert set(s.handles["piper"].cancelled) == {"stream"}
    assert s.router.breakers["piper"].state is CircuitState.closed  # nothing held against the engine
    [attempt] = s.attempt_spans()  # ended, saying why
    assert (attempt[spans.OUTCOME], attempt[spans.ERROR_TYPE]) == ("failed", "CancelledError")


@pytest.mark.parametrize(("limit", "sent"), [(0.08, 2), (0.079, 1), (0.12, 3)])
async def test_a_stream_ends_at_the_audio_limit_counting_every_chunk_so_far(limit: float, sent: int) -> None:
    """Three 40 ms sentences: a limit of 80 ms holds exactly two (the limit is inclusive)."""
    s = Setup()
    s.router.max_audio_s = limit
    routed = await s.router.stream(say("Aaa. Bbb. Ccc."))
    got = await chunks(routed)
    assert [c.duration_s for c in got] == [0.04] * sent
    assert (routed.end.cut is None) == (sent == 3)


@pytest.mark.parametrize(("text", "limit", "fits"), [
    ("Aaa. Bbb.", 0.08, True), ("Aaa. Bbb. Ccc.", 0.08, False), ("Aaa.", 0.039, False)])
async def test_a_whole_answer_is_refused_past_the_audio_limit(text: str, limit: float, fits: bool) -> None:
    """40 ms a sentence: the limit is inclusive and counts all of the answer's audio."""
    s = Setup(ScriptedEngine("piper", max_characters=4), *(ScriptedEngine(e) for e in ENGINES[1:]))
    s.router.max_audio_s = limit
    if fits:
        assert (await s.router.synthesize(say(text))).audio.duration_s == pytest.approx(limit)
    else:
        with pytest.raises(AudioTooLong):
            await s.router.synthesize(say(text))
        assert s["google_tts"].requests == []  # the request's size, not piper's failure


async def test_a_configured_variant_is_on_the_attempt_even_when_it_fails() -> None:
    s = Setup()
    s["piper"].error = EngineFailedError("down", "piper")
    who = personality(providers={"piper": {"variant": "british"}, "google_tts": {}, "azure_tts": {}})
    await s.router.synthesize(say(who=who))
    assert [(a[spans.ENGINE], a.get(spans.VARIANT)) for a in s.attempt_spans()] == [
        ("piper", "british"), ("google_tts", None)]


async def test_the_variant_an_engine_says_it_spoke_is_on_its_attempt() -> None:
    s = Setup(ScriptedEngine("piper", variant="british"), *(ScriptedEngine(e) for e in ENGINES[1:]))
    routed = await s.router.synthesize(say())
    assert routed.variant == "british"
    assert s.attempt_spans()[-1][spans.VARIANT] == "british"  # the personality named none


async def test_an_attempt_without_a_cache_says_nothing_of_one() -> None:
    s = Setup()
    await s.router.synthesize(say())
    (attempt,) = s.attempt_spans()
    assert spans.CACHE not in attempt
    s.router.cache = AudioCache(MemoryTier(1 << 20), None)
    await s.router.synthesize(say())
    assert s.attempt_spans()[-1][spans.CACHE] == "miss"


# --- circuit breaker ------------------------------------------------------------------------


async def test_the_breaker_opens_after_consecutive_failures_and_skips_the_engine() -> None:
    s = Setup(breaker=BreakerConfig(failures=3, cool_down_s=60))
    s["piper"].error = EngineFailedError("down", "piper")
    for _ in range(2):
        assert (await s.router.synthesize(say())).engine == "google_tts"
    s["piper"].error = BadInputError("odd text", "piper")  # the caller's fault: not counted
    with pytest.raises(BadInputError):
        await s.router.synthesize(say())
    assert s.router.breakers["piper"].shown().failures == 2
    s["piper"].error = EngineUnavailableError("gone", "piper")
    await s.router.synthesize(say())
    circuit = s.router.breakers["piper"].shown()
    assert (circuit.state, circuit.failures) == (CircuitState.open, 3) and circuit.retry_at is not None
    called = len(s["piper"].requests)
    routed = await s.router.synthesize(say())
    assert [(a.engine, a.outcome, a.reason) for a in routed.attempts] == [("piper", "skipped", CIRCUIT_OPEN)]
    assert len(s["piper"].requests) == called  # never called while open
    last = s.attempt_spans()[-2:]
    assert [(a[spans.ENGINE], a[spans.CIRCUIT], a[spans.OUTCOME]) for a in last] == [
        ("piper", "open", "skipped"), ("google_tts", "closed", "ok")]
    assert last[0][spans.REASON] == CIRCUIT_OPEN


def busy(retry_after_s: int = 1) -> EngineBusy:
    return EngineBusy("Request dropped due to backpressure (num_queued_requests=8, max_queued_requests=8).",
                      retry_after_s=retry_after_s)


async def test_a_full_queue_moves_on_without_counting_against_the_engine() -> None:
    """A burst that fills an engine's queue is load, not a fault: the plan moves on each
    time, and the circuit (two failures would open it) stays closed and uncounted."""
    s = Setup(breaker=BreakerConfig(failures=2, cool_down_s=60))
    s["piper"].error = EngineFailedError("down", "piper")
    await s.router.synthesize(say())
    s["piper"].error = busy(3)
    for _ in range(4):
        routed = await s.router.synthesize(say())
        assert routed.engine == "google_tts"
        assert [(a.engine, a.outcome, a.reason, a.retry_after_s) for a in routed.attempts] == [
            ("piper", "unavailable", BUSY, 3)]
    assert s.router.breakers["piper"].shown().failures == 1  # the failure before, no more
    assert s.router.breakers["piper"].state is CircuitState.closed
    assert s.attempt_spans()[-2][spans.OUTCOME] == "unavailable"
    s["piper"].error = None
    assert (await s.router.synthesize(say())).engine == "piper"


async def test_a_busy_probe_gives_its_place_to_the_next_request() -> None:
    s = Setup(breaker=BreakerConfig(failures=1, cool_down_s=0.05))
    s["piper"].error = EngineFailedError("down", "piper")
    await s.router.synthesize(say())
    await asyncio.sleep(0.06)
    s["piper"].error = busy()
    await s.router.synthesize(say())  # the probe found the queue full: nothing learned
    assert s.router.breakers["piper"].state is CircuitState.half_open
    s["piper"].error = None
    assert (await s.router.synthesize(say())).engine == "piper"
    assert s.router.breakers["piper"].state is CircuitState.closed


async def test_every_engine_busy_says_when_to_retry() -> None:
    s = Setup()
    for engine, after in zip(ENGINES, (5, 2, 4), strict=True):
        s[engine].error = busy(after)
    with pytest.raises(AllEnginesFailed) as caught:
        await s.router.synthesize(say())
    assert caught.value.retry_after_s == 2
    s["google_tts"].error = EngineFailedError("down", "google_tts")  # a failure says nothing of when
    with pytest.raises(AllEnginesFailed) as caught:
        await s.router.synthesize(say())
    assert caught.value.retry_after_s == 4
    for engine in ENGINES:
        s[engine].error = EngineFailedError("down", engine)
    with pytest.raises(AllEnginesFailed) as caught:
        await s.router.synthesize(say())
    assert caught.value.retry_after_s is None


async def test_a_stream_refused_by_a_full_queue_midway_is_carried_on() -> None:
    s = Setup(breaker=BreakerConfig(failures=1, cool_down_s=60))
    s["piper"].error, s["piper"].fail_at = busy(), 1
    routed = await s.router.stream(say("One. Two. Three."))
    got = await chunks(routed)
    assert [x.text for c in got for x in c.sentences] == ["One.", "Two.", "Three."]
    assert [(a.engine, a.outcome, a.reason) for a in routed.end.attempts] == [("piper", "unavailable", BUSY)]
    assert s.router.breakers["piper"].state is CircuitState.closed


async def test_a_busy_status_check_leaves_the_engine_as_it_was() -> None:
    """The status call waits in the same queue as speech: finding it full says the engine
    is busy, not unhealthy, so the plan must not start skipping it."""
    s = Setup()
    before = (await s.board.statuses())["piper"]
    s["piper"].status_error = busy()
    assert (await s.board.refresh())["piper"] == before
    assert (await s.router.synthesize(say())).engine == "piper"


async def test_the_breaker_half_opens_with_exactly_one_probe_then_closes() -> None:
    s = Setup(breaker=BreakerConfig(failures=1, cool_down_s=0.05))
    s["piper"].error = EngineFailedError("down", "piper")
    await s.router.synthesize(say())
    await asyncio.sleep(0.06)  # cooled down
    s["piper"].error = None
    s["piper"].delay_s = 0.1  # the probe is out while the others arrive
    called = len(s["piper"].requests)
    routed = await asyncio.gather(*(s.router.synthesize(say()) for _ in range(8)))
    assert len(s["piper"].requests) == called + 1
    assert sorted(r.engine for r in routed) == ["google_tts"] * 7 + ["piper"]
    assert all(r.attempts[0].reason == CIRCUIT_OPEN for r in routed if r.engine == "google_tts")
    probe = [a for a in s.attempt_spans() if a[spans.ENGINE] == "piper" and a[spans.OUTCOME] == "ok"]
    assert [a[spans.CIRCUIT] for a in probe] == ["half_open"]
    assert s.router.breakers["piper"].state is CircuitState.closed
    s["piper"].delay_s = 0
    assert (await s.router.synthesize(say())).engine == "piper"


async def test_a_failed_probe_reopens_the_circuit() -> None:
    s = Setup(breaker=BreakerConfig(failures=2, cool_down_s=0.05))
    s["piper"].error = EngineFailedError("down", "piper")
    for _ in range(2):
        await s.router.synthesize(say())
    await asyncio.sleep(0.06)
    assert s.router.breakers["piper"].state is CircuitState.half_open
    await s.router.synthesize(say())  # the probe: one failure is enough to open again
    assert s.router.breakers["piper"].state is CircuitState.open
    assert [a.reason for a in (await s.router.synthesize(say())).attempts] == [CIRCUIT_OPEN]


async def test_a_stream_failing_midway_counts_against_its_engine_a_caller_leaving_does_not() -> None:
    s = Setup(breaker=BreakerConfig(failures=1, cool_down_s=60))
    routed = await s.router.stream(say("One. Two. Three."))
    got = routed.chunks.__aiter__()
    await got.__anext__()
    await got.aclose()  # the caller went away after the first sentence
    assert s.router.breakers["piper"].state is CircuitState.closed
    assert s.attempt_spans()[-1][spans.OUTCOME] == "ok"
    s["piper"].error, s["piper"].fail_at = EngineFailedError("broke", "piper"), 1
    await chunks(await s.router.stream(say("One. Two. Three.")))  # Google carries it on
    assert s.router.breakers["piper"].state is CircuitState.open
    assert [(a[spans.ENGINE], a[spans.OUTCOME]) for a in s.attempt_spans()[-2:]] == [("piper", "failed"), ("google_tts", "ok")]


def cached_setup() -> Setup:
    """Piper's circuit half-open (one failure, a 50 ms cool-down) over an audio cache."""
    s = Setup(breaker=BreakerConfig(failures=1, cool_down_s=0.05))
    s.router.cache = AudioCache(MemoryTier(1 << 20), None)
    return s


async def half_open(s: Setup) -> None:
    s["piper"].error = EngineFailedError("down", "piper")
    await s.router.synthesize(say("Broken."))
    s["piper"].error = None
    await asyncio.sleep(0.06)
    assert s.router.breakers["piper"].state is CircuitState.half_open


async def test_a_stream_the_cache_answers_says_nothing_of_the_engine_and_gives_the_probe_back() -> None:
    s = cached_setup()
    await chunks(await s.router.stream(say("One. Two.")))
    await half_open(s)
    routed = await s.router.stream(say("One. Two."))
    assert routed.cache == "hit" and routed.engine == "piper"
    await chunks(routed)
    assert s.router.breakers["piper"].state is CircuitState.half_open  # not closed by the cache
    assert (await s.router.synthesize(say("Three."))).engine == "piper"  # the probe's place was free


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_a_part_the_engine_makes_after_cached_ones_closes_a_half_open_circuit(stream: bool) -> None:
    s = cached_setup()
    await chunks(await s.router.stream(say("One.")))
    await half_open(s)
    if stream:
        routed = await s.router.stream(say("One. Two."))
        assert routed.cache == "partial"
        await chunks(routed)
    else:
        assert (await s.router.synthesize(say("Four. Five."))).cache == "miss"
    assert s.router.breakers["piper"].state is CircuitState.closed


async def test_a_requested_engine_the_personality_lacks_is_skipped_as_not_configured() -> None:
    s = Setup()
    who = personality(fallbackChain=["google_tts"], providers={"piper": {}, "google_tts": {}})
    routed = await s.router.synthesize(say(who=who, provider="azure_tts"))
    assert routed.engine == "piper"
    assert [(a.engine, a.reason) for a in routed.attempts] == [("azure_tts", "not configured for this personality")]
    assert s["azure_tts"].requests == []


async def test_a_stream_whose_first_sentence_is_over_the_audio_limit_ends_cleanly() -> None:
    s = Setup()
    s.router.max_audio_s = 0.05  # the first sentence is 0.12 s
    routed = await s.router.stream(say("Hello there. More."))
    assert await chunks(routed) == []
    assert routed.end.cut is not None and "audio" in routed.end.cut.reason
    [attempt] = s.attempt_spans()
    assert attempt[spans.OUTCOME] == "ok" and spans.REAL_TIME_FACTOR not in attempt


async def test_a_stream_stalling_counts_against_its_engine() -> None:
    s = Setup(deadlines=Deadlines(stream_chunk_s=0.05), breaker=BreakerConfig(failures=1, cool_down_s=60))
    s["piper"].stall_at = 1
    await chunks(await s.router.stream(say("One. Two.")))
    assert s.router.breakers["piper"].state is CircuitState.open


# --- cloud engines never fan out ------------------------------------------------------------


class CountedCloud(CloudTTSEngine):
    """The cloud engines' shared code (deployments.cloud) over a service that counts its calls."""

    engine_id = "google_tts"
    service = "Counted TTS"
    protocol = "counted.v1"
    config_model = CloudEngineConfig
    settings_model = GoogleTTSSettings
    timeout_errors: ClassVar[tuple[type[BaseException], ...]] = (TimeoutError,)

    def __init__(self) -> None:
        super().__init__({"default_voice": "en-US-Test", "max_characters": 5000})
        self.calls: list[str] = []

    def _setup(self) -> str | None:
        return None

    async def _list_voices(self, timeout: float) -> list[VoiceInfo]:
        return [VoiceInfo(id="en-US-Test", languages=["en-US", "en"], sample_rate=24_000)]

    async def _synthesize_wav(self, text: str, voice: str, language: str, settings: Any, *, ssml: bool) -> bytes:
        self.calls.append(text)
        out = io.BytesIO()
        sf.write(out, np.zeros(240, dtype=np.int16), 24_000, format="WAV", subtype="PCM_16")
        return out.getvalue()

    def _map_error(self, err: Exception, doing: str, voice: str | None) -> None:
        return None

    def _where(self) -> str:
        return "memory"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
async def test_five_thousand_one_word_sentences_make_few_cloud_calls(stream: bool) -> None:
    cloud = CountedCloud()
    s = Setup(cloud, ScriptedEngine("piper"))
    who = personality(activeProvider="google_tts", fallbackChain=["piper"], providers={"google_tts": {}, "piper": {}})
    text = " ".join(["a."] * 5000)
    if stream:
        routed = await s.router.stream(say(text, who=who))
        await chunks(routed)
    else:
        routed = await s.router.synthesize(say(text, who=who))
    assert routed.engine == "google_tts"
    assert 0 < len(cloud.calls) <= math.ceil(len(text) / 5000)
    assert " ".join(cloud.calls) == text  # every sentence, once


CLAUSED = "When the store opens at nine in the morning, I would like a cup of coffee by the window. Thank you."


async def test_a_stream_sends_its_first_clause_alone_and_a_whole_answer_does_not() -> None:
    s = Setup()
    got = await chunks(await s.router.stream(say(CLAUSED, stream=True)))
    assert [r.text for r in s["piper"].requests] == [
        "When the store opens at nine in the morning,", "I would like a cup of coffee by the window. Thank you.",
    ]
    assert got[0].pcm == s["piper"].pcm("When the store opens at nine in the morning,")  # the clause's audio first
    s["piper"].requests.clear()
    await s.router.synthesize(say(CLAUSED))
    assert [r.text for r in s["piper"].requests] == [CLAUSED]


async def test_a_cloud_stream_keeps_its_first_clause_in_the_one_call() -> None:
    cloud = CountedCloud()
    s = Setup(cloud, ScriptedEngine("piper"))
    who = personality(activeProvider="google_tts", fallbackChain=["piper"], providers={"google_tts": {}, "piper": {}})
    await chunks(await s.router.stream(say(CLAUSED, who=who, stream=True)))
    assert cloud.calls == [CLAUSED]
