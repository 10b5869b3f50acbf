"""Deploying a Serve config file the way `serve deploy` and KubeRay do.

The file goes to the Serve controller as a `ServeDeploySchema`; the controller imports
`chorus.app:build_app`, calls it with `args` and applies each deployment's options from
the file. `chorus serve` and the tests use exactly this path, with a few overrides.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from ray import serve
from ray.serve.schema import ServeDeploySchema

from chorus.recognition.models import RECOGNIZER
from deployments.tracing import otel_environment

APP_NAME = "chorus"


def profile_path(name: str) -> Path:
    return Path(str(files("chorus").joinpath("configs", f"{name}.yaml")))


class DeployFailed(RuntimeError):
    pass


def render(
    profile: Path,
    *,
    args: dict[str, Any] | None = None,
    deployments: dict[str, dict[str, Any]] | None = None,
    host: str | None = None,
    port: int | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServeDeploySchema:
    """The profile with overrides: `args` deep-merged into the app's args, per-deployment
    options replaced key by key, and deployments of disabled engines (and of a disabled
    recognizer) dropped (Serve
    refuses options for a deployment the app does not have). The OTEL_* variables of
    `environ` go into the app's runtime_env, so every deployment's process traces alike:
    Serve merges an app's env_vars into each deployment's own runtime_env, including the
    engines' that run under their own interpreter."""
    config = yaml.safe_load(profile.read_text())
    app = next(a for a in config["applications"] if a["name"] == APP_NAME)
    app["args"] = _merge(app.get("args", {}), args or {})
    engines = app["args"].get("engines", {})
    disabled = {e for e, a in engines.items() if not (a or {}).get("enabled", True)}
    if not app["args"].get("recognizer", {}).get("enabled", True):
        disabled.add(RECOGNIZER)
    entries = {d["name"]: d for d in app.get("deployments", []) if d["name"] not in disabled}
    for name, options in (deployments or {}).items():
        entries[name] = {**entries.get(name, {"name": name}), **options}
    app["deployments"] = list(entries.values())
    otel = otel_environment(environ or {})
    if otel:
        runtime_env = app.setdefault("runtime_env", {})
        runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), **otel}
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    return ServeDeploySchema.model_validate(config)


def deploy(config: ServeDeploySchema, *, timeout_s: float = 180) -> None:
    """Start Serve if needed, submit the config and wait until the app is RUNNING."""
    serve.start(
        http_options=config.http_options.model_dump(exclude_unset=True),
        proxy_location=config.proxy_location,
    )
    from ray.serve.context import _get_global_client

    _get_global_client().deploy_apps(config)
    deadline = time.monotonic() + timeout_s
    status = None
    while time.monotonic() < deadline:
        status = serve.status().applications.get(APP_NAME)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status == "DEPLOY_FAILED":
            raise DeployFailed(status.message or "deploy failed")
        time.sleep(0.5)
    raise DeployFailed(f"not running after {timeout_s:g} s: {status.message if status else 'no status'}")


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def serving_host() -> str | None:
    """The address Serve's HTTP proxies listen on, as the running controller has it; None
    outside Ray or with no controller (nothing is serving yet)."""
    import ray

    if not ray.is_initialized():
        return None
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    return client.http_config.host if client is not None else None
