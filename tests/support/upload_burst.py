"""Run as `python -m tests.support.upload_burst <dir> <kind>`: 16 uploads at once to an ingress app
(create_app over in-process engines, httpx ASGI transport), then print one JSON line with
each response and how much the process's resident memory grew at its peak.

A separate process because the peak (Linux's VmHWM) can only be read, never reset:
tests/unit/ingress/test_upload_bounds.py starts one per measurement. `kind`:
- `bomb`: silent 60 s 192 kHz FLAC, a few KB each, hundreds of MB if decoded;
- `at-caps`: silent 60 s 48 kHz stereo FLAC, the most a replica decodes. The quality
  checks are replaced by a refusal, so only decoding is measured (no models load).
"""

from __future__ import annotations

import asyncio
import io
import json
import sys
from pathlib import Path

import httpx
import numpy as np
import soundfile as sf
import yaml

from chorus.common.constants import MAX_SAMPLE_BYTES
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.samples.audio import DecodedAudio
from chorus.samples.report import SampleRejected
from chorus.speech.board import EngineBoard
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine

UPLOADS = 16


def silent_flac(seconds: float, rate: int, channels: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros((int(seconds * rate), channels), dtype=np.int16), rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def kib(field: str) -> int:
    """A line of /proc/self/status, in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(field)


def refuse(audio: DecodedAudio, engines: object = ()) -> object:
    raise SampleRejected(f"checked {audio.duration_s:.0f} s (decoding was all this measures)")


async def main(root: Path, kind: str) -> None:
    (root / "personalities").mkdir(parents=True)
    (root / "personalities" / "joe.yaml").write_text(yaml.safe_dump(personality("joe", {
        "activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": {"voice": "en_US-joe-medium"}},
    })))
    config = IngressConfig(
        personalities={"directory": root / "personalities"},
        # All 16 let in (none refused for a full queue): what is measured is the decode bound.
        samples={"directory": root / "samples", "max_upload_bytes": MAX_SAMPLE_BYTES, "max_queued_checks": 16},
    )
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper", languages=("en",)))}))
    replica.samples.ingest.checker.check_sample = refuse  # type: ignore[method-assign]
    body = silent_flac(60, 192_000, 1) if kind == "bomb" else silent_flac(60, 48_000, 2)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)), base_url="http://127.0.0.1",
                                 timeout=120) as client:
        before = kib("VmRSS")
        responses = await asyncio.gather(*(
            client.post("/v1/personalities/joe/samples", files={"file": (f"{kind}-{i}.flac", body)})
            for i in range(UPLOADS)
        ))
    print(json.dumps({
        "upload_bytes": len(body),
        "peak_growth_mib": (kib("VmHWM") - before) / 1024,
        "responses": [{"status": r.status_code, "detail": r.json().get("detail")} for r in responses],
    }))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2]))
