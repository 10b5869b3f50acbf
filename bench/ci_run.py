"""How long CI's `bash .ci/run` takes on a fresh machine (every cache empty) and on a warm one,
measured the way CI runs it: a clean clone of this repository's HEAD in a scratch folder, with
`../shared` beside it, `CI=true`, no standard input.

    python3 bench/ci_run.py [--scratch DIR] [--shared ../shared] [--output FILE] [--empty-only] [--smoke]

"Empty caches" means a fresh `$HOME` for the runs: the project's caches (~/.cache/chorus: venvs,
Kubernetes binaries), uv's and pip's caches and Go's module and build caches all live under it,
so nothing of the developer's is reused or lost. The second run reuses what the first left
(`--empty-only`: no second run; the first is the one CI's 70-minute budget is about).
Python itself (pyenv), Go and the Debian packages already on the machine are the machine's.
Writes a section of bench/RESULTS.md; prints each run's closing pytest line.

`--smoke` (tests/integration/test_bench_smoke.py): the same clone, `../shared`, empty `$HOME`,
environment, log and table, but one run, and instead of `.ci/run` (an hour, and it would
install three environments from empty caches) this interpreter collecting CI's tests without
running them: the suite checks the benchmark still works, never how long CI takes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.results import RESULTS, machine, write_section  # noqa: E402

# pytest's closing line, with or without -q's missing "=====" borders (a smoke's is
# "N tests collected").
SUMMARY = re.compile(r"^=*\s*(\d+ (?:passed|failed|tests? collected)\b[^=\n]*?)\s*=*$", re.M)
CI = ["bash", ".ci/run"]
# .ci/run's pytest arguments, collecting only; the clone's tests against this venv.
SMOKE = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--collect-only", "tests/unit"]


def ci_run(clone: Path, home: Path, log: Path, command: list[str] = CI) -> tuple[float, int, str]:
    env = {**os.environ, "HOME": str(home), "CI": "true",
           # pyenv finds its interpreters under $HOME unless told where it lives.
           "PYENV_ROOT": os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))}
    for var in ("CHORUS_VENV", "CHORUS_CACHE", "CHORUS_ENGINE_ENVS", "UV_CACHE_DIR", "GOPATH",
                "GOCACHE", "GOMODCACHE", "VIRTUAL_ENV"):
        env.pop(var, None)
    start = time.monotonic()
    with log.open("w") as out:
        rc = subprocess.run(command, cwd=clone, env=env, stdin=subprocess.DEVNULL,
                            stdout=out, stderr=subprocess.STDOUT).returncode
    found = SUMMARY.findall(log.read_text())
    return time.monotonic() - start, rc, found[-1] if found else "(no pytest summary)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scratch", type=Path, default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="one run that only collects the tests (see above)")
    parser.add_argument("--empty-only", action="store_true", help="only the run from empty caches")
    args = parser.parse_args()

    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="chorus-ci-"))
    clone, home = scratch / "main", scratch / "home"
    if clone.exists() or home.exists():
        sys.exit(f"{scratch} is not empty: give a new --scratch")
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=clone, check=True,
                            capture_output=True, text=True).stdout.strip()
    shutil.copytree(args.shared, scratch / "shared")
    home.mkdir()

    runs = []
    command = SMOKE if args.smoke else CI
    kinds = ["smoke (collect only)"] if args.smoke else ["empty caches"] if args.empty_only else [
        "empty caches", "warm caches"]
    for kind in kinds:
        seconds, rc, summary = ci_run(clone, home, scratch / f"{kind.split()[0]}.log", command)
        print(f"{kind}: {seconds / 60:.1f} min, exit {rc}: {summary}", flush=True)
        runs.append((kind, seconds, rc, summary))

    rows = "\n".join(f"| {kind} | {s / 60:.1f} min ({s:.0f} s) | {rc} | {summary} |" for kind, s, rc, summary in runs)
    write_section("CI from a fresh machine (`bench/ci_run.py`)", f"""
Run {machine()}. A clean clone of `{commit}` with `{" ".join(command[-6:])}`, `CI=true`, `$HOME` a new empty
folder (so the project's venvs and Kubernetes binaries, uv's, pip's and Go's caches all start
empty){"" if len(runs) == 1 else ", then the same again with what the first run left"}. CI's limit is 90 min.

| run | wall time | exit | pytest |
|---|---|---|---|
{rows}
""", args.output)
    if args.smoke and any(rc for _, _, rc, _ in runs):
        sys.exit(f"the smoke run failed: {scratch}")  # a benchmark that no longer runs


if __name__ == "__main__":
    main()
