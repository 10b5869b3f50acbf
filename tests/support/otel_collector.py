"""A real OpenTelemetry Collector on a free loopback port, for the tracing tests and the
tracing benchmark: the binary `scripts/otelcol-binary.sh` builds (OTLP receiver, debug
exporter at detailed verbosity, written to a file), and a reader of what it received."""

from __future__ import annotations

import re
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """\
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:{port}
exporters:
  debug:
    verbosity: detailed
    use_internal_logger: false
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
"""


@dataclass
class ReceivedSpan:
    """One span as the collector printed it."""

    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: str
    attributes: dict[str, Any] = field(default_factory=dict)
    resource: dict[str, Any] = field(default_factory=dict)


def binary() -> str:
    """The collector, built once from the pinned modules (cached under ~/.cache/chorus)."""
    out = subprocess.run(["bash", str(ROOT / "scripts" / "otelcol-binary.sh")], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_VALUE = re.compile(r"^(Str|Int|Double|Bool)\((.*)\)$", re.S)


def _value(text: str) -> Any:
    m = _VALUE.match(text)
    if m is None:
        return text
    kind, raw = m.groups()
    return {"Str": str, "Int": int, "Double": float, "Bool": lambda v: v == "true"}[kind](raw)


def parse(text: str) -> list[ReceivedSpan]:
    """The spans of the debug exporter's detailed output."""
    received: list[ReceivedSpan] = []
    resource: dict[str, Any] = {}
    section = ""
    span: ReceivedSpan | None = None
    for line in text.splitlines():
        if line.startswith("ResourceSpans #"):
            resource, section, span = {}, "", None
        elif line == "Resource attributes:":
            section = "resource"
        elif line.startswith("Span #"):
            span = ReceivedSpan("", "", "", "", "", resource=resource)
            received.append(span)
            section = "span"
        elif line == "Attributes:" and span is not None:
            section = "attributes"
        elif line.startswith("     -> ") and section in ("resource", "attributes"):
            key, _, value = line[len("     -> "):].partition(": ")
            (resource if section == "resource" else span.attributes)[key] = _value(value)  # type: ignore[union-attr]
        elif section == "span" and span is not None and " : " in line:
            key, _, value = (part.strip() for part in line.partition(" : "))
            setattr(span, {"Trace ID": "trace_id", "Parent ID": "parent_id", "ID": "span_id", "Name": "name",
                           "Kind": "kind"}.get(key, "_ignored"), value)
        elif not line.startswith("     -> "):
            section = "" if section in ("resource", "attributes") else section
    return received


class Collector:
    def __init__(self, endpoint: str, output: Path) -> None:
        self.endpoint = endpoint
        self.output = output

    def spans(self) -> list[ReceivedSpan]:
        return parse(self.output.read_text(errors="replace"))

    def wait_for(self, predicate: Any, timeout: float = 30) -> list[ReceivedSpan]:
        """The spans received once `predicate(spans)` holds (engines batch theirs for a while)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans()
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"the collector never got what was expected; it has {len(spans)} span(s): "
                                     f"{sorted({s.name for s in spans})}")
            time.sleep(0.2)


@contextmanager
def otel_collector(workdir: Path) -> Iterator[Collector]:
    """Runs the collector until the block ends; yields where to send spans and what came."""
    port = _free_port()
    config = workdir / "otelcol.yaml"
    config.write_text(CONFIG.format(port=port))
    output = workdir / "otelcol.out"
    log = workdir / "otelcol.log"
    with output.open("wb") as out, log.open("wb") as err:
        proc = subprocess.Popen([binary(), "--config", str(config)], stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 20
        while b"Everything is ready" not in log.read_bytes():
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError(f"the collector did not start: {log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        yield Collector(f"http://127.0.0.1:{port}", output)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
