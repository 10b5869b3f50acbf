"""The Helm chart (charts/chorus), the plain RayService manifest and the example personalities.

Rendered manifests are applied with `kubectl apply --dry-run=server` to the real
kube-apiserver of the `kube` fixture, which has the VoicePersonality CRD and KubeRay's CRDs
installed, so the RayService is validated against KubeRay's schema server-side.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from chorus.personalities import parse_text
from tests.kube.control_plane import ROOT, ControlPlane
from voice_operator.safe_fetch import DENIED_NETWORKS

CHART = ROOT / "charts" / "chorus"
CLUSTER_PROFILE = ROOT / "serve" / "configs" / "cluster.yaml"
RAYSERVICE_MANIFEST = ROOT / "manifests" / "rayservice.yaml"
EXAMPLES = ROOT / "manifests" / "examples"
RELEASE = "chorus"  # the release name manifests/rayservice.yaml is rendered with

CLOUD_ENGINES = ["google_tts", "azure_tts", "ibm_watson"]
API_KEYS_DIR = "/var/run/secrets/chorus/api-keys"
RAY_TOKEN_SECRET = f"{RELEASE}-ray-auth"  # the chart's own, when ray.auth.existingSecret is empty
CACHE_ENV = {"XDG_CACHE_HOME": "/var/cache/chorus"}  # every Ray container: the root filesystem is read-only

# Everything the chart can switch on, at once.
VARIANT_VALUES: dict[str, Any] = {
    "operator": {"clusterWide": True},
    "engines": {
        "styletts2": {"enabled": False},
        "xtts_v2": {"minReplicas": 0, "maxReplicas": 2},
        "piper": {"minReplicas": 2, "maxReplicas": 6},
        "google_tts": {"enabled": True},
        "azure_tts": {"enabled": True, "maxReplicas": 2, "config": {"default_voice": "en-GB-SoniaNeural"}},
        "ibm_watson": {"enabled": True, "minReplicas": 0, "timeoutSeconds": 20},
    },
    "ingress": {"minReplicas": 3, "maxReplicas": 12},
    "samples": {"volumePerPersonality": True, "storageClass": "fast-rwx", "perPersonalitySize": "2Gi"},
    "redis": {"existingSecret": "chorus-redis"},
    "auth": {"existingSecret": "chorus-api-keys", "secretKey": "api-keys.yaml"},
    "ray": {"auth": {"existingSecret": "chorus-ray-token"}},
    "dashboard": {"rayDashboard": "http://127.0.0.1:8265", "trace": "https://jaeger.example/trace/{trace_id}"},
    "cloud": {
        "google": {"existingSecret": "chorus-google"},
        "azure": {"existingSecret": "chorus-azure"},
        "ibm": {"existingSecret": "chorus-ibm"},
    },
}

# Namespaced operator over two namespaces, CPU only (no cloning engine, so no GPU group),
# fixed size (no autoscaler sidecar on the head).
CPU_ONLY_VALUES: dict[str, Any] = {
    "operator": {"watchNamespaces": ["voices-a", "voices-b"]},
    "ray": {"enableInTreeAutoscaling": False},
    "engines": {"xtts_v2": {"enabled": False}, "styletts2": {"enabled": False}},
    "redis": {"url": "redis://redis:6379/0"},
    "samples": {"existingClaim": "my-samples"},
}

# The operator's permissions, exactly: (apiGroup, resource, verb). tests/kube/test_operator*
# run the operator under these and fail on any 403, so none is missing either.
OPERATOR_RULES = (
    {("voice.chorus.dev", "voicepersonalities", v) for v in ("list", "watch", "patch")}
    | {("voice.chorus.dev", "voicepersonalities/status", "patch")}
    | {("voice.chorus.dev", "voicepersonalities/finalizers", "update")}
    | {("", "events", "create")}
    | {("", "configmaps", v) for v in ("get", "create", "patch")}
    | {("", "persistentvolumeclaims", v) for v in ("get", "create")}
)


# --- helpers -----------------------------------------------------------------------------


# The chart renders nothing without API keys (or an explicit insecureNoAuth): every render
# here names this Secret unless its values say otherwise, as manifests/rayservice.yaml does.
KEYS = {"auth": {"existingSecret": "chorus-api-keys"}}


def render(kube: ControlPlane, tmp_path: Path, values: dict[str, Any] | None = None,
           namespace: str = "default") -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    values = values or {}
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values if "auth" in values else {**values, **KEYS}))
    args += ["-f", str(values_file)]
    out = kube.helm(*args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[d['metadata']['name'] for d in found]}"
    return found[0]


def rule_set(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    out = set()
    for rule in rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, f"unexpected rule fields: {rule}"
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    out.add((group, resource, verb))
    return out


def serve_config(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return yaml.safe_load(one(docs, "RayService")["spec"]["serveConfigV2"])


def expected_serve_config(values: dict[str, Any]) -> dict[str, Any]:
    """The cluster profile with exactly the changes `values` ask for, computed independently
    of the chart."""
    cfg = copy.deepcopy(yaml.safe_load(CLUSTER_PROFILE.read_text()))
    app = cfg["applications"][0]
    engines = values.get("engines", {})

    def bounds(deployment: dict[str, Any], given: dict[str, Any]) -> None:
        for key, field in (("minReplicas", "min_replicas"), ("maxReplicas", "max_replicas")):
            if given.get(key) is not None:
                deployment.setdefault("autoscaling_config", {})[field] = given[key]

    deployments = []
    for d in app["deployments"]:
        given = values.get("ingress", {}) if d["name"] == "Ingress" else engines.get(d["name"], {})
        if given.get("enabled") is False:
            continue
        bounds(d, given)
        deployments.append(d)
    for engine, given in engines.items():
        if given.get("enabled") is False and engine in app["args"]["engines"]:
            app["args"]["engines"][engine]["enabled"] = False
    for engine in CLOUD_ENGINES:
        given = engines.get(engine, {})
        if given.get("enabled"):
            app["args"]["engines"][engine] = {
                "enabled": True, "timeout_s": given.get("timeoutSeconds", 15), "config": given.get("config", {}),
            }
            d = {
                "name": engine,
                "graceful_shutdown_timeout_s": app["args"]["request_deadline_s"],
                "graceful_shutdown_wait_loop_s": 1,
                "max_ongoing_requests": 32,
                "ray_actor_options": {"num_cpus": 0.5, "resources": {"chorus_cloud": 0.01}},
                "autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 16},
            }
            bounds(d, given)
            deployments.append(d)
    app["deployments"] = deployments
    auth = values.get("auth", {})
    if auth.get("existingSecret"):
        app["args"]["auth"] = {"keysFile": f"{API_KEYS_DIR}/{auth.get('secretKey', 'keys.yaml')}"}
    links = {field: url for field, url in values.get("dashboard", {}).items() if url}
    if links:
        app["args"]["links"] = links
    return cfg


def container_env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def ray_pod_specs(rayservice: dict[str, Any]) -> dict[str, dict[str, Any]]:
    rc = rayservice["spec"]["rayClusterConfig"]
    specs = {"head": rc["headGroupSpec"]["template"]["spec"]}
    specs.update({g["groupName"]: g["template"]["spec"] for g in rc["workerGroupSpecs"]})
    return specs


@pytest.fixture
def namespace(kube: ControlPlane, request: pytest.FixtureRequest) -> str:
    name = f"chart-{request.node.callspec.id}"
    kube.kubectl("create", "namespace", name)
    return name


def dry_run_apply(kube: ControlPlane, docs: list[dict[str, Any]], namespace: str) -> None:
    """As `helm install -n namespace` would: objects without a namespace land in it; kubectl
    refuses `-n` for objects naming another one, so those go per namespace."""
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for d in docs:
        by_namespace.setdefault(d["metadata"].get("namespace", namespace), []).append(d)
    for ns, group in by_namespace.items():
        out = kube.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=yaml.safe_dump_all(group))
        applied = [line for line in out.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(applied) == len(group), out.stdout


# --- files that need no cluster ----------------------------------------------------------


def test_chart_carries_the_cluster_profile_byte_for_byte() -> None:
    assert (CHART / "files" / "serve-cluster.yaml").read_bytes() == CLUSTER_PROFILE.read_bytes(), (
        "charts/chorus/files/serve-cluster.yaml must be a copy of serve/configs/cluster.yaml: "
        "cp serve/configs/cluster.yaml charts/chorus/files/serve-cluster.yaml"
    )


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_example_personalities_validate(path: Path) -> None:
    personality = parse_text(path.read_text(), default_name=path.stem)
    assert personality.name == path.stem


def test_example_names_are_unique() -> None:
    names = [yaml.safe_load(p.read_text())["metadata"]["name"] for p in EXAMPLES.glob("*.yaml")]
    assert len(names) >= 2 and len(names) == len(set(names))


# --- the chart ---------------------------------------------------------------------------


def test_helm_lint(kube: ControlPlane, tmp_path: Path) -> None:
    kube.helm("lint", "--strict", str(CHART))
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(VARIANT_VALUES))
    kube.helm("lint", "--strict", str(CHART), "-f", str(values_file))


@pytest.mark.parametrize("values", [None, VARIANT_VALUES, CPU_ONLY_VALUES], ids=["defaults", "variant", "cpu-only"])
def test_rendering_applies_server_side(kube: ControlPlane, tmp_path: Path, namespace: str,
                                       values: dict[str, Any] | None) -> None:
    docs = render(kube, tmp_path, values, namespace)
    kinds = {d["kind"] for d in docs}
    assert {"RayService", "Deployment", "ServiceAccount", "Role", "RoleBinding"} <= kinds
    # A Role in a namespace that is not the release's carries its own namespace.
    for ns in {d["metadata"].get("namespace") for d in docs} - {None, namespace}:
        kube.kubectl("create", "namespace", ns)
    dry_run_apply(kube, docs, namespace)


@pytest.mark.parametrize("values", [None, VARIANT_VALUES, CPU_ONLY_VALUES], ids=["defaults", "variant", "cpu-only"])
def test_serve_config_is_the_cluster_profile_plus_values(kube: ControlPlane, tmp_path: Path,
                                                         values: dict[str, Any] | None) -> None:
    rendered = serve_config(render(kube, tmp_path, values))
    assert rendered == expected_serve_config(values if values and "auth" in values else {**(values or {}), **KEYS})
    if values is None:  # the profile itself, with the keys render() names
        profile = yaml.safe_load(CLUSTER_PROFILE.read_text())
        profile["applications"][0]["args"]["auth"] = {"keysFile": f"{API_KEYS_DIR}/keys.yaml"}
        assert rendered == profile


@pytest.mark.parametrize("values", [None, VARIANT_VALUES], ids=["defaults", "variant"])
def test_serve_config_builds_the_application_it_configures(
    kube: ControlPlane, tmp_path: Path, values: dict[str, Any] | None
) -> None:
    from ray.serve.schema import ServeDeploySchema

    from chorus.app import build_app

    config = serve_config(render(kube, tmp_path, values))
    ServeDeploySchema.model_validate(config)  # what KubeRay hands the Serve controller
    (app,) = config["applications"]
    ingress = build_app(app["args"])._bound_deployment  # every engine's own config validates
    engines, _, recognizer = ingress.init_args
    bound = {ingress.name, recognizer._bound_deployment.name} | {e._bound_deployment.name for e in engines.values()}
    assert {d["name"] for d in app["deployments"]} == bound


def test_unknown_engine_is_refused(kube: ControlPlane, tmp_path: Path) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({"engines": {"espeak": {"enabled": True}}}))
    out = kube.helm("template", RELEASE, str(CHART), "-f", str(values_file), check=False)
    assert out.returncode != 0 and "engines.espeak: unknown engine id" in out.stderr


def test_rayservice_groups(kube: ControlPlane, tmp_path: Path) -> None:
    rs = one(render(kube, tmp_path), "RayService", RELEASE)
    rc = rs["spec"]["rayClusterConfig"]
    assert rc["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    groups = {g["groupName"]: g for g in rc["workerGroupSpecs"]}
    assert set(groups) == {"gpu", "cpu"}  # no cloud engine by default: no cloud group
    assert json.loads(json.loads(groups["gpu"]["rayStartParams"]["resources"])) == {"chorus_gpu": 1000}
    assert json.loads(json.loads(groups["cpu"]["rayStartParams"]["resources"])) == {"chorus_cpu": 1000}
    assert groups["gpu"]["rayStartParams"]["num-gpus"] == "1"  # KubeRay v1.5 would leave it to detection
    gpu_container = groups["gpu"]["template"]["spec"]["containers"][0]
    assert gpu_container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert gpu_container["image"].endswith("chorus-gpu:0.1.0")
    assert groups["cpu"]["template"]["spec"]["containers"][0]["image"].endswith("chorus:0.1.0")
    for g in groups.values():
        assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    # Every Ray pod: the shared samples volume and the read-only models volume; the workers
    # share an identity, the head (KubeRay's autoscaler) has its own.
    for group, spec in ray_pod_specs(rs).items():
        account = f"{RELEASE}-ray-head" if group == "head" else f"{RELEASE}-ray"
        assert spec["serviceAccountName"] == account, group
        claims = {v["name"]: v["persistentVolumeClaim"] for v in spec["volumes"] if "persistentVolumeClaim" in v}
        assert claims["samples"]["claimName"] == f"{RELEASE}-samples"
        assert claims["models"] == {"claimName": "chorus-models", "readOnly": True}
        mounts = {m["mountPath"]: m for m in spec["containers"][0]["volumeMounts"]}
        assert mounts["/var/lib/chorus/samples"]["name"] == "samples"
        assert mounts["/models"] == {"name": "models", "mountPath": "/models", "readOnly": True}
        assert set(container_env(spec["containers"][0])) == {*CACHE_ENV, "RAY_AUTH_MODE", "RAY_AUTH_TOKEN"}, (
            "no credentials or Redis configured by default"
        )

    # Without a cloning engine there is no GPU group.
    cpu_only = one(render(kube, tmp_path, CPU_ONLY_VALUES), "RayService")
    assert [g["groupName"] for g in cpu_only["spec"]["rayClusterConfig"]["workerGroupSpecs"]] == ["cpu"]
    # A cloud engine brings its own group, advertising chorus_cloud, with no API token.
    with_cloud = one(render(kube, tmp_path, VARIANT_VALUES), "RayService")["spec"]["rayClusterConfig"]
    cloud = {g["groupName"]: g for g in with_cloud["workerGroupSpecs"]}["cloud"]
    assert json.loads(json.loads(cloud["rayStartParams"]["resources"])) == {"chorus_cloud": 1000}
    assert cloud["template"]["spec"]["automountServiceAccountToken"] is False


def images(docs: list[dict[str, Any]]) -> dict[str, str]:
    """Where each image is used -> the image reference."""
    rc = one(docs, "RayService", RELEASE)["spec"]["rayClusterConfig"]
    used = {"head": rc["headGroupSpec"]["template"]["spec"]["containers"][0]["image"]}
    used |= {g["groupName"]: g["template"]["spec"]["containers"][0]["image"] for g in rc["workerGroupSpecs"]}
    operator = one(docs, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]
    used["operator"] = operator["containers"][0]["image"]
    return used


def test_images_are_the_built_ones_under_registry_and_tag(kube: ControlPlane, tmp_path: Path) -> None:
    # scripts/build-images.sh tags every image with pyproject's version: the chart's default tag.
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"] == version
    expected = {"head": "chorus", "cpu": "chorus", "gpu": "chorus-gpu", "operator": "chorus-operator"}
    default = {k: f"ghcr.io/chorus-dev/{n}:{version}" for k, n in expected.items()}
    assert images(render(kube, tmp_path)) == default
    pushed = {"image": {"registry": "registry.example:5000/voice/", "tag": "1.2.3"}}
    assert images(render(kube, tmp_path, pushed)) == {
        k: f"registry.example:5000/voice/{n}:1.2.3" for k, n in expected.items()}


def ref(secret: str, key: str) -> dict[str, Any]:
    return {"secretKeyRef": {"name": secret, "key": key, "optional": False}}


def token_env(secret: str) -> dict[str, Any]:
    return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": ref(secret, "auth_token")}


def test_secrets_and_redis_are_referenced_never_created(kube: ControlPlane, tmp_path: Path) -> None:
    """Each credential only where its reader runs (the profile puts the Ingress and Piper on
    the CPU group, the cloud engines on the cloud group, the cloning engines on the GPU group):
    API keys on the CPU group alone, cloud credentials on the cloud group alone (security
    audit M13: not in the container of the Ingress, which parses anyone's uploads); the Redis
    URL also on the head, where the Serve controller builds the app and
    chorus.app.build_app reads CHORUS_REDIS_URL."""
    docs = render(kube, tmp_path, VARIANT_VALUES)
    assert not [d for d in docs if d["kind"] == "Secret"]
    # The placement the rest relies on: the Ingress needs chorus_cpu, the cloud engines
    # chorus_cloud, each advertised by one group only (test_rayservice_groups).
    deployments = serve_config(docs)["applications"][0]["deployments"]
    placed = {d["name"]: d["ray_actor_options"]["resources"] for d in deployments}
    assert set(placed["Ingress"]) == {"chorus_cpu"}
    for name in CLOUD_ENGINES:
        assert set(placed[name]) == {"chorus_cloud"}, name

    cloud = {
        "AZURE_SPEECH_KEY": ref("chorus-azure", "AZURE_SPEECH_KEY"),
        "AZURE_SPEECH_REGION": ref("chorus-azure", "AZURE_SPEECH_REGION"),
        "TEXT_TO_SPEECH_APIKEY": ref("chorus-ibm", "TEXT_TO_SPEECH_APIKEY"),
        "TEXT_TO_SPEECH_URL": ref("chorus-ibm", "TEXT_TO_SPEECH_URL"),
        "GOOGLE_APPLICATION_CREDENTIALS": "/var/run/secrets/chorus/google/credentials.json",
    }
    redis = {"CHORUS_REDIS_URL": ref("chorus-redis", "url")}
    expected_env = {
        "head": CACHE_ENV | token_env("chorus-ray-token") | redis,
        "cpu": CACHE_ENV | token_env("chorus-ray-token") | redis,
        "cloud": CACHE_ENV | token_env("chorus-ray-token") | cloud,
        "gpu": CACHE_ENV | token_env("chorus-ray-token"),
    }
    specs = ray_pod_specs(one(docs, "RayService"))
    assert set(specs) == set(expected_env)
    for group, spec in specs.items():
        (container,) = spec["containers"]
        assert container_env(container) == expected_env[group], group
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert ("api-keys" in volumes) == ("api-keys" in mounts) == (group == "cpu"), group
        if group != "cloud":
            assert "google-credentials" not in set(volumes) | set(mounts), group
            continue
        google = volumes["google-credentials"]
        assert google["secret"]["secretName"] == "chorus-google"
        assert google["secret"]["items"] == [{"key": "credentials.json", "path": "credentials.json"}]
        mount = mounts["google-credentials"]
        assert mount["mountPath"] == "/var/run/secrets/chorus/google" and mount["readOnly"] is True

    operator = one(docs, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]["containers"][0]
    env = container_env(operator)
    assert env["CHORUS_REDIS_URL"] == ref("chorus-redis", "url")
    assert not {"AZURE_SPEECH_KEY", "TEXT_TO_SPEECH_APIKEY"} & set(env)

    plain = render(kube, tmp_path, CPU_ONLY_VALUES)
    for spec in ray_pod_specs(one(plain, "RayService")).values():
        assert container_env(spec["containers"][0]) == (
            CACHE_ENV | token_env(RAY_TOKEN_SECRET) | {"CHORUS_REDIS_URL": "redis://redis:6379/0"}
        )
        assert {v["name"]: v.get("persistentVolumeClaim") for v in spec["volumes"]}["samples"] == {
            "claimName": "my-samples"
        }
    assert not [d for d in plain if d["kind"] == "PersistentVolumeClaim"], "existingClaim: no PVC created"
    assert [d["metadata"]["name"] for d in plain if d["kind"] == "Secret"] == [RAY_TOKEN_SECRET]


def test_api_keys_come_from_a_secret_mounted_as_a_directory(kube: ControlPlane, tmp_path: Path) -> None:
    docs = render(kube, tmp_path, {"auth": {"existingSecret": "chorus-api-keys"}})
    rayservice = one(docs, "RayService")
    assert serve_config(docs)["applications"][0]["args"]["auth"] == {"keysFile": f"{API_KEYS_DIR}/keys.yaml"}
    specs = ray_pod_specs(rayservice)
    # Only the Ingress reads the keys, and it runs on the CPU group.
    for group in ("head", "gpu"):
        assert "api-keys" not in {v["name"] for v in specs[group]["volumes"]}, group
        assert "api-keys" not in {m["name"] for m in specs[group]["containers"][0]["volumeMounts"]}, group
    volume = next(v for v in specs["cpu"]["volumes"] if v["name"] == "api-keys")
    assert volume["secret"] == {"secretName": "chorus-api-keys", "optional": False,
                                "items": [{"key": "keys.yaml", "path": "keys.yaml"}]}
    (mount,) = [m for m in specs["cpu"]["containers"][0]["volumeMounts"] if m["name"] == "api-keys"]
    # A subPath mount would never see the Secret's updates, so rotation needs the directory.
    assert mount == {"name": "api-keys", "mountPath": API_KEYS_DIR, "readOnly": True}
    assert [d["metadata"]["name"] for d in docs if d["kind"] == "Secret"] == [RAY_TOKEN_SECRET]

    # Off only when asked for by name: no volume, no keys, and the app told it is on purpose.
    open_ = render(kube, tmp_path, {"auth": {"insecureNoAuth": True}})
    args = serve_config(open_)["applications"][0]["args"]
    assert "auth" not in args and args["insecure_no_auth"] is True
    for spec in ray_pod_specs(one(open_, "RayService")).values():
        assert "api-keys" not in {v["name"] for v in spec["volumes"]}


def test_the_chart_renders_nothing_without_keys(kube: ControlPlane, tmp_path: Path) -> None:
    """Security audit H-1: the defaults used to serve every route to every pod."""
    out = kube.helm("template", RELEASE, str(CHART), check=False)
    assert out.returncode != 0 and "auth.existingSecret is empty" in out.stderr, out.stderr
    assert "auth.insecureNoAuth=true" in out.stderr


@pytest.mark.parametrize("auth", [
    {"keys": [{"name": "ops", "key": "chorus_0123456789abcdef", "scopes": ["admin"]}]},
    {"existingSecret": "k", "keysFile": "/etc/keys.yaml"},
    {"existingSecret": "k", "secretKey": "../keys.yaml"},
], ids=["inline-keys", "other-field", "bad-secret-key"])
def test_keys_are_never_taken_inline(kube: ControlPlane, tmp_path: Path, auth: dict[str, Any]) -> None:
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({"auth": auth}))
    out = kube.helm("template", RELEASE, str(CHART), "-f", str(values_file), check=False)
    assert out.returncode != 0 and "auth." in out.stderr, out.stderr
    assert "chorus_0123456789abcdef" not in out.stdout


def test_operator_deployment(kube: ControlPlane, tmp_path: Path) -> None:
    docs = render(kube, tmp_path, namespace="voices")
    deployment = one(docs, "Deployment", f"{RELEASE}-operator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == f"{RELEASE}-operator"
    one(docs, "ServiceAccount", f"{RELEASE}-operator")
    (c,) = pod["containers"]
    assert c["command"] == [
        "kopf", "run", "--standalone", "--liveness=http://0.0.0.0:8080/healthz",
        "-m", "voice_operator.handlers", "--namespace=voices",
    ]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": 8080}
    assert container_env(c) == {
        "CHORUS_OPERATOR_SAMPLES_DIR": "/var/lib/chorus/samples",
        "CHORUS_OPERATOR_SAMPLE_VOLUMES": "shared",
        "CHORUS_OPERATOR_STORAGE_CLASS": "",
        "CHORUS_OPERATOR_ALLOWED_DOMAINS": "",
        "CHORUS_OPERATOR_VOLUME_SIZE": "1Gi",
    }
    sc = c["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert c["resources"]["limits"] and c["resources"]["requests"]
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert mounts["/var/lib/chorus/samples"] == "samples"
    pvc = one(docs, "PersistentVolumeClaim", f"{RELEASE}-samples")
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]

    variant = one(render(kube, tmp_path, VARIANT_VALUES), "Deployment", f"{RELEASE}-operator")
    (c,) = variant["spec"]["template"]["spec"]["containers"]
    assert c["command"][-1] == "--all-namespaces" and not [a for a in c["command"] if a.startswith("--namespace")]
    env = container_env(c)
    assert env["CHORUS_OPERATOR_SAMPLE_VOLUMES"] == "per-personality"
    assert env["CHORUS_OPERATOR_STORAGE_CLASS"] == "fast-rwx"
    assert env["CHORUS_OPERATOR_VOLUME_SIZE"] == "2Gi"

    two = one(render(kube, tmp_path, CPU_ONLY_VALUES), "Deployment", f"{RELEASE}-operator")
    assert [a for a in two["spec"]["template"]["spec"]["containers"][0]["command"] if a.startswith("--namespace")] == [
        "--namespace=voices-a", "--namespace=voices-b",
    ]


def test_operator_rbac_cluster_wide(kube: ControlPlane, tmp_path: Path) -> None:
    docs = render(kube, tmp_path, VARIANT_VALUES, namespace="chorus-system")
    role = one(docs, "ClusterRole", f"{RELEASE}-operator")
    assert rule_set(role["rules"]) == OPERATOR_RULES
    binding = one(docs, "ClusterRoleBinding", f"{RELEASE}-operator")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": f"{RELEASE}-operator"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-operator",
                                    "namespace": "chorus-system"}]
    operator_roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == f"{RELEASE}-operator"]
    assert not operator_roles


@pytest.mark.parametrize(("values", "watched"), [(None, ["chorus-system"]),
                                                 (CPU_ONLY_VALUES, ["voices-a", "voices-b"])],
                         ids=["release-namespace", "two-namespaces"])
def test_operator_rbac_namespaced(kube: ControlPlane, tmp_path: Path, values: dict[str, Any] | None,
                                  watched: list[str]) -> None:
    docs = render(kube, tmp_path, values, namespace="chorus-system")
    # Nothing cluster-scoped: the operator neither scans CRDs nor lists namespaces.
    assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    subject = [{"kind": "ServiceAccount", "name": f"{RELEASE}-operator", "namespace": "chorus-system"}]
    roles = [d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == f"{RELEASE}-operator"]
    assert sorted(r["metadata"]["namespace"] for r in roles) == watched
    for role in roles:
        assert rule_set(role["rules"]) == OPERATOR_RULES
    bindings = [d for d in docs if d["kind"] == "RoleBinding" and d["metadata"]["name"] == f"{RELEASE}-operator"]
    assert sorted(b["metadata"]["namespace"] for b in bindings) == watched
    for b in bindings:
        assert b["subjects"] == subject and b["roleRef"]["kind"] == "Role"


def test_ray_pods_may_only_read_configmaps(kube: ControlPlane, tmp_path: Path) -> None:
    for values in (None, VARIANT_VALUES):
        docs = render(kube, tmp_path, values)
        role = one(docs, "Role", f"{RELEASE}-ray")
        assert rule_set(role["rules"]) == {("", "configmaps", v) for v in ("get", "list", "watch")}
        binding = one(docs, "RoleBinding", f"{RELEASE}-ray")
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": f"{RELEASE}-ray", "namespace": "default"}]
        assert not [d for d in docs if d["kind"] in ("ClusterRole", "ClusterRoleBinding")
                    and d["metadata"]["name"].endswith("-ray")]
        # The head's account gets no Role from the chart (KubeRay binds its autoscaler's to it).
        one(docs, "ServiceAccount", f"{RELEASE}-ray-head")
        assert not [d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")
                    and any(s["name"] == f"{RELEASE}-ray-head" for s in d["subjects"])]


# --- Ray pods: token auth, securityContext, service account tokens ----------------------

POD_SECURITY = {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                "seccompProfile": {"type": "RuntimeDefault"}}
CONTAINER_SECURITY = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                      "capabilities": {"drop": ["ALL"]}}
# Where a Ray container may write: the sample volume and two emptyDirs (Ray's /tmp/ray session
# directory and spilled objects under /tmp, engine caches under XDG_CACHE_HOME).
WRITABLE = {"/var/lib/chorus/samples": "samples", "/tmp": "tmp", "/var/cache/chorus": "cache"}


def ray_token(docs: list[dict[str, Any]]) -> str:
    secret = one(docs, "Secret", RAY_TOKEN_SECRET)
    return base64.b64decode(secret["data"]["auth_token"]).decode()


def test_ray_token_auth_from_a_secret(kube: ControlPlane, tmp_path: Path) -> None:
    """Every Ray container runs with RAY_AUTH_MODE=token and the token from the Secret, and
    authOptions names the same Secret so KubeRay's own dashboard calls carry it."""
    for values, secret in ((None, RAY_TOKEN_SECRET), (VARIANT_VALUES, "chorus-ray-token")):
        docs = render(kube, tmp_path, values)
        rayservice = one(docs, "RayService")
        auth_options = rayservice["spec"]["rayClusterConfig"]["authOptions"]
        assert auth_options == {"mode": "token", "secretName": secret}
        for group, spec in ray_pod_specs(rayservice).items():
            env = container_env(spec["containers"][0])
            assert {k: env.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")} == token_env(secret), group
    # The chart's own Secret: a random token under KubeRay's key, only when none is named.
    default = render(kube, tmp_path)
    token = ray_token(default)
    assert len(token) >= 32 and token.isalnum()
    assert ray_token(render(kube, tmp_path)) != token, "random per install, not a constant in the chart"
    assert not [d for d in render(kube, tmp_path, VARIANT_VALUES) if d["kind"] == "Secret"]

    off = render(kube, tmp_path, {"ray": {"auth": {"enabled": False}}})
    rayservice = one(off, "RayService")
    assert "authOptions" not in rayservice["spec"]["rayClusterConfig"]
    for spec in ray_pod_specs(rayservice).values():
        assert not {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} & set(container_env(spec["containers"][0]))
    assert not [d for d in off if d["kind"] == "Secret"]


def test_ray_token_is_kept_across_upgrades(kube: ControlPlane, tmp_path: Path) -> None:
    """An upgrade renders the token already in the cluster (a new one would split the running
    Ray cluster); a fresh install gets a new one."""
    kube.kubectl("create", "namespace", "chart-token")
    kube.kubectl("-n", "chart-token", "create", "secret", "generic", RAY_TOKEN_SECRET,
                 "--from-literal=auth_token=kept0123456789abcdef0123456789abcdef")

    def upgrade(namespace: str) -> str:
        out = kube.helm("template", RELEASE, str(CHART), "--namespace", namespace, "--dry-run=server",
                        "--set", "auth.existingSecret=chorus-api-keys").stdout
        return ray_token([d for d in yaml.safe_load_all(out) if d])

    assert upgrade("chart-token") == "kept0123456789abcdef0123456789abcdef"
    assert upgrade("default") != "kept0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("values", [None, VARIANT_VALUES, CPU_ONLY_VALUES], ids=["defaults", "variant", "cpu-only"])
def test_ray_pods_are_hardened(kube: ControlPlane, tmp_path: Path, values: dict[str, Any] | None) -> None:
    """Non-root with a fixed uid/gid, seccomp RuntimeDefault, no capabilities, no privilege
    escalation, read-only root filesystem with writable emptyDirs only where Ray and the engines
    write; the API token only in pods whose processes call the API server: the CPU group (the
    Ingress's Kubernetes personality store) and the head while KubeRay's autoscaler runs there."""
    rayservice = one(render(kube, tmp_path, values), "RayService")
    rc = rayservice["spec"]["rayClusterConfig"]
    autoscaling = rc["enableInTreeAutoscaling"]
    assert autoscaling is ((values or {}).get("ray", {}).get("enableInTreeAutoscaling", True))
    token_mounted = {"head": autoscaling, "cpu": True, "cloud": False, "gpu": False}
    specs = ray_pod_specs(rayservice)
    expected = {None: {"head", "cpu", "gpu"}, id(CPU_ONLY_VALUES): {"head", "cpu"},
                id(VARIANT_VALUES): {"head", "cpu", "cloud", "gpu"}}[id(values) if values else None]
    assert set(specs) == expected
    for group, spec in specs.items():
        assert spec["securityContext"] == POD_SECURITY, group
        assert spec["automountServiceAccountToken"] is token_mounted[group], group
        volumes = {v["name"]: v for v in spec["volumes"]}
        for container in spec["containers"]:
            assert container["securityContext"] == CONTAINER_SECURITY, group
            assert container_env(container)["XDG_CACHE_HOME"] == "/var/cache/chorus"
            mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
            writable = {path: m["name"] for path, m in mounts.items() if not m.get("readOnly")}
            assert writable == WRITABLE, group
            assert volumes["tmp"] == {"name": "tmp", "emptyDir": {}}
            assert volumes["cache"] == {"name": "cache", "emptyDir": {}}
            # KubeRay mounts its own log volume at /tmp/ray on the head when the autoscaler runs.
            assert "/tmp/ray" not in mounts
    # KubeRay's autoscaler sidecar (in the head pod) is hardened the same way.
    assert rc["autoscalerOptions"]["securityContext"] == CONTAINER_SECURITY
    assert rc["autoscalerOptions"]["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]


def test_ray_probes_are_http_checks_the_images_can_answer(kube: ControlPlane, tmp_path: Path) -> None:
    """KubeRay's own probes run `wget`, which the images lack (the pods then never become
    ready, tests/cluster): the chart sets Ray's health checks as HTTP probes instead."""
    for group, spec in ray_pod_specs(one(render(kube, tmp_path, VARIANT_VALUES), "RayService")).items():
        (container,) = spec["containers"]
        assert container["livenessProbe"]["httpGet"] == {"path": "/api/local_raylet_healthz", "port": 52365}
        ready = {"path": "/api/gcs_healthz", "port": 8265} if group == "head" else {"path": "/-/healthz", "port": 8000}
        assert container["readinessProbe"]["httpGet"] == ready, group
        assert "exec" not in container["livenessProbe"] and "exec" not in container["readinessProbe"]


def test_private_sample_networks_are_an_explicit_opt_in(kube: ControlPlane, tmp_path: Path) -> None:
    """An artifact server inside the cluster: named networks are exempt from the operator's
    public-address rule and let out by its NetworkPolicy; nothing else private is."""
    docs = render(kube, tmp_path, {"operator": {"allowPrivateSampleNetworks": ["10.96.0.0/12", "fd00:10::/64"],
                                                "networkPolicy": {"apiServerCIDRs": ["10.96.0.1/32"]}}})
    operator = one(docs, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert env["CHORUS_OPERATOR_ALLOW_PRIVATE_NETWORKS"] == "10.96.0.0/12,fd00:10::/64"
    op = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-operator-egress"))
    web = op["spec"]["egress"][2]
    assert {p["port"] for p in web["ports"]} == {80, 443}
    assert web["to"][2:] == [{"ipBlock": {"cidr": "10.96.0.0/12"}}, {"ipBlock": {"cidr": "fd00:10::/64"}}]


def test_pod_monitor_scrapes_every_ray_pod_when_asked(kube: ControlPlane, tmp_path: Path) -> None:
    """Off by default (it needs prometheus-operator's CRDs); on, it selects the head and every
    worker group by the labels their pod templates carry, on the port KubeRay names `metrics`."""
    assert not [d for d in render(kube, tmp_path) if d["kind"] == "PodMonitor"]
    values = {"metrics": {"podMonitor": {
        "enabled": True, "interval": "30s", "labels": {"release": "kube-prometheus-stack"}}}}
    docs = render(kube, tmp_path, values)
    monitor = one(docs, "PodMonitor", f"{RELEASE}-ray")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"], endpoint["interval"]) == ("metrics", "/metrics", "30s")
    selector = monitor["spec"]["selector"]["matchLabels"]
    rc = one(docs, "RayService")["spec"]["rayClusterConfig"]
    templates = [rc["headGroupSpec"]["template"], *(g["template"] for g in rc["workerGroupSpecs"])]
    assert len(templates) == 3, "head, gpu and cpu groups"
    for template in templates:
        assert selector.items() <= template["metadata"]["labels"].items()
    # Only Ray pods: the operator's pods must not match.
    operator = one(docs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert not selector.items() <= operator.items()
    lint_values = tmp_path / "monitor.yaml"
    lint_values.write_text(yaml.safe_dump(values))
    kube.helm("lint", "--strict", str(CHART), "-f", str(lint_values))


def test_plain_rayservice_manifest_is_the_chart_default(kube: ControlPlane, tmp_path: Path) -> None:
    manifest = [d for d in yaml.safe_load_all(RAYSERVICE_MANIFEST.read_text()) if d]
    docs = render(kube, tmp_path)
    assert manifest == [one(docs, "RayService"), one(docs, "NetworkPolicy", f"{RELEASE}-ray-ingress")], (
        "manifests/rayservice.yaml is stale; regenerate it as its header says"
    )


def test_examples_apply_server_side(kube: ControlPlane) -> None:
    """The examples also pass the CRD's openAPIV3Schema, not only the pydantic model."""
    kube.kubectl("create", "namespace", "chart-examples")
    out = kube.kubectl("apply", "--dry-run=server", "-n", "chart-examples", "-f", str(EXAMPLES))
    assert out.stdout.count("(server dry run)") == len(list(EXAMPLES.glob("*.yaml"))), out.stdout


def test_crd_is_not_templated() -> None:
    for path in (CHART / "templates").rglob("*"):
        if path.is_file():
            assert "CustomResourceDefinition" not in path.read_text(), path


def test_network_policies_open_only_serve_and_public_egress(kube: ControlPlane, tmp_path: Path) -> None:
    docs = render(kube, tmp_path, {"operator": {"allowedSampleDomains": ["samples.example.com", "cdn.example.org"],
                                                "networkPolicy": {"apiServerCIDRs": ["10.96.0.1/32"]}}})
    kinds = {d["kind"] for d in docs}
    assert "NetworkPolicy" in kinds  # applied server-side with the rest in test_rendering_applies_server_side
    release = {"app.kubernetes.io/name": "chorus", "app.kubernetes.io/instance": RELEASE}

    ray = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-ray-ingress"))
    assert ray["spec"]["policyTypes"] == ["Ingress"]
    open_rule, release_rule, kuberay, prometheus = ray["spec"]["ingress"]
    assert open_rule == {"ports": [{"protocol": "TCP", "port": 8000}]}  # from anywhere: Serve alone
    # 6379, 8265, ...: the release's Ray pods only, not its operator (security audit L-11)
    assert release_rule == {"from": [{"podSelector": {
        "matchLabels": release, "matchExpressions": [{"key": "ray.io/node-type", "operator": "Exists"}]}}]}
    assert kuberay["from"] == [{"namespaceSelector": {},
                                "podSelector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}}}]
    assert {p["port"] for p in kuberay["ports"]} == {8265, 52365}
    assert {p["port"] for p in prometheus["ports"]} == {8080} and prometheus["from"][0]["podSelector"]
    head = one(docs, "RayService")["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert 10001 not in {p["containerPort"] for p in head["ports"]}  # no Ray Client port in the Service

    op = next(d for d in docs if d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("-operator-egress"))
    assert op["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"
    dns, api, web = op["spec"]["egress"]
    assert {p["port"] for p in dns["ports"]} == {53} and "to" not in dns
    assert api["to"] == [{"ipBlock": {"cidr": "10.96.0.1/32"}}]
    v4, v6 = (b["ipBlock"] for b in web["to"])
    assert {p["port"] for p in web["ports"]} == {80, 443}
    # The operator's own deny list, the same networks (security audit L-6).
    denied = {str(n) for n in DENIED_NETWORKS}
    assert v4["cidr"] == "0.0.0.0/0" and v6["cidr"] == "::/0"
    assert set(v4["except"]) | set(v6["except"]) == denied

    env = {e["name"]: e.get("value") for e in one(docs, "Deployment", f"{RELEASE}-operator")["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["CHORUS_OPERATOR_ALLOWED_DOMAINS"] == "samples.example.com,cdn.example.org"
    assert "CHORUS_OPERATOR_ALLOW_PRIVATE_NETWORKS" not in env  # only when asked (below)

    off = render(kube, tmp_path, {"networkPolicy": {"enabled": False}, "operator": {"networkPolicy": {"enabled": False}}})
    assert "NetworkPolicy" not in {d["kind"] for d in off}


def test_operator_egress_reaches_only_the_api_server_it_finds(kube: ControlPlane, tmp_path: Path) -> None:
    """With apiServerCIDRs unset, an install reads the API server's endpoints from the cluster
    (security audit H4): TCP 443/6443 go there only, not to any address."""
    # A cluster's API server publishes this slice itself; the test one advertises loopback,
    # which it never publishes, so the slice a real one writes is put in its place.
    published = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv4",
                 "metadata": {"name": "kubernetes", "namespace": "default",
                              "labels": {"kubernetes.io/service-name": "kubernetes"}},
                 "endpoints": [{"addresses": ["192.0.2.10"]}, {"addresses": ["192.0.2.11"]}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]}
    kube.kubectl("apply", "-f", "-", input=json.dumps(published))
    try:
        out = kube.helm("template", RELEASE, str(CHART), "--dry-run=server",
                        "--set", "auth.existingSecret=chorus-api-keys").stdout
    finally:
        kube.kubectl("-n", "default", "delete", "endpointslice", "kubernetes")
    docs = [d for d in yaml.safe_load_all(out) if d]
    _, api, _ = one(docs, "NetworkPolicy", f"{RELEASE}-operator-egress")["spec"]["egress"]
    assert api["to"] == [{"ipBlock": {"cidr": "192.0.2.10/32"}}, {"ipBlock": {"cidr": "192.0.2.11/32"}}]
    assert {p["port"] for p in api["ports"]} == {443, 6443, 7443}

    # Offline nothing can be read: the rule stays open, and the install notes say so.
    offline = render(kube, tmp_path)
    _, api, _ = one(offline, "NetworkPolicy", f"{RELEASE}-operator-egress")["spec"]["egress"]
    assert "to" not in api
    notes = kube.helm("install", RELEASE, str(CHART), "--dry-run=client",
                      "--set", "auth.existingSecret=chorus-api-keys").stdout
    assert "set operator.networkPolicy.apiServerCIDRs" in notes.split("NOTES:", 1)[1]


@pytest.mark.parametrize("values,refusal", [
    ({"engines": {"azure_tts": {"enabled": True, "config": {"key": "abc123"}}}}, "engines.azure_tts.config.key"),
    ({"engines": {"ibm_watson": {"enabled": True, "config": {"api_key": "abc"}}}}, "engines.ibm_watson.config.api_key"),
    ({"engines": {"ibm_watson": {"enabled": True, "config": {"bearerToken": "abc"}}}}, "config.bearerToken"),
    ({"redis": {"url": "redis://:s3cret@redis:6379/0"}}, "redis.url carries credentials"),
    ({"redis": {"url": "rediss://user:s3cret@redis.example:6380"}}, "redis.url carries credentials"),
], ids=["azure-key", "ibm-api-key", "ibm-bearer", "redis-password", "redis-user-password"])
def test_credentials_in_values_are_refused(kube: ControlPlane, tmp_path: Path, values: dict[str, Any],
                                           refusal: str) -> None:
    """Security audit L6, L7: inline engine keys and a Redis password ended up in the
    RayService's serveConfigV2 and pod specs, readable by anyone who may read those."""
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump({**values, **KEYS}))
    out = kube.helm("template", RELEASE, str(CHART), "-f", str(values_file), check=False)
    assert out.returncode != 0 and refusal in out.stderr, out.stderr
    assert "s3cret" not in out.stdout and "abc" not in out.stdout


def test_cluster_wide_the_operator_writes_only_its_own_configmaps(kube: ControlPlane) -> None:
    """Security audit M14: cluster-wide, the ClusterRole let the operator patch any ConfigMap
    (kube-system's aws-auth, CoreDNS's). The chart's admission policy lets it write its own."""
    from tests.kube.operator_runner import eventually, operator_identity

    namespace, victim = "op-wide", "victim-ns"
    kube.kubectl("create", "namespace", namespace)
    kube.kubectl("create", "namespace", victim)
    kube.kubectl("-n", victim, "create", "configmap", "aws-auth", "--from-literal=mapRoles=admins")
    operator_identity(kube, namespace, "operator.clusterWide=true")
    who = f"system:serviceaccount:{namespace}:{RELEASE}-operator"

    def as_operator(*args: str) -> subprocess.CompletedProcess[str]:
        return kube.kubectl(*args, identity=who, check=False)

    # The policy is compiled asynchronously: probe with a throwaway ConfigMap until it refuses.
    def probe() -> subprocess.CompletedProcess[str] | None:
        made = as_operator("-n", victim, "create", "configmap", "probe", "--from-literal=a=b")
        if made.returncode == 0:
            kube.kubectl("-n", victim, "delete", "configmap", "probe")
            return None
        return made

    assert "writes only its own ConfigMaps" in eventually(probe, timeout=60, what="the policy refusing").stderr
    patched = as_operator("-n", victim, "patch", "configmap", "aws-auth", "-p", '{"data": {"mapRoles": "everyone"}}')
    assert patched.returncode != 0 and "writes only its own ConfigMaps" in patched.stderr
    labelled = ["--type", "merge", "-p", '{"metadata": {"labels": {"app.kubernetes.io/managed-by": "chorus-operator"}}}']
    assert as_operator("-n", victim, "patch", "configmap", "aws-auth", *labelled).returncode != 0
    assert as_operator("-n", victim, "create", "configmap", "foreign", "--from-literal=a=b").returncode != 0
    own = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
        "name": "chorus-personality-x", "namespace": victim, "labels": {"app.kubernetes.io/managed-by": "chorus-operator"}}}
    created = kube.kubectl("create", "-f", "-", input=yaml.safe_dump(own), identity=who, check=False)
    assert created.returncode == 0, created.stderr
    assert kube.kubectl("-n", victim, "get", "configmap", "aws-auth", "-o", "jsonpath={.data.mapRoles}").stdout == "admins"


def test_a_voice_name_is_refused_when_another_personality_has_it(kube: ControlPlane) -> None:
    """`voice` resolves a name or an alias; one two personalities claim is served by neither.
    The chart's admission policy refuses the second at apply time, naming the first, across
    the watched namespaces (and only there)."""
    from tests.kube.operator_runner import eventually, render_chart

    first, second, unwatched = "names-a", "names-b", "names-c"
    for ns in (first, second, unwatched):
        kube.kubectl("create", "namespace", ns)
    docs = render_chart(kube, first, f"operator.watchNamespaces={{{first},{second}}}")
    policy = [d for d in docs if d["kind"].startswith("ValidatingAdmissionPolicy")
              and d["metadata"]["name"].startswith(f"{RELEASE}-voice-names")]
    assert sorted(d["kind"] for d in policy) == ["ValidatingAdmissionPolicy", *["ValidatingAdmissionPolicyBinding"] * 2]

    def personality(ns: str, name: str, *aliases: str) -> str:
        return yaml.safe_dump({"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
                               "metadata": {"name": name, "namespace": ns},
                               "spec": {"activeProvider": "piper", "aliases": list(aliases),
                                        "providers": {"piper": {"voice": "en_US-joe-medium"}}}})

    def apply(ns: str, name: str, *aliases: str) -> subprocess.CompletedProcess[str]:
        return kube.kubectl("apply", "-f", "-", input=personality(ns, name, *aliases), check=False)

    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(policy))
    try:
        assert apply(first, "ana", "alloy", "nova").returncode == 0

        # The policy is compiled asynchronously: probe until it refuses the taken alias.
        def refused() -> subprocess.CompletedProcess[str] | None:
            out = apply(second, "alloy")
            if out.returncode == 0:
                kube.kubectl("-n", second, "delete", "vp", "alloy")
                return None
            return out

        message = eventually(refused, timeout=60, what="the policy refusing").stderr
        assert f"voice name 'alloy' is taken: it is an alias of VoicePersonality {first}/ana" in message, message
        # An alias that is another's name; a name another namespace has.
        out = apply(second, "bea", "echo", "ana")
        assert out.returncode != 0 and f"'ana' is taken: it is the name of VoicePersonality {first}/ana" in out.stderr
        out = apply(second, "ana")
        assert out.returncode != 0 and f"'ana' is taken: it is the name of VoicePersonality {first}/ana" in out.stderr
        # Nothing refused was stored.
        assert kube.kubectl("-n", second, "get", "vp", "-o", "name").stdout == ""

        # Free names are taken; re-applying one's own names, or changing them, is no clash.
        assert apply(second, "bea", "echo").returncode == 0
        assert apply(first, "ana", "alloy", "nova", "shimmer").returncode == 0
        assert apply(second, "bea", "echo", "fable").returncode == 0
        # An update that takes another's alias is refused like a create, and changes nothing.
        out = apply(second, "bea", "echo", "nova")
        assert out.returncode != 0 and f"'nova' is taken: it is an alias of VoicePersonality {first}/ana" in out.stderr
        assert kube.kubectl("-n", second, "get", "vp", "bea", "-o", "jsonpath={.spec.aliases}").stdout == '["echo","fable"]'
        # A namespace the release does not watch is not served, so not checked.
        assert apply(unwatched, "alloy").returncode == 0

        # A personality being deleted gives its names up, though a finalizer (the operator's,
        # while it cleans up) still holds it.
        kube.kubectl("-n", first, "patch", "vp", "ana", "--type", "merge",
                     "-p", '{"metadata": {"finalizers": ["test.chorus.dev/hold"]}}')
        kube.kubectl("-n", first, "delete", "vp", "ana", "--wait=false")
        assert kube.kubectl("-n", first, "get", "vp", "ana", "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
        eventually(lambda: apply(second, "nova").returncode == 0, timeout=30, what="nova free again")
        kube.kubectl("-n", first, "patch", "vp", "ana", "--type", "merge", "-p", '{"metadata": {"finalizers": null}}')
    finally:
        for doc in policy:
            kube.kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found")
