"""One ingress replica's state: its personality store, sample service, engine board and
router, audio cache, quotas, statistics and tracer provider, built from its config. The
routes reach it through `chorus.ingress.deps.ReplicaDep`."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.trace import SpanProcessor

from chorus.auth.ring import KeyRing
from chorus.ingress.config import IngressConfig
from chorus.quotas.callers import Quotas
from chorus.quotas.providers import CloudMeter
from chorus.samples.service import SampleService
from chorus.speech.aligner import Aligner
from chorus.speech.board import EngineBoard
from chorus.speech.breaker import Breakers
from chorus.speech.cache.store import AudioCache
from chorus.speech.deadline import Deadlines
from chorus.speech.replicas import Replicas
from chorus.speech.router import Router
from chorus.speech.verification import Verifier
from chorus.stores.opening import open_store
from chorus.telemetry.ray_metrics import RayMetrics
from chorus.telemetry.stats.service import Statistics
from deployments.tracing import Tracing, ingress_tracing


class Replica:
    def __init__(self, config: IngressConfig, board: EngineBoard, tracing: Tracing | None = None,
                 replicas: Replicas | None = None, recognizer: Any | None = None) -> None:
        self.config = config
        # This replica's own tracer provider (default: from the OTEL_* variables of this
        # process); every span of its requests is made through it, none through a global.
        self.tracing = tracing or ingress_tracing()
        self.store = open_store(config.personalities)
        self.samples = SampleService(config.samples, self.store)
        self.board = board
        self.replicas = replicas or Replicas()
        self.cache = AudioCache.open(config.cache, config.redis_url)
        # The Recognizer deployment (`recognizer`, a handle; None: none deployed) times the words of
        # engines without their own, and hears the pieces of personalities that verify.
        self.aligner = Aligner(recognizer, timeout_s=config.recognizer_timeout_s)
        self.meter = CloudMeter.open(config.cloud_quotas, config.redis_url, config.samples.directory,
                                     config.default_voices)
        self.router = Router(
            board, config.timeouts, sample_refs=self.samples.refs, meter=self.meter, tracer=self.tracing.tracer,
            deadlines=Deadlines(request_s=config.request_deadline_s, stream_chunk_s=config.stream_chunk_timeout_s),
            breakers=Breakers(config.circuit_breaker), cache=self.cache, max_audio_s=config.max_audio_seconds,
            verifier=Verifier(recognizer, timeout_s=config.recognizer_timeout_s),
        )
        # Filled by the key sources (`chorus.auth.sources`); None when keys are off.
        self.keys: KeyRing | None = KeyRing() if config.auth else None
        self.quotas = Quotas(config.quotas, config.redis_url)
        # Its processor reads this replica's completed spans; its store is shared through Redis.
        self.stats = Statistics.open(config.redis_url)
        self.add_span_processor(self.stats.processor)
        # The same spans as Ray metrics, for the Ray dashboard and Prometheus.
        self.add_span_processor(RayMetrics(quota_source=self.meter.last_used))

    def add_span_processor(self, processor: SpanProcessor) -> None:
        """Where the statistics, metrics and quota meters attach: they see every span this
        replica records, sampled for export or not (`deployments.tracing.RecordAll`)."""
        self.tracing.add_span_processor(processor)
