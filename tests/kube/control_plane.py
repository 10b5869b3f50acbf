"""A real Kubernetes control plane on loopback, as envtest runs one: etcd, kube-apiserver
(RBAC on, token authentication) and kube-controller-manager with only the garbage
collector and namespace controllers, so ownerReferences cascade as in a cluster.

Binaries come from `scripts/k8s-binaries.sh` (built from the Go module proxy, cached).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
# What every test control plane has installed and Established (the `kube` fixture).
CRDS = [
    ROOT / "charts" / "chorus" / "crds" / "voicepersonalities.voice.chorus.dev.yaml",
    ROOT.parent / "shared" / "kuberay-crds" / "ray.io_rayclusters.yaml",
    ROOT.parent / "shared" / "kuberay-crds" / "ray.io_rayservices.yaml",
]


def build_binaries() -> Path:
    out = subprocess.run(
        ["bash", str(ROOT / "scripts" / "k8s-binaries.sh")], check=True, capture_output=True, text=True
    )
    return Path(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Only what a test cluster without nodes needs: ownerReference cascades, namespace deletion,
# and releasing PVCs held by their protection finalizer.
NODELESS_CONTROLLERS = "garbage-collector-controller,namespace-controller,persistentvolumeclaim-protection-controller"


class ControlPlane:
    """`address` is where the API server listens and what it advertises (pods of a real node
    reach it there, tests/cluster); `controllers` and `admission` (extra plugins to disable)
    default to a cluster without nodes: no pod ever runs, so none needs a ServiceAccount token."""

    def __init__(
        self,
        bin_dir: Path,
        workdir: Path,
        *,
        address: str = "127.0.0.1",
        service_cidr: str = "10.0.0.0/24",
        controllers: str = NODELESS_CONTROLLERS,
        disabled_admission: str = "ServiceAccount",
        apiserver_args: tuple[str, ...] = (),
    ) -> None:
        self.bin = bin_dir
        self.workdir = workdir
        self.address = address
        self.service_cidr = service_cidr
        self.controllers = controllers
        self.disabled_admission = disabled_admission
        self.apiserver_args = apiserver_args
        self.admin_token = secrets.token_hex(16)
        self.port = _free_port()
        self.server = f"https://{address}:{self.port}"
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.identities: dict[str, Path] = {}
        self._argv: dict[str, list[str]] = {}

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        w = self.workdir
        (w / "certs").mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["openssl", "genrsa", "-out", str(w / "sa.key"), "2048"], check=True, capture_output=True
        )
        subprocess.run(
            ["openssl", "rsa", "-in", str(w / "sa.key"), "-pubout", "-out", str(w / "sa.pub")],
            check=True, capture_output=True,
        )
        (w / "tokens.csv").write_text(f"{self.admin_token},admin,admin,system:masters\n")
        etcd_port = _free_port()
        self.spawn("etcd", [
            str(self.bin / "etcd"), "--data-dir", str(w / "etcd"),
            "--listen-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--advertise-client-urls", f"http://127.0.0.1:{etcd_port}",
            "--listen-peer-urls", f"http://127.0.0.1:{_free_port()}",
            "--unsafe-no-fsync",  # test data: nothing to keep across a crash
        ])
        self.spawn("kube-apiserver", [
            str(self.bin / "kube-apiserver"),
            "--etcd-servers", f"http://127.0.0.1:{etcd_port}",
            "--cert-dir", str(w / "certs"),
            "--secure-port", str(self.port),
            "--bind-address", self.address, "--advertise-address", self.address,
            "--service-cluster-ip-range", self.service_cidr,
            "--authorization-mode", "RBAC",
            "--token-auth-file", str(w / "tokens.csv"),
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(w / "sa.pub"),
            "--service-account-signing-key-file", str(w / "sa.key"),
            f"--disable-admission-plugins={self.disabled_admission}",
            "--allow-privileged=true",
            *self.apiserver_args,
        ])
        self._wait_ready()
        self.admin_kubeconfig = self.write_kubeconfig("admin", self.admin_token)
        self.spawn("kube-controller-manager", [
            str(self.bin / "kube-controller-manager"),
            "--kubeconfig", str(self.admin_kubeconfig),
            "--controllers", self.controllers,
            # Published to every namespace as kube-root-ca.crt, which pods verify the API with.
            "--root-ca-file", str(self.ca_file),
            "--leader-elect=false", "--secure-port=0",
        ])

    def stop(self) -> None:
        for _, proc in reversed(self._procs):
            proc.terminate()
        for _, proc in reversed(self._procs):
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)  # the API server drains watches for longer than a test needs
            if proc.poll() is None:
                proc.kill()
        self._procs.clear()

    def spawn(self, name: str, argv: list[str]) -> None:
        """Run a process that lives and dies with this plane (stopped in reverse order of
        start; `check_alive` reports it exiting). tests/cluster runs its node this way."""
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the process
        self._argv[name] = argv
        self._procs.append((name, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))

    def restart_apiserver(self) -> None:
        """Stop kube-apiserver and start it again on the same port and etcd (what clients
        see in a control-plane upgrade): open watches break, state survives."""
        (i, proc), = [(i, p) for i, (n, p) in enumerate(self._procs) if n == "kube-apiserver"]
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # it drains open watches for a long while
            proc.kill()
            proc.wait()
        del self._procs[i]
        self.spawn("kube-apiserver", self._argv["kube-apiserver"])
        self._wait_ready()

    def check_alive(self) -> None:
        for name, proc in self._procs:
            if proc.poll() is not None:
                tail = (self.workdir / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def _wait_ready(self, timeout: float = 120) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # the serving cert does not exist until it is up
        deadline = time.monotonic() + timeout
        while True:
            self.check_alive()
            req = urllib.request.Request(
                f"{self.server}/readyz", headers={"Authorization": f"Bearer {self.admin_token}"}
            )
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=5) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"kube-apiserver not ready after {timeout} s")
            time.sleep(0.5)

    # --- access ------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        return self.workdir / "certs" / "apiserver.crt"

    def write_kubeconfig(self, user: str, token: str, namespace: str = "default") -> Path:
        path = self.workdir / f"kubeconfig-{user.replace(':', '-')}"
        self.identities[user] = path
        path.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.server, "certificate-authority": str(self.ca_file)}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": user, "namespace": namespace}}],
            "current-context": "test",
        }))
        return path

    def kubectl(
        self, *args: str, input: str | None = None, identity: str = "admin", check: bool = True,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built kubectl as one of the identities this plane has a kubeconfig for."""
        env = {**os.environ, "KUBECONFIG": str(self.identities[identity])}
        out = subprocess.run(
            [str(self.bin / "kubectl"), *args], input=input, capture_output=True, text=True, env=env, timeout=timeout
        )
        if check and out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({out.returncode}):\n{out.stderr}{out.stdout}")
        return out

    def wait_established(self, crds: list[str], timeout: float = 60) -> None:
        # `kubectl wait` fails outright while a new CRD has no conditions yet: poll it.
        deadline = time.monotonic() + timeout
        while True:
            out = self.kubectl("wait", "--for=condition=Established", "--timeout=10s",
                               *(f"crd/{c}" for c in crds), check=False)
            if out.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"CRDs not Established: {out.stderr}")
            time.sleep(0.5)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.admin_kubeconfig),
               "HELM_CACHE_HOME": str(self.workdir / "helm-cache"),
               "HELM_CONFIG_HOME": str(self.workdir / "helm-config"),
               "HELM_DATA_HOME": str(self.workdir / "helm-data")}
        out = subprocess.run([str(self.bin / "helm"), *args], capture_output=True, text=True, env=env, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed ({out.returncode}):\n{out.stderr}{out.stdout}")
        return out

    def service_account_kubeconfig(self, namespace: str, name: str) -> Path:
        """A kubeconfig authenticating as a ServiceAccount (a real TokenRequest token),
        so a component runs with exactly the RBAC bound to it."""
        token = self.kubectl("-n", namespace, "create", "token", name, "--duration=2h").stdout.strip()
        return self.write_kubeconfig(f"system:serviceaccount:{namespace}:{name}", token, namespace)


@contextlib.contextmanager
def running_control_plane(bin_dir: Path, workdir: Path) -> Iterator[ControlPlane]:
    plane = ControlPlane(bin_dir, workdir)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
