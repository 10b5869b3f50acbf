"""Run inside the GPU image under one cloning engine's interpreter:

    /opt/chorus/venv-<engine>/bin/python -m tests.containers.engine_probe xtts|styletts2 OUT

builds the tiny random checkpoint (no weights can be downloaded), loads it through the
production engine class from the image's installed `deployments`, and prints as JSON what
the engine reports: health, environment, and for XTTS the length of one utterance said by
the checkpoint's built-in speaker (StyleTTS2 speaks only from reference samples)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any


async def probe(engine: str, out: Path) -> dict[str, Any]:
    from deployments.base import SynthesisRequest

    if engine == "xtts":
        from deployments.xtts import XTTS, XTTSConfig
        from tests.support import tiny_xtts

        model = tiny_xtts.build(out, sys.executable, ["base:0:en:speakers"])["base"]
        xtts = XTTS(XTTSConfig(model_dir=model, device="cpu"))
        health = await xtts.health()
        request = SynthesisRequest(text="Hello there.", language="en", voice=tiny_xtts.SPEAKER)
        audio = await xtts.synthesize(request)
        return {"health": health.model_dump(), "environment": await xtts.environment(),
                "spoken_s": audio.duration_s}
    from deployments.styletts2 import StyleTTS2, StyleTTS2Config
    from tests.support import tiny_styletts2

    model = tiny_styletts2.build(out, sys.executable)
    styletts2 = StyleTTS2(StyleTTS2Config(model_dir=model, seed=0, device="cpu"))
    return {"health": (await styletts2.health()).model_dump(), "environment": await styletts2.environment()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(probe(sys.argv[1], Path(sys.argv[2]))), default=str))
