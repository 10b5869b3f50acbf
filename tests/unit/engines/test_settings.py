"""Engine settings (`deployments.settings`): the registry, the speed field, the cloning
windows, and how they travel in the contract."""

from __future__ import annotations

import pickle
from typing import ClassVar

import pytest
from pydantic import ValidationError

from deployments.base import (
    ENGINE_IDS,
    BadInputError,
    Capabilities,
    DurationWindow,
    EngineSettings,
    SynthesisRequest,
)
from deployments.settings import (
    ENGINE_SETTINGS,
    AzureTTSSettings,
    GoogleTTSSettings,
    IBMWatsonSettings,
    PiperSettings,
    StyleTTS2Settings,
    XTTSSettings,
    cloning_windows,
)


def test_every_engine_has_its_settings_model() -> None:
    assert tuple(ENGINE_SETTINGS) == ENGINE_IDS
    for engine, model in ENGINE_SETTINGS.items():
        assert model.engine == engine
        assert model.model_config["frozen"] and model.model_config["extra"] == "forbid"


def test_settings_are_camel_case_on_the_wire() -> None:
    settings = GoogleTTSSettings.model_validate({"speakingRate": 1.5, "volumeGainDb": -2})
    assert settings.speaking_rate == 1.5
    assert settings.model_dump(by_alias=True) == {"pitch": 0, "speakingRate": 1.5, "volumeGainDb": -2}
    with pytest.raises(ValidationError, match="Extra inputs"):
        PiperSettings.model_validate({"pitch": 3})


@pytest.mark.parametrize(
    "settings,field,scaled",
    [
        (PiperSettings(speed=1.5), "speed", 3.0),
        (XTTSSettings(), "speed", 2.0),
        (GoogleTTSSettings(speaking_rate=0.5), "speaking_rate", 1.0),
        (AzureTTSSettings(rate=1.2), "rate", 2.4),
    ],
)
def test_speed_multiplies_the_engines_speed_field(settings: EngineSettings, field: str, scaled: float) -> None:
    faster = settings.with_speed(2.0)
    assert type(faster) is type(settings) and getattr(faster, field) == pytest.approx(scaled)
    others = {k: v for k, v in settings.model_dump().items() if k != field}
    assert {k: v for k, v in faster.model_dump().items() if k != field} == others


@pytest.mark.parametrize("settings", [StyleTTS2Settings(), IBMWatsonSettings(rate_percentage=20)])
def test_engines_without_a_speed_field_ignore_speed(settings: EngineSettings) -> None:
    assert settings.speed_field is None
    assert settings.with_speed(3.0) is settings


def test_speed_one_leaves_the_settings_alone() -> None:
    settings = PiperSettings(speed=4)
    assert settings.with_speed(1.0) is settings


@pytest.mark.parametrize(
    "settings,speed,message",
    [
        (PiperSettings(), 5.0, "speed 5.0 makes piper's speed 5, outside its range: Input should be less than or equal to 4"),
        (XTTSSettings(speed=0.5), 0.25, "speed 0.25 makes xtts_v2's speed 0.125, outside its range"),
        (GoogleTTSSettings(speaking_rate=2), 3.0, "speed 3.0 makes google_tts's speakingRate 6, outside its range"),
        (AzureTTSSettings(), 0.25, "speed 0.25 makes azure_tts's rate 0.25, outside its range"),
    ],
)
def test_speed_past_the_fields_bounds_is_bad_input(settings: EngineSettings, speed: float, message: str) -> None:
    with pytest.raises(BadInputError) as raised:
        settings.with_speed(speed)
    assert raised.value.reason.startswith(message) and raised.value.engine == settings.engine


def test_speed_field_must_be_a_field() -> None:
    with pytest.raises(TypeError, match="speed_field 'tempo' is not one of its fields"):

        class Broken(EngineSettings):
            engine: ClassVar = "piper"
            speed_field: ClassVar = "tempo"

            speed: float = 1.0


def test_cloning_windows_come_from_the_settings_models() -> None:
    windows = cloning_windows()
    assert list(windows) == ["xtts_v2", "styletts2"]
    assert windows["xtts_v2"].usable.bounds == (6, 30) and windows["xtts_v2"].optimal.bounds == (15, 20)
    assert windows["styletts2"].usable.bounds == (3, 10) and windows["styletts2"].optimal.bounds == (5, 8)
    assert all(ENGINE_SETTINGS[e].cloning_window is None for e in ENGINE_IDS if e not in windows)


def test_duration_window() -> None:
    window = DurationWindow(min_s=6, max_s=30)
    assert 6 in window and 30 in window and 5.99 not in window and 30.01 not in window
    assert str(window) == "6-30 s"
    with pytest.raises(ValidationError, match="below min_s"):
        DurationWindow(min_s=10, max_s=3)


async def test_cloning_engines_declare_their_window_in_capabilities() -> None:
    # No model configured: the engines load nothing (no torch), but still say what they are.
    from deployments.styletts2 import StyleTTS2
    from deployments.xtts import XTTS

    for engine, model in ((XTTS({}), XTTSSettings), (StyleTTS2({}), StyleTTS2Settings)):
        caps = await engine.capabilities()
        assert caps.cloning and caps.cloning_window == model.cloning_window


def test_capabilities_cloning_follows_the_window() -> None:
    window = XTTSSettings.cloning_window
    cloning = Capabilities(engine="xtts_v2", languages=["en"], cloning_window=window, max_characters=10, sample_rate=1, model_identity="m")
    plain = Capabilities(engine="piper", languages=["en"], max_characters=10, sample_rate=1, model_identity="m")
    assert cloning.cloning and not plain.cloning
    dumped = cloning.model_dump()
    assert dumped["cloning"] is True and dumped["cloning_window"]["usable"] == {"min_s": 6, "max_s": 30}
    assert Capabilities.model_validate(dumped) == cloning  # what GET /v1/providers re-validates
    with pytest.raises(ValidationError, match="cloning is true exactly when cloning_window is set"):
        Capabilities(engine="xtts_v2", languages=["en"], cloning=True, max_characters=10, sample_rate=1, model_identity="m")


def test_requests_carry_the_settings_model() -> None:
    request = SynthesisRequest(text="Hi.", language="en", settings=XTTSSettings(top_k=1))
    copy = pickle.loads(pickle.dumps(request))  # how it crosses the Ray boundary
    assert copy.settings == XTTSSettings(top_k=1) and type(copy.settings) is XTTSSettings
    assert copy.settings_as(XTTSSettings).top_k == 1
    assert request.model_dump()["settings"]["top_k"] == 1
    assert SynthesisRequest(text="Hi.", language="en").settings_as(PiperSettings) == PiperSettings()
    with pytest.raises(BadInputError, match="PiperSettings sent to xtts_v2, which takes XTTSSettings"):
        SynthesisRequest(text="Hi.", language="en", settings=PiperSettings()).settings_as(XTTSSettings)
    with pytest.raises(ValidationError, match="instance of EngineSettings"):
        SynthesisRequest(text="Hi.", language="en", settings={"topK": 1})
