"""No cross-talk under load, on the real Serve app: 72 requests, 32 at a time, each text one
of 36 (pairs of sentences and the sentences alone), through the personality route whole and
streamed, server-sent events and OpenAI's route, with the cache used and bypassed, while one
of two Piper replicas is killed. Every answer, transcribed, is closer to its own text than to
any other (bench/crosstalk.py runs more of it and records the counts)."""

from __future__ import annotations

import asyncio

import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.crosstalk import KINDS, TEXTS, Answer, judge, run, tally
from tests.support.replica_fault import back_to, kill_replica, replica_names

pytestmark = pytest.mark.ray

TWO_PIPERS = {"autoscaling_config": {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 2}}


async def test_every_answer_says_its_own_text_while_a_replica_is_killed(chorus: ChorusApp, ear) -> None:  # type: ignore[no-untyped-def]
    chorus.deploy(engines={"piper": {"timeout_s": 60}}, deployments={"piper": TWO_PIPERS})
    chorus.write("joe", {"activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": STEADY_PIPER}})
    chorus.wait_for("joe")
    assert len(replica_names("piper")) == 2
    killed_after: list[int] = []

    async def kill_a_replica_mid_run(answers: list[Answer]) -> None:
        while len(answers) < 12:
            await asyncio.sleep(0.05)
        killed_after.append(len(answers))
        before = await asyncio.to_thread(kill_replica, "piper")
        await back_to("piper", 2, before)

    answers = await run(chorus.url, "joe", rounds=2, concurrency=32, during=kill_a_replica_mid_run)
    verdicts = judge(answers, ear)

    assert {(a.kind, a.cached) for a in answers} == {(k, c) for k in KINDS for c in (True, False)}
    assert sorted(a.text for a in answers) == sorted(TEXTS * 2)
    assert killed_after and killed_after[0] < len(answers) - 32  # the kill came with requests in flight
    wrong = [(v.answer.kind, v.answer.text, v.answer.error or v.heard) for v in verdicts if not v.matched]
    assert wrong == []
    assert tally(verdicts) == {"n": 72, "matched": 72, "mismatched": 0, "failed": 0}
