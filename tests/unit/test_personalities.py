"""The personality schema: what it accepts and how it names what it refuses."""

from __future__ import annotations

import pytest

from chorus.personalities import PersonalityError, parse_spec, parse_text

SPEC = {
    "activeProvider": "xtts_v2",
    "fallbackChain": ["styletts2", "piper"],
    "languages": {"primary": "en", "supported": ["en", "es"]},
    "providers": {
        "xtts_v2": {"variant": "british", "settings": {"temperature": 0.75, "topK": 50}},
        "styletts2": {"settings": {"diffusionSteps": 10}},
        "piper": {"voice": "en_US-joe-medium", "settings": {"speed": 1.2}},
    },
    "voiceSamples": [{"id": "studio-1", "url": "https://example.com/a.wav", "language": "en"}],
}


def test_design_example_parses_and_keeps_camel_case() -> None:
    spec = parse_spec(SPEC)
    assert spec.chain() == ["xtts_v2", "styletts2", "piper"]
    assert spec.providers.xtts_v2.settings.top_k == 50
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    assert dumped["providers"]["piper"]["settings"]["speed"] == 1.2
    assert "activeProvider" in dumped and "fallbackChain" in dumped


@pytest.mark.parametrize(
    "change,message",
    [
        ({"activeProvider": "festival"}, "activeProvider"),
        ({"fallbackChain": ["google_tts"]}, "fallbackChain[0] 'google_tts' is not configured"),
        ({"fallbackChain": ["piper", "piper"]}, "fallbackChain[1] 'piper' appears earlier"),
        ({"fallbackChain": ["xtts_v2"]}, "fallbackChain[0] 'xtts_v2' appears earlier"),
        ({"languages": {"primary": "fr", "supported": ["en"]}}, "languages.primary 'fr' must be one of"),
        ({"languages": {"primary": "english"}}, "languages.primary"),
        ({"providers": {**SPEC["providers"], "xtts_v2": {"settings": {"temperature": 7}}}}, "providers.xtts_v2.settings.temperature"),
        ({"providers": {**SPEC["providers"], "piper": {"settings": {"speed": 0}}}}, "providers.piper.settings.speed"),
        ({"providers": {**SPEC["providers"], "piper": {"settings": {"pitch": 3}}}}, "providers.piper.settings.pitch: Extra inputs"),
        ({"providers": {**SPEC["providers"], "festival": {}}}, "providers.festival"),
        ({"voiceSamples": [{"id": "a"}]}, "give a url or mark it stored"),
    ],
)
def test_invalid_specs_name_the_field(change: dict, message: str) -> None:
    with pytest.raises(PersonalityError) as err:
        parse_spec({**SPEC, **change})
    assert message in err.value.reason


def test_resource_and_bare_spec_files() -> None:
    import yaml

    resource = yaml.safe_dump({"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
                               "metadata": {"name": "ava"}, "spec": SPEC})
    assert parse_text(resource, default_name="whatever").name == "ava"
    assert parse_text(yaml.safe_dump(SPEC), default_name="shop-assistant").name == "shop-assistant"
    with pytest.raises(PersonalityError, match="file name 'Bad_Name'"):
        parse_text(yaml.safe_dump(SPEC), default_name="Bad_Name")
    with pytest.raises(PersonalityError, match="kind"):
        parse_text(resource.replace("VoicePersonality", "Voice"), default_name="x")
    with pytest.raises(PersonalityError, match="exactly one document"):
        parse_text(resource + "---\n" + resource, default_name="x")
    with pytest.raises(PersonalityError, match="not valid YAML"):
        parse_text("spec: [unclosed", default_name="x")


@pytest.mark.parametrize("text,reason", [
    ("activeProvider: " + "[" * 30_000, "nests too deeply"),  # would overflow libyaml's C stack
    ("activeProvider: &p piper\nfallbackChain: [*p]\n", "YAML alias"),
])
def test_a_file_libyaml_should_not_compose_is_refused(text: str, reason: str) -> None:
    with pytest.raises(PersonalityError, match=reason):
        parse_text(text, default_name="deep")
