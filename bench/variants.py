"""Copies of the CPU profile side by side in one Serve instance, each an application under
its own route prefix (`/<name>`) with its own replicas, so a benchmark can interleave
requests to them and background noise hits all alike (bench/access.py, bench/tracing.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml


def bench_personalities(directory: Path) -> Path:
    """A personality directory holding `bench`: Piper with the bundled voice."""
    directory.mkdir(parents=True)
    (directory / "bench.yaml").write_text(yaml.safe_dump({
        "apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": "bench"},
        "spec": {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}},
    }))
    return directory


def deploy_variants(port: int, variants: dict[str, dict[str, Any]], timeout_s: float = 300) -> None:
    """Deploy one application per variant: `render` keyword arguments (args, environ) for
    the CPU profile. Ray must already run with enough logical CPUs for every copy."""
    from ray import serve
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from chorus.deploy import profile_path, render

    applications = []
    for name, overrides in variants.items():
        app = render(profile_path("cpu"), port=port, **overrides).applications[0]
        app.name, app.route_prefix = name, f"/{name}"
        applications.append(app)
    config = render(profile_path("cpu"), port=port)
    config.applications = applications
    serve.start(http_options=config.http_options.model_dump(exclude_unset=True), proxy_location=config.proxy_location)
    _get_global_client().deploy_apps(ServeDeploySchema.model_validate(config.model_dump(exclude_unset=True)))
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        statuses = serve.status().applications
        if all(statuses.get(v) is not None and statuses[v].status == "RUNNING" for v in variants):
            return
        time.sleep(0.5)
    raise RuntimeError(f"variants not running: {serve.status().applications}")
