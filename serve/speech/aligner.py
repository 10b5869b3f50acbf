"""Word timings by forced alignment, for engines that do not give their own: the router's
side of the Recognizer deployment's aligner (`chorus.recognition.aligner`, English), reached
through its handle. None deployed, or it failing or late: the caller estimates the words."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from chorus.recognition.models import RATE, Alignment, AlignRequest, speaks
from chorus.speech.encoding import resample

log = logging.getLogger(__name__)


class Aligner:
    """`handle`: a Serve handle to `Recognizer` (or anything with `align.remote(AlignRequest)`);
    None: none deployed, nothing aligned."""

    def __init__(self, handle: Any | None, timeout_s: float = 30.0) -> None:
        self.handle = handle
        self.timeout_s = timeout_s

    @staticmethod
    def speaks(language: str) -> bool:
        return speaks(language)

    async def align(self, pcm: bytes, rate: int, words: list[str]) -> list[tuple[float, float]] | None:
        """Each word's (start, end) in seconds from the start of `pcm`, or None when it cannot
        be aligned (a word outside the dictionary, no speech, no recognizer answering)."""
        if self.handle is None:
            return None
        audio = await asyncio.to_thread(resample, pcm, rate, RATE)
        try:
            found: Alignment = await asyncio.wait_for(
                self.handle.align.remote(AlignRequest(pcm=audio, words=words)), timeout=self.timeout_s)
        except Exception as err:  # noqa: BLE001 - an estimate instead of timings, never a failed answer
            log.warning("recognizer could not align a sentence: %r", err)
            return None
        return found.spans
