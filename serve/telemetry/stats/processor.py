"""The span processor: completed `chorus.speech` spans, with the `chorus.engine.attempt`
spans under them, become tallies in memory, per minute and per hour bucket; `take()` hands
them to whoever flushes. `on_end` runs on whatever thread ended the span, so it only takes a
lock around dictionary updates: no I/O, nothing that waits."""

from __future__ import annotations

import threading

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from chorus.telemetry.stats.store import BucketId
from chorus.telemetry.stats.tally import Tally, utterance
from chorus.telemetry.stats.windows import GRANULARITIES
from deployments import spans

# Attempts whose chorus.speech never ended (a crashed request) would stay buffered: past this
# many open utterances the oldest are dropped.
MAX_OPEN_UTTERANCES = 10_000

SpanKey = tuple[int, int]  # trace id, span id


class StatsProcessor(SpanProcessor):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._attempts: dict[SpanKey, list[ReadableSpan]] = {}
        self._pending: dict[BucketId, Tally] = {}

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if span.name == spans.ATTEMPT:
            parent = span.parent
            if parent is None:
                return
            with self._lock:
                self._attempts.setdefault((parent.trace_id, parent.span_id), []).append(span)
                while len(self._attempts) > MAX_OPEN_UTTERANCES:
                    del self._attempts[next(iter(self._attempts))]
        elif span.name == spans.SPEECH and span.context is not None and span.end_time is not None:
            with self._lock:
                attempts = self._attempts.pop((span.context.trace_id, span.context.span_id), [])
            tally = utterance(span, attempts)
            ended_s = span.end_time / 1e9
            with self._lock:
                for g in GRANULARITIES:
                    self._pending.setdefault((g, g.start(ended_s)), Tally()).then(tally)

    def take(self) -> dict[BucketId, Tally]:
        """Everything tallied since the last take."""
        with self._lock:
            pending, self._pending = self._pending, {}
        return pending

    def put_back(self, earlier: dict[BucketId, Tally]) -> None:
        """Return tallies a flush could not store, ahead of what came since."""
        with self._lock:
            for bucket_id, tally in self._pending.items():
                earlier.setdefault(bucket_id, Tally()).then(tally)
            self._pending = earlier

    def shutdown(self) -> None:
        return None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
