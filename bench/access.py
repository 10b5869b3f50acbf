"""What API keys and rate limits cost on the Piper path, side by side in one run.

Three copies of the CPU profile run in one Serve instance, each with its own Piper replica
and route prefix: keys off; keys on with a rate limit and a character budget counted in
process; the same counted in a real Redis (`redis-server`, started here). Requests go to
the three round-robin, so background noise hits them alike. Prints the ratios and writes them
to bench/RESULTS.md. Not a test: run `.venv/bin/python bench/access.py`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chorus_serve import UNCACHED  # noqa: E402
from bench.piper_http import SENTENCES, free_port, pct  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402
from bench.variants import bench_personalities, deploy_variants  # noqa: E402

KEY = "chorus_bench_key_0123456789abcdef"
# Generous: the benchmark measures the bookkeeping, not refusals.
LIMITS = {"rateLimit": "100000/minute", "charactersPerDay": 100_000_000}
VARIANTS = ("open", "keys", "keys-redis")


def start_redis(port: int, workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        out = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True)
        if out.stdout.strip() == "PONG":
            return proc
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def start_variants(port: int, root: Path, redis_url: str) -> None:
    import ray

    from chorus.auth.keys import digest

    keys = root / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "bench", "sha256": digest(KEY), "scopes": ["speak"], **LIMITS}]}))
    # Logical CPUs: three copies of the profile's replicas, sharing the real cores alike.
    ray.init(num_cpus=8, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    variants = {}
    for variant in VARIANTS:
        args: dict = {"personalities": {"directory": str(bench_personalities(root / variant / "personalities"))}}
        if variant != "open":
            args["auth"] = {"keysFile": str(keys)}
        if variant == "keys-redis":
            args["redis_url"] = redis_url
        variants[variant] = {"args": args}
    deploy_variants(port, variants)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=60, help="sequential requests per variant")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests = 2
    warm = SENTENCES[:1] if args.smoke else SENTENCES
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    root = Path(tempfile.mkdtemp(prefix="chorus-bench-access-"))
    redis_port, port = free_port(), free_port()
    redis = start_redis(redis_port, root)
    base = f"http://127.0.0.1:{port}"
    # The texts repeat: without no-store the audio cache would answer them, not Piper.
    client = httpx.Client(timeout=120, headers=UNCACHED)
    try:
        start_variants(port, root, f"redis://127.0.0.1:{redis_port}")

        def call(variant: str, text: str) -> float:
            headers = {} if variant == "open" else {"x-api-key": KEY}
            t = time.perf_counter()
            r = client.post(f"{base}/{variant}/v1/personalities/bench/speech", json={"text": text}, headers=headers)
            elapsed = time.perf_counter() - t
            r.raise_for_status()
            if variant != "open":
                assert "x-ratelimit-remaining" in r.headers, "the limits were not applied"
            return elapsed

        for text in warm:  # warm every replica, connection and Redis script
            for variant in VARIANTS:
                call(variant, text)
        latencies: dict[str, list[float]] = {v: [] for v in VARIANTS}
        for i in range(args.requests):
            text = SENTENCES[i % len(SENTENCES)]
            order = VARIANTS[i % 3:] + VARIANTS[:i % 3]  # rotate who goes first
            for variant in order:
                latencies[variant].append(call(variant, text))
    finally:
        client.close()
        from ray import serve

        serve.shutdown()
        import ray

        ray.shutdown()
        redis.terminate()
        redis.wait(timeout=30)

    p50 = {v: statistics.median(values) for v, values in latencies.items()}
    p95 = {v: pct(values, 0.95) for v, values in latencies.items()}
    rows = [
        ("keys off", "open"),
        ("keys + limits in process", "keys"),
        ("keys + limits in Redis", "keys-redis"),
    ]
    lines = [
        f"Run {machine()}, CPU only. {args.requests} sequential one-sentence requests per variant, round-robin "
        "across three copies of the CPU profile in one Serve instance (each its own Piper replica). The keyed "
        f"variants check an `x-api-key` against the key file and count a rate limit ({LIMITS['rateLimit']}) and a "
        "character budget per day on every request.",
        "",
        "| variant | p50 (s) | p95 (s) | p50 / keys off |",
        "|---|---|---|---|",
        *(f"| {label} | {p50[v]:.3f} | {p95[v]:.3f} | {p50[v] / p50['open']:.3f} |" for label, v in rows),
        "",
        f"- Keys and limits add {1000 * (p50['keys'] - p50['open']):+.1f} ms at p50 in process, "
        f"{1000 * (p50['keys-redis'] - p50['open']):+.1f} ms with Redis (noise between copies is a few ms).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section("Access control overhead on the Piper path (`bench/access.py`)", report, args.output)


if __name__ == "__main__":
    main()
