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


def configmap(name: str, speed: float = 1.0) -> str:
    spec = {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": speed}}}}
    body = configmaps.render(Personality(name=name, spec=parse_spec(spec)), generation=1)
    body["metadata"]["namespace"] = NS
    return json.dumps(body)


async def until(predicate, timeout: float = 20) -> None:  # noqa: ANN001
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "store did not catch up"
        await asyncio.sleep(0.1)


@pytest_asyncio.fixture
async def store(kube: ControlPlane) -> AsyncIterator[KubernetesStore]:
    kube.kubectl("create", "namespace", NS, check=False)
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
