"""Killing a deployment's replica actor the way a crash or a lost node would, and waiting
for Serve to be back at strength. Used by tests/integration/test_load_fault.py and
bench/fault.py (from the process that started Ray)."""

from __future__ import annotations

import asyncio
import time

APP = "chorus"


def replica_names(deployment: str, app: str = APP) -> list[str]:
    """Named actors of the deployment's replicas (Serve names them SERVE_REPLICA::app#deployment#id).
    Read from the GCS: needs no dashboard, unlike ray.util.state."""
    import ray

    prefix = f"SERVE_REPLICA::{app}#{deployment}#"
    return sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(prefix))


def running_replicas(deployment: str, app: str = APP) -> int:
    from ray import serve

    status = serve.status().applications[app].deployments[deployment]
    return status.replica_states.get("RUNNING", 0)


def kill_replica(deployment: str, app: str = APP) -> list[str]:
    """ray.kill one replica (no restart by Ray itself: Serve's controller replaces it);
    returns the replicas there were, the killed one first."""
    import ray

    names = replica_names(deployment, app)
    ray.kill(ray.get_actor(names[0], namespace="serve"), no_restart=True)
    return names


async def back_to(deployment: str, replicas: int, before: list[str], timeout_s: float = 120, app: str = APP) -> float:
    """Wait until a replica that was not in `before` runs, the killed one (`before[0]`) is
    gone and `replicas` run; returns when (time.monotonic()). The new name matters: until
    the controller notices the death, its status still counts the dead replica."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        names = await asyncio.to_thread(replica_names, deployment, app)
        replaced = before[0] not in names and bool(set(names) - set(before))
        if replaced and await asyncio.to_thread(running_replicas, deployment, app) >= replicas:
            return time.monotonic()
        await asyncio.sleep(0.2)
    raise TimeoutError(f"{deployment} not back to {replicas} replicas within {timeout_s:g} s")
