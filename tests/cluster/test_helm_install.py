"""What a platform engineer does, on a real node with KubeRay's operator and NetworkPolicy
enforced (kube-router): `helm install` the chart, `kubectl apply` a personality, hear it
through the Serve Service; a sample URL served inside the cluster; a Ray pod killed; `helm
upgrade`; the policies tried from inside the cluster; `helm uninstall`.

The tests run in file order on one release (each step starts from the one before, as the
engineer's would). Timings go to bench/RESULTS.md from the printed `timing:` lines."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.cluster.node import Cluster
from tests.kube.control_plane import ROOT
from tests.kube.operator_runner import eventually
from tests.support.recordings import encode, recordings
from tests.support.speech import CLEAR_SENTENCES, word_error_rate

NS = "voices"
RELEASE = "chorus"
EXAMPLE = ROOT / "manifests" / "examples" / "piper-only.yaml"

pytestmark = pytest.mark.timeout(900)


def values(cluster: Cluster) -> dict[str, Any]:
    """The chart's defaults, save what a 2-core node without GPUs and a KubeRay older than
    the chart's target need; each line says which."""
    return {
        "auth": {"existingSecret": "chorus-api-keys"},
        # No GPU: the cloning engines (and with them the GPU group) are off.
        "engines": {"xtts_v2": {"enabled": False}, "styletts2": {"enabled": False},
                    "piper": {"minReplicas": 1, "maxReplicas": 1}},
        "ingress": {"minReplicas": 1, "maxReplicas": 1},
        "ray": {
            # authOptions needs KubeRay v1.6; the module proxy serves up to v1.5.0, which drops
            # the field and would call a token-guarded dashboard without the token.
            "auth": {"enabled": False},
            # Requests sized for two cores; the limits still give Ray the CPUs the Serve
            # profile asks for (Ingress, Piper, Recognizer: one each).
            "head": {"resources": {"requests": {"cpu": "100m", "memory": "1Gi"},
                                   "limits": {"cpu": "1", "memory": "3Gi"}}},
            "cpuWorkers": {"minReplicas": 1, "maxReplicas": 1,
                           "resources": {"requests": {"cpu": "300m", "memory": "2Gi"},
                                         "limits": {"cpu": "4", "memory": "8Gi"}}},
            "autoscalerOptions": {
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                              "limits": {"cpu": "500m", "memory": "512Mi"}},
                "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                    "capabilities": {"drop": ["ALL"]}},
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            },
        },
        # The sample site below: its Service's address (the operator's own check) and its pod's
        # (the operator's NetworkPolicy, which sees addresses after the Service's translation).
        "operator": {"allowPrivateSampleNetworks": [cluster.net.cluster_cidr]},
        # KubeRay installed from its own kustomization labels its pod so (its Helm chart:
        # app.kubernetes.io/name: kuberay-operator, the chart's default).
        "networkPolicy": {"kuberay": {"podSelector": {"matchLabels": cluster.kuberay_labels}}},
    }


@dataclass
class Release:
    cluster: Cluster
    key: str
    values_file: Path
    installed_at: float
    timings: dict[str, float]

    def kubectl(self, *args: str, **kw: Any) -> Any:
        return self.cluster.kube.kubectl("-n", NS, *args, **kw)

    def get(self, *what: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", *what, "-o", "json").stdout)

    def helm(self, *args: str) -> str:
        return self.cluster.kube.helm(*args, "--namespace", NS).stdout

    def serve_url(self) -> str:
        """The Serve Service KubeRay keeps, reached as any client on the node does: its
        ClusterIP through kube-proxy's rules."""
        return f"http://{self.get('service', f'{RELEASE}-serve-svc')['spec']['clusterIP']}:8000"

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.serve_url(), timeout=60,
                            headers={"Authorization": f"Bearer {self.key}"})

    def speak(self, voice: str, text: str = CLEAR_SENTENCES[0]) -> httpx.Response:
        with self.client() as client:
            return client.post("/v1/audio/speech", json={"model": "tts-1", "voice": voice, "input": text,
                                                         "response_format": "wav"})

    def assert_heard(self, voice: str, ear: Any) -> None:
        """Four sentences the ear hears reliably; the example keeps Piper's random noise, so
        one may come out unclear."""
        heard = {}
        for sentence in CLEAR_SENTENCES[:4]:
            response = self.speak(voice, sentence)
            assert response.status_code == 200 and response.headers["x-chorus-provider"] == "piper", response.text
            heard[sentence] = ear.hear(response.content)
        assert sum(word_error_rate(s, h) <= 0.25 for s, h in heard.items()) >= 3, f"ear heard {heard}"

    def answer(self, path: str) -> Any | None:
        """GET `path` on a fresh connection: its JSON, or None while a replica is replaced
        (a kept-alive connection may be reset by the replica that leaves)."""
        try:
            with self.client() as client:
                response = client.get(path)
        except httpx.TransportError:
            return None
        return response.json() if response.status_code == 200 else None

    def spoken(self, voice: str) -> httpx.Response | None:
        """The speech, or None while the Service cannot give it (no ready endpoint, an error)."""
        try:
            response = self.speak(voice)
        except httpx.TransportError:
            return None
        return response if response.status_code == 200 else None

    def app_running(self) -> dict[str, Any] | None:
        self.cluster.kube.check_alive()
        status = self.get("rayservice", RELEASE).get("status", {})
        app = status.get("activeServiceStatus", {}).get("applicationStatuses", {}).get("chorus", {})
        ready = [c for c in status.get("conditions", []) if c["type"] == "Ready"]
        if app.get("status") == "RUNNING" and ready and ready[0]["status"] == "True":
            return status
        return None

    def ray_pods(self, group: str) -> list[dict[str, Any]]:
        return self.get("pods", "-l", f"ray.io/group={group},app.kubernetes.io/instance={RELEASE}")["items"]


def _volume(cluster: Cluster, name: str, path: Path, mode: str, claim: str | None = None) -> list[dict]:
    """A hostPath PersistentVolume (this node's stand-in for a storage class), writable by the
    images' user; bound to `claim` when given, else to whichever claim fits."""
    path.mkdir(parents=True)
    os.chown(path, 1000, 1000)
    pv: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"{NS}-{name}"},
        "spec": {"capacity": {"storage": "20Gi"}, "accessModes": [mode],
                 "hostPath": {"path": str(path), "type": "Directory"}},
    }
    if claim is None:
        return [pv]
    pv["spec"]["claimRef"] = {"namespace": NS, "name": claim}
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim, "namespace": NS},
           "spec": {"accessModes": [mode], "storageClassName": "", "volumeName": pv["metadata"]["name"],
                    "resources": {"requests": {"storage": "1Gi"}}}}
    return [pv, pvc]


@pytest.fixture(scope="module")
def release(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    kube = cluster.kube
    kube.kubectl("create", "namespace", NS)
    work = tmp_path_factory.mktemp("release")
    key = "chorus_" + secrets.token_urlsafe(32)
    keys = {"keys": [{"name": "e2e", "sha256": sha256(key.encode()).hexdigest(),
                      "scopes": ["speak", "samples", "admin"]}]}
    setup = [
        # The shared sample volume the chart claims, and the model volume it expects to exist.
        *_volume(cluster, "samples", work / "samples", "ReadWriteMany"),
        *_volume(cluster, "models", work / "models", "ReadOnlyMany", claim="chorus-models"),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "chorus-api-keys", "namespace": NS},
         "stringData": {"keys.yaml": yaml.safe_dump(keys)}},
    ]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(setup))
    values_file = work / "values.yaml"
    values_file.write_text(yaml.safe_dump(values(cluster)))
    started = time.monotonic()
    kube.helm("install", RELEASE, str(ROOT / "charts" / "chorus"), "--namespace", NS, "-f", str(values_file))
    rel = Release(cluster, key, values_file, started, {})
    yield rel
    for name, seconds in rel.timings.items():
        print(f"timing: {name} {seconds:.1f} s")


def test_install_runs_operator_kuberay_cluster_and_serve_app(release: Release) -> None:
    status = eventually(release.app_running, timeout=600, what="Serve application RUNNING and RayService Ready")
    release.timings["helm install -> Serve app RUNNING"] = time.monotonic() - release.installed_at
    deployments = status["activeServiceStatus"]["applicationStatuses"]["chorus"]["serveDeploymentStatuses"]
    assert {name: d["status"] for name, d in deployments.items()} == {
        "Ingress": "HEALTHY", "piper": "HEALTHY", "Recognizer": "HEALTHY"}
    # The operator's Deployment (the chorus-operator image) is up under the chart's identity.
    operator = release.get("deployment", f"{RELEASE}-operator")
    assert operator["status"].get("readyReplicas") == 1
    # KubeRay made a head and the CPU group's worker from the chart's templates, read-only roots
    # and all, and both pass the chart's probes (the worker's once its Serve proxy answers).
    for group in ("headgroup", "cpu"):
        pod = eventually(lambda: (pods := release.ray_pods(group)) and all(
            c["ready"] for c in pods[0]["status"].get("containerStatuses", [])) and pods[0],
            timeout=120, what=f"{group} pod ready")
        ray = next(c for c in pod["spec"]["containers"] if c["name"].startswith("ray-"))
        assert ray["securityContext"]["readOnlyRootFilesystem"] is True
        assert ray["readinessProbe"]["httpGet"]["port"] in (8265, 8000)
    assert not release.ray_pods("gpu")


def test_applied_example_personality_is_spoken_through_the_serve_service(release: Release, ear: Any) -> None:
    applied = time.monotonic()
    release.kubectl("apply", "-f", str(EXAMPLE))
    eventually(lambda: release.spoken("piper-only"), timeout=120, what="speech for the applied example")
    release.timings["kubectl apply -> first speech"] = time.monotonic() - applied
    release.assert_heard("piper-only", ear)
    # The key is what let it through: no key, no speech.
    anonymous = httpx.post(f"{release.serve_url()}/v1/audio/speech", timeout=30,
                           json={"model": "tts-1", "voice": "piper-only", "input": CLEAR_SENTENCES[0]})
    assert anonymous.status_code == 401


SAMPLE_SITE = "sample-site"


def sample_site(image: str, clean_wav: bytes) -> list[dict[str, Any]]:
    """A web server inside the cluster (the chorus image's Python) serving one recording on
    port 80: NetworkPolicies see the pod's own port after the Service's translation, and the
    operator's egress allows 80 and 443."""
    labels = {"app": SAMPLE_SITE}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SAMPLE_SITE, "namespace": NS},
         "binaryData": {"clean.wav": base64.b64encode(clean_wav).decode()}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": SAMPLE_SITE, "namespace": NS, "labels": labels},
         "spec": {
             "containers": [{
                 "name": "web", "image": image, "imagePullPolicy": "Never",
                 "command": ["python", "-m", "http.server", "80", "--directory", "/srv"],
                 "securityContext": {"runAsUser": 0},  # port 80
                 "volumeMounts": [{"name": "files", "mountPath": "/srv"}],
                 "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 1},
             }],
             "volumes": [{"name": "files", "configMap": {"name": SAMPLE_SITE}}],
         }},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SAMPLE_SITE, "namespace": NS},
         "spec": {"selector": labels, "ports": [{"port": 80}]}},
    ]


def test_sample_url_inside_the_cluster_is_fetched_checked_and_seen_by_the_ray_side(release: Release) -> None:
    rec = recordings().clean()
    # Server-side: a client-side apply would copy the recording into an annotation (256 KiB cap).
    site = sample_site(release.cluster.images["chorus"], encode(rec.samples, rec.rate))
    release.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(site))
    release.kubectl("wait", "--for=condition=Ready", f"pod/{SAMPLE_SITE}", "--timeout=120s", timeout=130)
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["metadata"] = {"name": "site-voice", "namespace": NS}
    # A cloning engine configured (not deployed: no GPU) so the sample is checked against its
    # duration window, as for a cloned voice.
    doc["spec"]["providers"]["xtts_v2"] = {"variant": "british"}
    doc["spec"]["voiceSamples"] = [
        {"id": "take1", "url": f"http://{SAMPLE_SITE}.{NS}.svc.cluster.local/clean.wav"}]
    release.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    with release.client() as client:
        # The operator fetched it onto the shared volume; the Ingress, on a Ray worker, lists it
        # from there with the operator's verdict: the volume is one for both.
        listed = eventually(lambda: (r := client.get("/v1/personalities/site-voice/samples")).status_code == 200
                            and r.json(), timeout=120, what="sample fetched by the operator, listed by the Ingress")
    assert [s["id"] for s in listed] == ["take1"]
    assert listed[0]["quality_score"] > 0.5


def test_killed_ray_worker_comes_back_with_every_personality(release: Release, ear: Any) -> None:
    (worker,) = release.ray_pods("cpu")
    killed = time.monotonic()
    # Returns once the pod is gone, its containers stopped: the Ingress and Piper with them.
    release.kubectl("delete", "pod", worker["metadata"]["name"], "--wait=true", "--timeout=120s", timeout=130)
    release.timings["Ray worker pod deleted -> gone"] = time.monotonic() - killed
    # Serve's proxy on the head holds requests while no replica exists; each counts once
    # answered (by replicas KubeRay's replacement pod now hosts: no other pod can).
    eventually(lambda: release.spoken("piper-only"), timeout=600, what="speech after the worker pod was killed")
    release.timings["Ray worker pod deleted -> speech again"] = time.monotonic() - killed
    release.assert_heard("piper-only", ear)
    (replacement,) = release.ray_pods("cpu")
    assert replacement["metadata"]["uid"] != worker["metadata"]["uid"]
    with release.client() as client:
        names = {p["metadata"]["name"] for p in client.get("/v1/personalities").json()["items"]}
    assert {"piper-only", "site-voice"} <= names


def test_helm_upgrade_changes_the_running_app_in_place(release: Release) -> None:
    head = release.ray_pods("headgroup")[0]["metadata"]["uid"]
    with release.client() as client:
        assert client.get("/v1/dashboard/links").json().get("rayDashboard") is None
    link = "http://127.0.0.1:8265/"
    release.helm("upgrade", RELEASE, str(ROOT / "charts" / "chorus"), "-f", str(release.values_file),
                 "--set", f"dashboard.rayDashboard={link}")
    eventually(lambda: (release.answer("/v1/dashboard/links") or {}).get("rayDashboard") == link,
               timeout=300, what="upgraded value served")
    # Applied to the running Serve app: the Ray cluster was not replaced.
    assert release.ray_pods("headgroup")[0]["metadata"]["uid"] == head
    assert release.speak("piper-only").status_code == 200


REACH = """
import json, socket, sys
reached = {}
for target in sys.argv[1:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        reached[target] = True
    except OSError:
        reached[target] = False
print(json.dumps(reached))
"""


def assert_reaches(release: Release, name: str, labels: dict[str, str], expected: dict[str, bool]) -> None:
    """A pod of the namespace with `labels` comes to reach exactly the `expected` targets
    (host:port). Tried until it does (a minute at most): the enforcer adds a new pod's address
    to the policies' sets shortly after the pod starts, not before."""
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": labels},
           "spec": {"containers": [{"name": "probe", "image": release.cluster.images["chorus"],
                                    "imagePullPolicy": "Never",
                                    "command": ["python", "-c", "import time; time.sleep(3600)"]}]}}
    release.kubectl("apply", "-f", "-", input=yaml.safe_dump(pod))
    release.kubectl("wait", "--for=condition=Ready", f"pod/{name}", "--timeout=120s", timeout=130)
    ready = time.monotonic()
    seen: list[dict[str, bool]] = []

    def as_expected() -> bool:
        out = release.kubectl("exec", name, "--", "python", "-c", REACH, *expected, timeout=60)
        seen.append(json.loads(out.stdout))
        return seen[-1] == expected
    with contextlib.suppress(AssertionError):
        eventually(as_expected, timeout=60, what=f"{name} reaching {expected}")
        release.timings[f"{name} pod Ready -> policies as expected ({len(seen)} tries)"] = time.monotonic() - ready
    release.kubectl("delete", "pod", name, "--grace-period=1", "--wait=false")
    assert seen and seen[-1] == expected, seen


def test_network_policies_keep_rays_ports_to_the_release_and_kuberay(release: Release) -> None:
    """Everything above ran under the chart's policies, enforced: KubeRay deployed through
    them and the release's pods reached each other. From outside the release only Serve's
    port answers; a pod labelled as KubeRay's operator also reaches the dashboard and agent."""
    head = release.ray_pods("headgroup")[0]["status"]["podIP"]
    worker = release.ray_pods("cpu")[0]["status"]["podIP"]
    gcs, dashboard, agent, serve = f"{head}:6379", f"{head}:8265", f"{head}:52365", f"{worker}:8000"
    assert_reaches(release, "outsider", {"app": "outsider"},
                   {gcs: False, dashboard: False, agent: False, serve: True})
    assert_reaches(release, "as-kuberay", release.cluster.kuberay_labels,
                   {gcs: False, dashboard: True, agent: True, serve: True})


CHART_KINDS = ("deployments,replicasets,pods,services,configmaps,secrets,serviceaccounts,roles,rolebindings,"
               "networkpolicies,persistentvolumeclaims,rayservices,rayclusters")


def test_uninstall_leaves_only_what_the_chart_documents(release: Release) -> None:
    # docs/kubernetes.md#removing-chorus: personalities first, while the operator can still
    # release them (its finalizer), then the release.
    release.kubectl("delete", "vp", "--all", "--wait=true", "--timeout=120s", timeout=130)
    release.kubectl("delete", "-f", "-", "--wait=true", input=yaml.safe_dump_all(sample_site("", b"")), timeout=130)
    release.helm("uninstall", RELEASE, "--wait", "--timeout", "300s")

    def left() -> list[str]:
        items = release.get(CHART_KINDS)["items"]
        return sorted(f"{i['kind']}/{i['metadata']['name']}" for i in items
                      if not i["metadata"]["name"].startswith(("kube-root-ca.crt", "default", "chorus-api-keys",
                                                               "chorus-models")))
    # Kept on purpose: the sample volume (helm.sh/resource-policy: keep) and Helm's crds/.
    assert eventually(lambda: left() == ["PersistentVolumeClaim/chorus-samples"] and left(),
                      timeout=180, what="only the kept sample volume left")
    cluster_wide = json.loads(release.cluster.kube.kubectl(
        "get", "clusterroles,clusterrolebindings,validatingadmissionpolicies,validatingadmissionpolicybindings",
        "-l", f"app.kubernetes.io/instance={RELEASE}", "-o", "json").stdout)["items"]
    assert cluster_wide == []
    assert release.cluster.kube.kubectl("get", "crd", "voicepersonalities.voice.chorus.dev").returncode == 0
