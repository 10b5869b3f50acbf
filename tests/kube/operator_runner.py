"""Runs the operator the way the chart does: its RBAC objects applied from the rendered
chart, authenticated as the chart's ServiceAccount (a real token), watching one
namespace; kopf's own test runner hosts it in a thread."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kopf.testing import KopfRunner

from tests.kube.control_plane import ROOT, ControlPlane

RBAC_KINDS = {"ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding",
              "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}
T = TypeVar("T")


def render_chart(kube: ControlPlane, namespace: str, *values: str) -> list[dict[str, Any]]:
    """The chart as `helm template` renders it, with keys from a Secret (it renders nothing
    without) unless `values` say otherwise."""
    args = ["template", "chorus", str(ROOT / "charts" / "chorus"), "--namespace", namespace]
    if not any(v.startswith("auth.") for v in values):
        values = ("auth.existingSecret=chorus-api-keys", *values)
    for v in values:
        args += ["--set", v]
    return [d for d in yaml.safe_load_all(kube.helm(*args).stdout) if d]


def operator_identity(kube: ControlPlane, namespace: str, *values: str) -> Path:
    """Apply the chart's RBAC (release in `namespace`, chart `values`) and return a
    kubeconfig of the operator's ServiceAccount."""
    # Without the voice-names policy: it is no part of the operator's rights, and a policy
    # left bound would outlive the test that applied it (tests/kube/test_chart.py tests it).
    docs = render_chart(kube, namespace, "operator.uniqueVoiceNames=false", *values)
    rbac = [d for d in docs if d["kind"] in RBAC_KINDS]
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(rbac))
    (deployment,) = [d for d in docs if d["kind"] == "Deployment" and "operator" in d["metadata"]["name"]]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    return kube.service_account_kubeconfig(namespace, account)


class Denials(logging.Handler):
    """Collects what the API server refused the operator (403s), from kopf's logs."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        # 403 as a word: a message naming a port such as 127.0.0.1:40385 is no denial.
        if re.search(r"\b403\b|forbidden", message, re.IGNORECASE):
            self.seen.append(message)


@contextlib.contextmanager
def running_operator(
    kubeconfig: Path, namespace: str | None, samples_dir: Path, *, liveness: str | None = None, **env: str
) -> Iterator[tuple[KopfRunner, Denials]]:
    """The operator as the chart runs it: `namespace` None is cluster-wide (-A)."""
    settings = {
        "KUBECONFIG": str(kubeconfig),
        "CHORUS_OPERATOR_SAMPLES_DIR": str(samples_dir),
        "CHORUS_OPERATOR_WATCH_TIMEOUT_S": "10",  # quick shutdown at the end of the test
        **env,
    }
    saved = {k: os.environ.get(k) for k in settings}
    os.environ.update(settings)
    denials = Denials()
    logging.getLogger().addHandler(denials)
    try:
        scope = ["--all-namespaces"] if namespace is None else ["--namespace", namespace]
        probe = [f"--liveness={liveness}"] if liveness else []
        with KopfRunner(
            ["run", "--standalone", "--verbose", *scope, *probe, "-m", "voice_operator.handlers"], timeout=120
        ) as runner:
            yield runner, denials
        assert runner.exit_code == 0, runner.output
    finally:
        logging.getLogger().removeHandler(denials)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def eventually(probe: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy (never sleep-and-hope)."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError):
            last = probe()
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"{what} not reached in {timeout} s (last: {last!r})")
