"""What the routes of one ingress replica share, handed to them as a FastAPI dependency."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from pydantic import BaseModel, Field

from chorus.router import EngineBoard, Router
from chorus.samples.service import SamplesConfig, SampleService
from chorus.stores import open_store
from chorus.stores.sources import PersonalitySource
from deployments.base import EngineId


class IngressConfig(BaseModel):
    personalities: PersonalitySource
    samples: SamplesConfig = SamplesConfig()
    timeouts: dict[EngineId, float] = Field(default_factory=dict)
    max_text_characters: int = Field(10_000, ge=1)
    status_refresh_s: float = Field(5.0, gt=0)


class Chorus:
    def __init__(self, config: IngressConfig, board: EngineBoard) -> None:
        self.config = config
        self.store = open_store(config.personalities)
        self.samples = SampleService(config.samples, self.store)
        self.board = board
        self.router = Router(board, config.timeouts, sample_refs=self.samples.refs)


def chorus(request: Request) -> Chorus:
    return request.app.state.chorus


ChorusState = Annotated[Chorus, Depends(chorus)]
