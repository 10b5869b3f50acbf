"""The recognizer without Ray: the production ear (`chorus.recognition.ear.Ear`, real
pocketsphinx) behind the `hear.remote(...)` surface the router's verifier calls, in a worker
thread as the deployment runs it. `down` makes every call fail; `heard` counts the calls."""

from __future__ import annotations

import asyncio
from typing import Any

from chorus.recognition.ear import Ear
from chorus.recognition.models import Hearing, HearRequest


class LocalEar:
    def __init__(self) -> None:
        self.ear = Ear()
        self.down: Exception | None = None
        self.heard: list[HearRequest] = []

    @property
    def hear(self) -> LocalEar:
        return self

    def remote(self, request: HearRequest) -> Any:
        self.heard.append(request)
        return self._hear(request)

    async def _hear(self, request: HearRequest) -> Hearing:
        if self.down is not None:
            raise self.down
        return await asyncio.to_thread(self.ear.hear, request)
