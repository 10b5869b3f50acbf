"""Uploads cost a replica bounded memory however many arrive at once: a rate cap read
from the header before decoding, and at most `max_concurrent_checks` decodes at a time.
Memory is measured as the peak resident size (VmHWM) of a child process that receives
16 parallel uploads (tests/support/upload_burst.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from chorus.common.constants import MAX_SAMPLE_BYTES
from chorus.samples.audio import MAX_CHANNELS, MAX_DURATION_S, MAX_SAMPLE_RATE, DecodedAudio
from chorus.samples.report import SampleRejected
from chorus.samples.service import SamplesConfig
from tests.support import recordings as rec
from tests.support.ingress_app import Api

MiB = 2**20
# One decode at the caps holds the int32 frames and their float32 copy (23 MB each);
# the mono mix, resampling and canonical WAV add less than that again.
DECODE_AT_CAPS = 2 * int(MAX_DURATION_S * MAX_SAMPLE_RATE * MAX_CHANNELS) * (4 + 4)
CHECKS = SamplesConfig().max_concurrent_checks
ROOT = Path(__file__).resolve().parents[3]


def burst(tmp_path: Path, kind: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "tests.support.upload_burst", str(tmp_path / kind), kind], cwd=ROOT,
                         capture_output=True, text=True, timeout=300, check=True)
    return json.loads(out.stdout)


def test_rate_bombs_are_refused_from_the_header_without_decoding(tmp_path: Path) -> None:
    result = burst(tmp_path, "bomb")
    assert result["upload_bytes"] < 64 * 1024  # a few KB on the wire ...
    assert {r["status"] for r in result["responses"]} == {422}
    for r in result["responses"]:
        assert f"over the {MAX_SAMPLE_RATE} Hz maximum sample rate" in r["detail"]
    # ... ~90 MB each decoded: the 16 together may not cost even one decode at the caps.
    assert result["peak_growth_mib"] < DECODE_AT_CAPS / 2 / MiB, result["peak_growth_mib"]


def test_uploads_at_the_caps_are_decoded_a_few_at_a_time(tmp_path: Path) -> None:
    result = burst(tmp_path, "at-caps")
    assert [r["detail"] for r in result["responses"]] == ["checked 60 s (decoding was all this measures)"] * 16
    # Unbounded, the worker threads decode 4-6 at once (~300 MB here); bounded, CHECKS.
    assert result["peak_growth_mib"] < (CHECKS * DECODE_AT_CAPS + 16 * MiB) / MiB, result["peak_growth_mib"]


class CountedSlots:
    """Wraps the service's check slots (an asyncio semaphore) to count the requests waiting
    for one: with CHECKS checking and the rest counted here, all have arrived."""

    def __init__(self, slots: asyncio.Semaphore) -> None:
        self.slots = slots
        self.waiting = 0

    async def __aenter__(self) -> None:
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1

    async def __aexit__(self, *exc: object) -> None:
        self.slots.release()


@pytest.mark.parametrize("route", ["upload", "clone"])
async def test_checks_wait_for_a_free_slot(tmp_path: Path, route: str) -> None:
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES)
    running, peak, lock = 0, 0, threading.Lock()
    release = threading.Event()
    slots = CountedSlots(api.replica.samples._checks)
    api.replica.samples._checks = slots  # type: ignore[assignment]

    def check(audio: DecodedAudio, engines: object = ()) -> object:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        release.wait(5)
        with lock:
            running -= 1
        raise SampleRejected("refused after counting")

    api.replica.samples.ingest.checker.check_sample = check  # type: ignore[method-assign]
    body = {"file": ("short.wav", rec.minimal_wav(1.0))}
    async with api.client as c:
        if route == "upload":
            calls = [c.post("/v1/personalities/joe/samples", files=body) for _ in range(8)]
        else:
            calls = [c.post("/v1/clone", files=body, data={"text": "Hi.", "provider": "xtts_v2"}) for _ in range(8)]
        tasks = [asyncio.ensure_future(call) for call in calls]
        # All 8 are in: CHECKS checking (in worker threads), the others waiting for a slot.
        deadline = asyncio.get_running_loop().time() + 10
        while (running, slots.waiting) != (CHECKS, 8 - CHECKS):
            assert asyncio.get_running_loop().time() < deadline, (running, slots.waiting)
            await asyncio.sleep(0.01)
        assert peak == CHECKS
        release.set()
        responses = await asyncio.gather(*tasks)
    assert {r.status_code for r in responses} == {422}
    assert peak == CHECKS


async def test_a_bad_field_is_refused_before_the_recording_is_checked(tmp_path: Path) -> None:
    """Security audit M12, L2: notes over the schema's limit, or an id the sample store (and so
    the personality) would refuse, came back 422 only after seconds of decoding and checks."""
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES)
    checked: list[bytes] = []
    ingest = api.replica.samples.ingest
    real = ingest.checker.check_sample
    ingest.checker.check_sample = lambda *a, **k: checked.append(b"") or real(*a, **k)  # type: ignore[method-assign]
    async with api.client:
        for field in ({"notes": "n" * 1025}, {"id": "a:b"}, {"id": ".lock"}, {"id": "-x"}):
            r = await api.client.post("/v1/personalities/joe/samples",
                                      files={"file": ("a.wav", rec.minimal_wav(8.0), "audio/wav")}, data=field)
            assert r.status_code == 422, (field, r.text)
    assert checked == []
