"""Each engine's settings: what a personality may tell it, with bounds and camelCase names.

Pure pydantic on the engine contract, so the personality model (and with it the operator
and the CRD) composes these without importing Ray or any engine. Bounds are the engines'
documented useful ranges. Each model also says which field a request's `speed` multiplies
and, for a cloning engine, how long its reference samples should be.
"""

from __future__ import annotations

from pydantic import Field

from deployments.base import (
    CloningWindow,
    DurationWindow,
    EngineId,
    EngineSettings,
    VoiceId,
)


class XTTSSettings(EngineSettings):
    engine = "xtts_v2"
    speed_field = "speed"
    cloning_window = CloningWindow(
        usable=DurationWindow(min_s=6, max_s=30), optimal=DurationWindow(min_s=15, max_s=20)
    )

    temperature: float = Field(0.75, gt=0, le=2)
    length_penalty: float = Field(1.0, ge=-10, le=10)
    repetition_penalty: float = Field(5.0, ge=1, le=20)
    top_k: int = Field(50, ge=1, le=500)
    top_p: float = Field(0.85, gt=0, le=1)
    speed: float = Field(1.0, ge=0.25, le=4)


class StyleTTS2Settings(EngineSettings):
    engine = "styletts2"
    cloning_window = CloningWindow(
        usable=DurationWindow(min_s=3, max_s=10), optimal=DurationWindow(min_s=5, max_s=8)
    )

    alpha: float = Field(0.3, ge=0, le=1)
    beta: float = Field(0.7, ge=0, le=1)
    diffusion_steps: int = Field(10, ge=1, le=100)
    embedding_scale: float = Field(1.0, ge=0, le=10)


class PiperSettings(EngineSettings):
    engine = "piper"
    speed_field = "speed"

    speed: float = Field(1.0, ge=0.25, le=4, description="1/length_scale: 2 speaks twice as fast")
    noise_scale: float | None = Field(None, ge=0, le=2, description="generator noise; voice default if unset")
    noise_w: float | None = Field(None, ge=0, le=2, description="phoneme width noise; voice default if unset")
    speaker_id: int | None = Field(None, ge=0, le=10_000)
    volume: float = Field(1.0, gt=0, le=4)


class GoogleTTSSettings(EngineSettings):
    engine = "google_tts"
    speed_field = "speaking_rate"

    pitch: float = Field(0, ge=-20, le=20)
    speaking_rate: float = Field(1.0, ge=0.25, le=4)
    volume_gain_db: float = Field(0, ge=-96, le=16)


class AzureTTSSettings(EngineSettings):
    engine = "azure_tts"
    speed_field = "rate"

    rate: float = Field(1.0, ge=0.5, le=3, description="prosody rate multiplier")
    pitch: float = Field(0, ge=-50, le=50, description="prosody pitch change in percent")
    style: VoiceId | None = None


class IBMWatsonSettings(EngineSettings):
    engine = "ibm_watson"

    rate_percentage: int = Field(0, ge=-100, le=100)
    pitch_percentage: int = Field(0, ge=-100, le=100)


# Engine id -> its settings model, in engine order.
ENGINE_SETTINGS: dict[EngineId, type[EngineSettings]] = {
    model.engine: model
    for model in (
        XTTSSettings, StyleTTS2Settings, PiperSettings, GoogleTTSSettings, AzureTTSSettings, IBMWatsonSettings
    )
}


def cloning_windows() -> dict[EngineId, CloningWindow]:
    """The engines that clone from reference samples, each with its sample window."""
    return {
        engine: model.cloning_window
        for engine, model in ENGINE_SETTINGS.items()
        if model.cloning_window is not None
    }
