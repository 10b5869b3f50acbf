"""Which Serve replica answered a request, and what replicas logged, from Ray's log files.

Serve takes a request's id from its `X-Request-Id` header and writes it on every log line the
replica prints for it (its access line included), in `<session>/logs/serve/replica_<app>_<deployment>_<id>.log`.
So a test that sends its own ids can show which replicas took part, without the product
telling callers anything about its replicas."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path


def logs_dir() -> Path:
    import ray

    return Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"


def answered_by(request_ids: Iterable[str], deployment: str = "Ingress", app: str = "chorus",
                timeout: float = 20) -> dict[str, str]:
    """Each request id -> the replica whose log names it (waits until every id is written)."""
    wanted = set(request_ids)
    deadline = time.monotonic() + timeout
    while True:
        found: dict[str, str] = {}
        for log in logs_dir().glob(f"replica_{app}_{deployment}_*.log"):
            replica = log.stem.removeprefix(f"replica_{app}_{deployment}_")
            text = log.read_text(errors="replace")
            found |= {rid: replica for rid in wanted if rid in text}
        if found.keys() == wanted or time.monotonic() > deadline:
            missing = wanted - found.keys()
            assert not missing, f"no replica log names {sorted(missing)[:3]} in {logs_dir()}"
            return found
        time.sleep(0.2)


def lines_saying(phrase: str, deployment: str = "Ingress", app: str = "chorus") -> int:
    """How many lines the deployment's replicas (every one it has had) wrote saying `phrase`.
    Chorus's own log lines reach the replica worker's stderr file, which Ray heads with the
    actor's name; Serve's log file has only Serve's own lines."""
    header = f":actor_name:ServeReplica:{app}:{deployment}\n".encode()
    total = 0
    for log in logs_dir().parent.glob("worker-*.err"):
        data = log.read_bytes()
        if header in data[:512]:
            total += data.decode(errors="replace").count(phrase)
    return total
