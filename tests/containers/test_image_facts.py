"""What every image is, whatever it runs: a non-root user with the chart's fixed ids, the OCI
labels, and no CA bundle or build secret in any layer the Containerfiles add (the host's
bundle is a build secret: /run/secrets during RUN steps only)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.containers.podman import IMAGES, ROOT, Podman

pytestmark = [pytest.mark.containers, pytest.mark.timeout(3600)]

LABELS = tuple(f"org.opencontainers.image.{key}" for key in ("source", "version", "licenses"))
# What scripts/build-images.sh hands the build as the secret `hostca`.
HOST_CA = next(Path(p) for p in (os.environ.get("SSL_CERT_FILE", ""), "/etc/ssl/certs/ca-certificates.crt")
               if p and Path(p).is_file())


def version() -> str:
    import tomllib

    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]


@pytest.mark.parametrize("name", IMAGES)
def test_user_and_labels(podman: Podman, images: dict[str, str], name: str) -> None:
    config = podman.inspect(images[name])["Config"]
    assert config["User"] == "1000:1000"
    labels = config["Labels"]
    assert all(labels.get(key) for key in LABELS), labels
    assert labels["org.opencontainers.image.version"] == version()
    assert labels["org.opencontainers.image.title"] == name
    assert podman.out("run", "--rm", images[name], "id", "-u").strip() == "1000"
    # Nothing of the build's TLS set-up leaks into the image's environment.
    build_only = ("PIP_CERT", "SSL_CERT_FILE", "UV_CACHE_DIR")
    assert not [e for e in config.get("Env", []) if e.split("=")[0] in build_only]


def _own_layers(podman: Podman, image: str, base: str) -> set[str]:
    """Diff ids of the layers the Containerfiles added on top of the base."""
    return set(podman.inspect(image)["RootFS"]["Layers"]) - set(podman.inspect(base)["RootFS"]["Layers"])


def _scan(podman: Podman, image: str, own: set[str]) -> list[str]:
    """Stream the image as an OCI archive and read each added layer's tar: every path under
    run/secrets, and every file byte-equal to the host's CA bundle, is a finding."""
    ca = HOST_CA.read_bytes()
    ca_sha = hashlib.sha256(ca).hexdigest()
    findings: list[str] = []
    save = subprocess.Popen(["podman", "save", "--format", "oci-archive", "--uncompressed", image],
                            env=podman.env, stdout=subprocess.PIPE)
    assert save.stdout is not None
    seen = 0
    with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
        for blob in archive:
            if not blob.name.startswith("blobs/sha256/") or blob.size < 1024:
                continue
            # Saved uncompressed, a layer blob's digest is its diff id; the other blobs (config,
            # manifest) are small and skipped above.
            if f"sha256:{blob.name.rsplit('/', 1)[1]}" not in own:
                continue
            seen += 1
            stream = archive.extractfile(blob)
            assert stream is not None
            with tarfile.open(fileobj=stream, mode="r|") as layer:
                for entry in layer:
                    path = entry.name.lstrip("./")
                    if path.startswith("run/secrets/") or path.endswith("hostca"):
                        findings.append(f"{blob.name}: {path}")
                    if entry.isfile() and entry.size == len(ca):
                        data = layer.extractfile(entry)
                        if data and hashlib.sha256(data.read()).hexdigest() == ca_sha:
                            findings.append(f"{blob.name}: {path} is the host's CA bundle")
    assert save.wait(timeout=600) == 0
    assert seen == len(own), f"found {seen} of the {len(own)} added layers in the archive"
    return findings


@pytest.mark.parametrize("name", IMAGES)
def test_no_ca_bundle_or_secret_in_any_layer(podman: Podman, images: dict[str, str], name: str) -> None:
    history = json.loads(podman.out("history", "--no-trunc", "--format", "json", images[name]))
    created_by = "\n".join(step.get("createdby", step.get("CreatedBy", "")) for step in history)
    assert "BEGIN CERTIFICATE" not in created_by and "hostca" in created_by  # mounted, never copied
    base = podman.script("debian-base-image.sh").strip()
    assert _scan(podman, images[name], _own_layers(podman, images[name], base)) == []


# What an image may weigh (issue 25): the CPU images carry no torch and no CUDA libraries; the
# GPU image one torch with CUDA, shared by both engine venvs (test_gpu_image.py).
SIZE_LIMIT_GB = {"chorus": 2.0, "chorus-gpu": 12.0, "chorus-operator": 1.0}

# Run inside an image: a whole sample check and a speaker comparison of two recordings of
# one voice, then which of the heavy packages the environment has and which were imported.
SAMPLE_PROBE = """
import importlib.util, json, sys
from pathlib import Path
from chorus.samples.audio import decode_audio
from chorus.samples.models import SampleModels
from chorus.samples.quality import SampleChecker
from chorus.samples.speaker import SpeakerComparer
models = SampleModels()
a, b = (decode_audio(Path(f"/recordings/{name}.wav").read_bytes()) for name in ("a", "b"))
report = SampleChecker(models).check_sample(a, ["xtts_v2"])
heavy = ("torch", "nvidia", "resemblyzer", "silero_vad")
print(json.dumps({
    "accepted": report.accepted,
    "speech_ratio": next(c.value for c in report.checks if c.name == "speech_ratio"),
    "similarity": SpeakerComparer(models).similarity(a, b),
    "installed": [m for m in heavy if importlib.util.find_spec(m)],
    "imported": [m for m in sys.modules if m.split(".")[0] in heavy],
}))
"""


@pytest.mark.parametrize("name", IMAGES)
def test_size_is_within_its_limit(podman: Podman, images: dict[str, str], name: str) -> None:
    assert podman.inspect(images[name])["Size"] / 1e9 <= SIZE_LIMIT_GB[name]


@pytest.mark.parametrize("name", IMAGES)
def test_sample_checks_run_without_torch(
    podman: Podman, images: dict[str, str], name: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The checks' models come as ONNX files exported at build time: on a read-only root,
    as the image's user, clean speech is accepted and two recordings of one voice sound alike,
    in the main environment of every image (the GPU image's torch is its engines' alone)."""
    from tests.support import recordings as rec

    directory = tmp_path_factory.mktemp(f"recordings-{name}")
    directory.chmod(0o755)
    voice = rec.recordings()
    for file, speech in (("a", voice.clean()), ("b", voice.clean_other_text())):
        (directory / f"{file}.wav").write_bytes(rec.encode(speech.samples, rec.PIPER_RATE))
        (directory / f"{file}.wav").chmod(0o644)
    out = podman.out("run", "--rm", "--read-only", "-v", f"{directory}:/recordings:ro",
                     images[name], "python", "-c", SAMPLE_PROBE)
    found = json.loads(out)
    assert found["accepted"] and found["speech_ratio"] > 0.6
    assert found["similarity"] > 0.75  # SpeakerComparer's same-speaker bar
    assert found["installed"] == [] and found["imported"] == []
