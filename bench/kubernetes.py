"""How long a personality change takes to reach the ingress: the cluster path (kubectl apply
-> operator -> ConfigMap -> the ingress's watch) against the embedded path (a file written
into the personalities directory -> the directory store's watch), in one run, through the
same real Serve app.

    .venv/bin/python bench/kubernetes.py [--personalities 20] [--output FILE] [--smoke]

Needs the control plane binaries (scripts/k8s-binaries.sh). Writes a section of
bench/RESULTS.md. `--smoke`: 2 personalities per path, the fewest its p95 can be computed from
(tests/integration/test_bench_smoke.py checks the benchmark still runs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

from bench.results import RESULTS, machine, write_section
from tests.conftest import free_port
from tests.kube.control_plane import CRDS, build_binaries, running_control_plane
from tests.kube.operator_runner import (
    operator_identity,
    render_chart,
    running_operator,
)
from tests.support.chorus_app import STEADY_PIPER, ChorusApp, personality

NS = "bench"
SPEC = {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}}


def served_after(client: httpx.Client, name: str, change: Callable[[], None], timeout: float = 60) -> float:
    """Seconds from the start of `change()` until the ingress serves `name`."""
    start = time.perf_counter()
    change()
    while time.perf_counter() - start < timeout:
        if client.get(f"/v1/personalities/{name}").status_code == 200:
            return time.perf_counter() - start
        time.sleep(0.02)
    raise TimeoutError(f"{name} not served after {timeout} s")


def rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def ingress_rss_mib() -> float:
    """Resident memory of the Ingress replica processes (Ray titles them ServeReplica:chorus:Ingress)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and b"ServeReplica:chorus:Ingress" in (proc / "cmdline").read_bytes():
                total += rss_mib(proc.name)
        except OSError:
            continue  # gone meanwhile
    return total


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--personalities", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes: does it still run? (not a measurement)")
    args = parser.parse_args()
    n = 2 if args.smoke else args.personalities

    import ray

    ray.init(num_cpus=4, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    with tempfile.TemporaryDirectory() as tmp, running_control_plane(build_binaries(), Path(tmp) / "kube") as kube:
        for crd in CRDS:
            kube.kubectl("apply", "--server-side", "-f", str(crd))
        kube.wait_established(["voicepersonalities.voice.chorus.dev"])
        kube.kubectl("create", "namespace", NS)
        app = ChorusApp(port=free_port(), root=Path(tmp))

        # Embedded path: the directory store (watchfiles events, 2 s safety rescan).
        app.deploy()
        with app.client() as client:
            directory = [served_after(client, f"file-{i}", lambda i=i: app.write(f"file-{i}", SPEC)) for i in range(n)]
        memory = {"ingress, directory store": ingress_rss_mib()}

        # Cluster path: operator + ConfigMap + the Kubernetes store, as the chart's identities.
        (ray_service,) = [d for d in render_chart(kube, NS) if d["kind"] == "RayService"]
        # The ingress runs on the CPU worker group: its account, not the head's, may read the
        # ConfigMaps (and only it has a token mounted).
        groups = {g["groupName"]: g for g in ray_service["spec"]["rayClusterConfig"]["workerGroupSpecs"]}
        account = groups["cpu"]["template"]["spec"]["serviceAccountName"]
        operator = operator_identity(kube, NS)
        ingress = kube.service_account_kubeconfig(NS, account)
        samples = Path(tmp) / "samples"
        before_operator = rss_mib()
        with running_operator(operator, NS, samples):
            app.deploy(personalities={"kubernetes": {"namespace": NS, "kubeconfig": str(ingress)}},
                       samples={"directory": str(samples)})
            with app.client() as client:
                def apply(name: str) -> None:
                    doc = personality(name, SPEC)
                    doc["metadata"]["namespace"] = NS
                    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))

                cluster = [served_after(client, f"vp-{i}", lambda i=i: apply(f"vp-{i}")) for i in range(n)]
                # kubectl itself (a process start and one API call) is part of the cluster path;
                # measured alone so the table can show what the operator and watch add.
                kubectl = []
                for i in range(n):
                    start = time.perf_counter()
                    kube.kubectl("get", "vp", f"vp-{i}", "-n", NS, "-o", "name")
                    kubectl.append(time.perf_counter() - start)
                memory["ingress, Kubernetes store"] = ingress_rss_mib()
                # kopf runs in this process (KopfRunner): what it grew by holding n resources.
                memory["operator (growth of the bench process)"] = rss_mib() - before_operator
    ray.shutdown()

    rows = [("directory file -> served", directory), ("kubectl apply -> served", cluster),
            ("one kubectl call (part of the above)", kubectl)]
    table = "\n".join(
        f"| {label} | {statistics.median(v):.3f} | {pct(v, 95):.3f} | {max(v):.3f} |" for label, v in rows
    )
    ratio = statistics.median(cluster) / statistics.median(directory)
    memory_rows = "\n".join(f"| {what} | {mib:.0f} |" for what, mib in memory.items())
    write_section(
        "Personality changes reaching the ingress (`bench/kubernetes.py`)",
        f"""Run {machine()}. {n} new personalities per path, one at a time, each polled on
`GET /v1/personalities/{{name}}` every 20 ms through the same Serve app (CPU profile). Cluster
path: a real kube-apiserver + etcd here, the operator in kopf's runner, the ingress's
Kubernetes store as the ServiceAccount of the chart's CPU worker group (where the ingress runs).

| path | p50 (s) | p95 (s) | max (s) |
|---|---|---|---|
{table}

Resident memory with {n} personalities loaded:

| process | MiB |
|---|---|
{memory_rows}

- Cluster / directory, p50: **{ratio:.2f}**. Both are well under a second; the directory store
  reacts to inotify events, the cluster path adds kubectl, the operator's
  reconcile (validation, ConfigMap write, status patch) and the watch event.""",
        args.output,
    )
    print(f"directory p50 {statistics.median(directory):.3f} s, cluster p50 {statistics.median(cluster):.3f} s, "
          f"ratio {ratio:.2f}")


if __name__ == "__main__":
    main()
