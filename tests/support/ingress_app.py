"""One ingress app without Ray: `create_app` over a `Replica` whose engines (scripted Piper
and Google) run in process, with the personality `joe` in a temporary directory, driven
through httpx's ASGI transport."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine
from tests.support.local_ear import LocalEar

MAX_TEXT = 200
MAX_UPLOAD = 4096

JOE = {
    "activeProvider": "piper",
    "fallbackChain": ["google_tts"],
    "languages": {"primary": "en", "supported": ["en", "es"]},
    "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": 1.5}}, "google_tts": {}},
    # The engines' audio byte for byte, as they made it (levelling: tests/unit/speech/test_loudness.py).
    "loudness": {"enabled": False},
}


class Api:
    """One ingress app: scripted Piper and Google engines, the personality `joe`."""

    def __init__(self, root: Path, max_upload: int = MAX_UPLOAD, **config: Any) -> None:
        (root / "personalities").mkdir()
        (root / "personalities" / "joe.yaml").write_text(yaml.safe_dump(personality("joe", JOE)))
        self.piper = ScriptedEngine("piper", languages=("en",))
        self.google = ScriptedEngine("google_tts", languages=("en", "es"), sample_rate=24_000, variant="neural2")
        config = IngressConfig(
            personalities={"directory": root / "personalities"},
            samples={"directory": root / "samples", "max_upload_bytes": max_upload},
            timeouts={"piper": 5, "google_tts": 5},
            max_text_characters=MAX_TEXT, **config,
        )
        board = EngineBoard({"piper": LocalHandle(self.piper), "google_tts": LocalHandle(self.google)})
        self.recognizer = LocalEar()
        self.replica = Replica(config, board, recognizer=self.recognizer)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.replica)),
                                        base_url="http://127.0.0.1")
