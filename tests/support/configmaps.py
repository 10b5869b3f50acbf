"""ConfigMaps as the operator renders them, for the Kubernetes store's tests."""

from __future__ import annotations

from chorus.personalities import Personality, parse_spec
from chorus.stores import configmaps

SPEC = {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}}


def configmap(name: str, namespace: str = "voices", rv: str = "1", spec: dict | None = None) -> dict:
    """The ConfigMap as the operator renders it: owned by its VoicePersonality."""
    body = configmaps.render(Personality(name=name, spec=parse_spec(spec or SPEC)), generation=1)
    owner = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "name": name,
             "uid": f"uid-{namespace}-{name}", "controller": True, "blockOwnerDeletion": True}
    body["metadata"].update(namespace=namespace, resourceVersion=rv, ownerReferences=[owner])
    return body
