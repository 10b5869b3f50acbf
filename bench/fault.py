"""Latency with a Piper replica killed mid-run, next to the same run without the fault.

The CPU profile with 2 Piper replicas; a bounded load of `--requests` at `--concurrency`
(tests/support/load.py: speech, streams, OpenAI's route in rotation, each checked for complete
audio). The fault run `ray.kill`s one Piper replica a quarter of the way in; "during the
fault" is the requests sent from the kill until Serve has a replacement running. Writes
p50/p95 to bench/RESULTS.md. Not a test: run `.venv/bin/python bench/fault.py`.
`--smoke`: the same two runs, 8 requests each at concurrency 2 (the kill after 2);
tests/integration/test_bench_smoke.py checks the benchmark still runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.piper_http import free_port, pct  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402
from tests.support.chorus_app import STEADY_PIPER, ChorusApp  # noqa: E402
from tests.support.load import LoadRun, completed, run_load  # noqa: E402
from tests.support.replica_fault import back_to, kill_replica  # noqa: E402

TWO_PIPERS = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}


def row(label: str, run: LoadRun, start: float = float("-inf"), end: float = float("inf")) -> str:
    """The requests of `run` sent in [start, end): how many, failed, p50 and p95 of the successful."""
    values = run.latencies(start, end)
    sent = sum(1 for o in run.outcomes if start <= o.started < end)
    failed = sum(1 for o in run.failed if start <= o.started < end)
    if not values:  # a short run can be over before the replacement comes
        return f"| {label} | {sent} | {failed} | - | - |"
    return f"| {label} | {sent} | {failed} | {pct(values, 0.5):.3f} | {pct(values, 0.95):.3f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    if args.smoke:
        args.requests, args.concurrency = 8, 2
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    app = ChorusApp(port=free_port(), root=Path(tempfile.mkdtemp(prefix="chorus-bench-fault-")))
    fault: dict[str, float] = {}

    async def kill_a_quarter_in(run: LoadRun) -> None:
        await completed(run, args.requests // 4)
        fault["killed"] = time.monotonic()
        before = await asyncio.to_thread(kill_replica, "piper")
        fault["back"] = await back_to("piper", 2, before)

    try:
        app.deploy(engines={"piper": {"timeout_s": 30}}, deployments={"piper": TWO_PIPERS})
        app.write("bench", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
        app.wait_for("bench")
        asyncio.run(run_load(app.url, "bench", requests=4 * args.concurrency, concurrency=args.concurrency))  # warm
        calm = asyncio.run(run_load(app.url, "bench", requests=args.requests, concurrency=args.concurrency))
        faulty = asyncio.run(run_load(app.url, "bench", requests=args.requests, concurrency=args.concurrency,
                                      during=kill_a_quarter_in))
    finally:
        serve.shutdown()
        ray.shutdown()

    killed, back = fault["killed"], fault["back"]
    lines = [
        f"Run {machine()}, CPU only. The CPU profile with 2 Piper replicas; {args.requests} requests at "
        f"concurrency {args.concurrency}, speech / streaming / OpenAI route in rotation (`tests/support/load.py`), "
        "each checked for complete audio. The fault run `ray.kill`s one Piper replica after a quarter of "
        f"its requests; Serve had a replacement running {back - killed:.1f} s later. Requests cut off by the "
        "death are sent once more to the deployment (`serve/ingress/handles.py`).",
        "",
        "| requests | n | failed | p50 (s) | p95 (s) |",
        "|---|---|---|---|---|",
        row("no fault (whole run)", calm),
        row("fault run: before the kill", faulty, end=killed),
        row("fault run: kill until replaced (during the fault)", faulty, killed, back),
        row("fault run: after the replacement", faulty, back),
        row("fault run (whole run)", faulty),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    write_section("Load with a Piper replica killed (`bench/fault.py`)", report, args.output)


if __name__ == "__main__":
    main()
