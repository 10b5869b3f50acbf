"""The bodies of `GET /v1/stats` and `GET /v1/stats/series`."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _Out(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)


class TimingOut(_Out):
    """Milliseconds; null when nothing was measured in the window."""

    avg: float | None
    ema: float | None = Field(description="Exponential moving average, alpha 0.1, in order of completion.")
    p50: float | None
    p95: float | None
    p99: float | None


class FiguresOut(_Out):
    """One engine's or one personality's figures over the window."""

    requests: int = Field(
        description="Engine: attempts that reached it (not skipped). Personality: utterances asked for."
    )
    successes: int
    success_rate: float | None
    failures: dict[str, int] = Field(description="By outcome (deployments/spans.py).")
    error_types: dict[str, int] = Field(description="Failures by error class name.")
    skipped: int = Field(
        description="Engine: attempts skipped before reaching it (unhealthy, language, ...)."
    )
    latency_ms: TimingOut = Field(description="Of successes only.")
    time_to_first_audio_ms: TimingOut = Field(description="Streams only.")
    characters: int = Field(
        description="Spoken: sent to the engine that spoke / asked for by a spoken utterance."
    )
    audio_seconds: float
    rtf: float | None = Field(description="Synthesis seconds / audio seconds.")
    cache_hits: int
    fallbacks_to: dict[str, int] = Field(
        description="Engine: how often an attempt on it that did not speak moved on to each engine. "
        "Personality: fallbacks to each engine."
    )
    verification: dict[str, int] = Field(
        default_factory=dict,
        description="Attempts heard by the recognizer (personalities that verify), by verdict: passed, failed "
        "(its words did not come back), unverified (no recognizer for the language, or none answering).",
    )


class StatsOut(_Out):
    window: str
    since: datetime = Field(description="Start of the window's oldest bucket (UTC).")
    engines: dict[str, FiguresOut]
    personalities: dict[str, FiguresOut]
    keys: dict[str, FiguresOut] = Field(
        default_factory=dict, description="Per API key name (keys on): the utterances it asked for."
    )


class PointEngineOut(_Out):
    requests: int
    p50: float | None = Field(description="Latency of successes, ms.")
    p95: float | None


class PointOut(_Out):
    start: datetime
    engines: dict[str, PointEngineOut]


class SeriesOut(_Out):
    window: str
    step: str
    since: datetime
    points: list[PointOut]
