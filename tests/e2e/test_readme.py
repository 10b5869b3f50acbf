"""The README's two commands are the product's front door: run it, test it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import free_port
from tests.support.speech import word_error_rate

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    quick_start = ROOT.joinpath("README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    blocks = re.findall(r"```sh\n(.*?)```", quick_start, re.S)
    return [line.strip() for block in blocks[:2] for line in block.strip().splitlines()]


def test_readme_has_two_commands_and_ci_runs_the_test_one() -> None:
    assert readme_commands() == ["scripts/serve.sh", "scripts/test.sh"]
    ci = ROOT.joinpath(".ci/run").read_text()
    assert re.search(r"^exec scripts/test\.sh\b", ci, re.M)


def test_serve_command_speaks_with_the_bundled_voice_out_of_the_box(tmp_path: Path, ear) -> None:
    port = free_port()
    personalities = tmp_path / "personalities"  # does not exist: first run seeds `default`
    # As a user runs it: no Ray settings of the test session's.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH"))}
    proc = subprocess.Popen(
        [str(ROOT / "scripts/serve.sh"), "--port", str(port), "--personalities", str(personalities)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if "Personalities are read from" in line:
                break
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}" in output, output
        assert str(personalities) in output
        assert (personalities / "default.yaml").exists()

        chorus = Path(sys.executable).with_name("chorus")
        out = tmp_path / "hello.wav"
        said = subprocess.run([str(chorus), "say", "Thank you for your help.", "-o", str(out),
                               "--url", f"http://127.0.0.1:{port}"], capture_output=True, text=True, timeout=120)
        assert said.returncode == 0, said.stderr
        assert word_error_rate("Thank you for your help.", ear.hear(out.read_bytes())) <= 0.5
        assert httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200
        # Ray listens beyond loopback: a client without this run's token is refused (audit M-9).
        (gcs,) = re.findall(r"^Ray: (\S+), token auth", output, re.M)
        intruder = subprocess.run(
            [sys.executable, "-c", f"import ray; ray.init(address={gcs!r}); print('joined')"],
            capture_output=True, text=True, timeout=180, env={**env, "RAY_AUTH_MODE": "disabled"},
        )
        assert intruder.returncode != 0 and "joined" not in intruder.stdout, intruder.stdout + intruder.stderr
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, "".join(lines) + (proc.stdout.read() or "")
