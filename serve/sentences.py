"""Splitting text into pieces an engine accepts, at sentence boundaries."""

from __future__ import annotations

import re

from deployments.base import TextTooLongError

# End of a sentence: terminal punctuation (Latin, CJK, Devanagari) followed by space or
# the end, keeping closing quotes/brackets with the sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?。！？।…])\s+|(?<=[.!?。！？।…][\"'”’)\]])\s+")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def pack(text: str, limit: int, engine: str = "") -> list[str]:
    """Group whole sentences into pieces of at most `limit` characters.

    A single sentence longer than the limit cannot be split without changing how it
    sounds, so it is refused with the limit named (HTTP 413)."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in sentences(text):
        if len(sentence) > limit:
            raise TextTooLongError(
                f"a sentence of {len(sentence)} characters exceeds the {limit}-character limit "
                f"of {engine or 'the engine'}; split it",
                engine,
                limit,
            )
        candidate = f"{current} {sentence}" if current else sentence
        if len(candidate) > limit:
            pieces.append(current)
            candidate = sentence
        current = candidate
    if current:
        pieces.append(current)
    return pieces
