"""The committed lock (uv.lock) is the only source of every Python environment: it is in
sync with pyproject.toml, a requirement that would need a new resolution is refused before
anything is installed, and the environments on this machine hold exactly its versions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
UV = ROOT / "scripts/uv.sh"
LOCK = tomllib.loads((ROOT / "uv.lock").read_text())
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
ENGINE_EXTRAS = ("xtts", "styletts2")


def locked_versions() -> dict[str, set[str]]:
    versions: dict[str, set[str]] = {}
    for package in LOCK["package"]:
        if package.get("source", {}).get("editable"):
            continue  # Chorus itself
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    return versions


def run(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_lock_is_in_sync_with_pyproject() -> None:
    # --offline: the check must not depend on what the registry serves today.
    result = run(UV, "lock", "--check", "--offline", "--project", ROOT, "-p", sys.executable)
    assert result.returncode == 0, result.stderr


def test_every_locked_artifact_carries_a_hash() -> None:
    for package in LOCK["package"]:
        if "source" in package and set(package["source"]) & {"editable", "virtual"}:
            continue
        artifacts = package.get("wheels", []) + ([package["sdist"]] if "sdist" in package else [])
        assert artifacts, package["name"]
        for artifact in artifacts:
            assert artifact.get("hash", "").startswith("sha256:"), (package["name"], artifact)


def test_engine_environments_share_ray_and_python_with_the_driver() -> None:
    # Serve replicas started under an engine venv's interpreter must speak the driver's Ray.
    versions = locked_versions()
    assert versions["ray"] == {metadata.version("ray")}
    assert LOCK["requires-python"] == PROJECT["project"]["requires-python"]
    assert PROJECT["tool"]["uv"]["environments"] == ["sys_platform == 'linux' and python_version == '3.11'"]


def test_known_breaking_majors_are_bounded_in_the_extras() -> None:
    # coqui-tts 0.28 fails with transformers 5: the extra says so, so no refresh can pick it.
    xtts = [Requirement(r) for r in PROJECT["project"]["optional-dependencies"]["xtts"]]
    (transformers,) = [r for r in xtts if r.name == "transformers"]
    assert not transformers.specifier.contains("5.0.0")
    assert all(v.split(".")[0] == "4" for v in locked_versions()["transformers"])


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """What the install scripts read: pyproject.toml, uv.lock and the scripts."""
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "scripts", tmp_path / "scripts")
    return tmp_path


def test_an_upstream_major_is_refused_by_the_lock_check(project_copy: Path) -> None:
    """Simulated upstream release: a requirement that would pull transformers 5 into the xtts
    environment is refused before anything is installed, not found by a failing test."""
    pyproject = project_copy / "pyproject.toml"
    text = pyproject.read_text()
    assert '"transformers>=4.57,<5"]' in text
    pyproject.write_text(text.replace('"transformers>=4.57,<5"]', '"transformers>=5"]'))
    envs = project_copy / "envs"
    result = run(project_copy / "scripts/engine-env.sh", "xtts", env={"CHORUS_ENGINE_ENVS": str(envs)})
    assert result.returncode == 3
    assert "uv.lock is out of date with pyproject.toml" in result.stderr
    assert "scripts/update-lock.sh" in result.stderr
    assert not (envs / "venv-xtts").exists()


def installed_versions(python: str | Path) -> dict[str, str]:
    script = ("import json, importlib.metadata as m; "
              "print(json.dumps({d.metadata['Name']: d.version for d in m.distributions()}))")
    out = run(python, "-c", script)
    assert out.returncode == 0, out.stderr
    return {canonicalize_name(k): v for k, v in json.loads(out.stdout).items()}


def engine_pythons() -> list[tuple[str, Path]]:
    if base := os.environ.get("CHORUS_ENGINE_ENVS"):
        return [(extra, Path(base) / f"venv-{extra}/bin/python") for extra in ENGINE_EXTRAS]
    return [(extra, ROOT / f".venv-{extra}/bin/python") for extra in ENGINE_EXTRAS]


@pytest.mark.parametrize("name,python", [("main", Path(sys.executable)), *engine_pythons()],
                         ids=["main", *ENGINE_EXTRAS])
def test_installed_environments_hold_exactly_the_locked_versions(name: str, python: Path) -> None:
    # scripts/test.sh builds every environment from the lock before the suite runs.
    assert python.exists(), f"{name}: {python} missing; scripts/test.sh creates it"
    locked = locked_versions()
    installed = installed_versions(python)
    installed.pop("chorus")
    assert installed, name
    unlocked = sorted(set(installed) - set(locked))
    assert not unlocked, f"{name}: installed but not in uv.lock: {unlocked}"
    off = {n: (v, sorted(locked[n])) for n, v in installed.items() if v not in locked[n]}
    assert not off, f"{name}: versions differ from uv.lock: {off}"
