"""What the recognizer is asked (`HearRequest`) and what it answers (`Hearing`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from deployments.base import language_matches

RECOGNIZER = "Recognizer"  # the deployment's name in Serve configs
RATE = 16_000  # the acoustic model's: audio is resampled to it before it is sent
LANGUAGES = ["en"]  # pocketsphinx's bundled model


def speaks(language: str) -> bool:
    """Whether the recognizer hears `language` (`en`, `en-GB`, `en_US`...)."""
    return language_matches(language, LANGUAGES)


class HearRequest(BaseModel):
    pcm: bytes = Field(description="mono signed 16-bit little-endian PCM at `RATE`")
    sample_rate: Literal[16_000] = RATE
    language: str
    text: str = Field(description="what the audio should say")


class AlignRequest(BaseModel):
    pcm: bytes = Field(description="mono signed 16-bit little-endian PCM at `RATE`")
    sample_rate: Literal[16_000] = RATE
    words: list[str] = Field(description="what the audio says, word by word")


class Alignment(BaseModel):
    spans: list[tuple[float, float]] | None = Field(
        description="each word's (start, end), seconds from the audio's start; None: not aligned (a word outside "
        "the dictionary, or no speech that holds the words)")


class Hearing(BaseModel):
    """What was heard and how far it is from the text: `errors` word edits (deletions and
    insertions one each, a word heard as another the share of its sounds that differ:
    `chorus.recognition.ear.word_errors`) against the text's `words`."""

    transcript: str
    words: int = Field(ge=0)
    errors: float = Field(ge=0)

    @property
    def word_error_rate(self) -> float:
        return self.errors / max(self.words, 1)
