"""StyleTTS2 on a tiny random checkpoint, loaded through the production path.

The test process runs in Chorus's main environment, which has no styletts2 (that is the
point: its pins conflict with Chorus's, so it lives in its own venv, `scripts/engine-env.sh
styletts2`). So the model is only touched where production touches it: in a
StyleTTS2Engine replica that Ray Serve starts under that venv's interpreter (runtime_env
`py_executable`). One Serve application is deployed for the module and every model test
talks to it through its handle; what needs no model runs in process.

The replica seeds the diffusion noise (`seed`), so the same text, samples and settings give
the same audio: that is how the tests see settings reach inference and long text said
sentence by sentence. Reference samples are Piper speech (noise pinned) turned into
canonical 24 kHz WAV, as the sample store keeps them.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from deployments.base import (
    AudioResult,
    BadInputError,
    EngineUnavailableError,
    SynthesisRequest,
    TextTooLongError,
    VoiceSampleRef,
)
from deployments.settings import StyleTTS2Settings
from deployments.styletts2 import (
    StyleTTS2,
    StyleTTS2Config,
    StyleTTS2Engine,
    actor_options,
)
from tests.support import tiny_styletts2

ROOT = Path(__file__).resolve().parents[2]
FAST = StyleTTS2Settings(diffusion_steps=3)  # fewer sampler steps: this machine has 2 shared cores
TEXT = "How can I help you today?"
SPOKEN = ["Hello there.", "The shop opens at nine.", "See you soon!"]
SAMPLE_SENTENCES = [  # 3-4 s each: StyleTTS2's usable sample window starts at 3 s
    "Thank you for your help today, it was very kind of you to come.",
    "The train to the city leaves at noon from the second platform.",
    "Please open the door and let the morning light into the room.",
    "Hi.",  # too short to take a style from
]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(styletts2_model: Path) -> StyleTTS2Config:
    return StyleTTS2Config(model_dir=styletts2_model, seed=0, max_characters=400, conditioning_cache_size=8)


@pytest.fixture(scope="module")
def deployment(styletts2_python: str) -> Any:
    """StyleTTS2Engine with its replica under the StyleTTS2 venv."""
    # Recomputed options: the venv may have been created after the module was imported,
    # and half a CPU leaves room for the rest of the session on 2 cores.
    deployment = StyleTTS2Engine.options(ray_actor_options=actor_options(num_cpus=0.5))
    assert deployment.ray_actor_options["runtime_env"]["py_executable"] == styletts2_python
    return deployment


@pytest.fixture(scope="module")
async def spoken(engine: Any, samples: list[VoiceSampleRef]) -> dict[str, Any]:
    """Each of SPOKEN said alone, and all of them in one request."""
    parts = [await engine.synthesize.remote(_request(samples[:2], text=s, settings=FAST)) for s in SPOKEN]
    whole = await engine.synthesize.remote(_request(samples[:2], text=" ".join(SPOKEN), settings=FAST))
    return {"parts": parts, "whole": whole}


def _request(samples: list[VoiceSampleRef] | None = None, **fields: Any) -> SynthesisRequest:
    fields.setdefault("text", TEXT)
    fields.setdefault("language", "en")
    return SynthesisRequest(samples=samples or [], **fields)


async def _chunks(gen: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in gen]


# --- no model needed: in process ------------------------------------------------------------


def test_module_imports_without_torch_or_styletts2() -> None:
    code = ("import sys, deployments.styletts2 as m; m.StyleTTS2Config(model_dir='~/x'); "
            "assert m.StyleTTS2Engine.name == 'styletts2'; "
            "assert not {'torch', 'styletts2', 'nltk', 'librosa'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


async def test_missing_model_directory_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    engine = StyleTTS2({"model_dir": tmp_path / "nothing-here"})
    health = await engine.health()
    assert not health.healthy and "does not exist" in health.reason and "nothing-here" in health.reason
    assert (await engine.capabilities()).languages == []
    with pytest.raises(EngineUnavailableError, match="model not loaded: model directory .*does not exist"):
        await engine.synthesize(_request())
    with pytest.raises(EngineUnavailableError, match="does not exist"):
        await _chunks(engine.stream(_request()))
    unset = await StyleTTS2({}).health()
    assert not unset.healthy and "no model configured" in unset.reason


async def test_incomplete_model_directories_say_what_is_missing(styletts2_model: Path, tmp_path: Path) -> None:
    def partial_copy(name: str, skip: str) -> Path:
        target = tmp_path / name
        for path in styletts2_model.rglob("*"):
            rel = path.relative_to(styletts2_model)
            if path.is_file() and not str(rel).startswith(skip):
                (target / rel).parent.mkdir(parents=True, exist_ok=True)
                (target / rel).symlink_to(path)
        return target

    cases = {
        "no-checkpoint": (tiny_styletts2.CHECKPOINT, "no *.pth checkpoint; set checkpoint"),
        "no-plbert": ("Utils/PLBERT/step_", "PLBERT checkpoint"),
        "no-jdc": ("Utils/JDC", "(F0_path)"),
        "no-config": ("config.yml", "cannot read"),
    }
    for name, (skip, reason) in cases.items():
        health = await StyleTTS2({"model_dir": partial_copy(name, skip)}).health()
        assert not health.healthy and reason in health.reason, (name, health.reason)


async def test_replica_without_styletts2_reports_how_to_fix_it(styletts2_model: Path) -> None:
    """The engine in an environment without styletts2 (this one) stays up, unhealthy."""
    assert importlib.util.find_spec("styletts2") is None
    engine = StyleTTS2({"model_dir": styletts2_model})
    health = await engine.health()
    assert not health.healthy
    assert "styletts2 is not importable" in health.reason and "engine-env.sh styletts2" in health.reason
    with pytest.raises(EngineUnavailableError, match="not importable"):
        await engine.synthesize(_request())


# --- through Ray Serve, in the StyleTTS2 venv ----------------------------------------------


@pytest.mark.ray
async def test_replica_runs_in_the_styletts2_venv(engine: Any, styletts2_python: str, styletts2_model: Path) -> None:
    env = await engine.environment.remote()
    assert env["python"] == styletts2_python and importlib.util.find_spec("styletts2") is None
    assert env["versions"]["styletts2"] == "0.1.6"
    assert env["device"] == "cpu" and env["load_error"] is None
    assert env["checkpoint"] == str(styletts2_model / tiny_styletts2.CHECKPOINT)


@pytest.mark.ray
async def test_capabilities_report_the_models_languages(engine: Any) -> None:
    caps = await engine.capabilities.remote()
    env = await engine.environment.remote()
    # config.yml declares none (as upstream's): the package's phonemizer decides
    assert env["phonemizer"] == "en-us"
    assert caps.languages == ["en-US", "en"]
    assert caps.speaks("en") and caps.speaks("en-US") and not caps.speaks("de") and not caps.speaks("es")
    assert caps.sample_rate == 24_000 and caps.cloning and caps.streaming and caps.max_characters == 400
    assert (await engine.health.remote()).healthy


@pytest.mark.ray
async def test_synthesis_is_24khz_speech_length_audio(engine: Any, samples: list) -> None:
    audio = await engine.synthesize.remote(_request(samples[:2], settings=FAST))
    assert isinstance(audio, AudioResult) and audio.sample_rate == 24_000
    pcm = np.frombuffer(audio.pcm, dtype=np.int16)
    assert pcm.any() and np.abs(pcm).max() > 1000
    # each phoneme token lasts 1..max_dur (4) frames of 300 samples: 12.5..50 ms
    assert 0.3 < audio.duration_s < 3.0


@pytest.mark.ray
async def test_long_text_is_said_sentence_by_sentence(engine: Any, spoken: dict[str, Any], samples: list) -> None:
    parts, whole = spoken["parts"], spoken["whole"]
    assert whole.pcm == b"".join(p.pcm for p in parts)  # seeded: each sentence as if alone
    assert whole.duration_s > 1.5 * max(p.duration_s for p in parts)
    with pytest.raises(TextTooLongError) as err:
        await engine.synthesize.remote(_request(samples[:2], text="Hello there. " * 40))
    assert err.value.limit == 400 and isinstance(err.value, BadInputError)
    with pytest.raises(BadInputError, match="nothing speakable"):
        await engine.synthesize.remote(_request(samples[:2], text="... !"))


@pytest.mark.ray
async def test_stream_yields_one_chunk_per_sentence(engine: Any, spoken: dict[str, Any], samples: list) -> None:
    gen = engine.options(stream=True).stream.remote(_request(samples[:2], text=" ".join(SPOKEN), settings=FAST))
    chunks = await _chunks(gen)
    assert [c.index for c in chunks] == [0, 1, 2]
    assert {c.sample_rate for c in chunks} == {24_000}
    assert [c.pcm for c in chunks] == [p.pcm for p in spoken["parts"]]


@pytest.mark.ray
async def test_style_is_cached_per_sample_set(engine: Any, samples: list) -> None:
    a, b, c, _ = samples
    before = await engine.stats.remote()

    async def say(refs: list) -> AudioResult:
        return await engine.synthesize.remote(_request(refs, text="Hi.", settings=FAST))

    first = await say([b, a])  # the set other tests used: computed once, whoever came first
    assert (await say([a, b])).conditioning == "cached"  # same set, any order
    assert (await say([a, b, c])).conditioning == "computed"  # a sample added
    alone = await say([a])
    assert alone.conditioning == "computed"  # samples removed
    assert (await say([a, a])).conditioning == "cached"  # a set: duplicates count once
    assert alone.pcm != first.pcm  # two samples' styles are averaged: another voice
    after = await engine.stats.remote()
    misses = 2 + (first.conditioning == "computed")
    assert after["misses"] - before["misses"] == misses
    assert after["hits"] - before["hits"] == 5 - misses
    assert after["entries"] >= 3 and after["capacity"] == 8
    with pytest.raises(EngineUnavailableError, match="no reference samples to clone from"):
        await engine.synthesize.remote(_request())
    with pytest.raises(EngineUnavailableError, match="no reference samples to clone from"):
        await _chunks(engine.options(stream=True).stream.remote(_request()))
    with pytest.raises(EngineUnavailableError, match=r"'s3' has 0\.\d+ s of sound; StyleTTS2 needs at least 1 s"):
        await engine.synthesize.remote(_request([a, samples[3]]))
    assert (await engine.stats.remote())["misses"] == after["misses"] + 1  # tried, not kept


@pytest.mark.ray
async def test_settings_reach_inference(engine: Any, samples: list) -> None:
    async def say(**changed: Any) -> bytes:
        settings = FAST.model_copy(update=changed)
        return (await engine.synthesize.remote(_request(samples[:2], text="Hello there.", settings=settings))).pcm

    base = await say()
    assert await say() == base  # seeded: the same settings, the same audio
    variants = {
        "diffusionSteps": await say(diffusion_steps=5),
        "alpha": await say(alpha=0.9),
        "beta": await say(beta=0.1),
        "embeddingScale": await say(embedding_scale=3.0),
    }
    for name, pcm in variants.items():
        assert pcm != base, f"{name} did not change the audio"


@pytest.mark.ray
async def test_other_languages_are_unavailable(engine: Any, samples: list) -> None:
    with pytest.raises(EngineUnavailableError, match="does not speak 'de'"):
        await engine.synthesize.remote(_request(samples[:2], language="de"))
    with pytest.raises(EngineUnavailableError, match="does not speak 'es-ES'"):
        await _chunks(engine.options(stream=True).stream.remote(_request(samples[:2], language="es-ES")))
