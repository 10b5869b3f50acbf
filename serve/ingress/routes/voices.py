"""What a client can ask for by name: the personalities as voices, and OpenAI's model list
(`GET /v1/models`, what OpenAI's clients call before speaking)."""

from __future__ import annotations

from fastapi import APIRouter

from chorus.auth.scopes import Scope, needs
from chorus.ingress.api import ModelList, ModelOut, VoiceList, VoiceOut
from chorus.ingress.deps import ReplicaDep
from chorus.personalities import Personality
from chorus.speech.models import OPENAI_MODELS
from deployments.base import ENGINE_IDS
from deployments.settings import ENGINE_SETTINGS

router = APIRouter(tags=["speech"])


def voice_out(personality: Personality) -> VoiceOut:
    spec = personality.spec
    return VoiceOut(
        id=personality.name, name=spec.display_name or personality.name, aliases=spec.aliases,
        languages=spec.languages.all(), primary_language=spec.languages.primary, engine=spec.active_provider,
        engines=spec.chain(), clones=ENGINE_SETTINGS[spec.active_provider].cloning_window is not None,
        samples=len(spec.voice_samples),
    )


@router.get("/v1/audio/voices", response_model=VoiceList, summary="The personalities, as voices to speak in",
            openapi_extra=needs(Scope.SPEAK))
async def list_voices(replica: ReplicaDep) -> VoiceList:
    store = replica.store
    return VoiceList(voices=[voice_out(p) for name in store.names() if (p := store.get(name))])


@router.get("/v1/models", response_model=ModelList, summary="Models `model` may name (OpenAI's list shape)",
            openapi_extra=needs(Scope.SPEAK))
async def list_models() -> ModelList:
    return ModelList(data=[ModelOut(id=m) for m in (*OPENAI_MODELS, *ENGINE_IDS)])
