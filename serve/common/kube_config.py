"""Kubernetes client configuration, the same for the operator and the ingress's store."""

from __future__ import annotations

import os
from pathlib import Path

from kubernetes_asyncio import client, config


async def connect(kubeconfig: Path | None = None) -> client.ApiClient:
    """An API client from `kubeconfig` if given, else the pod's service account, else
    `$KUBECONFIG` (read now: the client library reads it once, at import)."""
    if kubeconfig is not None:
        await config.load_kube_config(config_file=str(kubeconfig))
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            await config.load_kube_config(config_file=os.environ.get("KUBECONFIG"))
    return client.ApiClient()
