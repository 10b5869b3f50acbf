"""The images, built once per session on a base made from Debian's archive (no registry is
reachable here): every test in this folder runs them with podman."""

from __future__ import annotations

import pytest

from tests.containers.podman import Podman, build_all, environment


@pytest.fixture(scope="session")
def podman() -> Podman:
    return Podman(environment())


@pytest.fixture(scope="session")
def images(podman: Podman) -> dict[str, str]:
    return build_all(podman)
