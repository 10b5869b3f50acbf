"""What completed utterances add to the figures: a `Tally` of named fields per engine and per
personality, and how one `chorus.speech` span with its `chorus.engine.attempt` spans adds up.
Field names are `<kind>|<subject>|<metric>` (kind `e` engine, `p` personality), the same in
memory and in Redis's hashes; only names from `deployments.spans` are read off the spans."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry.sdk.trace import ReadableSpan

from chorus.telemetry.stats.ema import EmaBatch
from chorus.telemetry.stats.histogram import bucket
from deployments import spans

Kind = Literal["e", "p", "k"]
ENGINE: Kind = "e"
PERSONALITY: Kind = "p"
KEY: Kind = "k"  # the API key's name, when keys are on
SEP = "|"
# Measured series: latency of successes, time to first audio of streams (ms). Each keeps a
# count and sum (average), histogram buckets (`<series>:h:<i>`) and an EMA batch.
SERIES = ("lat", "ttfa")
EMA_SUFFIX = ":ema"


def key(kind: Kind, subject: str, metric: str) -> str:
    return f"{kind}{SEP}{subject}{SEP}{metric}"


@dataclass
class Tally:
    """Additive figures (counts and sums; HINCRBY/HINCRBYFLOAT in Redis) and EMA batches,
    keyed by `<kind>|<subject>|<series>:ema`, which chain in time order."""

    sums: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    emas: dict[str, EmaBatch] = field(default_factory=dict)

    def add(self, kind: Kind, subject: str, metric: str, amount: float = 1) -> None:
        self.sums[key(kind, subject, metric)] += amount

    def sample(self, kind: Kind, subject: str, series: str, ms: float) -> None:
        self.add(kind, subject, f"{series}:n")
        self.add(kind, subject, f"{series}:sum", ms)
        self.add(kind, subject, f"{series}:h:{bucket(ms)}")
        self.emas.setdefault(key(kind, subject, series + EMA_SUFFIX), EmaBatch()).add(ms)

    def then(self, later: Tally) -> None:
        """Add a tally of what happened after this one."""
        for name, amount in later.sums.items():
            self.sums[name] += amount
        for name, batch in later.emas.items():
            self.emas.setdefault(name, EmaBatch()).then(batch)

    def subjects(self, kind: Kind) -> dict[str, dict[str, float]]:
        """Each subject's additive metrics."""
        out: dict[str, dict[str, float]] = defaultdict(dict)
        for name, amount in self.sums.items():
            k, subject, metric = name.split(SEP, 2)
            if k == kind:
                out[subject][metric] = amount
        return out

    def ema(self, kind: Kind, subject: str, series: str) -> float | None:
        batch = self.emas.get(key(kind, subject, series + EMA_SUFFIX))
        return batch.value() if batch else None

    def int_fields(self) -> Iterable[tuple[str, int]]:
        """The counts (whole numbers by construction: HINCRBY in Redis)."""
        return ((k, round(v)) for k, v in self.sums.items() if not _is_float(k))

    def float_fields(self) -> Iterable[tuple[str, float]]:
        return ((k, v) for k, v in self.sums.items() if _is_float(k))


_FLOAT_METRICS = ("lat:sum", "ttfa:sum", "audio_s", "synth_s")


def _is_float(name: str) -> bool:
    return name.endswith(_FLOAT_METRICS)


def _ms(span: ReadableSpan) -> float:
    assert span.start_time is not None and span.end_time is not None
    return (span.end_time - span.start_time) / 1e6


def _str(attrs: Mapping[str, object], name: str) -> str | None:
    value = attrs.get(name)
    return str(value) if value is not None else None


def _num(attrs: Mapping[str, object], name: str) -> float | None:
    value = attrs.get(name)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def utterance(speech: ReadableSpan, attempts: Sequence[ReadableSpan]) -> Tally:
    """One utterance's figures.

    Personality: every `chorus.speech` is a request; `ok` a success (its latency, its
    characters asked for), any other outcome a failure by outcome. Engine: every attempt
    that reached the engine (not `skipped`) is a request; `ok` a success (its latency, the
    characters sent, audio seconds and synthesis seconds = rtf x audio seconds), any other
    outcome a failure by outcome and `error.type`. An attempt that did not speak followed by
    another is a fallback from its engine to the next one. Time to first audio and cache
    hits go to the personality and to the engine that spoke. An attempt the recognizer heard
    (`chorus.verify.outcome`: passed, failed, unverified) counts by its verdict for its engine
    and the personality.

    An attempt answered wholly from the audio cache (`chorus.cache` = hit) counts for its
    engine as a request, a success, its characters and a cache hit, but not in the engine's
    latency, first audio, audio seconds or real-time factor: the engine did no work, and
    near-zero samples would hide how fast it really is.
    """
    t = Tally()
    attrs = speech.attributes or {}
    name = _str(attrs, spans.PERSONALITY) or "(unknown)"
    outcome = _str(attrs, spans.OUTCOME) or "failed"
    spoke = _str(attrs, spans.ENGINE)
    # The utterance counts for its personality and, with keys on, for the key that asked.
    askers: list[tuple[Kind, str]] = [(PERSONALITY, name)]
    if (key_name := _str(attrs, spans.KEY)) is not None:
        askers.append((KEY, key_name))
    for kind, subject in askers:
        t.add(kind, subject, "requests")
        if outcome == "ok":
            t.add(kind, subject, "successes")
            t.add(kind, subject, "chars", _num(attrs, spans.CHARACTERS) or 0)
            t.sample(kind, subject, "lat", _ms(speech))
        else:
            t.add(kind, subject, f"fail:{outcome}")
        if (error := _str(attrs, spans.ERROR_TYPE)) is not None:
            t.add(kind, subject, f"err:{error}")
    ttfa = _num(attrs, spans.TIME_TO_FIRST_AUDIO_MS)
    hit = _str(attrs, spans.CACHE) == "hit"
    for kind, subject in [*askers, *([(ENGINE, spoke)] if spoke else [])]:
        if ttfa is not None and not (hit and kind == ENGINE):
            t.sample(kind, subject, "ttfa", ttfa)
        if hit:
            t.add(kind, subject, "cache_hits")

    ordered = sorted(attempts, key=lambda a: _num(a.attributes or {}, spans.FALLBACK_POSITION) or 0)
    for i, attempt in enumerate(ordered):
        a = attempt.attributes or {}
        engine = _str(a, spans.ENGINE) or "(unknown)"
        result = _str(a, spans.OUTCOME) or "failed"
        if (verified := _str(a, spans.VERIFY_OUTCOME)) is not None:
            t.add(ENGINE, engine, f"verify:{verified}")
            t.add(PERSONALITY, name, f"verify:{verified}")
        if result == "ok":
            t.add(ENGINE, engine, "requests")
            t.add(ENGINE, engine, "successes")
            t.add(ENGINE, engine, "chars", _num(a, spans.CHARACTERS) or 0)
            audio = _num(a, spans.AUDIO_SECONDS) or 0
            synthesis = audio * (_num(a, spans.REAL_TIME_FACTOR) or 0)
            cached = _str(a, spans.CACHE) == "hit"
            if not cached:
                t.sample(ENGINE, engine, "lat", _ms(attempt))
            for kind, subject in ((PERSONALITY, name), *(() if cached else ((ENGINE, engine),))):
                t.add(kind, subject, "audio_s", audio)
                t.add(kind, subject, "synth_s", synthesis)
            continue
        if result == "skipped":
            t.add(ENGINE, engine, "skipped")
        else:
            t.add(ENGINE, engine, "requests")
            t.add(ENGINE, engine, f"fail:{result}")
            if (error := _str(a, spans.ERROR_TYPE)) is not None:
                t.add(ENGINE, engine, f"err:{error}")
        if i + 1 < len(ordered):
            to = _str(ordered[i + 1].attributes or {}, spans.ENGINE) or "(unknown)"
            t.add(ENGINE, engine, f"fb:{to}")
            t.add(PERSONALITY, name, f"fb:{to}")
    return t
