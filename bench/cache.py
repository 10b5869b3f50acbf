"""The audio cache on the Piper path: hits vs misses, a paragraph mostly cached, and what
the cache costs a miss.

One Chorus (the shipped CPU profile, its cache's disk tier in a temporary directory), the
bundled voice, noise pinned. Each arm's requests are interleaved with the arm it is compared
with, so background noise hits both alike. Writes its section of bench/RESULTS.md. Not a
test: run `.venv/bin/python bench/cache.py`. `--smoke`: the same arms with 2 requests each and
one warm-up request (tests/integration/test_bench_smoke.py checks the benchmark still runs).

Measures
- hit vs miss p50: the same two-sentence texts, first asked (miss), then asked again (hit);
- a paragraph of four sentences, three of them cached from earlier requests, vs the same
  kind of paragraph uncached;
- the miss path with the cache vs without it: `Cache-Control: no-store` takes the router's
  uncached path, the one `cache.enabled: false` takes, so the arms can run side by side;
  and, in this process with the same tiers, what the cache itself does on a miss (lookups
  of the text and its sentences, keeping the PCM): the part of the difference that is the
  cache's, not the machine's noise.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS, machine, write_section  # noqa: E402

# Misses: two sentences, each with a serial, so every text and sentence is new.
FIRST = [
    "The store opens at nine in the morning.",
    "Thank you for your help with the order.",
    "Please open the door and come inside.",
    "I would like a cup of coffee with milk.",
]
# The paragraph's three sentences asked before, one at a time; its fourth is new each time.
KNOWN = ["The train leaves the station at noon.", "We walked along the river for an hour.",
         "She reads a short book every night."]
NO_STORE = {"Cache-Control": "no-store"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_chorus(port: int, root: Path) -> None:
    import ray

    from chorus.deploy import deploy, profile_path, render

    personalities = root / "personalities"
    personalities.mkdir(parents=True)
    (personalities / "bench.yaml").write_text(yaml.safe_dump({
        "apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": "bench"},
        "spec": {"activeProvider": "piper", "providers": {"piper": {
            "voice": "en_US-joe-medium", "settings": {"noiseScale": 0.0, "noiseW": 0.0}}}},
    }))
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    args = {"personalities": {"directory": str(personalities)}, "samples": {"directory": str(root / "samples")},
            "cache": {"diskDir": str(root / "audio-cache")}}
    deploy(render(profile_path("cpu"), args=args, port=port))


def cache_work_on_a_miss(root: Path, texts: list[str], pcm_bytes: int) -> list[float]:
    """Seconds the cache's own work takes per miss (memory and disk tiers as deployed):
    looking the text and its sentences up, then keeping the audio (shared write included)."""
    import asyncio

    from chorus.speech.cache.config import CacheConfig
    from chorus.speech.cache.lookup import resolve
    from chorus.speech.cache.store import AudioCache
    from deployments.base import AudioResult, Capabilities, SynthesisRequest
    from deployments.settings import PiperSettings

    caps = Capabilities(engine="piper", languages=["en"], max_characters=20_000, sample_rate=22_050,
                        model_identity="bench")
    audio = AudioResult(pcm=bytes(pcm_bytes), sample_rate=22_050)

    async def run() -> list[float]:
        cache = AudioCache.open(CacheConfig(disk_dir=root / "in-process-cache"), None)
        assert cache is not None
        took = []
        for text in texts:
            request = SynthesisRequest(text=text, language="en", voice="en_US-joe-medium", settings=PiperSettings())
            t = time.perf_counter()
            lookup = await resolve(cache, [request], caps, "bench", "personality:bench")
            await lookup.made(0, audio)
            await cache.settled()
            took.append(time.perf_counter() - t)
        return took

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=30, help="requests per arm")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests = 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    load = os.getloadavg()
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="chorus-bench-cache-"))
    start_chorus(port, root)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

    sizes: list[int] = []

    def call(text: str, expect: str, headers: dict[str, str] | None = None) -> float:
        t = time.perf_counter()
        r = client.post("/v1/personalities/bench/speech", json={"text": text, "format": "pcm"}, headers=headers)
        took = time.perf_counter() - t
        r.raise_for_status()
        assert r.headers["x-chorus-cache"] == expect, (text, r.headers["x-chorus-cache"], expect)
        sizes.append(len(r.content))
        return took

    serial = iter(range(1_000_000))

    def fresh() -> str:
        n = next(serial)
        # Both sentences new: the cache keeps sentences one by one, so a repeated one would hit.
        return f"{FIRST[n % len(FIRST)][:-1]}, number {n}. This is request {n}."

    try:
        for _ in range(1 if args.smoke else 4):  # warm: ONNX session, replicas, connections
            call(fresh(), "bypass", NO_STORE)
        # 1. and 3.: misses with the cache vs without, interleaved; then each cached text again.
        with_cache, without, texts = [], [], []
        for i in range(args.requests):
            text, other = fresh(), fresh()
            arms = [lambda: with_cache.append(call(text, "miss")), lambda: without.append(call(other, "bypass", NO_STORE))]
            for arm in arms if i % 2 == 0 else reversed(arms):
                arm()
            texts.append(text)
        hits = [call(text, "hit") for text in texts]
        # 2. a paragraph with three cached sentences vs the same kind uncached.
        for sentence in KNOWN:
            call(sentence, "miss")
        partial, uncached = [], []
        for i in range(args.requests):
            mostly = " ".join([*KNOWN[:2], f"Order {next(serial)} is ready.", KNOWN[2]])
            fresh_paragraph = " ".join([*KNOWN[:2], f"Order {next(serial)} is ready.", KNOWN[2]])
            arms = [lambda: partial.append(call(mostly, "partial")),
                    lambda: uncached.append(call(fresh_paragraph, "bypass", NO_STORE))]
            for arm in arms if i % 2 == 0 else reversed(arms):
                arm()
    finally:
        client.close()
        import ray
        from ray import serve

        serve.shutdown()
        ray.shutdown()

    p50 = statistics.median
    work = p50(cache_work_on_a_miss(root, [fresh() for _ in range(args.requests)], int(p50(sizes))))
    speedup = p50(with_cache) / p50(hits)
    paragraph = p50(uncached) / p50(partial)
    cost = p50(with_cache) / p50(without)
    report = "\n".join([
        f"Run {machine()}, CPU only. Voice en_US-joe-medium, noise pinned; {args.requests} requests per arm, "
        "interleaved. Chorus runs the shipped CPU profile: memory tier, disk tier in a temporary directory.",
        "",
        "| measure | p50 (s) | against (s) | ratio | target |",
        "|---|---|---|---|---|",
        f"| hit vs miss, the same two-sentence texts | {p50(hits):.4f} | {p50(with_cache):.3f} | "
        f"{speedup:.1f}x faster | >= 20x |",
        f"| paragraph, 3 of 4 sentences cached, vs uncached | {p50(partial):.3f} | {p50(uncached):.3f} | "
        f"{paragraph:.2f}x faster | >= 2.5x |",
        f"| miss with the cache vs without (`no-store`) | {p50(with_cache):.3f} | {p50(without):.3f} | "
        f"{cost:.3f} | <= 1.02 |",
        "",
        f"- The cache's own work on a miss (the text and its sentences looked up in memory and on disk, the PCM "
        f"kept in both), measured in-process with the same tiers: p50 **{work * 1000:.2f} ms**, "
        f"{work / p50(without) * 100:.2f}% of an uncached request: the cache's own cost. The HTTP arms' ratio "
        f"also carries the machine's load (1-minute load average {load[0]:.1f} at the start, {os.getloadavg()[0]:.1f} "
        "at the end, on 2 cores).",
        "- Answers are PCM (`format: pcm`), so no arm spends time encoding.",
        "",
    ])
    print(report)
    write_section("Audio cache on the Piper path (`bench/cache.py`)", report, args.output)


if __name__ == "__main__":
    main()
