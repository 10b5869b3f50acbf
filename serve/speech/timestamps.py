"""Word timestamps of an answer: when each word is heard, in seconds from the audio's start.

Per sentence, from the best source there is:
- `engine`: the engine's own durations (`Sentence.words`: Piper's phonemes, Google's marks);
- `aligner`: forced alignment of the sentence's audio against its text (`chorus.speech.aligner`,
  English);
- `estimate`: a language the aligner speaks, but a sentence it cannot align (a word outside
  its dictionary): the sentence's time shared among its words by their length;
- `sentence`: a language with no aligner: the sentence's own start and end, no words.

An engine that does not say where its sentences are (a cloud engine's one answer for a piece)
is taken as one sentence."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from chorus.speech.aligner import Aligner
from deployments.base import AudioResult, Sentence, WordSpan, spoken_words

WordsFrom = Literal["engine", "aligner", "estimate", "sentence"]


class Word(BaseModel):
    text: str
    start: float = Field(description="seconds from the start of the audio")
    end: float


class SentenceTiming(BaseModel):
    text: str
    start: float
    end: float
    words_from: WordsFrom = Field(description="engine: its own durations; aligner: forced alignment; estimate: "
                                  "shared by length (a word the aligner does not know); sentence: no word timings "
                                  "(no aligner for the language)")


class Timestamps(BaseModel):
    words: list[Word]
    sentences: list[SentenceTiming]
    granularity: Literal["word", "sentence"] = Field(
        description="word: every sentence has word timings; sentence: only sentences' (no aligner for the language)")


async def timestamps(audio: AudioResult, text: str, language: str, aligner: Aligner, *, offset_s: float = 0.0,
                     ) -> Timestamps:
    """The timestamps of `audio`, which says `text` (its sentences, if the engine told them);
    `offset_s` is where it starts in a longer answer (a stream's chunk)."""
    sentences = audio.sentences or [Sentence(text=text, samples=len(audio.pcm) // 2)]
    words: list[Word] = []
    timings: list[SentenceTiming] = []
    at = 0
    for sentence in sentences:
        start, end = offset_s + at / audio.sample_rate, offset_s + (at + sentence.samples) / audio.sample_rate
        spans, source = await _words(audio, at, sentence, language, aligner)
        words += [Word(text=w.text, start=round(start + w.start, 3), end=round(start + w.end, 3)) for w in spans]
        timings.append(SentenceTiming(text=sentence.text, start=round(start, 3), end=round(end, 3), words_from=source))
        at += sentence.samples
    granularity = "sentence" if any(t.words_from == "sentence" for t in timings) else "word"
    return Timestamps(words=words, sentences=timings, granularity=granularity)


async def _words(audio: AudioResult, at: int, sentence: Sentence, language: str, aligner: Aligner,
                 ) -> tuple[list[WordSpan], WordsFrom]:
    if sentence.words is not None:
        return sentence.words, "engine"
    if not aligner.speaks(language):
        return [], "sentence"
    tokens = spoken_words(sentence.text)
    pcm = audio.pcm[at * 2:(at + sentence.samples) * 2]
    aligned = await aligner.align(pcm, audio.sample_rate, tokens)
    if aligned is not None:
        return [WordSpan(text=t, start=a, end=b) for t, (a, b) in zip(tokens, aligned, strict=True)], "aligner"
    return _shared_by_length(tokens, sentence.samples / audio.sample_rate), "estimate"


def _shared_by_length(tokens: list[str], seconds: float) -> list[WordSpan]:
    total = sum(len(t) for t in tokens) or 1
    spans, at = [], 0.0
    for token in tokens:
        length = seconds * len(token) / total
        spans.append(WordSpan(text=token, start=at, end=at + length))
        at += length
    return spans
