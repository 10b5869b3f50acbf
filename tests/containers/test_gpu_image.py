"""The GPU image: the cloning engines' environments sit at the paths the cluster profile's
py_executable names and import their libraries (on CPU here), the tiny test checkpoints load
and speak through the production engine classes inside the container, and the two engine
venvs hold their common torch once (hard-linked), which is what keeps the image shippable."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.containers.podman import ROOT, Podman

pytestmark = [pytest.mark.containers, pytest.mark.timeout(3600)]

def cluster_pythons() -> dict[str, str]:
    """engine id -> the py_executable serve/configs/cluster.yaml gives its replicas."""
    config = yaml.safe_load((ROOT / "serve" / "configs" / "cluster.yaml").read_text())
    deployments = config["applications"][0]["deployments"]
    return {d["name"]: d["ray_actor_options"]["runtime_env"]["py_executable"]
            for d in deployments if "py_executable" in d.get("ray_actor_options", {}).get("runtime_env", {})}


def test_engine_envs_sit_where_the_cluster_profile_points(podman: Podman, images: dict[str, str]) -> None:
    pythons = cluster_pythons()
    assert set(pythons) == {"xtts_v2", "styletts2"}
    imports = {"xtts_v2": "import torch, torchaudio, TTS.tts.models.xtts",
               "styletts2": "import torch, torchaudio, styletts2.tts"}
    for engine, python in pythons.items():
        probe = f"{imports[engine]}; import ray, deployments, chorus; print(torch.cuda.is_available())"
        done = podman.run("run", "--rm", "--read-only", "--tmpfs", "/tmp", images["chorus-gpu"],
                          python, "-c", probe, check=False)
        assert done.returncode == 0, f"{engine}: {done.stderr[-3000:]}"
        assert done.stdout.strip() == "False"  # CPU here; the same image gets a GPU in the cluster


@pytest.mark.parametrize(("engine", "venv"), [("xtts", "venv-xtts"), ("styletts2", "venv-styletts2")])
def test_tiny_checkpoint_loads_through_the_engine(podman: Podman, images: dict[str, str], engine: str,
                                                 venv: str) -> None:
    # The repository's tests/ (the checkpoint builders, this probe) mounted read-only; the
    # checkpoint goes to the tmpfs /tmp. The engine code is the image's own.
    options = ("--read-only", "--tmpfs", "/tmp:rw,size=3g", "-v", f"{ROOT / 'tests'}:/probe/tests:ro",
               "-e", "PYTHONPATH=/probe", "-w", "/probe")
    done = podman.run("run", "--rm", *options, images["chorus-gpu"], f"/opt/chorus/{venv}/bin/python",
                      "-m", "tests.containers.engine_probe", engine, "/tmp/model", timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["health"]["healthy"], report
    assert report["environment"]["python"] == f"/opt/chorus/{venv}/bin/python"
    assert report["environment"]["device"] == "cpu"
    if engine == "xtts":
        assert report["spoken_s"] > 0.05


def test_the_engines_share_one_torch(podman: Podman, images: dict[str, str]) -> None:
    """Every torch file of one engine venv is the same inode as the other's: two copies of
    torch with CUDA made the image 21.7 GB (its limit: test_image_facts.py). Not the bytecode,
    which names each venv's own path, nor empty files (nothing to share)."""
    script = (
        "import json; from pathlib import Path\n"
        "def files(venv):\n"
        "    root = Path(f'/opt/chorus/{venv}/lib/python3.11/site-packages/torch')\n"
        "    return {p.relative_to(root): p.stat() for p in root.rglob('*')\n"
        "            if p.is_file() and p.suffix != '.pyc' and p.stat().st_size}\n"
        "a, b = files('venv-xtts'), files('venv-styletts2')\n"
        "shared = [k for k in a if k in b and a[k].st_ino == b[k].st_ino]\n"
        "print(json.dumps({'files': len(a), 'same_paths': len(a.keys() & b.keys()), 'shared': len(shared),\n"
        "                  'shared_gb': sum(a[k].st_size for k in shared) / 1e9}))\n"
    )
    found = json.loads(podman.out("run", "--rm", images["chorus-gpu"], "python", "-c", script))
    assert found["files"] > 1000 and found["same_paths"] == found["files"]
    assert found["shared"] == found["files"] and found["shared_gb"] > 1
