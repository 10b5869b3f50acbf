"""What verification (PersonalitySpec.verify) costs a caller: the same texts through the same
real Serve app and the same Piper replica, to a personality that verifies (enforce, the
Recognizer deployment hearing each piece) and to one that does not, requests alternating
between the two. p50 latency of whole answers, and p50 time to first audio and to the last
byte of streams, each as a ratio verified / unverified measured in the same run.
Not a test: run `.venv/bin/python bench/verification.py`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.piper_http import free_port  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402
from tests.support.chorus_app import STEADY_PIPER, ChorusApp  # noqa: E402

TITLE = "The cost of verification (`bench/verification.py`)"
TEXTS = [
    "Please open the door.",
    "I would like a cup of coffee, and a glass of water for my friend.",
    "Thank you for your help with the order. We will meet again tomorrow at nine.",
    "Bring the blue folder, and do not be late. The store opens at nine in the morning. It is a beautiful day.",
]


def timed(client: httpx.Client, name: str, text: str, stream: bool) -> tuple[float, float]:
    """(seconds to the first audio byte, seconds to the last) of one request."""
    body = {"text": text, "format": "pcm", "stream": stream}
    began = time.perf_counter()
    first = None
    with client.stream("POST", f"/v1/personalities/{name}/speech", json=body) as r:
        assert r.status_code == 200, r.read()
        for chunk in r.iter_bytes():
            if chunk and first is None:
                first = time.perf_counter() - began
    return first or 0.0, time.perf_counter() - began


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    app = ChorusApp(port=free_port(), root=Path(tempfile.mkdtemp(prefix="chorus-bench-verification-")))
    names = ("plain", "verified")
    took: dict[tuple[str, bool], list[tuple[float, float]]] = {(n, s): [] for n in names for s in (False, True)}
    try:
        app.deploy(engines={"piper": {"timeout_s": 60}}, recognizer={"enabled": True})
        spec = {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}}
        app.write("plain", spec)
        app.write("verified", {**spec, "verify": {"mode": "enforce"}})
        for name in names:
            app.wait_for(name)
        with httpx.Client(base_url=app.url, timeout=120) as client:
            for name in names:  # warm: each path's first call loads what it needs
                for stream in (False, True):
                    timed(client, name, TEXTS[0], stream)
            for _ in range(args.rounds):
                for text in TEXTS:
                    for stream in (False, True):
                        for name in names:
                            took[(name, stream)].append(timed(client, name, text, stream))
            r = client.get("/v1/stats", params={"window": "1h"})
            verification = r.json()["engines"].get("piper", {}).get("verification", {})
    finally:
        serve.shutdown()
        ray.shutdown()

    def ms(name: str, stream: bool, which: int) -> float:
        return 1000 * p50([t[which] for t in took[(name, stream)]])

    rows = []
    for label, stream, which in (("whole answer", False, 1), ("stream: first audio", True, 0),
                                 ("stream: last byte", True, 1)):
        plain, verified = ms("plain", stream, which), ms("verified", stream, which)
        rows.append(f"| {label} | {plain:.0f} | {verified:.0f} | {verified / plain:.2f}x |")
    n = len(took[("plain", False)])
    body = f"""Run {machine()}, CPU only. The CPU profile: one Piper replica, one Recognizer replica
(pocketsphinx, its narrowed search), the cache off; {args.rounds} rounds of {len(TEXTS)} texts (1 to
3 sentences, 1.5 to 7 s of speech), each whole and streamed, to a personality that verifies
(enforce, max word error rate 0.5) and to one that does not, alternating; n = {n} per cell.
Milliseconds, p50. The recognizer's verdicts over the run (`/v1/stats`): {verification}.

| request | unverified p50 (ms) | verified p50 (ms) | ratio |
|---|---|---|---|
{chr(10).join(rows)}
"""
    print(body)
    write_section(TITLE, body, args.output)


if __name__ == "__main__":
    main()
