"""Verified output: each piece an engine made is heard by the recognizer (its own deployment,
`chorus.recognition.deployment`) and scored against the piece's text before the router lets
it go (`PersonalitySpec.verify`).

- `enforce`: a piece over the personality's word error rate fails its engine's attempt
  (`VerificationFailed`, "verification: WER 0.93") and the plan moves on; it is never
  kept in the audio cache.
- `report`: the piece goes out anyway.

Either way the measure is on the attempt span (`chorus.verify.*`, which the statistics
count) and in the answer's `X-Chorus-Verify` header. A piece that cannot be heard (a
language without a recognizer, no recognizer deployed, the recognizer failing or late) is
sent unverified and says why: verification guards against an engine's bad speech, and a
recognizer down must not take every personality that asks for it down with it.

A failed verification does not count against the engine's circuit breaker: the recognizer
is small, and a hard text (a tongue twister, rare names) fails on every engine alike."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal

from opentelemetry.trace import Span
from pydantic import BaseModel

from chorus.personalities import VerifySettings
from chorus.recognition.models import RATE, Hearing, HearRequest, speaks
from chorus.speech.encoding import resample
from deployments import spans
from deployments.base import AudioResult, EngineFailedError

log = logging.getLogger(__name__)

VerifyOutcome = Literal["passed", "failed", "unverified"]


class Verdict(BaseModel):
    """What verification of one or more pieces found."""

    outcome: VerifyOutcome
    words: int = 0
    errors: float = 0.0
    reason: str | None = None  # unverified: why
    heard: str = ""  # the transcript, for the log

    @property
    def word_error_rate(self) -> float | None:
        """As the recognizer's (`Hearing.word_error_rate`: a text without words heard as some
        is that many errors); None when nothing was heard."""
        return self.errors / max(self.words, 1) if self.words or self.errors else None

    def header(self, settings: VerifySettings) -> str:
        """`X-Chorus-Verify`: `passed; wer=0.08; max=0.50; mode=enforce`, or `unverified; reason=...`."""
        if self.outcome == "unverified":
            return f"unverified; reason={self.reason}"
        return f"{self.outcome}; wer={self.word_error_rate or 0.0:.2f}; max={settings.max_word_error_rate:.2f}; " \
               f"mode={settings.mode}"

    @classmethod
    def of(cls, pieces: list[Verdict]) -> Verdict:
        """Pieces' verdicts as one: the worst outcome (failed, then unverified, then passed),
        words and errors summed."""
        rank = {"passed": 0, "unverified": 1, "failed": 2}
        worst = max(pieces, key=lambda v: rank[v.outcome])
        return cls(outcome=worst.outcome, words=sum(v.words for v in pieces), errors=sum(v.errors for v in pieces),
                   reason=next((v.reason for v in pieces if v.reason), None))


class VerificationFailed(EngineFailedError):
    """A piece's words did not come back: the engine's attempt fails (enforce mode)."""

    def __init__(self, engine: str, piece: Verdict, whole: Verdict | None = None) -> None:
        public = f"verification: WER {piece.word_error_rate or 0.0:.2f}"
        super().__init__(f"{public} over {piece.words} words, heard {piece.heard[:200]!r}", engine, public)
        self.verdict = whole or piece  # the attempt's, all its pieces heard


class Verifier:
    """The router's way to the recognizer: `handle` (a Serve handle to `Recognizer`, or
    anything with `hear.remote(HearRequest)`); None: none deployed."""

    def __init__(self, handle: Any | None, timeout_s: float = 30.0) -> None:
        self.handle = handle
        self.timeout_s = timeout_s

    async def check(self, settings: VerifySettings, audio: AudioResult, text: str, language: str) -> Verdict:
        """One piece heard and judged against `settings`."""
        if not speaks(language):
            return Verdict(outcome="unverified", reason=f"no recognizer for {language}")
        if self.handle is None:
            return Verdict(outcome="unverified", reason="no recognizer deployed")
        pcm = await asyncio.to_thread(resample, audio.pcm, audio.sample_rate, RATE)
        try:
            hearing: Hearing = await asyncio.wait_for(
                self.handle.hear.remote(HearRequest(pcm=pcm, language=language, text=text)), timeout=self.timeout_s)
        except Exception as err:  # noqa: BLE001 - any failure of the recognizer leaves the piece unverified
            log.warning("recognizer could not hear a piece: %r", err)
            return Verdict(outcome="unverified", reason="recognizer failed" if not isinstance(err, TimeoutError)
                           else f"recognizer gave no answer within {self.timeout_s:g} s")
        passed = hearing.word_error_rate <= settings.max_word_error_rate
        return Verdict(outcome="passed" if passed else "failed", words=hearing.words, errors=hearing.errors,
                       heard=hearing.transcript)


def mark(span: Span, verdict: Verdict) -> None:
    """An attempt's verdict (its pieces' together) on its span, for traces and the statistics."""
    span.set_attribute(spans.VERIFY_OUTCOME, verdict.outcome)
    if verdict.word_error_rate is not None:
        span.set_attribute(spans.VERIFY_WER, round(verdict.word_error_rate, 4))
    if verdict.reason:
        span.set_attribute(spans.VERIFY_REASON, verdict.reason)
