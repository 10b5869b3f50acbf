"""One volume per personality (the chart's `samples.volumePerPersonality`): the operator
claims a PVC for each personality, owned by it, and never waits for it to bind (this
control plane has no provisioner, as many clusters have none until a pod mounts).
This operator runs cluster-wide (`operator.clusterWide`), under that mode's RBAC, which
also shows namesakes in two namespaces keeping their own samples."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.kube.control_plane import ControlPlane
from tests.kube.operator_runner import eventually, operator_identity, running_operator
from tests.kube.sample_site import SampleServer
from tests.support.recordings import encode, recordings
from voice_operator import crd

NS = "volumes"
OTHER_NS = "volumes-b"


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("volume-samples")


@pytest.fixture(scope="module")
def operator(kube: ControlPlane, samples_dir: Path) -> Iterator[None]:
    kube.kubectl("create", "namespace", NS)
    kube.kubectl("create", "namespace", OTHER_NS)
    identity = operator_identity(kube, NS, "operator.clusterWide=true")
    with running_operator(identity, None, samples_dir,
                          CHORUS_OPERATOR_SAMPLE_VOLUMES="per-personality",
                          CHORUS_OPERATOR_STORAGE_CLASS="fast-rwo",
                          CHORUS_OPERATOR_VOLUME_SIZE="2Gi",
                          # the test sample site is on loopback: the tests' own allowance
                          CHORUS_OPERATOR_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8") as (_, denials):
        yield
    assert not denials.seen


def get(kube: ControlPlane, kind: str, name: str, namespace: str = NS) -> dict | None:
    out = kube.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def test_namesakes_in_two_namespaces_keep_their_own_samples(
    kube: ControlPlane, operator: None, samples_dir: Path
) -> None:
    clean = recordings().clean()
    site = SampleServer(files={"/clean.wav": encode(clean.samples, clean.rate)})
    httpd = site.serve()
    try:
        spec = {"activeProvider": "xtts_v2", "fallbackChain": ["piper"],
                "providers": {"xtts_v2": {"variant": "british"}, "piper": {"voice": "en_US-joe-medium"}},
                "voiceSamples": [{"id": "take1", "url": f"{site.url}/clean.wav"}]}
        for ns in (NS, OTHER_NS):
            doc = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
                   "metadata": {"name": "alice", "namespace": ns}, "spec": spec}
            kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
        ready = {ns: eventually(
            lambda ns=ns: (v := get(kube, "vp", "alice", ns)) and v.get("status", {}).get("samples") == 1 and v,
            timeout=120, what=f"alice in {ns} stored") for ns in (NS, OTHER_NS)}
    finally:
        httpd.shutdown()
    kept, dropped = (samples_dir / ready[NS]["metadata"]["uid"]), (samples_dir / ready[OTHER_NS]["metadata"]["uid"])
    assert (kept / "take1.json").exists() and (dropped / "take1.json").exists()

    kube.kubectl("delete", "vp", "alice", "-n", OTHER_NS, "--wait=true", "--timeout=60s")
    assert not dropped.exists()
    assert (kept / "take1.json").exists() and (kept / "take1.wav").exists()
    kube.kubectl("delete", "vp", "alice", "-n", NS, "--wait=true", "--timeout=60s")


def test_each_personality_claims_its_own_volume_and_releases_it(kube: ControlPlane, operator: None) -> None:
    doc = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
           "metadata": {"name": "solo", "namespace": NS},
           "spec": {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}}}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    vp = eventually(lambda: (v := get(kube, "vp", "solo")) and v.get("status", {}).get("observedGeneration") and v,
                    what="solo observed")
    pvc = get(kube, "pvc", "chorus-samples-solo")
    assert pvc is not None and pvc["status"]["phase"] == "Pending"  # nothing binds it here; no matter
    assert pvc["spec"]["storageClassName"] == "fast-rwo"
    assert pvc["spec"]["resources"]["requests"]["storage"] == "2Gi"
    assert pvc["metadata"]["ownerReferences"][0]["uid"] == vp["metadata"]["uid"]
    assert vp["status"]["sampleVolume"] == "pvc/chorus-samples-solo"
    assert {c["type"]: c["status"] for c in vp["status"]["conditions"]}["Ready"] == "True"

    kube.kubectl("delete", "vp", "solo", "-n", NS, "--wait=true", "--timeout=60s")
    eventually(lambda: get(kube, "pvc", "chorus-samples-solo") is None, what="PVC collected")


def test_a_spec_the_model_refuses_is_a_permanent_error_in_status(kube: ControlPlane, operator: None) -> None:
    """Version skew: an older CRD without the cross-field rules lets through a spec this
    operator's model refuses. It says why in status and an event, renders nothing, and
    does not retry until the spec changes."""
    relaxed = crd.render_crd()
    del relaxed["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["x-kubernetes-validations"]
    kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(relaxed))
    try:
        doc = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
               "metadata": {"name": "skewed", "namespace": NS},
               "spec": {"activeProvider": "xtts_v2", "providers": {"piper": {"voice": "en_US-joe-medium"}}}}
        kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))
    finally:
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd.OUTPUTS[0]))
    vp = eventually(lambda: (v := get(kube, "vp", "skewed")) and v.get("status", {}).get("conditions") and v,
                    what="skewed reported")
    cond = {c["type"]: c for c in vp["status"]["conditions"]}
    assert cond["ConfigRendered"]["status"] == "False" and cond["ConfigRendered"]["reason"] == "InvalidSpec"
    assert "activeProvider 'xtts_v2' is not configured" in cond["ConfigRendered"]["message"]
    assert cond["Ready"]["status"] == "False"
    assert get(kube, "configmap", "chorus-personality-skewed") is None
    events = json.loads(kube.kubectl("get", "events", "-n", NS, "--field-selector",
                                     "involvedObject.name=skewed", "-o", "json").stdout)["items"]
    assert any(e["reason"] == "InvalidSpec" and e["type"] == "Warning" for e in events)
