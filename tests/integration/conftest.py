"""Fixtures shared by the cloning-engine tests: engine environments and tiny models."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deployments import styletts2, xtts
from deployments.base import EngineEnvironment
from tests import tiny_styletts2, tiny_xtts

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
