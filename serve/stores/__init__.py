"""Personality stores: where the ingress reads personalities from.

`base` is the surface and the shared bookkeeping, `directory` and `kubernetes` the two
backends, `sources` their configuration, `configmaps` the ConfigMap format the operator
writes and the Kubernetes backend reads. `open_store` sits on top and picks the backend.
"""

from __future__ import annotations

from chorus.stores.base import PersonalityStore
from chorus.stores.directory import DirectoryStore
from chorus.stores.sources import PersonalitySource


def open_store(source: PersonalitySource) -> PersonalityStore:
    """The store `source` names (not yet watching: the ingress starts `watch`)."""
    if source.kubernetes is not None:
        # Imported here so the embedded default never needs the kubernetes extra.
        from chorus.stores.kubernetes import KubernetesStore

        return KubernetesStore(source.kubernetes)
    assert source.directory is not None
    return DirectoryStore(source.directory)
