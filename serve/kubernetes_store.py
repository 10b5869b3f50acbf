"""Personalities from the operator's ConfigMaps (the cluster's personality store).

Lists the label-selected ConfigMaps once, then watches them, so an applied, edited or
deleted VoicePersonality reaches every ingress replica within seconds of the operator
rendering it, without restarting anything. Like the directory store, a ConfigMap that
turns invalid keeps serving its last good version and its status says why; the same
personality name in two namespaces serves the first and reports the other.

Writes are refused: in a cluster the VoicePersonality resource is the truth.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config, watch

from serve import configmaps
from serve.personalities import Personality, PersonalityError
from serve.store import FileProblem, KubernetesSource, PersonalityStatus, ReadOnlyStoreError

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class _Entry:
    personality: Personality | None
    loaded_at: datetime | None
    error: str | None
    resource_version: str


class KubernetesStore:
    read_only = True

    def __init__(self, source: KubernetesSource) -> None:
        self.source = source
        self._entries: dict[tuple[str, str], _Entry] = {}  # (namespace, configmap) -> entry
        self._by_name: dict[str, tuple[str, str]] = {}
        self._conflicts: dict[tuple[str, str], str] = {}
        self.generation = 0
        self.synced = asyncio.Event()  # set after the first complete listing

    # --- reading (the same surface as DirectoryStore) ----------------------------------

    @property
    def loaded(self) -> bool:
        return self.synced.is_set()

    def get(self, name: str) -> Personality | None:
        key = self._by_name.get(name)
        return self._entries[key].personality if key else None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def status(self, name: str) -> PersonalityStatus | None:
        key = self._by_name.get(name)
        if key is None:
            return None
        entry = self._entries[key]
        return PersonalityStatus(
            source=_source(key), loaded_at=entry.loaded_at or datetime.now(UTC), error=entry.error
        )

    def problems(self) -> list[FileProblem]:
        out = [
            FileProblem(source=_source(k), error=e.error)
            for k, e in sorted(self._entries.items())
            if e.personality is None and e.error
        ]
        out += [FileProblem(source=_source(k), error=e) for k, e in sorted(self._conflicts.items())]
        return out

    def put(self, personality: Personality) -> bool:
        raise ReadOnlyStoreError(
            "personalities here are VoicePersonality resources: change them with "
            f"kubectl apply (kind VoicePersonality, name {personality.name})"
        )

    def delete(self, name: str) -> bool:
        raise ReadOnlyStoreError(
            f"personalities here are VoicePersonality resources: kubectl delete voicepersonality {name}"
        )

    # --- applying what the API server says ---------------------------------------------

    def apply(self, kind: str, obj: dict[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED) or listed object (kind ADDED)."""
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if kind == "DELETED":
            if self._entries.pop(key, None) is not None:
                self._index()
            return
        rv = str(meta.get("resourceVersion", ""))
        before = self._entries.get(key)
        if before is not None and before.resource_version == rv:
            return
        label = (meta.get("labels") or {}).get(configmaps.PERSONALITY_LABEL, meta.get("name", ""))
        try:
            personality = configmaps.parse(obj.get("data"), name=label)
        except PersonalityError as err:
            log.warning("ConfigMap %s is not a valid personality: %s", _source(key), err.reason)
            self._entries[key] = _Entry(
                before.personality if before else None, before.loaded_at if before else None, err.reason, rv
            )
        else:
            self._entries[key] = _Entry(personality, datetime.now(UTC), None, rv)
        self._index()

    def replace_all(self, objects: list[dict[str, Any]]) -> None:
        """A fresh listing: what it does not hold is gone."""
        keys = {((o.get("metadata") or {}).get("namespace", ""), (o.get("metadata") or {}).get("name", "")) for o in objects}
        for key in set(self._entries) - keys:
            del self._entries[key]
        for obj in objects:
            self.apply("ADDED", obj)
        self._index()

    def _index(self) -> None:
        by_name: dict[str, tuple[str, str]] = {}
        conflicts: dict[tuple[str, str], str] = {}
        for key, entry in sorted(self._entries.items()):
            if entry.personality is None:
                continue
            name = entry.personality.name
            if name in by_name:
                conflicts[key] = f"personality {name!r} is already served from {_source(by_name[name])}"
                continue
            by_name[name] = key
        self._by_name, self._conflicts = by_name, conflicts
        self.generation += 1

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
                    delay = min(30.0, 0.5 * 2**failures) * random.uniform(0.5, 1.0)
                    log.warning("watching personality ConfigMaps failed (%s); again in %.1f s", err, delay)
                    await asyncio.sleep(delay)
        finally:
            await api.close()

    async def _connect(self) -> client.ApiClient:
        if self.source.kubeconfig is not None:
            await config.load_kube_config(config_file=str(self.source.kubeconfig))
        else:
            try:
                config.load_incluster_config()
            except config.ConfigException:
                # $KUBECONFIG read now: the client library reads it once, at import.
                await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
        return client.ApiClient()

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


def _source(key: tuple[str, str]) -> str:
    return f"configmap/{key[0]}/{key[1]}"
