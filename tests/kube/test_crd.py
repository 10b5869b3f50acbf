"""The VoicePersonality CRD against a real API server: the examples apply, and what the
personality model refuses the API server refuses too, with the CRD's own messages."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from chorus import personalities as model
from chorus.personalities import PersonalityError, parse_document
from tests.kube.control_plane import ROOT, ControlPlane
from voice_operator import crd

NAMESPACE = "crd-checks"
EXAMPLES = sorted((ROOT / "manifests" / "examples").glob("*.yaml"))
PIPER = {
    "apiVersion": "voice.chorus.dev/v1alpha1",
    "kind": "VoicePersonality",
    "metadata": {"name": "probe"},
    "spec": {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}},
}


@pytest.fixture(scope="module")
def ns(kube: ControlPlane) -> str:
    kube.kubectl("create", "namespace", NAMESPACE)
    return NAMESPACE


def server_says(kube: ControlPlane, doc: dict[str, Any]) -> tuple[bool, str]:
    """Server-side dry run: (accepted, what kubectl printed)."""
    out = kube.kubectl("apply", "--dry-run=server", "-n", NAMESPACE, "-f", "-",
                       input=json.dumps(doc), check=False)
    return out.returncode == 0, out.stderr + out.stdout


def model_says(doc: dict[str, Any]) -> tuple[bool, str]:
    try:
        parse_document(copy.deepcopy(doc), default_name="probe")
    except PersonalityError as err:
        return False, err.reason
    return True, ""


def with_spec(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(PIPER)
    doc["spec"].update(changes)
    return doc


def test_committed_crd_files_are_generated_from_the_model() -> None:
    assert crd.main(["--check"]) == 0
    assert crd.OUTPUTS[0].read_text() == crd.OUTPUTS[1].read_text()


def test_crd_is_established_with_its_names(kube: ControlPlane) -> None:
    got = json.loads(kube.kubectl("get", "crd", "voicepersonalities.voice.chorus.dev", "-o", "json").stdout)
    names = got["spec"]["names"]
    assert names["shortNames"] == ["vp"] and names["categories"] == ["chorus"]
    conditions = {c["type"]: c["status"] for c in got["status"]["conditions"]}
    assert conditions["Established"] == "True" and conditions["NamesAccepted"] == "True"
    # No "NonStructuralSchema" condition: the schema generated from the model is structural.
    assert "NonStructuralSchema" not in conditions


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_applies_and_reads_back(kube: ControlPlane, ns: str, example: Path) -> None:
    kube.kubectl("apply", "-n", ns, "-f", str(example))
    doc = yaml.safe_load(example.read_text())
    name = doc["metadata"]["name"]
    stored = json.loads(kube.kubectl("get", "vp", name, "-n", ns, "-o", "json").stdout)
    # The stored spec (with the CRD's defaults filled in) is the model's spec, defaults included.
    assert model.parse_spec(stored["spec"]) == model.parse_spec(doc["spec"])
    table = kube.kubectl("get", "chorus", "-n", ns).stdout  # the category finds it
    assert name in table and "ACTIVE" in table and "SAMPLES" in table
    kube.kubectl("delete", "-n", ns, "-f", str(example))  # no operator here to reconcile it later


INVALID = {
    "unknown engine": (with_spec(activeProvider="espeak"), 'Unsupported value: "espeak"'),
    "active engine not configured": (
        with_spec(activeProvider="xtts_v2"), "activeProvider xtts_v2 is not configured in providers"),
    "fallback to an unconfigured engine": (
        with_spec(fallbackChain=["google_tts", "azure_tts"]),
        "fallbackChain lists azure_tts, which is not configured in providers"),
    "fallback repeats the active engine": (
        with_spec(fallbackChain=["piper"]), "fallbackChain repeats the activeProvider piper"),
    "setting above its bound": (
        with_spec(providers={"piper": {"settings": {"speed": 9}}}), "should be less than or equal to 4"),
    "setting below its bound": (
        with_spec(providers={"piper": {"settings": {"noiseScale": -1}}}), "should be greater than or equal to 0"),
    "primary language not supported": (
        with_spec(languages={"primary": "de", "supported": ["en", "fr"]}),
        "languages.primary de must be one of languages.supported"),
    "malformed language": (with_spec(languages={"primary": "english"}), "should match"),
    "sample with neither url nor stored": (
        with_spec(voiceSamples=[{"id": "a"}]), "voiceSamples[a]: give a url or mark it stored"),
    "duplicate sample ids": (
        with_spec(voiceSamples=[{"id": "a", "stored": True}, {"id": "a", "stored": True}]), "Duplicate value"),
    "unknown setting": (
        with_spec(providers={"piper": {"settings": {"speeed": 1}}}), 'unknown field "spec.providers.piper.settings.speeed"'),
    "too long a chain": (
        with_spec(fallbackChain=["xtts_v2"] * 7), "must have at most 6 items"),
    "name that is no DNS label": (
        {**copy.deepcopy(PIPER), "metadata": {"name": "voice.one"}}, "metadata.name in body should match"),
}


@pytest.mark.parametrize("case", list(INVALID), ids=lambda c: c.replace(" ", "-"))
def test_invalid_personalities_are_refused_by_the_api_server_and_the_model(
    kube: ControlPlane, ns: str, case: str
) -> None:
    doc, message = INVALID[case]
    accepted, said = server_says(kube, doc)
    assert not accepted and message in said, said
    assert not model_says(doc)[0], f"the model accepts what the API server refuses: {case}"
    # Nothing was stored.
    assert "probe" not in kube.kubectl("get", "vp", "-n", ns, "-o", "name").stdout


def _bounded_settings() -> list[tuple[str, str, float, float]]:
    """(engine, camelCase field, a value on the bound, a value just past it) for every
    bounded numeric setting of every engine."""
    out = []
    for engine, field in model.Providers.model_fields.items():
        provider: type[BaseModel] = next(a for a in field.annotation.__args__ if a is not type(None))
        settings_model = provider.model_fields["settings"].annotation
        for fname, finfo in settings_model.model_fields.items():
            camel = settings_model.model_config["alias_generator"](fname)
            step = 1 if int in getattr(finfo.annotation, "__args__", (finfo.annotation,)) else 0.001
            for meta in finfo.metadata:
                for kind, inside, outside in (("ge", 0, -step), ("gt", step, 0), ("le", 0, step), ("lt", -step, 0)):
                    bound = getattr(meta, kind, None)
                    if bound is not None:
                        out.append((engine, camel, bound + inside, bound + outside))
    return out


def test_every_setting_bound_is_the_same_on_the_api_server_and_in_the_model(kube: ControlPlane, ns: str) -> None:
    cases = _bounded_settings()
    assert len(cases) >= 30  # every engine's settings are bounded on both sides
    disagreements = []
    for engine, name, inside, outside in cases:
        for value, valid in ((inside, True), (outside, False)):
            doc = with_spec(activeProvider=engine, providers={engine: {"settings": {name: value}}})
            server, said = server_says(kube, doc)
            local, reason = model_says(doc)
            if not (server == local == valid):
                disagreements.append(f"{engine}.{name}={value}: server {server}, model {local}: {said or reason}")
    assert not disagreements, "\n".join(disagreements)
