"""The operator image: its CRD is the repository's, it holds no Ray, and against a real
control plane its liveness endpoint answers and it turns a VoicePersonality into the
personality's ConfigMap."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import free_port
from tests.containers.podman import ROOT, Podman, wait_for
from tests.kube.control_plane import ControlPlane, build_binaries, running_control_plane

pytestmark = [pytest.mark.containers, pytest.mark.timeout(3600)]

CRD = ROOT / "charts" / "chorus" / "crds" / "voicepersonalities.voice.chorus.dev.yaml"


def test_crd_inside_is_the_repositorys(podman: Podman, images: dict[str, str]) -> None:
    printed = podman.out("run", "--rm", "--read-only", images["chorus-operator"],
                         "python", "-m", "voice_operator.crd")
    assert printed == CRD.read_text()


def test_holds_what_the_operator_imports_and_nothing_of_the_ray_side(podman: Podman, images: dict[str, str]) -> None:
    probe = ("import importlib.util as u, json; "
             "print(json.dumps({m: u.find_spec(m) is not None for m in "
             "('voice_operator.handlers', 'kopf', 'kubernetes_asyncio', 'chorus.samples.models', 'onnxruntime', "
             "'torch', 'ray', 'piper', 'pocketsphinx', 'onnx')}))")
    found = json.loads(podman.out("run", "--rm", images["chorus-operator"], "python", "-c", probe))
    assert found == {"voice_operator.handlers": True, "kopf": True, "kubernetes_asyncio": True,
                     "chorus.samples.models": True, "onnxruntime": True, "torch": False, "ray": False,
                     "piper": False, "pocketsphinx": False, "onnx": False}


def _kube_dir(plane: ControlPlane, directory: Path) -> Path:
    """The admin kubeconfig and the API server's CA, readable by the image's user (pytest's
    temporary directories are the host user's alone), naming the CA by its path inside."""
    config = yaml.safe_load(plane.admin_kubeconfig.read_text())
    config["clusters"][0]["cluster"]["certificate-authority"] = "/kube/ca.crt"
    directory.mkdir()
    directory.chmod(0o755)
    (directory / "config").write_text(yaml.safe_dump(config))
    shutil.copyfile(plane.ca_file, directory / "ca.crt")
    for path in (directory / "config", directory / "ca.crt"):
        path.chmod(0o644)
    return directory


def test_liveness_and_reconcile_against_a_control_plane(
    podman: Podman, images: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    workdir = tmp_path_factory.mktemp("operator-kube")
    with running_control_plane(build_binaries(), workdir) as plane:
        plane.kubectl("apply", "--server-side", "-f", str(CRD))
        plane.wait_established(["voicepersonalities.voice.chorus.dev"])
        port = free_port()
        kube_dir = _kube_dir(plane, workdir / "mounted")
        options = ("--read-only", "--tmpfs", "/tmp", "-v", f"{kube_dir}:/kube:ro",
                   "-e", "KUBECONFIG=/kube/config")
        command = ("kopf", "run", "--standalone", f"--liveness=http://127.0.0.1:{port}/healthz",
                   "-m", "voice_operator.handlers", "--namespace", "default")
        with podman.container(images["chorus-operator"], *command, options=options) as cid:
            wait_for(f"http://127.0.0.1:{port}/healthz", cid, podman, timeout=120)
            spec = {"activeProvider": "piper", "languages": {"primary": "en"},
                    "providers": {"piper": {"enabled": True, "voice": "en_US-joe-medium"}}}
            resource = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
                        "metadata": {"name": "boxed", "namespace": "default"}, "spec": spec}
            plane.kubectl("apply", "-f", "-", input=yaml.safe_dump(resource))
            deadline = time.monotonic() + 60
            while plane.kubectl("get", "configmap", "chorus-personality-boxed", check=False).returncode != 0:
                assert time.monotonic() < deadline, f"no ConfigMap from the operator:\n{podman.logs(cid)}"
                time.sleep(1)
