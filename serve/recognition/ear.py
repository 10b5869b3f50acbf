"""The ear: pocketsphinx's bundled US English model transcribes a piece of synthesized
speech, and the transcript is scored against the text the piece should say.

pocketsphinx holds the GIL for the whole decode (measured: 10 s of noise held an asyncio
loop for 13 s), so it never runs in the ingress: it runs in its own deployment
(`chorus.recognition.deployment`), one decode per decoder, in worker threads.

The search is narrowed (`maxhmmpf`, `maxwpf`, `pl_window`) and looks at every other frame
(`ds`): on 30 sentences of Piper's speech it scores as the default search does (the same
worst sentence, the same best wrong text) at 0.09 of real time instead of 0.19, and noise,
where the default search explodes, takes 0.14 of real time instead of 0.40 (2 x AMD EPYC)."""

from __future__ import annotations

import queue
import re
from collections.abc import Callable
from typing import Any

from chorus.recognition.models import LANGUAGES, RATE, Hearing, HearRequest, speaks

_SEARCH = {"maxhmmpf": 3000, "maxwpf": 5, "pl_window": 10, "ds": 2}


def tokens(text: str) -> list[str]:
    """The words of `text` as the dictionary spells them: lower case, letters, digits and
    apostrophes (a digit never is in it, so "3" or "2026" is a word it cannot know)."""
    return [t for t in (w.strip("'") for w in re.findall(r"[\w']+", text.lower())) if t]


Sounds = Callable[[str], list[str] | None]


def word_errors(reference: list[str], heard: list[str], sounds: Sounds) -> float:
    """Word edits from `reference` to `heard` (Levenshtein), where a word heard in place of
    another costs the share of its phones that differ (`sounds`: a word's phones from the
    dictionary, None when it has none): "nine" heard as "night" is a third of an error, "their"
    as "there" none. A plain word error rate blames the speech for the recognizer's ear:
    measured on 30 ordinary sentences of the bundled Piper voice, it put 1 in 30 over 0.5
    and 3 in 30 over 0.4, where no other text's audio scored under 0.75; weighted, good
    speech stays at or under 0.38 and the wrong words at or over 0.73.

    A reference word the dictionary lacks (a name, digits) costs nothing, heard or not: the
    recognizer cannot be blamed for not hearing a word it cannot know. (jiwer, the usual WER
    library, has neither weighted substitutions nor such a wildcard, hence these lines.)"""
    said = [sounds(w) for w in reference]
    got = [sounds(w) or [] for w in heard]
    previous = [float(j) for j in range(len(heard) + 1)]
    for i, word in enumerate(reference):
        phones = said[i]
        unheard = 0.0 if phones is None else 1.0
        current = [previous[0] + unheard]
        for j, h in enumerate(heard):
            swap = 0.0 if phones is None or word == h else min(1.0, _edits(phones, got[j]) / len(phones))
            current.append(min(previous[j + 1] + unheard, current[j] + 1.0, previous[j] + swap))
        previous = current
    return previous[-1]


def _edits(a: list[str], b: list[str]) -> int:
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


class Ear:
    """Decoders loaded once (~0.5 s each, 38 MB of model) and reused, one decode each at a time."""

    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def hear(self, request: HearRequest) -> Hearing:
        if not speaks(request.language):
            raise ValueError(f"no recognizer for language {request.language!r} (have: {LANGUAGES})")
        decoder = self._decoder()
        try:
            decoder.start_utt()
            decoder.process_raw(request.pcm, full_utt=True)
            decoder.end_utt()
            hypothesis = decoder.hyp()
            transcript = hypothesis.hypstr if hypothesis else ""
            reference = tokens(request.text)
            errors = word_errors(reference, transcript.split(), lambda w: _phones(decoder.lookup_word(w)))
        finally:
            self._idle.put(decoder)
        return Hearing(transcript=transcript, words=len(reference), errors=errors)

    def _decoder(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            from pocketsphinx import Decoder  # loaded on first use

            return Decoder(samprate=RATE, logfn="/dev/null", **_SEARCH)



def _phones(pronunciation: str | None) -> list[str] | None:
    return pronunciation.split() if pronunciation else None
