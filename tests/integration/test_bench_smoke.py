"""Benchmarks that cannot rot (issue 22, item 5): every script in bench/ runs its `--smoke`
mode, the same code path with the smallest sizes, writing its section to a scratch results
file. Asserted: it exits 0 and the file holds the script's section with its table. Never its
timings: a smoke run measures nothing.

Each script starts what it measures in its own process (Ray included, where it uses Ray:
those are marked `ray`), next to the session's own Ray. Their needs are what scripts/test.sh
installs: the engine venvs (cloning), the control plane binaries (kubernetes), the collector
(tracing), podman (images, which builds nothing in a smoke run).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# Seconds a smoke run may take: generous, for 2 busy cores and first-time builds (the tiny
# cloning models, the control plane or the collector when no cache holds them yet).
SCRIPTS: dict[str, float] = {
    "access": 900,
    "cache": 900,
    "ci_run": 900,
    "cloning": 2400,
    "fault": 1200,
    "images": 1200,
    "kubernetes": 2400,
    "onnx_threads": 600,
    "overhead": 1200,
    "pcm_path": 600,
    "piper_http": 900,
    "speech_options": 600,
    "tracing": 1800,
}
STARTS_RAY = {"access", "cache", "cloning", "fault", "kubernetes", "overhead", "piper_http", "tracing"}


def extra_args(name: str, folder: Path) -> list[str]:
    if name == "ci_run":
        # Its clone and copy of ../shared in the test's folder, not a temp dir left behind;
        # an empty ../shared: the smoke checks the copy, not what the folder holds.
        (folder / "shared").mkdir()
        return ["--scratch", str(folder / "ci"), "--shared", str(folder / "shared")]
    return []


# Two at a time: one after another they took ~25 min of CI on 2 busy cores, mostly each
# script starting its own Ray and loading models while the cores idle. Three at once was
# too many: a starved Serve proxy misses its health checks and Serve kills it. The heaviest
# (cloning, kubernetes: a control plane too) run beside light ones, never beside each other.
AT_ONCE = 2
ORDER = ["cloning", "pcm_path", "onnx_threads", "ci_run", "images", "kubernetes", "tracing", "piper_http",
         "overhead", "fault", "access", "cache", "speech_options"]


@dataclass(frozen=True)
class Smoke:
    returncode: int | None  # None: timed out
    output: str  # its results file, "" when it wrote none
    tail: str


# Ray waits a fixed 30 s for its raylet (ray/_private/node.py); two scripts starting Ray on 2
# busy cores can miss it, before any benchmark code runs. Such a start is tried once more.
RAY_DID_NOT_START = "The current node timed out during startup"


def smoke(name: str, folder: Path) -> Smoke:
    first = _smoke_once(name, folder / "1")
    if first.returncode not in (0, None) and RAY_DID_NOT_START in first.tail:
        again = _smoke_once(name, folder / "2")
        return Smoke(again.returncode, again.output, f"(Ray did not start the first time)\n{again.tail}")
    return first


def _smoke_once(name: str, folder: Path) -> Smoke:
    folder.mkdir(parents=True)
    output = folder / "RESULTS.md"
    try:
        run = subprocess.run(
            [sys.executable, f"bench/{name}.py", "--smoke", "--output", str(output), *extra_args(name, folder)],
            cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, stdin=subprocess.DEVNULL,
            capture_output=True, text=True, timeout=SCRIPTS[name],
        )
    except subprocess.TimeoutExpired as err:
        return Smoke(None, "", f"timed out after {SCRIPTS[name]} s; stdout:\n{str(err.stdout)[-3000:]}")
    tail = f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    return Smoke(run.returncode, output.read_text() if output.exists() else "", tail)


@pytest.fixture(scope="module")
def smokes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Smoke]:
    root = tmp_path_factory.mktemp("bench-smoke")
    assert sorted(ORDER) == sorted(SCRIPTS)
    with ThreadPoolExecutor(AT_ONCE) as pool:
        runs = {name: pool.submit(smoke, name, root / name) for name in ORDER}
        return {name: run.result() for name, run in runs.items()}


@pytest.mark.timeout(3600)
@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.ray] if name in STARTS_RAY else [])
                                  for name in SCRIPTS])
def test_smoke_run_writes_its_table(name: str, smokes: dict[str, Smoke]) -> None:
    run = smokes[name]
    assert run.returncode == 0, f"bench/{name}.py --smoke exited {run.returncode}\n{run.tail}"
    assert run.output, f"bench/{name}.py --smoke wrote no results file\n{run.tail}"
    heading = re.search(rf"^## .*\(`bench/{name}\.py`\)$", run.output, re.M)
    assert heading, f"no section of bench/{name}.py in:\n{run.output}"
    assert re.search(r"^\|---", run.output[heading.end():], re.M), f"no table in its section:\n{run.output}"
