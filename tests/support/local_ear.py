"""The recognizer without Ray: the production ear and aligner (`chorus.recognition`, real
pocketsphinx) behind the `hear.remote(...)` and `align.remote(...)` surface the ingress calls,
each in a worker thread as the deployment runs them. `down` makes every call fail; `heard`
and `aligned` record the calls."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from chorus.recognition.aligner import Aligner
from chorus.recognition.ear import Ear
from chorus.recognition.models import AlignRequest, HearRequest


class _Method:
    def __init__(self, owner: LocalEar, calls: list[Any], run: Callable[[Any], Any]) -> None:
        self.owner, self.calls, self.run = owner, calls, run

    def remote(self, request: Any) -> Any:
        self.calls.append(request)
        return self._call(request)

    async def _call(self, request: Any) -> Any:
        if self.owner.down is not None:
            raise self.owner.down
        return await asyncio.to_thread(self.run, request)


class LocalEar:
    def __init__(self) -> None:
        self.ear, self.aligner = Ear(), Aligner()
        self.down: Exception | None = None
        self.heard: list[HearRequest] = []
        self.aligned: list[AlignRequest] = []

    @property
    def hear(self) -> _Method:
        return _Method(self, self.heard, self.ear.hear)

    @property
    def align(self) -> _Method:
        return _Method(self, self.aligned, self.aligner.align)
