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


ENGINES = "Engines never import the ingress or the operator"
CONTRACT = "The engine contract (deployments.base) imports nothing of ours"
OPERATOR = "The operator never reaches Ray, the ingress, the speech wing nor an engine's"
WINGS = "The wings of chorus: each uses only the ones below it"
HTTP = "Only the ingress speaks HTTP"
RAY = "Ray stays at the edges"
ROUTES = "Routes never import each other"
ACYCLIC = "No import cycles"
EAR = "Recognition runs in the recognizer deployment only"


def add_import(tree: Path, module: str, imported: str) -> None:
    path = tree.joinpath(*module.split(".")).with_suffix(".py")
    if not path.exists():
        path = tree.joinpath(*module.split("."), "__init__.py")
    path.write_text(path.read_text() + f"\nimport {imported}  # deliberate violation\n")


@pytest.mark.parametrize(
    "module,imported,contract",
    [
        ("deployments.piper", "chorus.speech.router", ENGINES),
        ("deployments.base", "deployments.settings", CONTRACT),
        ("voice_operator.handlers", "ray", OPERATOR),
        ("voice_operator.crd", "deployments.piper", OPERATOR),
        ("voice_operator.handlers", "chorus.ingress.api", OPERATOR),
        ("voice_operator.sample_volumes", "chorus.speech.cache.key", OPERATOR),
        ("chorus.samples.service", "chorus.ingress.replica", WINGS),
        ("chorus.common.constants", "chorus.personalities", WINGS),
        ("chorus.telemetry.stats.service", "chorus.quotas.callers", WINGS),
        ("chorus.speech.router", "fastapi", HTTP),
        ("chorus.quotas.callers", "starlette.requests", HTTP),
        ("chorus.auth.keys", "starlette.requests", HTTP),
        ("chorus.speech.router", "ray", RAY),
        ("chorus.common.constants", "ray.serve", RAY),
        ("chorus.ingress.routes.clone", "chorus.ingress.routes.speech", ROUTES),
        ("chorus.speech.cache.key", "chorus.speech.router", ACYCLIC),
        ("chorus.speech.verification", "chorus.recognition.ear", EAR),
        ("chorus.speech.timestamps", "pocketsphinx", EAR),
        ("chorus.recognition.models", "ray.serve", RAY),
    ],
    ids=["engine-imports-speech", "contract-imports-ours", "operator-imports-ray", "operator-imports-engine",
         "operator-imports-ingress", "operator-imports-speech", "samples-import-ingress", "common-imports-up",
         "telemetry-imports-quotas", "speech-imports-fastapi", "quotas-import-starlette", "keys-import-starlette",
         "speech-imports-ray", "common-imports-ray", "route-imports-route", "cache-imports-router",
         "router-runs-the-ear", "speech-runs-pocketsphinx", "recognizer-contract-imports-ray"],
)
def test_a_deliberate_violation_breaks_its_contract(tree: Path, module: str, imported: str, contract: str) -> None:
    add_import(tree, module, imported)
    result = lint_imports(tree, pythonpath=tree)
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts")[-1]
    assert contract in broken, result.stdout


def test_the_top_of_chorus_is_its_public_face_and_wings() -> None:
    """Modules loose at the top of `serve/` are the public face (app, cli), deploy and the
    personality schema; every other concern lives in a wing."""
    loose = sorted(p.name for p in (ROOT / "serve").glob("*.py"))
    assert len(loose) <= 6, loose
    assert {"__init__.py", "app.py", "cli.py", "deploy.py", "personalities.py"} <= set(loose)


def test_the_operator_loads_no_store_backend_and_no_ray() -> None:
    """Importing the operator's handlers loads the ConfigMap format, not the directory store
    (watchfiles) or the Kubernetes store's backend, and nothing of Ray: packages re-export
    nothing (checked in a fresh interpreter, which only this import has touched)."""
    probe = ("import sys, voice_operator.handlers; "
             "print(sorted(m for m in ('watchfiles', 'ray', 'chorus.stores.directory', 'chorus.stores.kubernetes', "
             "'chorus.ingress', 'chorus.speech') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
