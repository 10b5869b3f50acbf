"""The operator against a real API server, running under the chart's RBAC identity:
apply -> ConfigMap, sample directory and Ready status; edit -> re-render; URL samples
fetched and put through the upload checks; delete -> nothing left behind."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kopf.testing import KopfRunner

from chorus.personalities import Personality, parse_spec
from chorus.stores import configmaps
from tests.conftest import free_port
from tests.kube.control_plane import ControlPlane
from tests.kube.operator_runner import (
    Denials,
    eventually,
    operator_identity,
    running_operator,
)
from tests.kube.sample_site import SampleServer
from tests.support.recordings import encode, recordings

NS = "voices"


@pytest.fixture(scope="module")
def samples_site() -> Iterator[SampleServer]:
    rec = recordings()
    site = SampleServer(files={
        "/clean.wav": encode(rec.clean().samples, rec.clean().rate),
        "/other.wav": encode(rec.clean_other_text().samples, rec.clean_other_text().rate),
        "/short.wav": encode(rec.too_short().samples, rec.too_short().rate),
    })
    httpd = site.serve()
    yield site
    httpd.shutdown()


@dataclass
class Operator:
    runner: KopfRunner
    samples_dir: Path
    liveness: str
    denials: Denials


@pytest.fixture(scope="module")
def operator(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    kube.kubectl("create", "namespace", NS)
    identity = operator_identity(kube, NS)
    samples = tmp_path_factory.mktemp("operator-samples")
    port = free_port()
    # The sample site listens on loopback, which sample URLs may never reach by default:
    # this allowance is the tests' alone.
    with running_operator(identity, NS, samples, liveness=f"http://127.0.0.1:{port}/healthz",
                          CHORUS_OPERATOR_ALLOW_PRIVATE_NETWORKS="127.0.0.0/8") as (runner, denials):
        yield Operator(runner, samples, f"http://127.0.0.1:{port}/healthz", denials)
    # Under exactly the chart's RBAC, nothing the operator asked for was refused.
    assert not denials.seen


def apply(kube: ControlPlane, name: str, spec: dict[str, Any]) -> None:
    doc = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
           "metadata": {"name": name, "namespace": NS}, "spec": spec}
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def get(kube: ControlPlane, kind: str, name: str) -> dict[str, Any] | None:
    out = kube.kubectl("get", kind, name, "-n", NS, "-o", "json", check=False)
    return json.loads(out.stdout) if out.returncode == 0 else None


def conditions(vp: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (vp.get("status") or {}).get("conditions", [])}


def settled(kube: ControlPlane, name: str) -> dict[str, Any]:
    """The resource once the operator has reported on its current generation."""
    def probe() -> dict[str, Any] | None:
        vp = get(kube, "vp", name)
        if vp and vp.get("status", {}).get("observedGeneration") == vp["metadata"]["generation"]:
            return vp
        return None
    return eventually(probe, what=f"{name} observed")


def events(kube: ControlPlane, name: str) -> list[dict[str, Any]]:
    out = kube.kubectl("get", "events", "-n", NS, "--field-selector", f"involvedObject.name={name}", "-o", "json")
    return json.loads(out.stdout)["items"]


PIPER_SPEC = {
    "displayName": "Narrator",
    "activeProvider": "piper",
    "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": 1.0}}},
}


def test_apply_renders_configmap_and_sample_volume_and_turns_ready(kube: ControlPlane, operator: Operator) -> None:
    apply(kube, "narrator", PIPER_SPEC)
    vp = settled(kube, "narrator")
    cond = conditions(vp)
    assert cond["Ready"]["status"] == "True", cond
    assert cond["ConfigRendered"]["status"] == "True" and cond["SamplesReady"]["status"] == "True"
    assert all(c["observedGeneration"] == vp["metadata"]["generation"] for c in cond.values())

    cm = get(kube, "configmap", configmaps.configmap_name("narrator"))
    assert cm is not None
    served = configmaps.parse(cm["data"], name="narrator")
    assert served.spec == parse_spec(PIPER_SPEC)
    assert cm["metadata"]["labels"][configmaps.PERSONALITY_LABEL] == "narrator"
    (owner,) = cm["metadata"]["ownerReferences"]
    assert owner["uid"] == vp["metadata"]["uid"] and owner["controller"] is True
    assert (operator.samples_dir / vp["metadata"]["uid"]).is_dir()
    assert vp["status"]["configMap"] == cm["metadata"]["name"] and vp["status"]["samples"] == 0
    assert "voice.chorus.dev/samples" in vp["metadata"]["finalizers"]
    assert any(e["reason"] == "ConfigRendered" for e in events(kube, "narrator"))
    # The printer columns read the status.
    row = kube.kubectl("get", "vp", "narrator", "-n", NS).stdout.splitlines()[1].split()
    assert row[:4] == ["narrator", "piper", "True", "0"]


def test_liveness_endpoint_answers(operator: Operator) -> None:
    probe = eventually(lambda: (r := httpx.get(operator.liveness, timeout=5)).status_code == 200 and r,
                       what="liveness")
    assert probe.status_code == 200


def test_an_edit_re_renders_the_configmap(kube: ControlPlane, operator: Operator) -> None:
    apply(kube, "narrator", PIPER_SPEC)
    first = settled(kube, "narrator")
    faster = {**PIPER_SPEC, "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": 1.5}}}}
    apply(kube, "narrator", faster)
    vp = settled(kube, "narrator")
    assert vp["metadata"]["generation"] > first["metadata"]["generation"]
    cm = get(kube, "configmap", configmaps.configmap_name("narrator"))
    assert configmaps.parse(cm["data"], name="narrator").spec.providers.piper.settings.speed == 1.5
    assert cm["metadata"]["annotations"][configmaps.GENERATION_ANNOTATION] == str(vp["metadata"]["generation"])
    assert conditions(vp)["Ready"]["status"] == "True"


def cloning_spec(samples: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "activeProvider": "xtts_v2",
        "fallbackChain": ["piper"],
        "providers": {"xtts_v2": {"variant": "british"}, "piper": {"voice": "en_US-joe-medium"}},
        "voiceSamples": samples,
    }


def sample_dir(kube: ControlPlane, operator: Operator, name: str) -> Path:
    """Where the operator keeps a personality's samples: under its resource's uid."""
    vp = get(kube, "vp", name)
    assert vp is not None
    return operator.samples_dir / vp["metadata"]["uid"]


def stored_ids(kube: ControlPlane, operator: Operator, name: str) -> set[str]:
    return {p.stem for p in sample_dir(kube, operator, name).glob("*.json")}


def test_url_samples_are_fetched_checked_and_follow_the_spec(
    kube: ControlPlane, operator: Operator, samples_site: SampleServer
) -> None:
    good = {"id": "studio", "url": f"{samples_site.url}/clean.wav", "language": "en"}
    short = {"id": "clip", "url": f"{samples_site.url}/short.wav"}
    missing = {"id": "gone", "url": f"{samples_site.url}/nothing-here.wav"}
    elsewhere = {"id": "ftp", "url": "ftp://127.0.0.1/sample.wav"}
    apply(kube, "cloned", cloning_spec([good, short, missing, elsewhere]))
    vp = eventually(lambda: (v := settled(kube, "cloned")) and conditions(v).get("SamplesReady") and v,
                    timeout=120, what="samples reported")
    cond = conditions(vp)
    # The good sample is stored through the upload checks; the others are refused with why.
    assert stored_ids(kube, operator, "cloned") == {"studio"}
    assert cond["SamplesReady"]["status"] == "False" and cond["SamplesReady"]["reason"] == "SampleRejected"
    assert "clip:" in cond["SamplesReady"]["message"] and "gone:" in cond["SamplesReady"]["message"]
    assert "HTTP 404" in cond["SamplesReady"]["message"] and "http and https URLs only" in cond["SamplesReady"]["message"]
    assert cond["Ready"]["status"] == "False" and cond["ConfigRendered"]["status"] == "True"
    warnings = [e for e in events(kube, "cloned") if e["reason"] == "SampleRejected"]
    assert warnings and all(e["type"] == "Warning" for e in warnings)
    meta = json.loads((sample_dir(kube, operator, "cloned") / "studio.json").read_text())
    assert meta["quality_score"] > 0.5 and meta["language"] == "en"

    # Drop the bad entries, point the good one at another recording: re-fetched, Ready.
    moved = {**good, "url": f"{samples_site.url}/other.wav"}
    apply(kube, "cloned", cloning_spec([moved]))
    vp = eventually(lambda: (v := settled(kube, "cloned")) and conditions(v)["Ready"]["status"] == "True" and v,
                    timeout=120, what="cloned ready")
    after = json.loads((sample_dir(kube, operator, "cloned") / "studio.json").read_text())
    assert after["sha256"] != meta["sha256"]
    assert vp["status"]["samples"] == 1 and vp["status"]["fetchedSamples"] == {"studio": moved["url"]}

    # A sample removed from the spec is removed from the volume.
    apply(kube, "cloned", cloning_spec([]))
    eventually(lambda: not stored_ids(kube, operator, "cloned"), what="sample removed")
    assert settled(kube, "cloned")["status"]["samples"] == 0


def test_a_failing_download_is_retried_until_it_works(
    kube: ControlPlane, operator: Operator, samples_site: SampleServer
) -> None:
    samples_site.files["/flaky.wav"] = samples_site.files["/clean.wav"]
    samples_site.failures["/flaky.wav"] = [503, 503]
    apply(kube, "flaky", cloning_spec([{"id": "take1", "url": f"{samples_site.url}/flaky.wav"}]))
    failed = eventually(
        lambda: (v := get(kube, "vp", "flaky")) and conditions(v).get("SamplesReady", {}).get("reason") == "FetchFailed" and v,
        what="fetch failure reported")
    assert "HTTP 503" in conditions(failed)["SamplesReady"]["message"]
    vp = eventually(lambda: (v := get(kube, "vp", "flaky")) and conditions(v).get("Ready", {}).get("status") == "True" and v,
                    timeout=60, what="ready after retries")
    assert stored_ids(kube, operator, "flaky") == {"take1"} and not samples_site.failures["/flaky.wav"]
    assert vp["status"]["samples"] == 1


def test_delete_leaves_nothing_behind(kube: ControlPlane, operator: Operator, samples_site: SampleServer) -> None:
    apply(kube, "ephemeral", cloning_spec([{"id": "s1", "url": f"{samples_site.url}/clean.wav"}]))
    eventually(lambda: (v := get(kube, "vp", "ephemeral")) and conditions(v).get("Ready", {}).get("status") == "True",
               timeout=120, what="ephemeral ready")
    assert stored_ids(kube, operator, "ephemeral") == {"s1"}
    directory = sample_dir(kube, operator, "ephemeral")
    kube.kubectl("delete", "vp", "ephemeral", "-n", NS, "--wait=true", "--timeout=60s")
    assert not directory.exists()
    # The ConfigMap goes with its owner (the garbage collector follows ownerReferences).
    eventually(lambda: get(kube, "configmap", configmaps.configmap_name("ephemeral")) is None,
               what="ConfigMap collected")


def test_an_api_refusal_is_shown_and_retried_until_it_heals(kube: ControlPlane, operator: Operator) -> None:
    role = json.loads(kube.kubectl("get", "role", "-n", NS, "-o", "json").stdout)["items"][0]
    kept = {k: role[k] for k in ("apiVersion", "kind", "rules")} | {
        "metadata": {"name": role["metadata"]["name"], "namespace": NS}}
    crippled = {**kept, "rules": [r for r in kept["rules"] if "configmaps" not in r["resources"]]}
    kube.kubectl("replace", "-f", "-", input=json.dumps(crippled))
    try:
        apply(kube, "patient", PIPER_SPEC)
        refused = eventually(
            lambda: (v := get(kube, "vp", "patient")) and conditions(v).get("ConfigRendered", {}).get("reason") == "APIError" and v,
            what="API refusal reported")
        assert "403" in conditions(refused)["ConfigRendered"]["message"]
        assert conditions(refused)["Ready"]["status"] == "False"
    finally:
        kube.kubectl("replace", "-f", "-", input=json.dumps(kept))
    healed = eventually(lambda: (v := get(kube, "vp", "patient")) and conditions(v)["Ready"]["status"] == "True" and v,
                        timeout=60, what="healed after the Role was restored")
    assert get(kube, "configmap", configmaps.configmap_name("patient")) is not None
    assert healed["status"]["observedGeneration"] == healed["metadata"]["generation"]
    operator.denials.seen.clear()  # these 403s were this test's doing


def test_a_hand_edited_configmap_is_written_back(kube: ControlPlane, operator: Operator) -> None:
    """Security audit L-8: whoever may patch ConfigMaps changed what a personality says, and
    nothing repaired it."""
    apply(kube, "guarded", PIPER_SPEC)
    settled(kube, "guarded")
    name = configmaps.configmap_name("guarded")
    rendered = get(kube, "configmap", name)["data"]
    forged = {**PIPER_SPEC, "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": 3.0}}}}
    forged_data = configmaps.render(Personality(name="guarded", spec=parse_spec(forged)), generation=1)["data"]
    kube.kubectl("patch", "configmap", name, "-n", NS, "--type", "merge", "-p", json.dumps({"data": forged_data}))
    assert get(kube, "configmap", name)["data"] != rendered
    eventually(lambda: get(kube, "configmap", name)["data"] == rendered or None, timeout=90,
               what="the operator writing the ConfigMap back")
