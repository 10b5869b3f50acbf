"""Personalities from the operator's ConfigMaps (the cluster's personality store).

Lists the label-selected ConfigMaps once, then watches them, so an applied, edited or
deleted VoicePersonality reaches every ingress replica within seconds of the operator
rendering it, without restarting anything. Only the operator's ConfigMaps count: the
managed-by label, the name the operator gives and a controller ownerReference to a
VoicePersonality of that name; a hand-made ConfigMap carrying the label is ignored (and
logged), so write access to ConfigMaps is not a way to define personalities. The
owner's uid is where the operator keeps the personality's samples (`sample_key`). Like the directory store, a ConfigMap that
turns invalid keeps serving its last good version and its status says why; the same
personality name in two namespaces serves the first and reports the other.

Writes are refused: in a cluster the VoicePersonality resource is the truth.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, watch

from chorus.common import kube_config
from chorus.common.constants import GROUP, KIND
from chorus.personalities import Personality, PersonalitySpec
from chorus.stores import configmaps
from chorus.stores.base import IndexedStore, ReadOnlyStoreError
from chorus.stores.sources import KubernetesSource

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class KubernetesStore(IndexedStore[tuple[str, str]]):
    """Personalities from ConfigMaps, keyed by (namespace, ConfigMap name)."""

    read_only = True
    conflicts_serve_neither = True  # a name in two namespaces: two owners (security audit L-7)

    def __init__(self, source: KubernetesSource) -> None:
        super().__init__()
        self.source = source
        self.synced = asyncio.Event()  # set after the first complete listing
        self._owners: dict[tuple[str, str], str] = {}  # ConfigMap -> its VoicePersonality's uid

    def _source(self, key: tuple[str, str]) -> str:
        return f"configmap/{key[0]}/{key[1]}"

    def sample_key(self, name: str) -> str:
        """The serving VoicePersonality's uid: the operator keeps samples under it, so
        namesakes in other namespaces never share them."""
        key = self._by_name.get(name)
        return self._owners.get(key, name) if key is not None else name

    @property
    def loaded(self) -> bool:
        return self.synced.is_set()

    def put(self, personality: Personality) -> bool:
        raise ReadOnlyStoreError(
            "personalities here are VoicePersonality resources: change them with "
            f"kubectl apply (kind VoicePersonality, name {personality.name})"
        )

    def update(self, name: str, change: Callable[[PersonalitySpec], PersonalitySpec]) -> bool:
        raise ReadOnlyStoreError(
            f"personalities here are VoicePersonality resources: change them with kubectl apply (name {name})"
        )

    def delete(self, name: str) -> bool:
        raise ReadOnlyStoreError(
            f"personalities here are VoicePersonality resources: kubectl delete voicepersonality {name}"
        )

    # --- applying what the API server says ---------------------------------------------

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event: ADDED, MODIFIED or DELETED."""
        if kind == "DELETED":
            changed = self._forget(_key(obj))
        else:
            changed = self._take(obj)
        if changed:
            self._index()

    def replace_all(self, objects: list[dict[str, Any]]) -> None:
        """A fresh listing: what it does not hold is gone. Indexed once, not per object."""
        keys = {_key(o) for o in objects}
        for key in set(self._entries) - keys:
            self._forget(key)
        for obj in objects:
            self._take(obj)
        self._index()

    def _forget(self, key: tuple[str, str]) -> bool:
        self._owners.pop(key, None)
        return self._entries.pop(key, None) is not None

    def _take(self, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        key = _key(obj)
        owner = operator_owner(meta)
        if owner is None:
            log.warning("ignoring %s: labelled as a personality, but not rendered by the chorus operator "
                        "(managed-by label, name and controller ownerReference to a VoicePersonality)",
                        self._source(key))
            return self._forget(key)
        self._owners[key] = owner
        label = meta["labels"][configmaps.PERSONALITY_LABEL]
        parse = functools.partial(configmaps.parse, obj.get("data"), name=label)
        return self._load(key, str(meta.get("resourceVersion", "")), parse)

    # --- list + watch -------------------------------------------------------------------

    async def watch(self, stop: asyncio.Event) -> None:
        """List, then watch from the listing's resourceVersion, until `stop` is set. On
        any failure (expired resourceVersion, API server restart) list again after a
        jittered backoff, serving the last good state meanwhile."""
        runner = asyncio.create_task(self._run())
        stopped = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({runner, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            runner.cancel()
            stopped.cancel()

    async def _run(self) -> None:
        api = await self._connect()
        try:
            core = client.CoreV1Api(api)
            failures = 0
            while True:
                try:
                    await self._list_and_watch(core)
                    failures = 0
                except Exception as err:  # noqa: BLE001
                    failures += 1
                    delay = min(10.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                    log.warning("watching personality ConfigMaps failed (%s); again in %.1f s", err, delay)
                    await asyncio.sleep(delay)
        finally:
            await api.close()

    async def _connect(self) -> client.ApiClient:
        return await kube_config.connect(self.source.kubeconfig)

    def _namespace(self) -> str | None:
        ns = self.source.namespace
        if ns == "*":
            return None
        if ns is None and SERVICE_ACCOUNT_NAMESPACE.exists():
            return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
        return ns or "default"

    async def _list_and_watch(self, core: client.CoreV1Api) -> None:
        ns = self._namespace()
        if ns is None:
            lister, args = core.list_config_map_for_all_namespaces, ()
        else:
            lister, args = core.list_namespaced_config_map, (ns,)
        sel = self.source.label_selector
        listing = await lister(*args, label_selector=sel, _preload_content=False)
        data = await listing.json()
        self.replace_all(data.get("items") or [])
        self.synced.set()
        rv = data["metadata"]["resourceVersion"]
        while True:  # each watch request ends after watch_timeout_s; resume where it stopped
            async with watch.Watch().stream(
                lister, *args, label_selector=sel, resource_version=rv, allow_watch_bookmarks=True,
                timeout_seconds=self.source.watch_timeout_s,
            ) as stream:
                async for event in stream:  # an ERROR event (410 Gone) raises: list again
                    obj = event["raw_object"]
                    rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                    if event["type"] != "BOOKMARK":
                        self.apply(event["type"], obj)


def operator_owner(meta: dict[str, Any]) -> str | None:
    """The uid of the VoicePersonality a ConfigMap was rendered from, or None when the
    operator did not render it: the labels, name and controller ownerReference must
    all be the operator's."""
    labels = meta.get("labels") or {}
    name = labels.get(configmaps.PERSONALITY_LABEL)
    if (not name or labels.get(configmaps.MANAGED_BY_LABEL) != configmaps.MANAGED_BY
            or meta.get("name") != configmaps.configmap_name(name)):
        return None
    for ref in meta.get("ownerReferences") or []:
        if (ref.get("controller") is True and ref.get("kind") == KIND and ref.get("name") == name
                and str(ref.get("apiVersion", "")).split("/")[0] == GROUP and ref.get("uid")):
            return str(ref["uid"])
    return None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace", ""), meta.get("name", "")
