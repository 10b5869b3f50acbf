"""OpenAI's speech model names, which Chorus takes as "the personality's own chain" (an engine
id as `model` instead tries that engine first)."""

from __future__ import annotations

OPENAI_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
