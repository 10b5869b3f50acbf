"""The import rules of docs/architecture.md hold (import-linter, `[tool.importlinter]` in
pyproject.toml), and each contract really catches the violation it is there for."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Import name -> folder (pyproject's package-dir).
PACKAGES = {"chorus": "serve", "deployments": "deployments", "voice_operator": "operator/voice_operator"}


def lint_imports(tree: Path, *, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_import_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """The three packages under their import names, first on PYTHONPATH, so the editable
    install of the real tree is not what gets linted."""
    for name, folder in PACKAGES.items():
        shutil.copytree(ROOT / folder, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_copy_the_violations_are_made_in_is_clean(tree: Path) -> None:
    result = lint_imports(tree, pythonpath=tree)
    assert result.returncode == 0, result.stdout


DOMAIN = "Samples, stores, statistics, the audio cache and replica counts never reach"


def add_import(tree: Path, module: str, imported: str) -> None:
    path = tree.joinpath(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = tree.joinpath(*module.split("."), "__init__.py")
    path.write_text(path.read_text() + f"\nimport {imported}  # deliberate violation\n")


@pytest.mark.parametrize(
    "module,imported,contract",
    [
        ("deployments.piper", "chorus.router", "Engines never import the ingress or the operator"),
        ("deployments.base", "deployments.settings", "The engine contract (deployments.base) imports nothing of ours"),
        ("voice_operator.handlers", "ray", "The operator never reaches Ray nor an engine's deployment"),
        ("voice_operator.crd", "deployments.piper", "The operator never reaches Ray nor an engine's deployment"),
        ("chorus.samples", "chorus.router", DOMAIN),
        ("chorus.stores", "ray.serve", DOMAIN),
        ("chorus.stats.service", "chorus.state", DOMAIN),
        ("chorus.cache.store", "chorus.router", DOMAIN),
        ("chorus.replicas", "ray.serve", DOMAIN),
        ("chorus.auth.guard", "chorus.errors", "Access control sits below the HTTP layer"),
        ("chorus.personalities", "chorus.stores", "No import cycles"),
        ("chorus.quotas", "fastapi", "Only the HTTP layer speaks HTTP"),
        ("chorus.auth.keys", "starlette.requests", "Only the HTTP layer speaks HTTP"),
        ("chorus.routes.clone", "chorus.routes.speech", "Routes never import each other"),
    ],
    ids=["engine-imports-ingress", "contract-imports-ours", "operator-imports-ray",
         "operator-imports-engine", "samples-import-router", "stores-import-ray", "stats-import-state", "cache-imports-router", "replicas-import-ray", "auth-imports-errors", "cycle",
         "quotas-import-fastapi", "keys-import-starlette", "route-imports-route"],
)
def test_a_deliberate_violation_breaks_its_contract(tree: Path, module: str, imported: str, contract: str) -> None:
    add_import(tree, module, imported)
    result = lint_imports(tree, pythonpath=tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout
