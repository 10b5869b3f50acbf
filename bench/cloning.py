"""Cloning engines (XTTS v2, StyleTTS2): latency, real-time factor and time to first chunk,
with and without the conditioning cache. Not a test.

    .venv/bin/python bench/cloning.py                       # tiny random models
    .venv/bin/python bench/cloning.py \\
        --xtts-model-dir /models/xtts/base --styletts2-model-dir /models/styletts2 \\
        --reference voice.wav --device cuda                                 # real weights, GPU

Each engine runs as its Ray Serve deployment in its own venv (as in production) and is called
through its handle, so the numbers are the engine's, without HTTP. "Cold" requests carry a
sample set the engine has not seen (a fresh copy of the reference with one sample changed, so
its sha256 differs): the speaker conditioning is computed. "Warm" requests repeat one set:
the conditioning comes from the cache. Writes its section of bench/RESULTS.md.
`--smoke`: tiny random models, 2 requests of each kind per engine (the engine venvs come from
scripts/engine-env.sh; tests/integration/test_bench_smoke.py checks the benchmark still runs).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import RESULTS, machine, write_section  # noqa: E402

TEXTS = [
    "Hello there, how can I help you today?",
    "The store opens at nine in the morning.",
    "Thank you for your help with the order.",
]
LONG_TEXT = "Hello there, how can I help you today? The store opens at nine. Thank you for waiting."


def reference_wav(path: Path | None) -> bytes:
    """The reference as canonical 24 kHz WAV: a given file, or Piper speech."""
    from chorus.samples.audio import canonical_wav, decode_audio

    if path is not None:
        return canonical_wav(decode_audio(path.read_bytes()))
    from tests.support import recordings

    speech = recordings.recordings().clean()
    return canonical_wav(decode_audio(recordings.encode(speech.samples, speech.rate)))


def sample_ref(wav: bytes, variant_of: int = 0) -> Any:
    """An inline sample; `variant_of` > 0 nudges one sample so the set is new to the cache."""
    from deployments.base import VoiceSampleRef

    if variant_of:
        audio, rate = sf.read(io.BytesIO(wav), dtype="int16")
        audio = audio.copy()
        audio[variant_of % len(audio)] ^= 1
        buf = io.BytesIO()
        sf.write(buf, audio, rate, subtype="PCM_16", format="WAV")
        wav = buf.getvalue()
    return VoiceSampleRef(id=f"ref{variant_of}", language="en", sha256=hashlib.sha256(wav).hexdigest(), audio=wav)


async def measure(handle: Any, wav: bytes, requests: int, settings: Any) -> dict[str, float]:
    from deployments.base import SynthesisRequest

    def request(text: str, ref: Any) -> SynthesisRequest:
        return SynthesisRequest(text=text, language="en", samples=[ref], settings=settings)

    warm_ref = sample_ref(wav)
    await handle.synthesize.remote(request(TEXTS[0], warm_ref))  # load + fill the cache once

    cold, warm, rtf, ttfc, stream_total = [], [], [], [], []
    for i in range(requests):
        text = TEXTS[i % len(TEXTS)]
        t = time.perf_counter()
        await handle.synthesize.remote(request(text, sample_ref(wav, i + 1)))
        cold.append(time.perf_counter() - t)

        t = time.perf_counter()
        audio = await handle.synthesize.remote(request(text, warm_ref))
        elapsed = time.perf_counter() - t
        warm.append(elapsed)
        rtf.append(elapsed / max(audio.duration_s, 1e-6))

        t = time.perf_counter()
        first = None
        async for _ in handle.options(stream=True).stream.remote(request(LONG_TEXT, warm_ref)):
            if first is None:
                first = time.perf_counter() - t
        ttfc.append(first or 0.0)
        stream_total.append(time.perf_counter() - t)
    stats = await handle.stats.remote()
    return {
        "cold_p50": statistics.median(cold),
        "warm_p50": statistics.median(warm),
        "rtf_p50": statistics.median(rtf),
        "ttfc_p50": statistics.median(ttfc),
        "stream_p50": statistics.median(stream_total),
        "hits": stats.get("hits", 0),
        "misses": stats.get("misses", 0),
    }


def deploy(engine: str, config: dict[str, Any], num_cpus: float) -> Any:
    from ray import serve

    if engine == "xtts_v2":
        from deployments.xtts import XTTSEngine as deployment
        from deployments.xtts import actor_options
    else:
        from deployments.styletts2 import StyleTTS2Engine as deployment
        from deployments.styletts2 import actor_options
    app = deployment.options(ray_actor_options=actor_options(num_cpus=num_cpus)).bind(config)
    return serve.run(app, name=f"bench-{engine}", route_prefix=None)


def tiny_models(root: Path) -> dict[str, Path]:
    """Tiny random checkpoints in the real layouts, built by the test helpers."""
    import subprocess

    from tests.support import tiny_styletts2, tiny_xtts

    def python(name: str) -> str:
        out = subprocess.run([str(ROOT / "scripts/engine-env.sh"), name], check=True, capture_output=True, text=True)
        return out.stdout.strip().splitlines()[-1]

    xtts = tiny_xtts.build(root / "xtts", python("xtts"), ["base:0"])["base"]
    styletts2 = tiny_styletts2.build(root / "styletts2", python("styletts2"))
    return {"xtts_v2": xtts, "styletts2": styletts2}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--xtts-model-dir", type=Path)
    parser.add_argument("--styletts2-model-dir", type=Path)
    parser.add_argument("--reference", type=Path, help="reference recording (default: Piper speech, 7.6 s)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--requests", type=int, default=6)
    parser.add_argument("--num-cpus", type=float, default=1.0)
    parser.add_argument("--engines", default="xtts_v2,styletts2")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests = 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")

    import ray
    from ray import serve

    from deployments.settings import StyleTTS2Settings, XTTSSettings

    given = {"xtts_v2": args.xtts_model_dir, "styletts2": args.styletts2_model_dir}
    engines = [e for e in args.engines.split(",") if e]
    tiny = not all(given[e] for e in engines)
    scratch = Path(tempfile.mkdtemp(prefix="chorus-bench-models-"))
    models = tiny_models(scratch) if tiny else {}
    models.update({e: p for e, p in given.items() if p})
    wav = reference_wav(args.reference)

    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    results: dict[str, dict[str, float]] = {}
    try:
        for engine in engines:
            config: dict[str, Any] = {"model_dir": str(models[engine]), "device": args.device}
            handle = deploy(engine, config, args.num_cpus)
            settings = XTTSSettings(top_k=1) if engine == "xtts_v2" else StyleTTS2Settings(diffusion_steps=5)
            results[engine] = asyncio.run(measure(handle, wav, args.requests, settings))
            serve.delete(f"bench-{engine}")
    finally:
        serve.shutdown()
        ray.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)  # the tiny models, 450 MB a run (smoke runs in CI too)

    kind = "tiny random models (shapes as in tests/, not real quality or speed)" if tiny else "the given weights"
    lines = [
        f"Run {machine()}, device {args.device}, {kind}; {args.requests} requests of each kind per engine, "
        "through each engine's deployment handle (its own venv).",
        "",
        "| engine | cold p50 (s) | warm p50 (s) | cold / warm | RTF warm p50 | first chunk p50 (s) | whole stream p50 (s) | cache hits / misses |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for engine, r in results.items():
        lines.append(
            f"| {engine} | {r['cold_p50']:.3f} | {r['warm_p50']:.3f} | {r['cold_p50'] / r['warm_p50']:.2f} | "
            f"{r['rtf_p50']:.2f} | {r['ttfc_p50']:.3f} | {r['stream_p50']:.3f} | {r['hits']} / {r['misses']} |"
        )
    lines += ["", "Cold = the speaker conditioning is computed (new sample set); warm = it comes from the cache. "
              "First chunk and whole stream are for a 3-sentence text."]
    report = "\n".join(lines)
    print(report)
    write_section("Cloning engines (`bench/cloning.py`)", report, args.output)


if __name__ == "__main__":
    main()
