"""One real control plane per test session, with the VoicePersonality CRD and KubeRay's
CRDs installed and Established."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kube.control_plane import (
    ROOT,
    ControlPlane,
    build_binaries,
    running_control_plane,
)

CRDS = [
    ROOT / "charts" / "chorus" / "crds" / "voicepersonalities.voice.chorus.dev.yaml",
    ROOT.parent / "shared" / "kuberay-crds" / "ray.io_rayclusters.yaml",
    ROOT.parent / "shared" / "kuberay-crds" / "ray.io_rayservices.yaml",
]


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with running_control_plane(build_binaries(), tmp_path_factory.mktemp("kube")) as plane:
        for crd in CRDS:
            # Server-side: KubeRay's CRDs are too big for the last-applied annotation.
            plane.kubectl("apply", "--server-side", "-f", str(crd))
        plane.wait_established(["voicepersonalities.voice.chorus.dev", "rayservices.ray.io", "rayclusters.ray.io"])
        yield plane
