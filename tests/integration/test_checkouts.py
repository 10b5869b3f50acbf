"""Two checkouts on one machine test their own code (tests audit, issue 22).

A working copy and CI's clean clone used to share one editable venv, so whichever ran
`scripts/install.sh` last decided which `serve/` both imported. Each checkout now has its
own `.venv`; this builds two copies of the tree that differ in one line of product code and
runs one unit test in each, with each copy's own environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONSTANTS = Path("serve/common/constants.py")
PROBE = '''
import chorus.common.constants as constants


def test_this_checkouts_line() -> None:
    assert constants.CHECKOUT_PROBE == {mark!r}
'''


WHERE = "import chorus, deployments, voice_operator; print(chorus.__file__, deployments.__file__, voice_operator.__file__)"


def copy_of_tree(dest: Path) -> Path:
    """The working tree as git sees it (tracked and new files, nothing ignored: no venvs)."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def test_two_checkouts_each_import_their_own_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CHORUS_VENV", "VIRTUAL_ENV", "PYTHONPATH")}
    checkouts = {mark: copy_of_tree(tmp_path / mark) for mark in ("left", "right")}
    for mark, checkout in checkouts.items():
        constants = checkout / CONSTANTS
        constants.write_text(constants.read_text() + f"CHECKOUT_PROBE = {mark!r}\n")
        (checkout / "tests/unit/test_probe.py").write_text(PROBE.format(mark=mark))
    # Both installed before either runs: the second install must not take over the first.
    venvs = {}
    for mark, checkout in checkouts.items():
        out = subprocess.run([str(checkout / "scripts/install.sh"), "dev"], env=env, check=True,
                             capture_output=True, text=True, timeout=900)
        venvs[mark] = Path(out.stdout.strip().splitlines()[-1])
        assert venvs[mark] == checkout / ".venv"
    for mark, checkout in checkouts.items():
        run = subprocess.run([str(venvs[mark] / "bin/python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "tests/unit/test_probe.py"], check=False, cwd=checkout, env=env,
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, f"{mark}: {run.stdout[-2000:]}{run.stderr[-2000:]}"
        assert "1 passed" in run.stdout
    # And the README's console script runs its own checkout's code too.
    for mark, checkout in checkouts.items():
        where = subprocess.run([str(venvs[mark] / "bin/python"), "-c", WHERE],
                               cwd=tmp_path, env=env, check=True, capture_output=True, text=True).stdout.split()
        assert all(Path(p).resolve().is_relative_to(checkout.resolve()) for p in where), (mark, where)
