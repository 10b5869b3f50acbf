"""The recognizer deployment: the ear (`chorus.recognition.ear`) and the forced aligner
(`chorus.recognition.aligner`) behind a Serve handle, so the ingress verifies speech and
times words without ever running a decoder itself (a decode holds the GIL: in the ingress it
would stall every request it serves). Operators scale it like an engine:
its CPUs, replicas and queue are set in the Serve config under the name `Recognizer`."""

from __future__ import annotations

import asyncio

from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from chorus.recognition.aligner import Aligner
from chorus.recognition.ear import Ear
from chorus.recognition.models import RECOGNIZER, Alignment, AlignRequest, Hearing, HearRequest


class RecognizerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    concurrency: int = Field(1, ge=1, le=16, description="Decodes (hearings and alignments) at once in one replica "
                             "(each takes a core).")


@serve.deployment(name=RECOGNIZER, ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=4)
class Recognizer:
    def __init__(self, config: RecognizerConfig | dict | None = None) -> None:
        self.config = RecognizerConfig.model_validate(config or {})
        self._ear = Ear()
        self._aligner = Aligner()
        self._slots = asyncio.Semaphore(self.config.concurrency)

    async def hear(self, request: HearRequest) -> Hearing:
        async with self._slots:
            return await asyncio.to_thread(self._ear.hear, request)

    async def align(self, request: AlignRequest) -> Alignment:
        async with self._slots:
            return await asyncio.to_thread(self._aligner.align, request)
