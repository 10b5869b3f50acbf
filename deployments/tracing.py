"""How a Chorus process makes and ships its spans (the names are in `deployments.spans`).

- Settings come from OpenTelemetry's standard variables (`TracingSettings`): no
  `OTEL_EXPORTER_OTLP_ENDPOINT`, no exporter at all.
- The ingress: each replica owns a `Tracing` (`ingress_tracing`), never the process-global
  provider. It records every span, whatever the sampler says (`RecordAll`), because the
  in-process span processors (statistics, metrics, quotas) must see every request; only
  the spans the configured sampler keeps reach the exporter.
- Engines: a provider only when the endpoint is set in their process (`engine_tracer`),
  else the no-op tracer. Context crosses the Ray call as a W3C carrier in
  `SynthesisRequest.trace_context` (`carrier` in the ingress, `traced_engine` in the
  engine): Ray Serve's own tracing sets the process-global provider with its own sampler
  and span names, which fits neither rule above.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, Literal, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    ALWAYS_OFF,
    ALWAYS_ON,
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from pydantic import BaseModel, ConfigDict, ValidationError

from deployments import spans
from deployments.base import AudioChunk, AudioResult, SynthesisRequest, TTSEngine

ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
SERVICE = "OTEL_SERVICE_NAME"
SAMPLER = "OTEL_TRACES_SAMPLER"
SAMPLER_ARG = "OTEL_TRACES_SAMPLER_ARG"
OTEL_PREFIX = "OTEL_"

_W3C = TraceContextTextMapPropagator()


class TracingConfigError(ValueError):
    """An OTEL_* variable Chorus cannot honour; `reason` names it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


SamplerName = Literal[
    "always_on", "always_off", "traceidratio",
    "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio",
]


class TracingSettings(BaseModel):
    """The standard variables, as far as Chorus reads them."""

    model_config = ConfigDict(frozen=True)

    endpoint: str | None = None
    protocol: Literal["http/protobuf", "grpc"] = "http/protobuf"
    service_name: str = "chorus"
    sampler: SamplerName = "parentbased_always_on"
    sampler_arg: float = 1.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> TracingSettings:
        given = {
            "endpoint": environ.get(ENDPOINT, "").strip() or None,
            "protocol": environ.get(PROTOCOL, "").strip() or None,
            "service_name": environ.get(SERVICE, "").strip() or None,
            "sampler": environ.get(SAMPLER, "").strip().lower() or None,
            "sampler_arg": environ.get(SAMPLER_ARG, "").strip() or None,
        }
        try:
            return cls.model_validate({k: v for k, v in given.items() if v is not None})
        except ValidationError as err:
            first = err.errors()[0]
            raise TracingConfigError(f"OTEL setting {first['loc'][0]}: {first['msg']}") from None

    def make_sampler(self) -> Sampler:
        ratio = TraceIdRatioBased(self.sampler_arg)
        return {
            "always_on": ALWAYS_ON,
            "always_off": ALWAYS_OFF,
            "traceidratio": ratio,
            "parentbased_always_on": ParentBased(ALWAYS_ON),
            "parentbased_always_off": ParentBased(ALWAYS_OFF),
            "parentbased_traceidratio": ParentBased(ratio),
        }[self.sampler]

    def make_exporter(self) -> SpanExporter | None:
        if self.endpoint is None:
            return None
        if self.protocol == "grpc":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter

            return GrpcExporter(endpoint=self.endpoint, insecure=self.endpoint.startswith("http://"))
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

        # The base endpoint gets the signal's path, as the specification says for this variable.
        return HttpExporter(endpoint=f"{self.endpoint.rstrip('/')}/v1/traces")

    def provider(self, sampler: Sampler) -> TracerProvider:
        """A provider of its own (never installed globally), exporting when an endpoint is set."""
        provider = TracerProvider(sampler=sampler, resource=Resource.create({SERVICE_NAME: self.service_name}))
        exporter = self.make_exporter()
        if exporter is not None:
            provider.add_span_processor(BatchSpanProcessor(exporter))
        return provider


class RecordAll(Sampler):
    """The configured sampler, except that what it drops is still recorded (RECORD_ONLY):
    processors in the process see every span, the exporter only the sampled ones (the SDK's
    export processors skip spans without the sampled flag, and so does a child's parent-based
    sampler, so a dropped trace stays dropped downstream)."""

    def __init__(self, inner: Sampler) -> None:
        self.inner = inner

    def should_sample(
        self, parent_context: Context | None, trace_id: int, name: str, kind: SpanKind | None = None,
        attributes: Attributes = None, links: Sequence[Link] | None = None, trace_state: Any = None,
    ) -> SamplingResult:
        result = self.inner.should_sample(parent_context, trace_id, name, kind, attributes, links, trace_state)
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, result.attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        return f"RecordAll{{{self.inner.get_description()}}}"


class Tracing:
    """One ingress replica's tracing: its provider, the tracer its routes and router are
    handed, and the hook the statistics, metrics and quota processors attach through."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("chorus")

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self.provider.add_span_processor(processor)

    def shutdown(self) -> None:
        self.provider.shutdown()


def ingress_tracing(environ: Mapping[str, str] | None = None) -> Tracing:
    """A replica's tracing from the standard variables (default: this process's)."""
    settings = TracingSettings.from_environment(os.environ if environ is None else environ)
    return Tracing(settings.provider(RecordAll(settings.make_sampler())))


def otel_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The OTEL_* variables of `environ`: what every deployment's process must see too."""
    return {k: v for k, v in environ.items() if k.startswith(OTEL_PREFIX)}


# --- across the Ray call ----------------------------------------------------------------------


def carrier(span: Span) -> dict[str, str]:
    """The W3C `traceparent` (and `tracestate`) of `span`, for `SynthesisRequest.trace_context`;
    empty when the span is not recording (no trace to continue)."""
    if not span.get_span_context().is_valid:
        return {}
    out: dict[str, str] = {}
    _W3C.inject(out, context=trace.set_span_in_context(span))
    return out


@functools.cache
def engine_tracer() -> Tracer:
    """This engine process's tracer: exporting when the endpoint is set here, else no-op.
    The sampler is the configured one (parent-based by default), so the ingress's decision,
    carried in `traceparent`, holds in the engine too."""
    settings = TracingSettings.from_environment(os.environ)
    if settings.endpoint is None:
        return trace.NoOpTracer()
    return settings.provider(settings.make_sampler()).get_tracer("chorus.engine")


_in_synthesis: ContextVar[bool] = ContextVar("chorus_in_synthesis", default=False)


def note(key: str, value: str | int | float | bool) -> None:
    """Set an attribute on the engine span this call runs under (no-op outside one)."""
    trace.get_current_span().set_attribute(key, value)


def _start(engine: TTSEngine, request: SynthesisRequest, tracer: Tracer) -> Span:
    return tracer.start_span(
        spans.SYNTHESIZE,
        context=_W3C.extract(request.trace_context),
        attributes={spans.ENGINE: engine.engine_id, spans.CHARACTERS: len(request.text),
                    **({spans.VARIANT: request.variant} if request.variant else {})},
    )


def _finish(span: Span, began: float, audio_seconds: float, error: BaseException | None) -> None:
    if error is not None:
        span.set_attribute(spans.ERROR_TYPE, type(error).__name__)
        span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    elif audio_seconds > 0:
        span.set_attribute(spans.AUDIO_SECONDS, audio_seconds)
        span.set_attribute(spans.REAL_TIME_FACTOR, (time.perf_counter() - began) / audio_seconds)
    span.end()


EngineT = TypeVar("EngineT", bound=type[TTSEngine])


def traced_engine(cls: EngineT) -> EngineT:
    """`cls` with its `synthesize` and `stream` each under a `chorus.engine.synthesize` span
    continuing the caller's trace. Applied once where an engine becomes a deployment, so no
    engine repeats it; an engine calling its own methods (a cloud engine's stream speaks
    sentence by sentence through `synthesize`) stays within the one span. The wrappers
    reach only module-level functions: Ray pickles a deployment class by value when its
    module name is bound to the deployment, closures and all."""
    synthesize: Callable[..., Any] = cls.synthesize
    stream: Callable[..., AsyncIterator[AudioChunk]] = cls.stream

    @functools.wraps(synthesize)
    async def traced_synthesize(self: TTSEngine, request: SynthesisRequest) -> AudioResult:
        return await synthesized(self, request, synthesize)

    @functools.wraps(stream)
    async def traced_stream(self: TTSEngine, request: SynthesisRequest) -> AsyncIterator[AudioChunk]:
        async for chunk in streamed(self, request, stream):
            yield chunk

    cls.synthesize = traced_synthesize  # type: ignore[method-assign]
    cls.stream = traced_stream  # type: ignore[method-assign]
    return cls


async def synthesized(engine: TTSEngine, request: SynthesisRequest, synthesize: Callable[..., Any]) -> AudioResult:
    """`synthesize(engine, request)` under the engine span (`traced_engine`)."""
    if _in_synthesis.get():
        return await synthesize(engine, request)
    span, began = _start(engine, request, engine_tracer()), time.perf_counter()
    token = _in_synthesis.set(True)
    try:
        with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
            audio: AudioResult = await synthesize(engine, request)
    except BaseException as err:
        _finish(span, began, 0.0, err)
        raise
    finally:
        _in_synthesis.reset(token)
    _finish(span, began, audio.duration_s, None)
    return audio


async def streamed(
    engine: TTSEngine, request: SynthesisRequest, stream: Callable[..., AsyncIterator[AudioChunk]]
) -> AsyncIterator[AudioChunk]:
    """`stream(engine, request)` under the engine span (`traced_engine`), which ends with
    the stream."""
    span, began = _start(engine, request, engine_tracer()), time.perf_counter()
    chunks = stream(engine, request)
    seconds = 0.0
    try:
        while True:
            # The span is current only while the engine works on a chunk: a context
            # attached across a `yield` would leak into whoever iterates.
            token = _in_synthesis.set(True)
            try:
                with trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    chunk = await anext(chunks, None)
            finally:
                _in_synthesis.reset(token)
            if chunk is None:
                break
            seconds += chunk.duration_s
            yield chunk
    except BaseException as err:
        _finish(span, began, 0.0, err)
        raise
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]
    _finish(span, began, seconds, None)
