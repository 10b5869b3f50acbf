"""Podman as the container tests use it: the settings of scripts/containers-env.sh (storage
under ~/.cache/chorus/containers, runc, lowered ulimits), the local Debian base, the
images built by scripts/build-images.sh (`IMAGES`), and containers started and always removed."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ("chorus", "chorus-gpu", "chorus-operator")


def environment() -> dict[str, str]:
    """The process environment plus what scripts/containers-env.sh exports (it also installs
    podman, buildah, runc, skopeo and mmdebstrap when missing)."""
    script = f". {ROOT / 'scripts/containers-env.sh'} >&2 && env -0"
    out = subprocess.run(["bash", "-c", script], check=True, capture_output=True, timeout=900).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


@dataclass(frozen=True)
class Podman:
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=check)

    def out(self, *args: str, timeout: float = 300) -> str:
        return self.run(*args, timeout=timeout).stdout

    def script(self, name: str, *args: str, timeout: float = 3600) -> str:
        """A repository script under these settings; its stdout (its stderr on failure)."""
        done = subprocess.run([str(ROOT / "scripts" / name), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"scripts/{name} failed ({done.returncode}):\n{done.stderr[-4000:]}")
        return done.stdout

    def inspect(self, image: str) -> dict:
        return json.loads(self.out("image", "inspect", image))[0]

    @contextmanager
    def container(self, image: str, *args: str, options: tuple[str, ...] = ()) -> Iterator[str]:
        """A detached container, removed (with its anonymous volumes) however the test ends.
        `--init`: a Python PID 1 would ignore SIGTERM."""
        cid = self.out("run", "-d", "--init", *options, image, *args).strip()
        try:
            yield cid
        finally:
            self.run("rm", "-f", "-v", "-t", "0", cid, check=False)

    def logs(self, cid: str) -> str:
        done = self.run("logs", cid, check=False)
        return (done.stdout + done.stderr)[-4000:]


def build_all(podman: Podman) -> dict[str, str]:
    """The base from Debian's archive, then the images on it: name -> reference.
    Both steps are cached (rootfs tar, podman's layers), so a second run takes seconds."""
    base = podman.script("debian-base-image.sh").strip().splitlines()[-1]
    printed = podman.script("build-images.sh", "--base", base, "--images", ",".join(IMAGES))
    refs = dict(line.split(" ", 1) for line in printed.strip().splitlines())
    assert set(refs) == set(IMAGES), printed
    # The images these replaced (the last run's, now untagged) and their own layers: this
    # storage is the tests' alone, and the GPU image's are gigabytes a build.
    podman.run("image", "prune", "--force", timeout=900)
    return refs


def wait_for(url: str, cid: str, podman: Podman, timeout: float) -> httpx.Response:
    """GET url until it answers 200, failing early (with the container's log) if it exits."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            response = httpx.get(url, timeout=5)
            if response.status_code == 200:
                return response
            last = f"{response.status_code} {response.text[:300]}"
        except httpx.HTTPError as err:
            last = repr(err)
        state = podman.out("inspect", "--format", "{{.State.Status}}", cid).strip()
        if state != "running":
            raise AssertionError(f"container {state} before {url} answered:\n{podman.logs(cid)}")
        time.sleep(2)
    raise AssertionError(f"{url} never answered 200 ({last}):\n{podman.logs(cid)}")
