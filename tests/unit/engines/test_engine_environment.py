"""Where a cloning engine's replicas find their interpreter (deployments.local_model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from deployments import local_model
from deployments.local_model import EngineEnvironment

ROOT = Path(__file__).resolve().parents[3]


def test_the_default_is_this_checkouts_own_venv(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The checkout the code runs from, not one shared path another checkout may own (issue 22).
    assert local_model.CHECKOUT == ROOT
    monkeypatch.delenv("CHORUS_PROBE_PYTHON", raising=False)
    monkeypatch.setattr(local_model, "CHECKOUT", tmp_path)
    environment = EngineEnvironment("probe", "CHORUS_PROBE_PYTHON")
    assert environment.python() is None and environment.runtime_env() == {}  # never a missing path
    python = tmp_path / ".venv-probe" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text("")
    assert environment.python() == str(python)
    assert environment.runtime_env() == {"py_executable": str(python)}


@pytest.mark.parametrize("value,expected", [("/opt/chorus/venv-probe/bin/python", "/opt/chorus/venv-probe/bin/python"),
                                            ("default", None), ("", None)])
def test_the_variable_wins(value: str, expected: str | None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".venv-probe/bin").mkdir(parents=True)
    (tmp_path / ".venv-probe/bin/python").write_text("")
    monkeypatch.setattr(local_model, "CHECKOUT", tmp_path)
    monkeypatch.setenv("CHORUS_PROBE_PYTHON", value)
    assert EngineEnvironment("probe", "CHORUS_PROBE_PYTHON").python() == expected
