"""The test cluster's network, kept on this machine (../shared/recipes/kubernetes-node.md):
a bridge the pods' CNI attaches to, holding the node's own address, and a FORWARD guard that
drops anything routed between the cluster's range and any other address. Pods and Services
live in one small range the tests choose; every change is undone on exit."""

from __future__ import annotations

import contextlib
import ipaddress
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "chorus0"
GUARD = "CHORUS-CLUSTER-GUARD"
# Forwarding carries pod → Service → pod traffic (DNAT on the node, then routed back onto the
# bridge); br_netfilter lets iptables see bridged packets, which kube-proxy relies on.
SYSCTLS = {"net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1"}


@dataclass(frozen=True)
class ClusterNetwork:
    cluster_cidr: str = "10.203.0.0/16"
    pod_cidr: str = "10.203.0.0/24"
    service_cidr: str = "10.203.1.0/24"

    @property
    def node_ip(self) -> str:
        """The bridge's address: the pods' gateway, where the API server and DNS listen."""
        return str(next(ipaddress.ip_network(self.pod_cidr).hosts()))

    @property
    def cluster_dns(self) -> str:
        return self.node_ip


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check)


def _guard_rules(net: ClusterNetwork) -> list[list[str]]:
    c = net.cluster_cidr
    return [
        ["-s", c, "-d", c, "-j", "RETURN"],  # inside the cluster: on to kube-proxy's rules
        ["-s", c, "-j", "DROP"],  # a pod towards anything else
        ["-d", c, "-j", "DROP"],  # anything else towards a pod
    ]


def _remove_kube_chains() -> None:
    """The KUBE-* chains kube-proxy, kube-router and the kubelet leave behind: this machine
    runs no other Kubernetes."""
    for tool in ("iptables", "ip6tables"):
        for table in ("filter", "nat", "mangle"):
            rules = _run(tool, "-t", table, "-S", check=False).stdout.splitlines()
            for rule in rules:
                words = shlex.split(rule)  # kube-router's rules carry quoted comments
                if words[0] == "-A" and not words[1].startswith("KUBE-") and "KUBE-" in rule:
                    _run(tool, "-t", table, "-D", *words[1:], check=False)
            chains = [r.split()[1] for r in rules if r.startswith("-N KUBE-")]
            for chain in chains:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-t", table, "-X", chain, check=False)


def _remove_kube_ipsets() -> None:
    """kube-router's ipsets (KUBE-SRC-*, KUBE-DST-*), once no rule refers to them."""
    names = _run("ipset", "list", "-n", check=False).stdout.split()
    for name in names:
        if name.startswith("KUBE-"):
            _run("ipset", "destroy", name, check=False)


def _remove(net: ClusterNetwork) -> None:
    _remove_kube_chains()
    _remove_kube_ipsets()
    _run("iptables", "-D", "FORWARD", "-j", GUARD, check=False)
    _run("iptables", "-F", GUARD, check=False)
    _run("iptables", "-X", GUARD, check=False)
    _run("ip", "link", "delete", BRIDGE, check=False)


@contextlib.contextmanager
def cluster_network(net: ClusterNetwork) -> Iterator[ClusterNetwork]:
    _remove(net)  # what a killed session may have left
    saved = {key: Path("/proc/sys", *key.split(".")).read_text().strip() for key in SYSCTLS}
    try:
        _run("iptables", "-N", GUARD)
        for rule in _guard_rules(net):
            _run("iptables", "-A", GUARD, *rule)
        _run("iptables", "-I", "FORWARD", "1", "-j", GUARD)
        prefix = ipaddress.ip_network(net.pod_cidr).prefixlen
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{net.node_ip}/{prefix}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for key, value in SYSCTLS.items():
            Path("/proc/sys", *key.split(".")).write_text(value)
        yield net
    finally:
        for key, value in saved.items():
            Path("/proc/sys", *key.split(".")).write_text(value)
        _remove(net)


def cni_config(net: ClusterNetwork, ipam_dir: Path) -> dict:
    """Debian's bridge, host-local and portmap plugins. No masquerading: nothing leaves the
    node. Pods keep a default route (Ray finds its own address by routing towards a public
    one without sending anything); the guard drops whatever would be forwarded on it."""
    return {
        "cniVersion": "1.0.0",
        "name": "chorus",
        "plugins": [
            {
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False, "hairpinMode": True,
                "ipam": {
                    "type": "host-local", "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.node_ip}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
