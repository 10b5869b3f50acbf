"""`chorus --version` prints the installed package's version, the one images are tagged with."""

from __future__ import annotations

import tomllib
from pathlib import Path

from typer.testing import CliRunner

from chorus import cli as chorus_cli

ROOT = Path(__file__).resolve().parents[3]


def test_version_is_pyprojects() -> None:
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = CliRunner().invoke(chorus_cli.cli, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.output == f"chorus {expected}\n"


def test_commands_still_run_after_the_root_options() -> None:
    result = CliRunner().invoke(chorus_cli.cli, ["keys", "--help"])
    assert result.exit_code == 0 and "new" in result.output
