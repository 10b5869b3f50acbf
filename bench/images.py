"""The images the container tests build: build time (as cached as the storage is) and size.

Builds with scripts/build-images.sh on the local Debian base, under the podman settings of
scripts/containers-env.sh, and writes each image's size (and the size of the layers it adds
on top of its parent) to bench/RESULTS.md. `--storage DIR` builds into other container
storage, e.g. an empty directory for a cold build (the host's uv cache is still mounted, as
in CI, where scripts/install.sh and scripts/engine-env.sh fill it first).
Not a test: run `.venv/bin/python bench/images.py [--storage DIR]`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.results import machine, write_section  # noqa: E402
from tests.containers.podman import IMAGES, Podman, build_all, environment  # noqa: E402

PARENT = {"chorus": "base", "chorus-operator": "base"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", type=Path, help="container storage to build in (default: the cached)")
    args = parser.parse_args()
    if args.storage:
        os.environ["CHORUS_CONTAINERS"] = str(args.storage.resolve())
    podman = Podman(environment())
    started = time.perf_counter()
    refs = build_all(podman)
    elapsed = time.perf_counter() - started
    refs["base"] = podman.script("debian-base-image.sh").strip()
    inspected = {name: podman.inspect(ref) for name, ref in refs.items()}

    def own_bytes(name: str) -> int:
        return inspected[name]["Size"] - inspected[PARENT[name]]["Size"]

    rows = [f"| `{name}` | {inspected[name]['Size'] / 1e9:.2f} | {own_bytes(name) / 1e9:.2f} "
            f"| {len(inspected[name]['RootFS']['Layers'])} |" for name in IMAGES]
    body = "\n".join([
        machine(),
        "",
        f"Base `{refs['base']}` (Debian bookworm minbase + python3 3.11, mmdebstrap): "
        f"{inspected['base']['Size'] / 1e9:.2f} GB. This build: {elapsed:.0f} s "
        f"({'storage ' + str(args.storage) if args.storage else 'the cached storage'}).",
        "",
        "| image | size (GB) | added over its parent (GB) | layers |",
        "|---|---|---|---|",
        *rows,
    ])
    write_section("Container images (`bench/images.py`)", body)
    print(body)


if __name__ == "__main__":
    main()
