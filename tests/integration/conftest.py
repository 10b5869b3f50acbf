"""Fixtures shared by the cloning-engine tests: engine environments and tiny models."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from deployments.xtts import engine_python
from tests import tiny_xtts

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def xtts_python() -> str:
    """The XTTS venv's interpreter, created (idempotently) if this machine lacks it."""
    python = engine_python()
    if python is None or not Path(python).exists():
        out = subprocess.run([str(ROOT / "scripts/engine-env.sh"), "xtts"], check=True, capture_output=True,
                             text=True, timeout=3600)
        python = out.stdout.strip().splitlines()[-1]
    return python


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
