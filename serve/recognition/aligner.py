"""Forced alignment: when each word of a known text is heard in audio, for engines that do
not say so themselves. pocketsphinx aligns against its bundled US English model; a word its
dictionary lacks (a name, a made-up word, a number written as digits) cannot be aligned, and
the sentence gets no alignment (the caller estimates it).

It runs in the Recognizer deployment (`chorus.recognition.deployment`) beside the ear, for the
same reason: a decode holds the GIL. A decoder takes ~0.5 s to load and is not thread-safe:
each is loaded once and used by one alignment at a time."""

from __future__ import annotations

import queue
import re
from typing import Any

from chorus.recognition.models import RATE, Alignment, AlignRequest

FRAME_S = 0.01  # pocketsphinx counts 10 ms frames
_FILLERS = frozenset({"<s>", "</s>", "<sil>", "[NOISE]", "[SPEECH]"})


def dictionary_word(token: str) -> str:
    """A token as the dictionary spells it: lower case, letters and apostrophes only."""
    return re.sub(r"[^a-z']", "", token.lower()).strip("'")


class Aligner:
    def __init__(self) -> None:
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def align(self, request: AlignRequest) -> Alignment:
        """Each word's (start, end) in seconds from the start of the audio, or None when one
        is not in the dictionary or the audio does not hold the words."""
        words = request.words
        spelled = [dictionary_word(w) for w in words]
        decoder = self._decoder()
        try:
            if not spelled or any(not w or decoder.lookup_word(w) is None for w in spelled):
                return Alignment(spans=None)
            decoder.set_align_text(" ".join(spelled))
            decoder.start_utt()
            decoder.process_raw(request.pcm, full_utt=True)
            decoder.end_utt()
            # None, or a RuntimeError: no alignment reached the end of the audio (no speech).
            segments = decoder.seg() or []
            found = [(seg.start_frame * FRAME_S, (seg.end_frame + 1) * FRAME_S) for seg in segments
                     if seg.word.split("(")[0] not in _FILLERS]
        except RuntimeError:
            return Alignment(spans=None)
        finally:
            self._idle.put(decoder)
        return Alignment(spans=found if len(found) == len(words) else None)

    def _decoder(self) -> Any:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            from pocketsphinx import Decoder  # loaded on first use: its model is 38 MB

            return Decoder(samprate=RATE, logfn="/dev/null", bestpath=False)
