"""The audio cache and a cloning personality's samples, through the HTTP layer: a sample
replaced under the same id (operator specs choose ids, so this happens) must never be
answered with audio conditioned on the old recording (tests audit D1)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chorus.common.constants import MAX_SAMPLE_BYTES
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from tests.support import recordings as rec
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine

AVA = {"activeProvider": "xtts_v2", "providers": {"xtts_v2": {}}}
SPEECH = "/v1/personalities/ava/speech"


class Cloning:
    def __init__(self, root: Path) -> None:
        (root / "personalities").mkdir()
        (root / "personalities" / "ava.yaml").write_text(yaml.safe_dump(personality("ava", AVA)))
        self.xtts = ScriptedEngine("xtts_v2")
        config = IngressConfig(personalities={"directory": root / "personalities"},
                               samples={"directory": root / "samples", "max_upload_bytes": MAX_SAMPLE_BYTES},
                               timeouts={"xtts_v2": 5})
        replica = Replica(config, EngineBoard({"xtts_v2": LocalHandle(self.xtts)}))
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)),
                                        base_url="http://127.0.0.1")


@pytest.fixture
async def cloning(tmp_path: Path) -> AsyncIterator[Cloning]:
    api = Cloning(tmp_path)
    async with api.client:
        yield api


def upload(speech: rec.Speech, sample_id: str) -> dict[str, Any]:
    return {"files": {"file": ("ref.wav", rec.encode(speech.samples, speech.rate))}, "data": {"id": sample_id}}


async def test_a_sample_replaced_under_its_id_is_a_miss(cloning: Cloning) -> None:
    c, recs = cloning.client, rec.recordings()
    assert (await c.post("/v1/personalities/ava/samples", **upload(recs.clean(), "s0"))).status_code == 201
    first = await c.post(SPEECH, json={"text": "Hello there."})
    again = await c.post(SPEECH, json={"text": "Hello there."})
    assert (first.headers["x-chorus-cache"], again.headers["x-chorus-cache"]) == ("miss", "hit")

    assert (await c.delete("/v1/personalities/ava/samples/s0")).status_code == 204
    r = await c.post("/v1/personalities/ava/samples", **upload(recs.clean_other_text(), "s0"))
    assert r.status_code == 201, r.text
    after = await c.post(SPEECH, json={"text": "Hello there."})
    assert after.headers["x-chorus-cache"] == "miss"
    old, new = (q.samples for q in cloning.xtts.requests)
    assert [s.id for s in old] == [s.id for s in new] == ["s0"] and old[0].sha256 != new[0].sha256
