"""The ingress's Kubernetes personality store against the real API server, in-process:
it lists and watches labelled ConfigMaps, and comes back after the API server restarts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from chorus.personalities import Personality, parse_spec
from chorus.stores import configmaps
from chorus.stores.kubernetes import KubernetesStore
from chorus.stores.sources import KubernetesSource
from tests.kube.control_plane import ControlPlane

NS = "store"


SPEC = {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}}
_kube: list[ControlPlane] = []


def configmap(name: str, speed: float = 1.0, *, owned: bool = True) -> str:
    """The ConfigMap as the operator renders it, owned by a VoicePersonality made for it
    (no operator runs here); `owned=False`: a hand-made one, labelled the same."""
    spec = {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": speed}}}}
    body = configmaps.render(Personality(name=name, spec=parse_spec(spec)), generation=1)
    body["metadata"]["namespace"] = NS
    if owned:
        (kube,) = _kube
        vp = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
              "metadata": {"name": name, "namespace": NS}, "spec": SPEC}
        kube.kubectl("apply", "-f", "-", input=json.dumps(vp))
        uid = kube.kubectl("get", "vp", name, "-n", NS, "-o", "jsonpath={.metadata.uid}").stdout.strip()
        body["metadata"]["ownerReferences"] = [{
            "apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}]
    return json.dumps(body)


async def until(predicate, timeout: float = 20) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "store did not catch up"
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def store(kube: ControlPlane) -> AsyncIterator[KubernetesStore]:
    kube.kubectl("create", "namespace", NS, check=False)
    _kube[:] = [kube]
    kube.kubectl("apply", "-f", "-", input=configmap("early"))  # there before the store starts
    unrelated = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "other", "namespace": NS},
                 "data": {"x": "y"}}
    kube.kubectl("apply", "-f", "-", input=json.dumps(unrelated))
    store = KubernetesStore(KubernetesSource(namespace=NS, kubeconfig=kube.identities["admin"], watch_timeout_s=5))
    stop = asyncio.Event()
    task = asyncio.create_task(store.watch(stop))
    await until(lambda: store.loaded)
    yield store
    stop.set()
    await asyncio.wait_for(task, 10)


@pytest.mark.asyncio
async def test_lists_watches_and_survives_an_api_server_restart(kube: ControlPlane, store: KubernetesStore) -> None:
    assert store.names() == ["early"]  # the listing; the unlabelled ConfigMap is not a personality

    kube.kubectl("apply", "-f", "-", input=configmap("late", speed=1.0))
    await until(lambda: store.get("late") is not None)
    kube.kubectl("apply", "-f", "-", input=configmap("late", speed=2.0))
    await until(lambda: store.get("late").spec.providers.piper.settings.speed == 2.0)

    await asyncio.to_thread(kube.restart_apiserver)
    # Changes made after the restart arrive through the relisted, re-established watch.
    kube.kubectl("apply", "-f", "-", input=configmap("after-restart"))
    kube.kubectl("delete", "configmap", "-n", NS, configmaps.configmap_name("early"))
    await until(lambda: store.names() == ["after-restart", "late"], timeout=60)
    assert store.status("late").source == f"configmap/{NS}/chorus-personality-late"


@pytest.mark.asyncio
async def test_a_hand_made_labelled_configmap_is_ignored(kube: ControlPlane, store: KubernetesStore) -> None:
    kube.kubectl("apply", "-f", "-", input=configmap("forged", owned=False))
    kube.kubectl("apply", "-f", "-", input=configmap("genuine"))
    await until(lambda: store.get("genuine") is not None)
    assert store.get("forged") is None and "forged" not in store.names()
    uid = kube.kubectl("get", "vp", "genuine", "-n", NS, "-o", "jsonpath={.metadata.uid}").stdout.strip()
    assert store.sample_key("genuine") == uid  # where the operator keeps its samples
