"""The wheel holds every package of the tree and its data: a subpackage found in the folders
but missing from the wheel would pass every test here (they import the folders) and fail
only in an image or a cluster."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FOLDERS = {"chorus": "serve", "deployments": "deployments", "voice_operator": "operator/voice_operator"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """A wheel built from a copy of what a build context holds (the Containerfiles' COPYs),
    with this environment's setuptools, offline."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for folder in ("serve", "deployments", "operator"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path_factory.mktemp("dist")
    build = f"from setuptools import build_meta; print(build_meta.build_wheel({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", build], cwd=src, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def packages_in_tree() -> set[str]:
    found = set()
    for name, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    return found


def test_the_wheel_holds_every_package_of_the_tree(wheel: zipfile.ZipFile) -> None:
    in_wheel = {str(Path(n).parent).replace("/", ".") for n in wheel.namelist() if n.endswith("/__init__.py")}
    tree = packages_in_tree()
    # The wings at least: a discovery that found only the top-level packages would fail here.
    assert {"chorus.ingress.middleware", "chorus.ingress.routes", "chorus.speech.cache", "chorus.telemetry.stats",
            "chorus.quotas", "chorus.common"} <= tree
    assert in_wheel == tree


def test_the_wheel_holds_every_module_and_the_package_data(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    for name, folder in FOLDERS.items():
        for module in (ROOT / folder).rglob("*.py"):
            assert f"{name}/{module.relative_to(ROOT / folder)}" in names, module
    for data in ("configs/*.yaml", "dashboard/*"):
        for path in (ROOT / "serve").glob(data):
            assert f"chorus/{path.relative_to(ROOT / 'serve')}" in names, path
    assert any(n.startswith("chorus/dashboard/") and n.endswith(".js") for n in names)


def test_the_wheel_names_the_console_script(wheel: zipfile.ZipFile) -> None:
    (entry_points,) = [n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt")]
    assert "chorus = chorus.cli:main" in wheel.read(entry_points).decode()
