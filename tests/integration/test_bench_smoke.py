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
    "tracing": 1800,
}
STARTS_RAY = {"access", "cache", "cloning", "fault", "kubernetes", "overhead", "piper_http", "tracing"}


def extra_args(name: str, tmp_path: Path) -> list[str]:
    if name == "ci_run":
        # Its clone and copy of ../shared in the test's folder, not a temp dir left behind;
        # an empty ../shared: the smoke checks the copy, not what the folder holds.
        (tmp_path / "shared").mkdir()
        return ["--scratch", str(tmp_path / "ci"), "--shared", str(tmp_path / "shared")]
    return []


@pytest.mark.parametrize(
    "name",
    [pytest.param(name, marks=[pytest.mark.timeout(seconds + 120),
                               *([pytest.mark.ray] if name in STARTS_RAY else [])])
     for name, seconds in SCRIPTS.items()],
)
def test_smoke_run_writes_its_table(name: str, tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    run = subprocess.run(
        [sys.executable, f"bench/{name}.py", "--smoke", "--output", str(output), *extra_args(name, tmp_path)],
        cwd=ROOT, env={**os.environ, "RAY_AUTH_MODE": "disabled"}, stdin=subprocess.DEVNULL,
        capture_output=True, text=True, timeout=SCRIPTS[name],
    )
    tail = f"stdout:\n{run.stdout[-3000:]}\nstderr:\n{run.stderr[-3000:]}"
    assert run.returncode == 0, f"bench/{name}.py --smoke exited {run.returncode}\n{tail}"
    assert output.exists(), f"bench/{name}.py --smoke wrote no {output}\n{tail}"
    text = output.read_text()
    heading = re.search(rf"^## .*\(`bench/{name}\.py`\)$", text, re.M)
    assert heading, f"no section of bench/{name}.py in:\n{text}"
    assert re.search(r"^\|---", text[heading.end():], re.M), f"no table in its section:\n{text}"
