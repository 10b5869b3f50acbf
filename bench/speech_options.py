"""What the speech API's options add to a request (issue 23): word timestamps (Piper's own
durations, and forced alignment for an engine without them), resampling, G.711 telephony and
mp3 streams, each as a ratio to the plain wav answer measured in the same run. The ingress app
in process (`create_app`, the HTTP layer and the router) over a real Piper engine, no Ray: the
options' cost is the ingress's and Piper's, not a Ray hop's. Not a test: run
`.venv/bin/python bench/speech_options.py`; `--output FILE` writes its section of FILE (default
bench/RESULTS.md); `--smoke`: one request of each (tests/integration/test_bench_smoke.py).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.results import RESULTS, machine, write_section  # noqa: E402
from chorus.ingress.asgi import create_app  # noqa: E402
from chorus.ingress.config import IngressConfig  # noqa: E402
from chorus.ingress.replica import Replica  # noqa: E402
from chorus.speech.board import EngineBoard  # noqa: E402
from deployments.piper import Piper  # noqa: E402
from tests.support.engine_handles import LocalHandle  # noqa: E402

TITLE = "Speech options: timestamps, resampling, telephony (`bench/speech_options.py`)"
TEXT = "Please open the door. I would like a cup of coffee. Thank you for your help."
URL = "/v1/personalities/joe/speech"

# The plain path first: every other row is a ratio to it.
CASES: list[tuple[str, dict[str, Any]]] = [
    ("plain wav (the peer)", {}),
    ("timestamps, Piper's own durations", {"timestamps": True}),
    ("timestamps, forced alignment", {"timestamps": True, "__aligned": True}),
    ("sample_rate 48000 (resampled)", {"sample_rate": 48_000}),
    ("mulaw 8 kHz (resampled, G.711)", {"format": "mulaw"}),
    ("mp3 (whole)", {"format": "mp3"}),
    ("mp3 streamed", {"format": "mp3", "stream": True}),
    ("sse, pcm", {"format": "pcm", "stream_format": "sse"}),
]


class Unaligned(Piper):
    """Piper without its durations: what an engine that has none (a cloud engine) leaves the
    ingress to align."""

    async def synthesize(self, request: Any) -> Any:
        return await super().synthesize(request.model_copy(update={"timestamps": False}))


async def run(requests: int) -> list[tuple[str, float, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "personalities").mkdir()
        spec = {"activeProvider": "piper", "providers": {"piper": {}}}
        for name in ("joe", "ann"):
            (root / "personalities" / f"{name}.yaml").write_text(yaml.safe_dump(
                {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": name},
                 "spec": spec}))
        engines = {"plain": Piper({}), "unaligned": Unaligned({})}
        apps = {}
        for which, engine in engines.items():
            config = IngressConfig(personalities={"directory": root / "personalities"},
                                   samples={"directory": root / "samples"}, cache={"enabled": False})
            apps[which] = create_app(Replica(config, EngineBoard({"piper": LocalHandle(engine)})))
        clients = {w: httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://127.0.0.1")
                   for w, a in apps.items()}
        took: dict[str, list[float]] = {name: [] for name, _ in CASES}
        # Interleaved, so a slow patch of the machine costs every case alike.
        for _ in range(requests + 1):  # the first round warms up (ONNX's first run, the aligner's model)
            for name, body in CASES:
                client = clients["unaligned" if body.get("__aligned") else "plain"]
                sent = {k: v for k, v in body.items() if not k.startswith("__")}
                began = time.perf_counter()
                r = await client.post(URL, json={"text": TEXT, **sent})
                _ = r.content
                took[name].append(time.perf_counter() - began)
                assert r.status_code == 200, r.text
        for client in clients.values():
            await client.aclose()
    peer = statistics.median(took[CASES[0][0]][1:])
    return [(name, statistics.median(t[1:]), statistics.median(t[1:]) / peer) for name, t in took.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one request of each: does it still run?")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    requests = 1 if args.smoke else 15
    rows = asyncio.run(run(requests))
    lines = [
        f"Run {machine()}; {requests} requests of each case after a warm-up, interleaved; the ingress app in "
        f"process over real Piper (bundled voice), cache off, no Ray. Text: 3 sentences, {len(TEXT)} characters, "
        "~4.5 s of audio. Median latency of the whole answer, and its ratio to the plain wav answer.",
        "",
        "| case | p50 (ms) | ratio to plain |",
        "|---|---|---|",
        *(f"| {name} | {p50 * 1000:.0f} | {ratio:.2f} |" for name, p50, ratio in rows),
    ]
    report = "\n".join(lines)
    print(report)
    write_section(TITLE, report, args.output)


if __name__ == "__main__":
    main()
