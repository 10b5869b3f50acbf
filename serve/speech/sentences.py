"""Splitting text into pieces an engine accepts, at sentence boundaries; for a stream, the
first piece ends at the first clause boundary that still sounds whole."""

from __future__ import annotations

import re

from deployments.base import TextTooLongError, split_sentences

# A clause ends at a comma, semicolon or colon followed by white space: "1,000", "10:30" and
# "3:2" have none, so numbers and times are never cut.
_CLAUSE_END = re.compile(r"(?<=[,;:])\s+")

# Why these bounds (Piper's bundled voice on this 2-core machine synthesizes at 0.19-0.28 of
# real time, plus ~0.1 s a call):
# - at least 4 words on each side: a lone "Well," or "Yes, sir," is half a second of audio,
#   over before the next piece is ready, and sounds cut off; a short tail like ", too." is
#   as odd spoken alone and saves next to nothing;
# - the rest of the sentence at most 3 times the clause's words: the rest is synthesized
#   while the clause plays, and at ~0.25 of real time three times its length is ready
#   before the clause ends, so the listener hears no gap mid-sentence.
MIN_CLAUSE_WORDS = 4
MAX_REST_PER_CLAUSE = 3


def pack(text: str, limit: int, engine: str = "", *, first_clause: bool = False) -> list[str]:
    """Group whole sentences into pieces of at most `limit` characters; with `first_clause`
    the first piece is cut after its first sentence's first clause (`_first_clause`), so a
    stream's first audio leaves sooner.

    The router asks for that cut on streams only (a whole answer leaves with its last
    sample anyway), and never for an engine answering each call in one chunk (the cloud
    engines, `Capabilities.one_chunk_per_call`): there the cut would cost a call more than
    the ⌈characters / limit⌉ a text is packed into, the rule that keeps a cloud stream from
    fanning out, and the listener would wait after the clause for the whole rest of the
    piece to come back as one answer.

    A single sentence longer than the limit cannot be split without changing how it
    sounds, so it is refused with the limit named (HTTP 413)."""
    pieces = _whole_sentences(text, limit, engine)
    if first_clause and (cut := _first_clause(pieces[0])) is not None:
        return [*cut, *pieces[1:]]
    return pieces


def _first_clause(piece: str) -> tuple[str, str] | None:
    """`piece` cut after its first sentence's first clause boundary that leaves at least
    `MIN_CLAUSE_WORDS` words on each side and at most `MAX_REST_PER_CLAUSE` times the
    clause's words after it in the sentence; None when no boundary does (a short sentence,
    or one whose clauses are too short or too unequal). Languages written without spaces
    have no word count here and are never cut."""
    piece = piece.strip()
    sentences = split_sentences(piece)
    if not sentences:
        return None
    sentence = sentences[0]  # a prefix of `piece`: split_sentences only strips and splits
    for boundary in _CLAUSE_END.finditer(sentence):
        clause, rest = len(sentence[: boundary.start()].split()), len(sentence[boundary.end():].split())
        if rest < MIN_CLAUSE_WORDS:
            return None  # later boundaries leave even less
        if clause >= MIN_CLAUSE_WORDS and rest <= MAX_REST_PER_CLAUSE * clause:
            return piece[: boundary.start()], piece[boundary.end():]
    return None


def _whole_sentences(text: str, limit: int, engine: str) -> list[str]:
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


def rest_of(text: str, said: list[str]) -> str | None:
    """What of `text` comes after the sentences `said` (each the exact text an engine was
    given for it, in order); None if one is not found where it should be."""
    at = 0
    for sentence in said:
        found = text.find(sentence, at)
        if found < 0:
            return None
        at = found + len(sentence)
    return text[at:].strip()
