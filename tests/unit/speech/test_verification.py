"""Verified output (PersonalitySpec.verify, chorus.speech.verification) through the router,
without Ray: engines that speak real Piper recordings (or another sentence's, or a tone) and
the production ear (real pocketsphinx) behind a local handle. Enforced, speech whose words do
not come back never reaches the caller when another engine can say it; reported, it does, and
says how far off it was; a piece that cannot be heard goes out unverified and says why."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider

from chorus.personalities import VerifySettings
from chorus.recognition.models import Hearing
from chorus.speech.attempts import AllEnginesFailed, AudioTooLong
from chorus.speech.breaker import CircuitState
from chorus.speech.cache.store import AudioCache
from chorus.speech.cache.tiers import MemoryTier
from chorus.speech.verification import Verdict, VerificationFailed, Verifier, mark
from deployments import spans
from deployments.base import AudioResult, EngineFailedError, EngineId
from tests.support.engine_handles import ScriptedEngine
from tests.support.local_ear import LocalEar
from tests.support.recordings import PIPER_RATE, recordings
from tests.support.speech import CLEAR_SENTENCES, Ear, word_error_rate
from tests.unit.speech.test_router import ENGINES, Setup, chunks, personality, say

DOOR, COFFEE, STORE, THANKS = CLEAR_SENTENCES[:4]
TEXT = f"{DOOR} {COFFEE} {STORE}"


class Speaking(ScriptedEngine):
    """Says each sentence with the bundled Piper voice; a sentence in `garbled` comes out as
    THANKS's audio instead (the wrong words), `toned` makes every sentence a tone (noise)."""

    def __init__(self, engine: EngineId) -> None:
        super().__init__(engine, sample_rate=PIPER_RATE, languages=("en", "de"))
        self.garbled: set[str] = set()
        self.toned = False

    def pcm(self, text: str) -> bytes:
        if self.toned:
            return super().pcm(text)
        said = THANKS if text in self.garbled else text
        return (recordings().sentence(said) * 32767).astype("<i2").tobytes()


def verified(mode: str = "enforce", ear: LocalEar | None = None, **spec: Any) -> tuple[Setup, Any]:
    s = Setup(*(Speaking(e) for e in ENGINES), verifier=Verifier(ear or LocalEar()))
    return s, personality(verify={"maxWordErrorRate": 0.5, "mode": mode}, **spec)


def heard(pcm: bytes) -> str:
    return Ear().hear_pcm(pcm, PIPER_RATE)


async def test_enforced_speech_that_is_noise_is_refused_and_the_next_engine_speaks() -> None:
    s, who = verified()
    s["piper"].toned = True
    routed = await s.router.synthesize(say(TEXT, who))
    assert routed.engine == "google_tts"
    [attempt] = routed.attempts
    assert (attempt.engine, attempt.outcome) == ("piper", "failed")
    assert attempt.reason.startswith("verification: WER ") and float(attempt.reason.split()[-1]) >= 0.9
    assert routed.verdict is not None and routed.verdict.outcome == "passed"
    assert word_error_rate(TEXT, heard(routed.audio.pcm)) <= 0.1
    piper_span, google_span = s.attempt_spans()
    assert piper_span[spans.VERIFY_OUTCOME] == "failed" and piper_span[spans.VERIFY_WER] >= 0.9
    assert google_span[spans.VERIFY_OUTCOME] == "passed" and google_span[spans.VERIFY_WER] <= 0.1
    assert routed.verdict.header(who.spec.verify) == f"passed; wer={routed.verdict.word_error_rate:.2f}; max=0.50; " \
                                                      "mode=enforce"


async def test_enforced_speech_with_the_wrong_words_is_refused() -> None:
    s, who = verified()
    s["piper"].garbled = {DOOR, COFFEE}
    routed = await s.router.synthesize(say(f"{DOOR} {COFFEE}", who))
    assert routed.engine == "google_tts" and [(a.engine, a.outcome) for a in routed.attempts] == [("piper", "failed")]


async def test_when_no_engine_passes_the_closest_answer_is_sent_marked_failed() -> None:
    s, who = verified()
    s["piper"].toned = s["azure_tts"].toned = True
    s["google_tts"].garbled = {COFFEE}  # half right: closer than a tone, still over the limit
    routed = await s.router.synthesize(say(f"{DOOR} {COFFEE}", who))
    assert routed.engine == "google_tts" and routed.verdict.outcome == "failed"
    assert 0.5 < routed.verdict.word_error_rate < 0.9
    assert routed.audio.pcm == s["google_tts"].pcm(DOOR) + s["google_tts"].pcm(COFFEE)
    assert [(a.engine, a.outcome) for a in routed.attempts] == [(e, "failed") for e in ENGINES]
    assert all(a.reason.startswith("verification: WER") for a in routed.attempts)
    assert routed.verdict.header(who.spec.verify).startswith("failed; wer=")


async def test_of_refused_answers_heard_alike_the_first_engines_is_sent() -> None:
    s, who = verified()
    for engine in ENGINES:
        s[engine].garbled = {DOOR, COFFEE}  # each says the same wrong words: the same rate
    routed = await s.router.synthesize(say(f"{DOOR} {COFFEE}", who))
    assert routed.engine == "piper" and routed.verdict.outcome == "failed"


async def test_refused_speech_is_the_answer_when_the_other_engines_fail() -> None:
    s, who = verified()
    s["piper"].toned = True
    s["google_tts"].error = s["azure_tts"].error = EngineFailedError("down", "x")
    routed = await s.router.synthesize(say(DOOR, who))
    assert routed.engine == "piper" and routed.verdict.outcome == "failed"
    assert [(a.engine, a.outcome) for a in routed.attempts] == [(e, "failed") for e in ENGINES]
    s["piper"].error = EngineFailedError("down", "piper")  # nobody speaks: nothing to send
    with pytest.raises(AllEnginesFailed):
        await s.router.synthesize(say(DOOR, who))


async def test_reported_speech_goes_out_and_says_how_far_off_it_was() -> None:
    s, who = verified("report")
    s["piper"].toned = True
    routed = await s.router.synthesize(say(DOOR, who))
    assert routed.engine == "piper" and routed.attempts == []
    assert routed.verdict is not None and routed.verdict.outcome == "failed"
    assert routed.verdict.header(who.spec.verify).startswith("failed; wer=1.00; max=0.50; mode=report")
    assert s.attempt_spans()[0][spans.VERIFY_OUTCOME] == "failed"


async def test_good_speech_passes_and_each_piece_is_heard() -> None:
    ear = LocalEar()
    s, who = verified(ear=ear)
    for e in ENGINES:
        s[e].max_characters = 45  # three pieces: one a sentence
    routed = await s.router.synthesize(say(TEXT, who))
    assert routed.engine == "piper" and routed.attempts == [] and routed.verdict.outcome == "passed"
    assert sorted(r.text for r in ear.heard) == sorted([DOOR, COFFEE, STORE])  # heard as the next is made
    assert routed.verdict.words == 4 + 7 + 8


async def test_a_router_given_no_recognizer_sends_speech_unverified() -> None:
    s = Setup(*(Speaking(e) for e in ENGINES))
    who = personality(verify={"maxWordErrorRate": 0.5, "mode": "enforce"})
    routed = await s.router.synthesize(say(DOOR, who))
    assert routed.engine == "piper" and routed.verdict is not None
    assert routed.verdict.header(who.spec.verify) == "unverified; reason=no recognizer deployed"


async def test_a_language_without_a_recognizer_and_a_recognizer_down_leave_speech_unverified() -> None:
    ear = LocalEar()
    s, who = verified(ear=ear, languages={"primary": "en", "supported": ["en", "de"]})
    s["piper"].toned = True
    german = await s.router.synthesize(say(DOOR, who, language="de"))
    assert german.engine == "piper" and german.verdict.outcome == "unverified" and ear.heard == []
    assert german.verdict.header(who.spec.verify) == "unverified; reason=no recognizer for de"
    ear.down = RuntimeError("recognizer replica died")
    down = await s.router.synthesize(say(DOOR, who))
    assert down.engine == "piper" and down.verdict.outcome == "unverified"
    assert down.verdict.reason == "recognizer failed"
    assert s.attempt_spans()[-1][spans.VERIFY_REASON] == "recognizer failed"


async def test_refused_speech_is_never_cached_and_does_not_open_the_engines_circuit() -> None:
    s, who = verified()
    s.router.cache = AudioCache(MemoryTier(1 << 22), None)
    s["piper"].toned = True
    for _ in range(6):  # past the breaker's failures
        assert (await s.router.synthesize(say(DOOR, who))).engine == "google_tts"
    assert s.router.breakers["piper"].state is CircuitState.closed
    s["piper"].toned = False  # piper is asked again: nothing of its noise was kept
    routed = await s.router.synthesize(say(DOOR, who))
    assert routed.engine == "piper" and routed.cache == "miss"


async def test_enforced_speech_heard_right_is_kept() -> None:
    s, who = verified()
    s.router.cache = AudioCache(MemoryTier(1 << 22), None)
    first = await s.router.synthesize(say(DOOR, who))
    again = await s.router.synthesize(say(DOOR, who))
    assert (first.cache, again.cache) == ("miss", "hit") and again.audio.pcm == first.audio.pcm
    assert len(s["piper"].requests) == 1


# --- streams ---------------------------------------------------------------------------


@pytest.mark.parametrize("chain", [["google_tts", "azure_tts"], ["google_tts"]], ids=["two after", "one after"])
async def test_an_enforced_stream_whose_first_sentence_fails_falls_back_before_it_begins(chain: list[str]) -> None:
    s, who = verified(fallbackChain=chain)
    s["piper"].toned = True
    routed = await s.router.stream(say(TEXT, who))
    assert routed.engine == "google_tts" and [(a.engine, a.outcome) for a in routed.attempts] == [("piper", "failed")]
    got = await chunks(routed)
    assert word_error_rate(TEXT, heard(b"".join(c.pcm for c in got))) <= 0.1


async def test_an_enforced_stream_is_carried_on_by_the_next_engine_from_the_sentence_that_failed() -> None:
    s, who = verified()
    s["piper"].garbled = {COFFEE}  # the second sentence comes out as other words
    routed = await s.router.stream(say(TEXT, who))
    assert routed.engine == "piper"
    got = await chunks(routed)
    # Piper's garbled sentence never went out; Google said it and what followed.
    assert [(c.sentences[0].text, c.pcm) for c in got] == [
        (DOOR, s["piper"].pcm(DOOR)), (COFFEE, s["google_tts"].pcm(COFFEE)), (STORE, s["google_tts"].pcm(STORE))]
    assert [r.text for r in s["google_tts"].requests] == [f"{COFFEE} {STORE}"]
    [switch] = routed.end.switches
    assert (switch.engine, switch.after) == ("google_tts", "piper") and switch.reason.startswith("verification: WER")
    assert word_error_rate(TEXT, heard(b"".join(c.pcm for c in got))) <= 0.1
    assert [a.get(spans.VERIFY_OUTCOME) for a in s.attempt_spans()] == ["failed", "passed"]


@pytest.mark.parametrize("garbled", [COFFEE, DOOR], ids=["later sentence", "first sentence"])
async def test_a_reported_stream_is_not_held_and_its_verdict_lands_on_the_span(garbled: str) -> None:
    s, who = verified("report")
    s["piper"].garbled = {garbled}
    routed = await s.router.stream(say(TEXT, who))
    got = await chunks(routed)
    assert routed.engine == "piper" and routed.attempts == []  # reported, never refused
    assert routed.end.switches == [] and [c.pcm for c in got] == [s["piper"].pcm(t) for t in (DOOR, COFFEE, STORE)]
    [span] = s.attempt_spans()
    assert span[spans.VERIFY_OUTCOME] == "failed"
    assert 0.1 < span[spans.VERIFY_WER] < 0.9  # one sentence of three was wrong


class StallingVerifier:
    """A verifier that passes the first `answers` pieces it is given and never answers for
    the others; it counts the hearings let go (cancelled) while they waited."""

    def __init__(self, answers: int) -> None:
        self.answers = answers
        self.asked = self.let_go = 0

    async def check(self, settings: Any, audio: AudioResult, text: str, language: str) -> Verdict:
        self.asked += 1
        if self.asked <= self.answers:
            return Verdict(outcome="passed", words=len(text.split()), errors=0)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.let_go += 1
            raise
        raise AssertionError("never set")


async def test_speech_cut_at_the_audio_limit_lets_go_of_the_hearings_under_way() -> None:
    s, who = verified()
    s.router.verifier = verifier = StallingVerifier(answers=0)  # type: ignore[assignment]
    s["piper"].max_characters = 45  # a piece a sentence
    s.router.max_audio_s = len(s["piper"].pcm(DOOR)) / 2 / PIPER_RATE + 0.1  # the first piece only
    with pytest.raises(AudioTooLong):
        await s.router.synthesize(say(f"{DOOR} {COFFEE}", who))
    await asyncio.sleep(0.05)
    assert (verifier.asked, verifier.let_go) == (1, 1)


async def test_a_reported_stream_that_fails_lets_go_of_the_hearings_under_way() -> None:
    s, who = verified("report", fallbackChain=[])
    s.router.verifier = verifier = StallingVerifier(answers=1)  # type: ignore[assignment]
    s["piper"].error, s["piper"].fail_at = EngineFailedError("decoder crashed", "piper"), 2
    routed = await s.router.stream(say(TEXT, who))
    await anext(routed.chunks)  # heard before the stream began
    await anext(routed.chunks)  # heard beside the stream: under way
    await asyncio.sleep(0.05)
    with pytest.raises(EngineFailedError):
        await anext(routed.chunks)
    await asyncio.sleep(0.05)
    assert (verifier.asked, verifier.let_go) == (2, 1)


@pytest.mark.parametrize("after", ["disabled", "circuit open"])
async def test_an_enforced_stream_falls_back_only_to_an_engine_that_may_speak(after: str) -> None:
    """The first sentence heard wrong is refused only if an engine after it may say it: not
    one the personality disables, nor one whose circuit is open (the last resort is sent)."""
    providers = {"piper": {}, "google_tts": {"enabled": after != "disabled"}}
    s, who = verified(fallbackChain=["google_tts"], providers=providers)
    if after == "circuit open":
        for _ in range(s.router.breakers.config.failures):
            s.router.breakers["google_tts"].failed()
    s["piper"].garbled = {DOOR}
    routed = await s.router.stream(say(TEXT, who))
    assert routed.engine == "piper" and routed.attempts == []
    assert [c.pcm for c in await chunks(routed)] == [s["piper"].pcm(t) for t in (DOOR, COFFEE, STORE)]
    assert s["google_tts"].requests == []


async def test_a_reported_stream_of_model_steps_goes_out_as_made() -> None:
    s, who = verified("report")
    s["piper"].says_sentences = False
    s["piper"].max_characters = 45  # a piece a sentence
    s["piper"].garbled = {COFFEE}
    routed = await s.router.stream(say(TEXT, who))
    got = await chunks(routed)
    assert [c.pcm for c in got] == [s["piper"].pcm(t) for t in (DOOR, COFFEE, STORE)]
    assert routed.end.switches == [] and s["google_tts"].requests == []
    assert s.attempt_spans()[0][spans.VERIFY_OUTCOME] == "failed"


async def test_an_enforced_stream_of_model_steps_holds_each_piece_until_it_is_heard() -> None:
    ear = LocalEar()
    s, who = verified(ear=ear)
    s["piper"].says_sentences = False  # XTTS's model steps: heard as a piece
    routed = await s.router.stream(say(TEXT, who))
    got = await chunks(routed)
    assert len(got) == 3 and [r.text for r in ear.heard] == [TEXT]
    assert s.attempt_spans()[0][spans.VERIFY_OUTCOME] == "passed"


async def test_an_enforced_stream_with_no_engine_after_it_sends_what_failed_and_says_so() -> None:
    s, who = verified(fallbackChain=[])
    s["piper"].garbled = {DOOR, COFFEE}  # its first sentence too: no one else may say it
    routed = await s.router.stream(say(TEXT, who))
    assert routed.engine == "piper" and routed.attempts == []
    got = await chunks(routed)
    assert [c.pcm for c in got] == [s["piper"].pcm(t) for t in (DOOR, COFFEE, STORE)]
    assert routed.end.switches == [] and s["google_tts"].requests == []
    assert s.attempt_spans()[0][spans.VERIFY_OUTCOME] == "failed"


async def test_an_enforced_stream_of_model_steps_is_carried_on_from_the_piece_that_failed() -> None:
    s, who = verified()
    s["piper"].says_sentences = False  # model steps: the text of what went out is known by piece
    s["piper"].max_characters = 45  # a piece a sentence
    s["piper"].garbled = {COFFEE}
    routed = await s.router.stream(say(TEXT, who))
    got = await chunks(routed)
    assert [c.pcm for c in got] == [s["piper"].pcm(DOOR), s["google_tts"].pcm(COFFEE), s["google_tts"].pcm(STORE)]
    assert [r.text for r in s["google_tts"].requests] == [f"{COFFEE} {STORE}"]
    assert [w.engine for w in routed.end.switches] == ["google_tts"]


@pytest.mark.parametrize("verify,named", [({"maxWordErrorRate": 1.5}, "maxWordErrorRate"),
                                          ({"mode": "warn"}, "mode"), ({"maxWer": 0.3}, "maxWer")])
def test_a_bad_verify_setting_is_refused_naming_it(verify: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        personality(verify=verify)


async def test_an_enforced_stream_heard_right_is_heard_once_a_sentence_and_kept() -> None:
    ear = LocalEar()
    s, who = verified(ear=ear)
    s.router.cache = AudioCache(MemoryTier(1 << 22), None)
    got = await chunks(await s.router.stream(say(TEXT, who)))
    assert [r.text for r in ear.heard] == [DOOR, COFFEE, STORE]  # never the piece again as a whole
    again = await s.router.stream(say(TEXT, who))
    assert again.cache == "hit" and b"".join(c.pcm for c in await chunks(again)) == b"".join(c.pcm for c in got)
    assert len(s["piper"].requests) == 1


async def test_a_stream_sent_as_the_last_resort_is_never_cached() -> None:
    s, who = verified(fallbackChain=[])
    s.router.cache = AudioCache(MemoryTier(1 << 22), None)
    s["piper"].garbled = {COFFEE}
    await chunks(await s.router.stream(say(TEXT, who)))
    s["piper"].garbled = set()
    routed = await s.router.stream(say(TEXT, who))
    got = await chunks(routed)
    assert routed.cache != "hit" and got[1].pcm == s["piper"].pcm(COFFEE)  # said again, right this time


def test_pieces_verdicts_are_the_worst_outcome_and_the_words_heard() -> None:
    passed = Verdict(outcome="passed", words=4, errors=1)
    unverified = Verdict(outcome="unverified", reason="recognizer failed")
    failed = Verdict(outcome="failed", words=2, errors=2, heard="no")
    both = Verdict.of([passed, unverified])
    assert (both.outcome, both.words, both.errors, both.reason) == ("unverified", 4, 1, "recognizer failed")
    assert both.word_error_rate == 0.25  # a piece not heard adds no words
    assert unverified.word_error_rate is None
    assert Verdict.of([unverified, failed]).outcome == "failed"
    assert Verdict.of([failed, passed]).outcome == "failed"
    whole = Verdict.of([passed, failed])
    assert (whole.words, whole.errors, whole.reason) == (6, 3, None)


def test_a_refusal_says_the_rate_and_what_was_heard_at_most_200_characters() -> None:
    error = VerificationFailed("piper", Verdict(outcome="failed", words=4, errors=3, heard="a" * 300))
    assert error.public == "verification: WER 0.75"
    assert error.reason == f"verification: WER 0.75 over 4 words, heard {'a' * 200!r}"
    # A text without words heard as some: as many errors as words heard, as the recognizer says.
    wordless = Verdict(outcome="failed", words=0, errors=3, heard="um uh oh")
    assert wordless.word_error_rate == 3.0 and VerificationFailed("piper", wordless).public == "verification: WER 3.00"
    # The attempt's verdict is all its pieces', when given; else the piece's.
    piece, whole = Verdict(outcome="failed", words=2, errors=2), Verdict(outcome="failed", words=6, errors=2)
    assert VerificationFailed("piper", piece).verdict is piece
    assert VerificationFailed("piper", piece, whole).verdict is whole


def test_the_header_says_a_perfect_hearing_and_the_span_keeps_four_decimals() -> None:
    settings = VerifySettings(max_word_error_rate=0.5, mode="report")
    assert Verdict(outcome="passed", words=4, errors=0).header(settings) == "passed; wer=0.00; max=0.50; mode=report"
    assert Verdict(outcome="unverified", reason="no recognizer for fr").header(settings) == \
        "unverified; reason=no recognizer for fr"
    span = TracerProvider().get_tracer(__name__).start_span("attempt")
    mark(span, Verdict(outcome="failed", words=3, errors=2))
    assert span.attributes[spans.VERIFY_WER] == 0.6667 and span.attributes[spans.VERIFY_OUTCOME] == "failed"


class _Heard:
    """A recognizer that hears what it is told: the rate at the limit can only be set up so."""

    def __init__(self, hearing: Hearing) -> None:
        self.hear = self
        self.hearing = hearing

    async def remote(self, request: Any) -> Hearing:
        return self.hearing


async def test_a_rate_at_the_limit_passes_and_one_above_it_fails() -> None:
    settings = VerifySettings(max_word_error_rate=0.5)
    audio = AudioResult(pcm=b"\0\0" * 1600, sample_rate=16_000)
    at_limit = Verifier(_Heard(Hearing(transcript="open the", words=4, errors=2)))
    assert (await at_limit.check(settings, audio, "open the door now", "en")).outcome == "passed"
    above = Verifier(_Heard(Hearing(transcript="open", words=4, errors=2.5)))
    assert (await above.check(settings, audio, "open the door now", "en")).outcome == "failed"
