"""XTTS v2 on tiny random checkpoints, loaded through the production path.

The test process runs in Chorus's main environment, which has no coqui-tts (that is the
point: the engine's dependencies live in their own venv, `scripts/engine-env.sh xtts`).
So the model is only ever touched where production touches it: in an XTTSEngine replica
that Ray Serve starts under the venv's interpreter (runtime_env `py_executable`). One
Serve application is deployed for the module and every model test talks to it through
its handle. What needs no model (a missing directory, a replica without coqui) runs in
process.

Reference samples are Piper speech (noise pinned) turned into canonical 24 kHz WAV.
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
from deployments.settings import XTTSSettings
from deployments.xtts import XTTS, XTTSConfig, XTTSEngine, actor_options
from tests.support import tiny_xtts

ROOT = Path(__file__).resolve().parents[2]
TEXT = "Hello there, how can I help you today?"
GREEDY = XTTSSettings(top_k=1)  # greedy decoding: the same input gives the same audio
SAMPLE_SENTENCES = ["Thank you for your help.", "The train leaves at noon.", "Please open the door."]


# --- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def config(xtts_models: dict[str, Path]) -> XTTSConfig:
    return XTTSConfig(
        model_dir=xtts_models["base"],
        variants={name: xtts_models[name] for name in ("british", "american", "welsh", "scottish")},
        max_characters=400,
        stream_chunk_size=16,
        conditioning_cache_size=8,
    )


@pytest.fixture(scope="module")
def deployment(xtts_python: str) -> Any:
    """XTTSEngine with its replica under the XTTS venv."""
    if XTTSEngine.ray_actor_options.get("runtime_env", {}).get("py_executable") == xtts_python:
        return XTTSEngine
    # The venv was created after deployments.xtts was imported: same options, recomputed.
    return XTTSEngine.options(ray_actor_options=actor_options(num_cpus=1.0))


def _request(samples: list[VoiceSampleRef] | None = None, **fields: Any) -> SynthesisRequest:
    fields.setdefault("text", TEXT)
    fields.setdefault("language", "en")
    return SynthesisRequest(samples=samples or [], **fields)


async def _chunks(gen: AsyncIterator[Any]) -> list[Any]:
    return [chunk async for chunk in gen]


# --- no model needed: in process ------------------------------------------------------------


def test_module_imports_without_torch_or_coqui() -> None:
    code = ("import sys, deployments.xtts as x; x.XTTSConfig(); "
            "assert not {'torch', 'TTS'} & set(sys.modules), sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


async def test_missing_model_directory_is_unhealthy_not_a_crash(tmp_path: Path) -> None:
    xtts = XTTS({"model_dir": tmp_path / "nothing-here", "variants": {"british": tmp_path / "nor-here"}})
    health = await xtts.health()
    assert not health.healthy
    assert "base: model directory" in health.reason and "british: model directory" in health.reason
    assert "does not exist" in health.reason
    assert (await xtts.capabilities()).variants == []
    with pytest.raises(EngineUnavailableError, match="'british'.*does not exist"):
        await xtts.synthesize(_request(variant="british"))
    with pytest.raises(EngineUnavailableError, match="'base'"):
        await _chunks(xtts.stream(_request()))


async def test_replica_without_coqui_reports_how_to_fix_it(xtts_models: dict[str, Path]) -> None:
    """The engine in an environment without coqui-tts (this one) stays up, unhealthy."""
    assert importlib.util.find_spec("TTS") is None
    health = await XTTS({"model_dir": xtts_models["base"]}).health()
    assert not health.healthy
    assert "coqui-tts is not importable" in health.reason and "engine-env.sh xtts" in health.reason


# --- through Ray Serve, in the XTTS venv --------------------------------------------------


@pytest.mark.ray
async def test_replica_runs_in_the_xtts_venv(engine: Any, xtts_python: str) -> None:
    env = await engine.environment.remote()
    assert env["python"] == xtts_python and importlib.util.find_spec("TTS") is None
    assert env["versions"]["coqui-tts"] == "0.28.0"
    assert env["device"] == "cpu"
    assert set(env["variants"]) == {"base", "british", "american"}


@pytest.mark.ray
async def test_capabilities_and_health_come_from_what_loaded(engine: Any) -> None:
    caps = await engine.capabilities.remote()
    assert caps.variants == ["base", "british", "american"]
    assert caps.sample_rate == 24_000 and caps.cloning and caps.streaming and caps.max_characters == 400
    # languages from the checkpoints' config.json: base and british speak XTTS's 17
    assert set(tiny_xtts.LANGUAGES) == set(caps.languages) and "zh-cn" in caps.languages
    assert [v.id for v in caps.voices] == [tiny_xtts.SPEAKER]
    health = await engine.health.remote()
    assert health.healthy  # the default variant is there
    assert "welsh: cannot load" in health.reason and "scottish: model directory" in health.reason


@pytest.mark.ray
async def test_synthesis_is_24khz_and_as_long_as_the_model_allows(engine: Any, samples: list) -> None:
    audio = await engine.synthesize.remote(_request(samples[:2], settings=GREEDY))
    assert isinstance(audio, AudioResult) and audio.sample_rate == 24_000
    assert audio.variant == "base" and audio.voice == "samples"
    pcm = np.frombuffer(audio.pcm, dtype=np.int16)
    assert pcm.any()
    # one piece of text: at most gpt_max_audio_tokens codes, 256 samples each at 22.05 kHz
    assert 0.05 < audio.duration_s <= tiny_xtts.MAX_AUDIO_S + 0.05


@pytest.mark.ray
async def test_the_requested_variant_speaks(engine: Any, samples: list) -> None:
    first = await engine.synthesize.remote(_request(samples[:2], settings=GREEDY))
    again = await engine.synthesize.remote(_request(samples[:2], settings=GREEDY))
    british = await engine.synthesize.remote(_request(samples[:2], variant="british", settings=GREEDY))
    american = await engine.synthesize.remote(_request(samples[:2], variant="american", settings=GREEDY))
    assert (first.variant, british.variant, american.variant) == ("base", "british", "american")
    assert first.pcm == again.pcm  # greedy: deterministic for the same weights
    assert len({first.pcm, british.pcm, american.pcm}) == 3  # different weights, different audio


@pytest.mark.ray
async def test_settings_reach_inference(engine: Any, samples: list) -> None:
    normal = await engine.synthesize.remote(_request(samples[:2], settings=GREEDY))
    fast = await engine.synthesize.remote(_request(samples[:2], settings=XTTSSettings(top_k=1, speed=2.0)))
    assert 0.4 < fast.duration_s / normal.duration_s < 0.6
    sampled = await engine.synthesize.remote(
        _request(samples[:2], settings=XTTSSettings(temperature=1.5, top_k=500, top_p=1.0, repetition_penalty=1.0,
                                                    length_penalty=1.0)))
    assert sampled.pcm != normal.pcm


@pytest.mark.ray
async def test_stream_yields_several_chunks(engine: Any, samples: list) -> None:
    gen = engine.options(stream=True).stream.remote(_request(samples[:2], language="en-US", settings=GREEDY))
    chunks = await _chunks(gen)
    assert len(chunks) >= 2  # 48 codes in chunks of 16: the first leaves before the end
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert {c.sample_rate for c in chunks} == {24_000} and {c.variant for c in chunks} == {"base"}
    assert all(c.pcm for c in chunks)
    assert 0.05 < sum(c.duration_s for c in chunks) <= tiny_xtts.MAX_AUDIO_S + 0.05


@pytest.mark.ray
async def test_conditioning_is_cached_per_variant_and_sample_set(engine: Any, samples: list) -> None:
    a, b, c = samples
    before = await engine.stats.remote()

    async def conditioning(refs: list, variant: str | None = None) -> str:
        return (await engine.synthesize.remote(_request(refs, variant=variant, text="Hi."))).conditioning

    first = await conditioning([a, c])
    assert await conditioning([c, a]) == "cached"  # same set, any order
    assert await conditioning([a, b, c]) == "computed"  # a sample added
    assert await conditioning([a]) == "computed"  # samples removed
    assert await conditioning([a, c], variant="british") == "computed"  # per variant
    assert await conditioning([a, c]) == "cached"
    after = await engine.stats.remote()
    misses = 3 + (first == "computed")
    assert after["misses"] - before["misses"] == misses
    assert after["hits"] - before["hits"] == 6 - misses
    assert after["entries"] >= 4


@pytest.mark.ray
async def test_builtin_speaker_only_without_samples(engine: Any) -> None:
    audio = await engine.synthesize.remote(_request(voice=tiny_xtts.SPEAKER))
    assert (audio.voice, audio.conditioning) == (tiny_xtts.SPEAKER, "builtin")
    with pytest.raises(EngineUnavailableError, match="no reference samples to clone from"):
        await engine.synthesize.remote(_request())
    with pytest.raises(EngineUnavailableError, match="no built-in speaker 'Ana Florence' in XTTS variant 'british'"):
        await engine.synthesize.remote(_request(voice=tiny_xtts.SPEAKER, variant="british"))


@pytest.mark.ray
async def test_missing_variants_and_languages_are_unavailable(engine: Any, samples: list) -> None:
    with pytest.raises(EngineUnavailableError, match="'scottish' is not loaded.*does not exist"):
        await engine.synthesize.remote(_request(samples, variant="scottish"))
    with pytest.raises(EngineUnavailableError, match="'welsh' is not loaded.*cannot load"):
        await engine.synthesize.remote(_request(samples, variant="welsh"))
    with pytest.raises(EngineUnavailableError, match="'klingon' is not loaded.*not configured"):
        await _chunks(engine.options(stream=True).stream.remote(_request(samples, variant="klingon")))
    with pytest.raises(EngineUnavailableError, match="'american' does not speak 'fr'"):
        await engine.synthesize.remote(_request(samples, variant="american", language="fr"))


@pytest.mark.ray
async def test_long_text_is_split_to_fit_the_model(engine: Any, samples: list) -> None:
    # ~300 characters: over this model's 120 text tokens, so at least three pieces
    text = " ".join(["The quick brown fox jumps over the lazy dog."] * 7)
    audio = await engine.synthesize.remote(_request(samples[:2], text=text, settings=GREEDY))
    assert audio.pieces >= 3
    assert audio.duration_s > tiny_xtts.MAX_AUDIO_S  # more than one generation can say
    assert audio.duration_s <= audio.pieces * (tiny_xtts.MAX_AUDIO_S + 0.05)
    with pytest.raises(TextTooLongError) as err:
        await engine.synthesize.remote(_request(samples[:2], text="word " * 100))
    assert err.value.limit == 400 and isinstance(err.value, BadInputError)
