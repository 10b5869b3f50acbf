"""Shared fixtures: one Ray instance per test session, Chorus deployed through the same
Serve-config path `chorus serve` uses, an ear (pocketsphinx) for speech checks, and one real
Kubernetes control plane (for tests/kube and the dashboard's cluster mode)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from tests.kube.control_plane import CRDS, ControlPlane, build_binaries, running_control_plane
from tests.support.chorus_app import ChorusApp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    import ray
    from ray import serve

    # Logical CPUs: replicas ask for fractions, and the 2 real cores are shared anyway.
    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        yield
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture(scope="session")
def chorus(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> ChorusApp:
    """Deploys Chorus on demand; `chorus.deploy(...)` replaces the running app."""
    return ChorusApp(port=free_port(), root=tmp_path_factory.mktemp("chorus"))


@pytest.fixture(scope="session")
def ear() -> Any:
    from tests.support.speech import Ear

    return Ear()


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and controller-manager with the VoicePersonality CRD and KubeRay's
    CRDs installed and Established."""
    with running_control_plane(build_binaries(), tmp_path_factory.mktemp("kube")) as plane:
        for crd in CRDS:
            # Server-side: KubeRay's CRDs are too big for the last-applied annotation.
            plane.kubectl("apply", "--server-side", "-f", str(crd))
        plane.wait_established(["voicepersonalities.voice.chorus.dev", "rayservices.ray.io", "rayclusters.ray.io"])
        yield plane
