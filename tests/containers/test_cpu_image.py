"""The CPU image runs the embedded default as its non-root user on a read-only root
filesystem (writable: a tmpfs /tmp and the image's declared volumes), speaks offline with the
bundled Piper voice, and answers OpenAI's client from the host."""

from __future__ import annotations

import tomllib
from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import free_port
from tests.containers.podman import ROOT, Podman, wait_for
from tests.support.chorus_app import STEADY_PIPER
from tests.support.speech import CLEAR_SENTENCES, word_error_rate

pytestmark = [pytest.mark.containers, pytest.mark.timeout(3600)]

STEADY = {
    "displayName": "Joe in a container",
    "activeProvider": "piper",
    "languages": {"primary": "en", "supported": ["en"]},
    "providers": {"piper": STEADY_PIPER},
}


def test_version_is_the_packages(podman: Podman, images: dict[str, str]) -> None:
    version = images["chorus"].rsplit(":", 1)[1]
    assert podman.out("run", "--rm", images["chorus"], "chorus", "--version") == f"chorus {version}\n"


@pytest.mark.parametrize("image", ["chorus", "chorus-gpu"])
def test_ray_images_open_the_kubernetes_personality_store(podman: Podman, images: dict[str, str], image: str) -> None:
    """In a cluster the Ingress reads personalities from the API server (the cluster
    profile's `personalities.kubernetes`); tests/cluster found the client missing once."""
    out = podman.out("run", "--rm", images[image], "python", "-c",
                     "import chorus.stores.kubernetes, kubernetes_asyncio; print(kubernetes_asyncio.__version__)")
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert f"kubernetes-asyncio=={out.strip()}" in extras["kubernetes"]


@pytest.fixture(scope="module")
def served(podman: Podman, images: dict[str, str]) -> Iterator[str]:
    """`chorus serve` in the image: host networking (containers-env.sh), loopback only,
    so no keys are needed; Ray's session and object spilling go to the tmpfs /tmp."""
    port = free_port()
    options = ("--read-only", "--read-only-tmpfs=false", "--tmpfs", "/tmp:rw,exec,size=2g",
               "--shm-size", "512m", "--memory", "6g")
    command = ("chorus", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard",
               "--metrics-port", str(free_port()),
               "--personalities", "/var/lib/chorus/personalities", "--samples", "/var/lib/chorus/samples")
    with podman.container(images["chorus"], *command, options=options) as cid:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/readyz", cid, podman, timeout=300)
        put = httpx.put(f"{url}/v1/personalities/steady", json=STEADY, timeout=30)
        assert put.status_code in (200, 201), put.text
        yield url


def test_serves_as_non_root_on_a_read_only_root(podman: Podman, images: dict[str, str], served: str) -> None:
    ready = httpx.get(f"{served}/readyz", timeout=10)
    assert ready.status_code == 200, ready.text
    # The root filesystem really is read-only for the server's user, and the image's
    # declared places are writable.
    cid = podman.out("ps", "-q", "--filter", f"ancestor={images['chorus']}").split()[0]
    assert podman.out("exec", cid, "id", "-u").strip() == "1000"
    assert podman.run("exec", cid, "touch", "/opt/chorus/x", check=False).returncode != 0
    for place in ("/tmp", "/home/chorus", "/var/lib/chorus/samples", "/var/cache/chorus"):
        assert podman.run("exec", cid, "touch", f"{place}/x", check=False).returncode == 0, place


def test_speech_from_the_container_transcribes(served: str, ear) -> None:
    with httpx.Client(base_url=served, timeout=60) as c:
        heard = {}
        for sentence in CLEAR_SENTENCES[:4]:
            r = c.post("/v1/personalities/steady/speech", json={"text": sentence})
            assert r.status_code == 200, r.text
            assert r.headers["x-chorus-provider"] == "piper"
            heard[sentence] = ear.hear(r.content)
    good = [s for s, h in heard.items() if word_error_rate(s, h) <= 0.25]
    assert len(good) >= 3, f"ear heard {heard}"


def test_first_run_seeds_the_bundled_personality(served: str) -> None:
    r = httpx.get(f"{served}/v1/personalities/default", timeout=10)
    assert r.status_code == 200, r.text


def test_openai_route_from_the_host(served: str, ear) -> None:
    client = openai.OpenAI(base_url=f"{served}/v1", api_key="unused", max_retries=0, timeout=60)
    heard = {}
    for sentence in CLEAR_SENTENCES[:3]:
        audio = client.audio.speech.create(model="tts-1", voice="steady", input=sentence,
                                           response_format="wav")
        assert audio.content[:4] == b"RIFF" and len(audio.content) > 10_000
        heard[sentence] = ear.hear(audio.content)
    assert sum(word_error_rate(s, h) <= 0.25 for s, h in heard.items()) >= 2, f"ear heard {heard}"
