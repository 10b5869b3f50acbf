"""The images the container tests build: build time (as cached as the storage is) and size.

Builds with scripts/build-images.sh on the local Debian base, under the podman settings of
scripts/containers-env.sh, and writes each image's size (and the size of the layers it adds
on top of its parent) to bench/RESULTS.md. `--storage DIR` builds into other container
storage, e.g. an empty directory for a cold build (the host's uv cache is still mounted, as
in CI, where scripts/install.sh and scripts/engine-env.sh fill it first).
Not a test: run `.venv/bin/python bench/images.py [--storage DIR]`.
`--smoke` builds nothing (a cold build of both images takes most of an hour): it measures the
images the storage already holds (tests/containers builds and caches them) and lists the rest
as not built; tests/integration/test_bench_smoke.py checks the benchmark still runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import RESULTS, machine, write_section  # noqa: E402
from tests.containers.podman import IMAGES, Podman, build_all, environment  # noqa: E402

PARENT = {"chorus": "base", "chorus-gpu": "chorus", "chorus-operator": "base"}
BASE = "localhost/chorus-base:bookworm"  # scripts/debian-base-image.sh's


def already_built(podman: Podman) -> dict[str, str]:
    """The base and images an earlier build left in the storage, under the names
    scripts/build-images.sh gives them (its default registry, pyproject's version)."""
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    wanted = {"base": BASE, **{name: f"ghcr.io/chorus-dev/{name}:{version}" for name in IMAGES}}
    return {name: ref for name, ref in wanted.items()
            if podman.run("image", "exists", ref, check=False).returncode == 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", type=Path, help="container storage to build in (default: the cached)")
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="build nothing, measure what is built (see above)")
    args = parser.parse_args()
    if args.storage:
        os.environ["CHORUS_CONTAINERS"] = str(args.storage.resolve())
    podman = Podman(environment())
    started = time.perf_counter()
    refs = already_built(podman) if args.smoke else build_all(podman)
    elapsed = time.perf_counter() - started
    if not args.smoke:
        refs["base"] = podman.script("debian-base-image.sh").strip()
    inspected = {name: podman.inspect(ref) for name, ref in refs.items()}

    def row(name: str) -> str:
        if name not in inspected:  # a smoke run measures only what is built
            return f"| `{name}` | not built | - | - |"
        size, parent = inspected[name]["Size"], inspected.get(PARENT[name])
        added = f"{(size - parent['Size']) / 1e9:.2f}" if parent else "-"
        return f"| `{name}` | {size / 1e9:.2f} | {added} | {len(inspected[name]['RootFS']['Layers'])} |"

    rows = [row(name) for name in IMAGES]
    base = (f"Base `{refs['base']}` (Debian bookworm minbase + python3 3.11, mmdebstrap): "
            f"{inspected['base']['Size'] / 1e9:.2f} GB." if "base" in inspected else f"Base `{BASE}`: not built.")
    build = "Smoke run: nothing built" if args.smoke else f"This build: {elapsed:.0f} s"
    body = "\n".join([
        machine(),
        "",
        f"{base} {build} ({'storage ' + str(args.storage) if args.storage else 'the cached storage'}).",
        "",
        "| image | size (GB) | added over its parent (GB) | layers |",
        "|---|---|---|---|",
        *rows,
    ])
    write_section("Container images (`bench/images.py`)", body, args.output)
    print(body)


if __name__ == "__main__":
    main()
