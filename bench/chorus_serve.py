"""`chorus serve` as a user starts it, in its own process tree, for benchmarks: start it
with a Piper personality `bench`, wait until it speaks, sum the memory of every process it
started (Ray's raylet, GCS, dashboard, agents and workers are its descendants), stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.variants import bench_personalities

CHORUS = Path(sys.executable).with_name("chorus")

# The benchmarks repeat their texts, which the audio cache would answer after the first
# time: requests that measure the engine path say so (bench/cache.py measures the cache).
UNCACHED = {"Cache-Control": "no-store"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class TreeMemory:
    """Resident memory of a process tree. RSS counts a page shared by several processes in
    each of them (what `ps` and a naive sum show); PSS splits it among them."""

    processes: int
    rss_bytes: int
    pss_bytes: int


def descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue  # gone meanwhile
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def tree_memory(root: int) -> TreeMemory:
    rss = pss = count = 0
    for pid in descendants(root):
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]
            fields = dict(line.split(":", 1) for line in rollup)
        except OSError:
            continue
        rss += int(fields["Rss"].split()[0]) * 1024
        pss += int(fields["Pss"].split()[0]) * 1024
        count += 1
    return TreeMemory(processes=count, rss_bytes=rss, pss_bytes=pss)


class ChorusServe:
    """One `chorus serve` under `root`, its port free; `env` is added to the environment
    (Ray and Serve read their feature flags there), `args` to the command line."""

    def __init__(self, root: Path, *, env: dict[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        personalities = bench_personalities(root / "personalities")
        command = [str(CHORUS), "serve", "--port", str(self.port), "--personalities", str(personalities),
                   "--samples", str(root / "samples"), "--dashboard-port", str(free_port()), *(args or [])]
        environ = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", **(env or {})}
        self.log = (root / "chorus-serve.log").open("wb")
        # Its own session: the tree is stopped as a whole even if the CLI dies first.
        self.proc = subprocess.Popen(command, env=environ, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def wait_ready(self, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chorus serve exited {self.proc.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.post(f"{self.url}/v1/personalities/bench/speech", json={"text": "Ready."},
                               timeout=30)
                if r.status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(1)
        raise RuntimeError(f"chorus serve not speaking after {timeout_s:g} s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])

    def memory(self) -> TreeMemory:
        return tree_memory(self.proc.pid)

    def gcs_address(self) -> str:
        """Its Ray's GCS, for a driver to join (`ray.init(address=...)`): from its raylet's
        command line, as its port is picked at start."""
        for pid in descendants(self.proc.pid):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0].endswith(b"/raylet"):
                return next(a.split(b"=", 1)[1].decode() for a in argv if a.startswith(b"--gcs-address="))
        raise RuntimeError("no raylet under chorus serve")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)  # the CLI shuts Serve and Ray down
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # whatever of the tree outlived it
        except ProcessLookupError:
            pass
        self.proc.wait()
        self.log.close()
