"""No cross-talk under load: `--rounds` x 36 requests, 32 at a time, each with its own text,
through the personality route whole and streamed, server-sent events and OpenAI's route, the
cache used and bypassed, with 2 Piper replicas and one of them `ray.kill`ed after the first
32 answers. Every answer is transcribed (pocketsphinx) and counted as matched when its own
text, and no other, is the closest to what was heard (tests/support/crosstalk.py;
tests/integration/test_crosstalk.py runs 2 rounds in the suite). Writes n, matched,
mismatched and failed to bench/RESULTS.md, next to the same run without the kill.
Not a test: run `.venv/bin/python bench/crosstalk.py`.
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
from bench.piper_http import free_port  # noqa: E402
from bench.results import RESULTS, machine, write_section  # noqa: E402
from tests.support.chorus_app import STEADY_PIPER, ChorusApp  # noqa: E402
from tests.support.crosstalk import TEXTS, Answer, Verdict, judge, run, tally  # noqa: E402
from tests.support.replica_fault import back_to, kill_replica  # noqa: E402
from tests.support.speech import Ear  # noqa: E402

TITLE = "No cross-talk under load (`bench/crosstalk.py`)"
TWO_PIPERS = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}


def row(label: str, verdicts: list[Verdict], seconds: float) -> str:
    t = tally(verdicts)
    return f"| {label} | {t['n']} | {t['matched']} | {t['mismatched']} | {t['failed']} | {seconds:.0f} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    app = ChorusApp(port=free_port(), root=Path(tempfile.mkdtemp(prefix="chorus-bench-crosstalk-")))

    async def kill_after_32(answers: list[Answer]) -> None:
        while len(answers) < 32:
            await asyncio.sleep(0.05)
        before = await asyncio.to_thread(kill_replica, "piper")
        await back_to("piper", 2, before)

    runs = {}
    try:
        app.deploy(engines={"piper": {"timeout_s": 60}}, deployments={"piper": TWO_PIPERS})
        app.write("bench", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
        app.wait_for("bench")
        for label, during in (("calm", None), ("a Piper replica killed", kill_after_32)):
            began = time.monotonic()
            answers = asyncio.run(run(app.url, "bench", rounds=args.rounds, concurrency=32, during=during))
            runs[label] = (answers, time.monotonic() - began)
    finally:
        serve.shutdown()
        ray.shutdown()

    ear = Ear()
    rows, wrong = [], []
    for label, (answers, seconds) in runs.items():
        verdicts = judge(answers, ear)
        rows.append(row(label, verdicts, seconds))
        wrong += [f"- {label}, {v.answer.kind}: {v.answer.text!r} -> {v.answer.error or v.heard!r}"
                  for v in verdicts if not v.matched]
    body = f"""Run {machine()}, CPU only. The CPU profile with 2 Piper replicas; {args.rounds} rounds of the
{len(TEXTS)} texts, 32 requests at a time, in turn through the personality route (whole, streamed as
PCM, server-sent events) and OpenAI's route, the cache used for half of them (the rest
`Cache-Control: no-store`). Matched: the answer, transcribed by pocketsphinx, is closer (word
error rate) to its own text than to any other of the {len(TEXTS)}; mismatched: another text is as
close or closer; failed: not 200 with audio. The second run kills one Piper replica after
32 answers.

| run | n | matched | mismatched | failed | seconds |
|---|---|---|---|---|---|
{chr(10).join(rows)}
"""
    if wrong:
        body += "\nNot matched:\n\n" + "\n".join(wrong) + "\n"
    print(body)
    write_section(TITLE, body, args.output)


if __name__ == "__main__":
    main()
