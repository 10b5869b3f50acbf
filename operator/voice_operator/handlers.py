"""The kopf handlers: a VoicePersonality becomes its ConfigMap and its sample volume.

    kopf run --standalone -m voice_operator.handlers --all-namespaces   (or --namespace=NS)

One idempotent reconcile serves create, update and resume: it renders the ConfigMap the
ingress serves from, makes sure the sample volume exists with every sample given by URL
fetched and checked, and reports what it did in status conditions and events. Samples
live under the resource's uid, so namesakes in two namespaces never share (or delete)
each other's samples; the ingress finds them through the ConfigMap's ownerReference.
Deleting the resource removes its samples (the finalizer); the ConfigMap and PVC go
with their owner through ownerReferences.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import kopf
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from chorus.common import kube_config
from chorus.common.constants import GROUP, PLURAL, VERSION
from chorus.personalities import Personality, PersonalityError, parse_spec
from chorus.stores import configmaps
from voice_operator.conditions import Condition, merge, ready
from voice_operator.sample_volumes import SampleVolumes, SyncResult
from voice_operator.settings import OperatorSettings

FINALIZER = f"{GROUP}/samples"


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own readers: in-cluster first, then $KUBECONFIG as it is when the operator
    # starts (the async client library would read it once, at import).
    return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator = OperatorSettings.from_env()
    # Progress and the last handled spec live in annotations, so status holds only what
    # the CRD declares.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = FINALIZER
    settings.posting.level = logging.INFO
    # Serve the resources found at startup and the namespaces named on the command line:
    # no watching of CRDs and namespaces, so no RBAC for them (the chart installs the CRD
    # before the operator starts, and an upgrade restarts it).
    settings.scanning.disabled = True
    settings.watching.server_timeout = operator.watch_timeout_s
    memo.api = await kube_config.connect()
    memo.settings = operator
    # Off the loop: opening the sample store sweeps the volume for interrupted writes.
    memo.volumes = await asyncio.to_thread(SampleVolumes, operator)


@kopf.on.cleanup()
async def cleanup(memo: kopf.Memo, **_: Any) -> None:
    await memo.api.close()


def backoff(retry: int) -> float:
    return float(min(300, 2 ** min(retry + 1, 9)))


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL)
async def reconcile(
    name: str, namespace: str, uid: str, spec: kopf.Spec, meta: kopf.Meta, status: kopf.Status, body: kopf.Body,
    patch: kopf.Patch, memo: kopf.Memo, retry: int, **_: Any,
) -> None:
    generation = int(meta.get("generation") or 0)
    previous = list(status.get("conditions") or [])

    def report(config_cond: Condition, samples_cond: Condition, **fields: Any) -> None:
        conditions = [config_cond, samples_cond, ready(config_cond, samples_cond)]
        patch.status.update(observedGeneration=generation, conditions=merge(previous, conditions, generation), **fields)

    try:
        personality = Personality(name=name, spec=parse_spec(dict(spec)))
    except PersonalityError as err:
        report(
            Condition(type="ConfigRendered", status="False", reason="InvalidSpec", message=err.reason),
            Condition(type="SamplesReady", status="Unknown", reason="InvalidSpec", message="the spec is invalid"),
        )
        kopf.warn(body, reason="InvalidSpec", message=err.reason)
        raise kopf.PermanentError(f"invalid spec: {err.reason}") from None

    core = client.CoreV1Api(memo.api)
    try:
        changed = await _apply_configmap(core, namespace, personality, generation, body)
        volume = memo.volumes.location(uid)
        if memo.settings.sample_volumes == "per-personality":
            volume = await _ensure_pvc(core, namespace, name, memo.settings, body)
    except ApiException as err:
        # Refusals and outages of the API server heal (RBAC fixed, server back): retry
        # with exponential backoff, and say why meanwhile.
        why = f"the API server answered {err.status} {err.reason}"
        report(
            Condition(type="ConfigRendered", status="False", reason="APIError", message=why),
            Condition(type="SamplesReady", status="Unknown", reason="APIError", message=why),
        )
        raise kopf.TemporaryError(why, delay=backoff(retry)) from None
    config_cond = Condition(
        type="ConfigRendered", status="True", reason="Rendered",
        message=f"ConfigMap {configmaps.configmap_name(name)} holds generation {generation}",
    )
    if changed:
        kopf.info(body, reason="ConfigRendered", message=f"ConfigMap {configmaps.configmap_name(name)} {changed}")

    synced: SyncResult = await memo.volumes.sync(personality, uid, dict(status.get("fetchedSamples") or {}))
    for change in synced.changed:
        kopf.info(body, reason="SamplesChanged", message=change)
    for sample_id, why in synced.refused.items():
        kopf.warn(body, reason="SampleRejected", message=f"sample {sample_id}: {why}")
    if problems := synced.retry or synced.refused:
        samples_cond = Condition(type="SamplesReady", status="False",
                                 reason="FetchFailed" if synced.retry else "SampleRejected",
                                 message="; ".join(f"{k}: {v}" for k, v in problems.items()))
    else:
        samples_cond = Condition(type="SamplesReady", status="True", reason="SamplesStored",
                                 message=f"{synced.stored} sample(s) stored in {volume}")
    report(
        config_cond, samples_cond,
        configMap=configmaps.configmap_name(name), sampleVolume=volume, samples=synced.stored,
        fetchedSamples=synced.fetched,
    )
    if synced.retry:
        # Downloads that may work later: kopf calls again after the delay.
        raise kopf.TemporaryError(f"fetching samples: {samples_cond.message}", delay=backoff(retry))


REPAIR_INTERVAL_S = 20.0
"""How often each personality's ConfigMap is compared with what its resource renders."""


@kopf.timer(GROUP, VERSION, PLURAL, interval=REPAIR_INTERVAL_S, initial_delay=REPAIR_INTERVAL_S, idle=REPAIR_INTERVAL_S)
async def repair(name: str, namespace: str, spec: kopf.Spec, meta: kopf.Meta, body: kopf.Body, memo: kopf.Memo,
                 logger: logging.Logger, **_: Any) -> None:
    """Whoever may patch ConfigMaps could change what a personality says by editing its
    ConfigMap (security audit L-8): the one its VoicePersonality renders is written back
    within `REPAIR_INTERVAL_S`, and the change is an event on the resource."""
    try:
        personality = Personality(name=name, spec=parse_spec(dict(spec)))
    except PersonalityError:
        return  # reconcile reports an invalid spec
    core = client.CoreV1Api(memo.api)
    try:
        changed = await _apply_configmap(core, namespace, personality, int(meta.get("generation") or 0), body)
    except ApiException as err:
        logger.warning("repairing ConfigMap %s: the API server answered %s %s",
                       configmaps.configmap_name(name), err.status, err.reason)
        return
    if changed:
        kopf.warn(body, reason="ConfigMapRepaired", message=f"ConfigMap {configmaps.configmap_name(name)} was changed "
                  f"or removed outside the operator: {changed} again from the VoicePersonality")


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def delete(name: str, uid: str, memo: kopf.Memo, logger: logging.Logger, **_: Any) -> None:
    removed = await asyncio.to_thread(memo.volumes.remove, uid)
    logger.info("removed %d sample(s) of %s", removed, name)


async def _apply_configmap(
    core: client.CoreV1Api, namespace: str, personality: Personality, generation: int, owner: kopf.Body
) -> str | None:
    """Create or update the ConfigMap; what happened, or None if it was current."""
    body = configmaps.render(personality, generation=generation)
    kopf.adopt(body, owner=owner)
    name = body["metadata"]["name"]
    try:
        existing = await core.read_namespaced_config_map(name, namespace)
    except ApiException as err:
        if err.status != 404:
            raise
        await core.create_namespaced_config_map(namespace, body)
        return "created"
    meta = body["metadata"]
    if (existing.data == body["data"] and (existing.metadata.labels or {}) == meta["labels"]
            and (existing.metadata.annotations or {}).get(configmaps.GENERATION_ANNOTATION)
            == meta["annotations"][configmaps.GENERATION_ANNOTATION]):
        return None
    await core.patch_namespaced_config_map(name, namespace, body)
    return "updated"


async def _ensure_pvc(
    core: client.CoreV1Api, namespace: str, name: str, settings: OperatorSettings, owner: kopf.Body
) -> str:
    """The personality's own sample PVC. Never waits for Bound: binding is the
    provisioner's business, and a volume is used only once a pod mounts it."""
    claim = f"chorus-samples-{name}"
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "labels": {configmaps.PERSONALITY_LABEL: name, "app.kubernetes.io/part-of": "chorus"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": settings.volume_size}}},
    }
    if settings.storage_class:
        body["spec"]["storageClassName"] = settings.storage_class
    kopf.adopt(body, owner=owner)
    try:
        await core.read_namespaced_persistent_volume_claim(claim, namespace)
    except ApiException as err:
        if err.status != 404:
            raise
        await core.create_namespaced_persistent_volume_claim(namespace, body)
        kopf.info(owner, reason="VolumeClaimed", message=f"PersistentVolumeClaim {claim} created")
    return f"pvc/{claim}"
