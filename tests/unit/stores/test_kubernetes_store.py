"""The Kubernetes personality store's bookkeeping, fed the objects a watch delivers."""

from __future__ import annotations

from pathlib import Path

import pytest

from chorus.personalities import Personality, parse_spec
from chorus.stores import configmaps
from chorus.stores.base import ReadOnlyStoreError
from chorus.stores.directory import DirectoryStore
from chorus.stores.kubernetes import KubernetesStore
from chorus.stores.opening import open_store
from chorus.stores.sources import KubernetesSource, PersonalitySource
from tests.support.configmaps import SPEC, configmap


def test_only_the_operators_configmaps_count() -> None:
    store = KubernetesStore(KubernetesSource(namespace="voices"))
    hand_made = configmap("alice")
    del hand_made["metadata"]["ownerReferences"]
    not_controller = configmap("bob")
    not_controller["metadata"]["ownerReferences"][0]["controller"] = False
    other_owner = configmap("carol")
    other_owner["metadata"]["ownerReferences"][0].update(kind="Deployment", apiVersion="apps/v1")
    renamed = configmap("dave")
    renamed["metadata"]["name"] = "my-dave"
    unmanaged = configmap("erin")
    unmanaged["metadata"]["labels"][configmaps.MANAGED_BY_LABEL] = "helm"
    store.replace_all([hand_made, not_controller, other_owner, renamed, unmanaged, configmap("frank")])
    assert store.names() == ["frank"] and not store.problems()
    # An operator-made ConfigMap whose owner is edited away stops serving.
    store.apply("ADDED", configmap("alice"))
    assert store.get("alice") is not None
    store.apply("MODIFIED", hand_made | {"metadata": {**hand_made["metadata"], "resourceVersion": "2"}})
    assert store.get("alice") is None


def test_samples_are_keyed_by_the_owning_resource() -> None:
    """A personality's samples are under its own resource's uid, so a namesake that replaces
    it (deleted, then created again elsewhere) never inherits them."""
    store = KubernetesStore(KubernetesSource(namespace="*"))
    store.replace_all([configmap("ava", "a-team")])
    assert store.sample_key("ava") == "uid-a-team-ava"
    store.replace_all([configmap("ava", "b-team")])
    assert store.sample_key("ava") == "uid-b-team-ava"


def test_added_modified_deleted() -> None:
    store = KubernetesStore(KubernetesSource(namespace="voices"))
    store.apply("ADDED", configmap("ava"))
    assert store.names() == ["ava"] and store.get("ava").spec.active_provider == "piper"
    assert store.status("ava").source == "configmap/voices/chorus-personality-ava"
    faster = {**SPEC, "providers": {"piper": {"voice": "en_US-joe-medium", "settings": {"speed": 2}}}}
    store.apply("MODIFIED", configmap("ava", rv="2", spec=faster))
    assert store.get("ava").spec.providers.piper.settings.speed == 2
    store.apply("DELETED", configmap("ava", rv="3"))
    assert store.names() == [] and store.get("ava") is None


def test_invalid_update_keeps_the_last_good_version_and_says_why() -> None:
    store = KubernetesStore(KubernetesSource())
    store.apply("ADDED", configmap("ava"))
    broken = configmap("ava", rv="2")
    broken["data"][configmaps.DATA_KEY] = broken["data"][configmaps.DATA_KEY].replace("piper\n", "espeak\n", 1)
    store.apply("MODIFIED", broken)
    assert store.get("ava") is not None and "activeProvider" in store.status("ava").error
    new = configmap("zed", rv="4")
    new["data"] = {}
    store.apply("ADDED", new)  # never valid: a problem, not a personality
    assert [p.source for p in store.problems()] == ["configmap/voices/chorus-personality-zed"]


def test_same_name_in_two_namespaces_serves_neither_and_reports_both() -> None:
    """Security audit L-7: the namespace that sorted first took the name, its spec and
    (through the uid) its samples: a tenant in `aaa` took over `alice` of `prod`."""
    store = KubernetesStore(KubernetesSource(namespace="*"))
    store.replace_all([configmap("ava", "prod")])
    assert store.status("ava").source == "configmap/prod/chorus-personality-ava"
    store.replace_all([configmap("ava", "prod"), configmap("ava", "aaa")])
    assert store.get("ava") is None and store.names() == []
    problems = {p.source: p.error for p in store.problems()}
    assert set(problems) == {"configmap/aaa/chorus-personality-ava", "configmap/prod/chorus-personality-ava"}
    assert all("ava" in e for e in problems.values())
    assert "neither is served" in problems["configmap/aaa/chorus-personality-ava"] + problems["configmap/prod/chorus-personality-ava"]
    store.replace_all([configmap("ava", "prod")])  # a relist drops what is gone
    assert store.status("ava").source == "configmap/prod/chorus-personality-ava" and not store.problems()


def test_writes_are_refused_with_where_to_make_them() -> None:
    store = KubernetesStore(KubernetesSource())
    with pytest.raises(ReadOnlyStoreError, match="kubectl"):
        store.put(Personality(name="ava", spec=parse_spec(SPEC)))
    with pytest.raises(ReadOnlyStoreError, match="kubectl delete voicepersonality ava"):
        store.delete("ava")


def test_source_needs_exactly_one_backend() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        PersonalitySource.model_validate({})
    with pytest.raises(ValueError, match="exactly one"):
        PersonalitySource.model_validate({"directory": "/tmp/x", "kubernetes": {}})


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    cluster = PersonalitySource.model_validate({"kubernetes": {"namespace": "v"}})
    assert isinstance(open_store(cluster), KubernetesStore)
    assert isinstance(open_store(PersonalitySource(directory=tmp_path)), DirectoryStore)
