"""`python -m voice_operator.crd` prints the CRD where there is no repository to write into
(the operator image), and on request; the printed text is the committed file's."""

from __future__ import annotations

from pathlib import Path

import pytest

from voice_operator import crd


def test_stdout_prints_the_committed_crd(capsys: pytest.CaptureFixture[str]) -> None:
    assert crd.main(["--stdout"]) == 0
    assert capsys.readouterr().out == crd.OUTPUTS[0].read_text()


def test_an_installed_package_prints_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    committed = crd.OUTPUTS[0].read_text()
    monkeypatch.setattr(crd, "ROOT", tmp_path)
    monkeypatch.setattr(crd, "OUTPUTS", [tmp_path / "manifests" / "crds" / crd.FILENAME])
    assert crd.main([]) == 0
    assert capsys.readouterr().out == committed
    assert not any(tmp_path.iterdir())
