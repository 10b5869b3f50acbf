"""Deploying Chorus in tests: the CPU profile through `chorus.deploy`, with overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import yaml

from chorus.deploy import deploy, profile_path, render

# Small, fixed footprints: every test app fits the session's 4 logical CPUs, and one
# replica each keeps behaviour deterministic.
TEST_DEPLOYMENT_OPTIONS: dict[str, Any] = {
    "ray_actor_options": {"num_cpus": 0.1},
    "autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1},
}

# Piper's noise pinned to zero: the same text gives the same audio, so speech checks
# do not depend on the dice.
STEADY_PIPER = {"enabled": True, "voice": "en_US-joe-medium", "settings": {"noiseScale": 0.0, "noiseW": 0.0}}


def personality(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": name}, "spec": spec}


class ChorusApp:
    def __init__(self, port: int, root: Path) -> None:
        self.port = port
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        self.count = 0
        self.personalities_dir = root / "personalities"

    def deploy(self, engines: dict[str, Any] | None = None, deployments: dict[str, Any] | None = None,
               personalities: dict[str, Any] | None = None, environ: dict[str, str] | None = None,
               **args: Any) -> str:
        """Deploy a fresh app with its own personalities directory (or the given
        personality source); returns the base URL. `environ`: as if `chorus serve` ran
        with those variables (OTEL_*)."""
        self.count += 1
        self.personalities_dir = self.root / f"personalities-{self.count}"
        self.personalities_dir.mkdir()
        self.samples_dir = self.root / f"samples-{self.count}"
        engines = engines if engines is not None else {"piper": {}}
        # Off unless a test asks for it (tests/integration/test_verification.py): one actor less
        # to start for every other app.
        args.setdefault("recognizer", {"enabled": False})
        names = ["Ingress", *(e for e, a in engines.items() if a.get("enabled", True))]
        if args["recognizer"].get("enabled", True):
            names.append("Recognizer")
        options = {n: dict(TEST_DEPLOYMENT_OPTIONS) for n in names}
        for name, extra in (deployments or {}).items():
            options[name] = {**options.get(name, {}), **extra}
        config = render(
            profile_path("cpu"),
            args={"personalities": {"directory": str(self.personalities_dir)}, "samples": {"directory": str(self.samples_dir)},
                  "engines": engines, "status_refresh_s": 1.0,
                  # Off unless a test asks for it: the other tests are about what engines do.
                  "cache": {"enabled": False}, **args},
            deployments=options,
            port=self.port,
            environ=environ,
        )
        # Replace, not merge, the engines map: the profile's engines are only defaults.
        app = config.applications[0]
        app.args["engines"] = engines
        app.args["personalities"] = personalities or {"directory": str(self.personalities_dir)}
        app.deployments = [d for d in app.deployments if d.name in names]
        deploy(config)
        return self.url

    def write(self, name: str, spec: dict[str, Any]) -> Path:
        path = self.personalities_dir / f"{name}.yaml"
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_text(yaml.safe_dump(personality(name, spec)))
        tmp.replace(path)
        return path

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=120, **kwargs)

    def wait_for(self, name: str, present: bool = True, timeout: float = 15) -> None:
        import time

        deadline = time.monotonic() + timeout
        with self.client() as c:
            while time.monotonic() < deadline:
                if (c.get(f"/v1/personalities/{name}").status_code == 200) == present:
                    return
                time.sleep(0.2)
        raise AssertionError(f"personality {name} {'never appeared' if present else 'never went away'}")
