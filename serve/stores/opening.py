"""`open_store`: the store a `PersonalitySource` names. Its own module, so importing the
package (the operator imports `chorus.stores.configmaps`) loads no backend."""

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
