"""One real single-node cluster for tests/cluster (tests/cluster/node.py) with KubeRay's operator
installed and Chorus's images in its runtime, as a platform engineer's cluster would have them
after pushing to a registry."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster.node import Cluster, build_cluster_binaries, running_cluster
from tests.containers.podman import Podman, environment
from tests.kube.control_plane import build_binaries

# The chart's default image names; the CPU side only (no GPU here for the GPU group).
IMAGES = ("chorus", "chorus-operator")


# Package scope: stopped once tests/cluster is done, not kept busy beside the rest of the suite.
@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    archives = tmp_path_factory.mktemp("oci")
    podman = Podman(environment())
    base = podman.script("debian-base-image.sh").strip().splitlines()[-1]
    printed = podman.script("build-images.sh", "--base", base, "--images", ",".join(IMAGES), "--oci-dir", str(archives))
    with running_cluster(build_binaries(), build_cluster_binaries(), tmp_path_factory.mktemp("cluster")) as node:
        for line in printed.strip().splitlines():  # NAME REF
            name, ref = line.split(" ", 1)
            node.import_image(archives / f"{name}.tar")
            node.images[name] = ref
            (archives / f"{name}.tar").unlink()  # in the runtime now; a gigabyte less on disk
        node.install_kuberay()
        yield node
