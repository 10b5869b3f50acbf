"""What tracing costs on the Piper path: tracing off vs on (every span exported over OTLP to
a real OpenTelemetry Collector), side by side in one run.

Two copies of the CPU profile run in one Serve instance, each with its own Piper replica and
route prefix; the traced copy gets OTEL_EXPORTER_OTLP_ENDPOINT in its runtime_env, as
`chorus serve` passes it. Requests alternate between them, so background noise hits both
alike. Prints the ratio and writes it to bench/RESULTS.md. Not a test: run
`.venv/bin/python bench/tracing.py` (builds the collector first if needed:
scripts/otelcol-binary.sh). `--smoke`: 2 requests and one warm-up sentence per variant
(tests/integration/test_bench_smoke.py checks the benchmark still runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chorus_serve import UNCACHED  # noqa: E402
from bench.piper_http import SENTENCES, free_port, pct  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402
from bench.variants import bench_personalities, deploy_variants  # noqa: E402
from tests.support.otel_collector import Collector, otel_collector  # noqa: E402

VARIANTS = ("off", "on")


def start_variants(port: int, root: Path, endpoint: str) -> None:
    import ray

    ray.init(num_cpus=6, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    deploy_variants(port, {
        variant: {
            "args": {"personalities": {"directory": str(bench_personalities(root / variant / "personalities"))}},
            "environ": {"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint} if variant == "on" else {},
        }
        for variant in VARIANTS
    })


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=80, help="sequential requests per variant")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests = 2
    warm = SENTENCES[:1] if args.smoke else SENTENCES
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    root = Path(tempfile.mkdtemp(prefix="chorus-bench-tracing-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # The texts repeat: without no-store the audio cache would answer them, not Piper.
    client = httpx.Client(timeout=120, headers=UNCACHED)
    with otel_collector(root) as collector:
        try:
            start_variants(port, root, collector.endpoint)

            def call(variant: str, text: str) -> float:
                t = time.perf_counter()
                r = client.post(f"{base}/{variant}/v1/personalities/bench/speech", json={"text": text})
                elapsed = time.perf_counter() - t
                r.raise_for_status()
                return elapsed

            for text in warm:  # warm both replicas and connections
                for variant in VARIANTS:
                    call(variant, text)
            latencies: dict[str, list[float]] = {v: [] for v in VARIANTS}
            for i in range(args.requests):
                text = SENTENCES[i % len(SENTENCES)]
                for variant in VARIANTS if i % 2 == 0 else VARIANTS[::-1]:  # alternate who goes first
                    latencies[variant].append(call(variant, text))
            exported = _exported(collector, expected=args.requests + len(warm))
        finally:
            client.close()
            from ray import serve

            serve.shutdown()
            import ray

            ray.shutdown()

    p50 = {v: statistics.median(values) for v, values in latencies.items()}
    p95 = {v: pct(values, 0.95) for v, values in latencies.items()}
    lines = [
        f"Run {machine()}, CPU only. {args.requests} sequential one-sentence requests per variant, alternating "
        "between two copies of the CPU profile in one Serve instance (each its own Piper replica). The traced copy "
        "exports every span over OTLP/HTTP to a real OpenTelemetry Collector on loopback (scripts/otelcol-binary.sh): "
        "the HTTP span, `chorus.speech`, the attempt, and Piper's `chorus.engine.synthesize`.",
        "",
        "| variant | p50 (s) | p95 (s) | p50 / off |",
        "|---|---|---|---|",
        *(f"| tracing {v} | {p50[v]:.3f} | {p95[v]:.3f} | {p50[v] / p50['off']:.3f} |" for v in VARIANTS),
        "",
        f"- Tracing adds {1000 * (p50['on'] - p50['off']):+.1f} ms at p50 (noise between copies is a few ms); "
        f"the collector received {exported['speech']} `chorus.speech` and {exported['synthesize']} "
        "`chorus.engine.synthesize` spans.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section("Tracing overhead on the Piper path (`bench/tracing.py`)", report, args.output)


def _exported(collector: Collector, expected: int) -> dict[str, int]:
    """How many speech and engine spans the collector got (engines batch for up to 5 s)."""
    def counts() -> dict[str, int]:
        got = collector.spans()
        return {"speech": sum(s.name == "chorus.speech" for s in got),
                "synthesize": sum(s.name == "chorus.engine.synthesize" for s in got)}

    deadline = time.monotonic() + 20
    while min(counts().values()) < expected and time.monotonic() < deadline:
        time.sleep(0.5)
    return counts()


if __name__ == "__main__":
    main()
