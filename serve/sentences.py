"""Splitting text into pieces an engine accepts, at sentence boundaries."""

from __future__ import annotations

from deployments.base import TextTooLongError, split_sentences


def pack(text: str, limit: int, engine: str = "") -> list[str]:
    """Group whole sentences into pieces of at most `limit` characters.

    A single sentence longer than the limit cannot be split without changing how it
    sounds, so it is refused with the limit named (HTTP 413)."""
    if len(text) <= limit:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in split_sentences(text):
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
