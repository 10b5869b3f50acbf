"""The models of the sample checks: loaded once however many threads ask first, and never
on an event loop (loading torch there stalls every other handler)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import pytest

from chorus.samples.models import SampleModels


def test_concurrent_first_uses_load_one_model() -> None:
    models = SampleModels()
    with ThreadPoolExecutor(4) as pool:
        vads = list(pool.map(lambda _: models.vad(), range(8)))
    assert all(vad is vads[0] for vad in vads)


async def test_models_refuse_the_event_loop() -> None:
    models = SampleModels()
    with pytest.raises(RuntimeError, match="worker thread"):
        models.vad()
    assert await asyncio.to_thread(models.loudness_meter) is not None
