"""A real single-node Kubernetes cluster on this machine, started by the tests:

- the control plane of tests/kube (etcd, kube-apiserver, kube-controller-manager with every
  controller) listening on the node's bridge address, plus kube-scheduler;
- containerd (Debian's) with runc and Debian's CNI plugins, the images imported from OCI
  archives (no registry is reachable), the sandbox image built from Kubernetes' own pause;
- kubelet and kube-proxy (iptables) from the same pinned Kubernetes module;
- CoreDNS serving cluster.local to the pods;
- kube-router's NetworkPolicy controller (iptables and ipsets) enforcing NetworkPolicy: Debian's
  CNI plugins enforce none, and SIG Network's kube-network-policies needs the nftables `queue`
  expression this machine's kernel lacks (docs/kubernetes.md#a-real-cluster-in-the-tests);
- KubeRay's operator, installed from its own module's manifests as a Deployment.

Facts this machine imposes (../shared/recipes/kubernetes-node.md): hybrid cgroups, so the
kubelet runs with `failCgroupV1: false` and both it and containerd use the cgroupfs driver;
runc, not crun; traffic only on loopback and the cluster's own bridge (tests/cluster/network.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import yaml

from tests.cluster.network import ClusterNetwork, cluster_network, cni_config
from tests.conftest import free_port
from tests.kube.control_plane import ROOT, ControlPlane
from tests.kube.operator_runner import eventually

NODE = "chorus-node"
KUBERAY_NAMESPACE = "kuberay"


def build_cluster_binaries() -> Path:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "cluster-binaries.sh")], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def _netns() -> list[str]:
    return os.listdir("/var/run/netns") if os.path.isdir("/var/run/netns") else []


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Cluster:
    def __init__(self, k8s_bin: Path, cluster_bin: Path, workdir: Path, net: ClusterNetwork) -> None:
        self.k8s_bin = k8s_bin
        self.cluster_bin = cluster_bin
        self.workdir = workdir
        self.net = net
        self.containerd_sock = workdir / "containerd" / "containerd.sock"
        self._netns_before = set(_netns())
        self.kuberay_labels: dict[str, str] = {}  # set by install_kuberay
        self.images = dict(line.split("=", 1) for line in
                           (cluster_bin / "images" / "names").read_text().split())
        self._kubelet_client_certs()
        self.kube = ControlPlane(
            k8s_bin, workdir / "control-plane",
            address=net.node_ip, service_cidr=net.service_cidr, controllers="*", disabled_admission="",
            apiserver_args=(
                "--kubelet-client-certificate", str(workdir / "apiserver-kubelet-client.crt"),
                "--kubelet-client-key", str(workdir / "apiserver-kubelet-client.key"),
                "--kubelet-preferred-address-types", "InternalIP",
            ),
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        self.kube.start()
        admin = str(self.kube.admin_kubeconfig)
        self.kube.spawn("kube-scheduler", [str(self.k8s_bin / "kube-scheduler"), "--kubeconfig", admin,
                                       "--leader-elect=false", "--secure-port=0"])
        self._start_containerd()
        for archive in sorted((self.cluster_bin / "images").glob("*.tar")):
            self.import_image(archive)
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_coredns()
        eventually(self._node_ready, timeout=180, what=f"node {NODE} Ready")
        self._start_network_policies()  # it reads its Node first

    def stop(self) -> None:
        # Every process: the node's (started last, stopped first), then the control plane.
        # The iptables chains of kube-proxy, kube-router and the kubelet, and kube-router's
        # ipsets, go with the network (network.py).
        self.kube.stop()
        self._reap_containers()
        # The pods' network namespaces (CNI names them cni-*): deleting one removes its veth.
        for name in set(_netns()) - self._netns_before:
            if name.startswith("cni-"):
                subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        self._unmount_under(self.workdir)
        # The runtime's image store: gigabytes, and pytest keeps the last sessions' directories.
        shutil.rmtree(self.workdir / "containerd" / "root", ignore_errors=True)

    # --- containerd --------------------------------------------------------------------

    def _start_containerd(self) -> None:
        d = self.workdir / "containerd"
        (d / "cni" / "net.d").mkdir(parents=True)
        (d / "cni" / "net.d" / "10-chorus.conflist").write_text(json.dumps(cni_config(self.net, d / "ipam")))
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        (d / "config.toml").write_text(f"""version = 2
root = "{d / 'root'}"
state = "{d / 'state'}"
[grpc]
  address = "{self.containerd_sock}"
[{cri}]
  sandbox_image = "{self.images['pause']}"
  enable_selinux = false
  # No CAP_SYS_RESOURCE here: no process may go below containerd's own score (0).
  restrict_oom_score_adj = true
[{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  BinaryName = "{shutil.which('runc')}"
  Root = "{d / 'runc'}"
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{d / 'cni' / 'net.d'}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d / 'opt'}"
""")
        self.kube.spawn("containerd", ["containerd", "--config", str(d / "config.toml")])
        eventually(lambda: self.containerd_sock.exists() and self.ctr("version", check=False).returncode == 0,
                   timeout=60, what="containerd")

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.containerd_sock), "-n", "k8s.io", *args],
                              capture_output=True, text=True, check=check, timeout=900)

    def import_image(self, archive: Path) -> None:
        """An OCI archive into the runtime's store, as a registry pull would leave it."""
        self.ctr("images", "import", str(archive))

    def _reap_containers(self) -> None:
        """Whatever the kubelet left running: the containers (runc, our root), then their
        shims and the network namespaces CNI made for them."""
        root = self.workdir / "containerd" / "runc" / "k8s.io"
        if root.exists():
            listed = subprocess.run(["runc", "--root", str(root), "list", "-q"], capture_output=True, text=True)
            for cid in listed.stdout.split():
                subprocess.run(["runc", "--root", str(root), "kill", "-a", cid, "KILL"], capture_output=True)
                subprocess.run(["runc", "--root", str(root), "delete", "-f", cid], capture_output=True)
        address = str(self.containerd_sock)
        for proc in Path("/proc").iterdir():
            with contextlib.suppress(OSError, ValueError):
                argv = (proc / "cmdline").read_bytes().split(b"\0")
                if b"containerd-shim" in argv[0] and address.encode() in argv:
                    os.kill(int(proc.name), signal.SIGKILL)

    @staticmethod
    def _unmount_under(directory: Path) -> None:
        prefix = str(directory)
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for target in sorted((m for m in mounts if m.startswith(prefix)), key=len, reverse=True):
            subprocess.run(["umount", "-l", target], capture_output=True)

    # --- kubelet, kube-proxy, DNS ------------------------------------------------------

    def _kubelet_client_certs(self) -> None:
        """The API server's client certificate for the kubelet's API (logs, exec,
        port-forward), under a CA only the kubelet trusts."""
        w = self.workdir
        w.mkdir(parents=True, exist_ok=True)
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=chorus-kubelet-ca",
                 "-keyout", str(w / "kubelet-ca.key"), "-out", str(w / "kubelet-ca.crt"))
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/O=system:masters/CN=kube-apiserver-kubelet-client",
                 "-keyout", str(w / "apiserver-kubelet-client.key"), "-out", str(w / "apiserver-kubelet-client.csr"))
        _openssl("x509", "-req", "-days", "2", "-in", str(w / "apiserver-kubelet-client.csr"),
                 "-CA", str(w / "kubelet-ca.crt"), "-CAkey", str(w / "kubelet-ca.key"), "-CAcreateserial",
                 "-out", str(w / "apiserver-kubelet-client.crt"))

    def _start_kubelet(self) -> None:
        d = self.workdir / "kubelet"
        d.mkdir()
        resolv = d / "resolv.conf"  # upstream for pods: none, nothing leaves the node
        resolv.write_text(f"nameserver {self.net.cluster_dns}\n")
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_sock}",
            "address": self.net.node_ip, "port": free_port(), "readOnlyPort": 0, "healthzPort": 0,
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.workdir / "kubelet-ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "clusterDNS": [self.net.cluster_dns], "clusterDomain": "cluster.local", "resolvConf": str(resolv),
            "podLogsDir": str(d / "pod-logs"),
            # This disk is shared with caches: the default 10-15 % free thresholds would evict.
            "evictionHard": {"memory.available": "200Mi", "nodefs.available": "2%", "imagefs.available": "2%"},
            "imageGCHighThresholdPercent": 99, "imageGCLowThresholdPercent": 98,
            "serializeImagePulls": False, "maxPods": 40,
            "nodeStatusUpdateFrequency": "4s", "syncFrequency": "10s",
        }
        (d / "config.yaml").write_text(yaml.safe_dump(config))
        self.kube.spawn("kubelet", [
            str(self.k8s_bin / "kubelet"), "--config", str(d / "config.yaml"),
            "--kubeconfig", str(self.kube.admin_kubeconfig), "--root-dir", str(d / "root"),
            "--hostname-override", NODE, "--node-ip", self.net.node_ip,
        ])

    def _start_kube_proxy(self) -> None:
        config = {
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(self.kube.admin_kubeconfig)},
            "mode": "iptables", "hostnameOverride": NODE, "clusterCIDR": self.net.pod_cidr,
            "bindAddress": self.net.node_ip,
            "healthzBindAddress": f"127.0.0.1:{free_port()}", "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the machine's conntrack sysctls as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "nodePortAddresses": ["127.0.0.1/32"],
        }
        path = self.workdir / "kube-proxy.yaml"
        path.write_text(yaml.safe_dump(config))
        self.kube.spawn("kube-proxy", [str(self.k8s_bin / "kube-proxy"), "--config", str(path)])

    def _start_network_policies(self) -> None:
        """kube-router with only its firewall (no routing, no service proxy: the bridge and
        kube-proxy do those), as k3s runs it beside other CNIs. Its chains and ipsets go with
        the network (network.py)."""
        self.kube.spawn("kube-router", [
            str(self.cluster_bin / "kube-router"), "--kubeconfig", str(self.kube.admin_kubeconfig),
            "--run-firewall=true", "--run-router=false", "--run-service-proxy=false", "--enable-cni=false",
            "--hostname-override", NODE, "--service-cluster-ip-range", self.net.service_cidr,
            # Its health server listens on every address; metrics stay off.
            "--health-port", str(free_port()), "--metrics-port", "0",
        ])

        def enforcing() -> bool:
            self.kube.check_alive()
            return "-N KUBE-ROUTER-FORWARD" in subprocess.run(["iptables", "-S"], capture_output=True,
                                                                text=True).stdout
        eventually(enforcing, timeout=60, what="kube-router's NetworkPolicy chains")

    def _start_coredns(self) -> None:
        corefile = self.workdir / "Corefile"
        # No `forward`: names outside the cluster do not resolve, nothing is asked upstream.
        corefile.write_text(f""".:53 {{
    bind {self.net.cluster_dns}
    errors
    cache 10
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {self.kube.admin_kubeconfig} test
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
}}
""")
        self.kube.spawn("coredns", [str(self.cluster_bin / "coredns"), "-conf", str(corefile)])

    def _node_ready(self) -> bool:
        self.kube.check_alive()
        out = self.kube.kubectl("get", "node", NODE, "-o", "json", check=False)
        if out.returncode != 0:
            return False
        conditions = json.loads(out.stdout)["status"].get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    # --- KubeRay -----------------------------------------------------------------------

    def install_kuberay(self) -> None:
        """KubeRay's operator from its own module's kustomization (CRDs, RBAC, the manager
        Deployment), with the image built here; `kuberay_labels` are its pod's labels."""
        overlay = self.workdir / "kuberay"
        shutil.copytree(self.cluster_bin / "kuberay-config", overlay / "config")
        name, tag = self.images["kuberay-operator"].rsplit(":", 1)
        (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
            "namespace": KUBERAY_NAMESPACE, "resources": ["config/default"],
            "images": [{"name": "quay.io/kuberay/operator", "newName": name, "newTag": tag}],
        }))
        docs = [d for d in yaml.safe_load_all(self.kube.kubectl("kustomize", str(overlay)).stdout) if d]
        self.kube.kubectl("create", "namespace", KUBERAY_NAMESPACE)
        # Server-side: the CRDs are too big for the last-applied annotation.
        self.kube.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(docs))
        (manager,) = [d for d in docs if d["kind"] == "Deployment"]
        self.kube.kubectl("-n", KUBERAY_NAMESPACE, "rollout", "status", f"deployment/{manager['metadata']['name']}",
                          "--timeout=180s", timeout=200)
        self.kuberay_labels = manager["spec"]["template"]["metadata"]["labels"]


@contextlib.contextmanager
def running_cluster(k8s_bin: Path, cluster_bin: Path, workdir: Path) -> Iterator[Cluster]:
    with cluster_network(ClusterNetwork()) as net:
        cluster = Cluster(k8s_bin, cluster_bin, workdir, net)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
