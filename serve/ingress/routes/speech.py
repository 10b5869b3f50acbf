"""Speech: a personality's own route and OpenAI's `POST /v1/audio/speech`."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response

from chorus.auth.scopes import Scope, needs
from chorus.ingress.api import OpenAIErrorOut, OpenAISpeechRequest, SpeechRequest
from chorus.ingress.deps import PersonalityDep, ReplicaDep, SpendDep, voice_or_404
from chorus.ingress.errors import ChorusHTTPError, require_json
from chorus.ingress.middleware.auth import caller
from chorus.ingress.speaking import SPEECH_RESPONSES, checked_utterance, no_store, speak
from chorus.speech.models import OPENAI_MODELS
from deployments.base import ENGINE_IDS, AudioFormat, EngineId

router = APIRouter(tags=["speech"])

OPENAI_PCM_RATE = 24_000

# The same answers in OpenAI's error shape, for its compatible route.
OPENAI_RESPONSES = {
    status: {**answer, "model": OpenAIErrorOut} if "model" in answer else answer
    for status, answer in SPEECH_RESPONSES.items()
}


@router.post(
    "/v1/personalities/{name}/speech",
    responses=SPEECH_RESPONSES | {200: {**SPEECH_RESPONSES[200], "content": {
        **SPEECH_RESPONSES[200]["content"],
        "application/json": {"schema": {"$ref": "#/components/schemas/SpeechWithTimestamps"}},
        "text/event-stream": {}}}},
    response_class=Response,
    dependencies=[Depends(require_json)],
    summary="Speak text in a personality's voice",
    openapi_extra=needs(Scope.SPEAK),
)
async def personality_speech(request: Request, personality: PersonalityDep, body: SpeechRequest,
                             replica: ReplicaDep, spend: SpendDep) -> Response:
    sse = body.stream_format == "sse"
    said = checked_utterance(replica, personality, body.text, language=body.language, provider=body.provider,
                             fmt=body.format, stream=body.stream or sse, cache=not no_store(request),
                             caller=caller(request), timestamps=body.timestamps)
    async with spend.synthesis(personality.name, len(said.text)) as charge:
        return await speak(request, replica, said, sample_rate=body.sample_rate, charge=charge, sse=sse)


@router.post(
    "/v1/audio/speech",
    responses=OPENAI_RESPONSES,
    response_class=Response,
    dependencies=[Depends(require_json)],
    summary="OpenAI-compatible speech (voice = a personality's name or alias)",
    openapi_extra=needs(Scope.SPEAK),
)
async def openai_speech(request: Request, body: OpenAISpeechRequest, replica: ReplicaDep, spend: SpendDep) -> Response:
    if body.model in ENGINE_IDS:
        provider: EngineId | None = body.model  # type: ignore[assignment]
    elif body.model in OPENAI_MODELS:
        provider = None
    else:
        raise ChorusHTTPError(
            422, f"unknown model {body.model!r}: use one of {sorted(OPENAI_MODELS)} or an engine id {list(ENGINE_IDS)}",
            param="model",
        )
    personality = voice_or_404(replica, body.voice)
    sse = body.stream_format == "sse"
    said = checked_utterance(replica, personality, body.input, provider=provider, fmt=body.response_format,
                             speed=body.speed, stream=sse, text_param="input", format_param="response_format",
                             cache=not no_store(request), caller=caller(request))
    async with spend.synthesis(personality.name, len(said.text)) as charge:
        # OpenAI's pcm is 24 kHz; clients assume that rate.
        rate = body.sample_rate or (OPENAI_PCM_RATE if said.format is AudioFormat.pcm else None)
        response = await speak(request, replica, said, sample_rate=rate, charge=charge, sse=sse)
    if body.instructions:
        # None of the six engines takes a free-form style prompt: say so rather than fail.
        response.headers["X-Chorus-Instructions"] = "not-applied"
    return response
