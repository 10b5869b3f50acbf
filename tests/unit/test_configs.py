"""The Serve config files: valid for Serve, deployable by the builder, and resourced as
the embedded default and the cluster need."""

from __future__ import annotations

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from chorus.app import build_app
from chorus.deploy import profile_path, render
from chorus.ingress.config import IngressConfig

CLONING = {"xtts_v2", "styletts2"}


def app_of(profile: str):
    """The profile as deployed (`render` drops the entries of disabled engines)."""
    ServeDeploySchema.model_validate(yaml.safe_load(profile_path(profile).read_text()))
    (app,) = render(profile_path(profile)).applications
    assert app.import_path == "chorus.app:build_app"
    return app


@pytest.mark.parametrize("profile", ["cpu", "cluster"])
def test_profiles_build_with_their_own_args(profile: str) -> None:
    app = app_of(profile)
    built = build_app(app.args)
    names = {d.name for d in app.deployments}
    # Every deployment the file configures exists in the application it builds.
    ingress = built._bound_deployment
    engines, _, recognizer = ingress.init_args
    bound = {ingress.name, recognizer._bound_deployment.name} | {e._bound_deployment.name for e in engines.values()}
    assert names == bound


def test_the_ingress_gets_its_part_of_the_args_and_the_enabled_engines_timeouts() -> None:
    built = build_app({
        "personalities": {"directory": "/tmp/p"}, "samples": {"directory": "/tmp/s"},
        "max_text_characters": 500, "status_refresh_s": 2,
        "engines": {"piper": {"timeout_s": 12}, "xtts_v2": {"enabled": False, "timeout_s": 99}},
    })
    assert built._bound_deployment.init_args[1] == IngressConfig(
        personalities={"directory": "/tmp/p"}, samples={"directory": "/tmp/s"},
        max_text_characters=500, status_refresh_s=2, timeouts={"piper": 12},
    )


def test_cpu_profile_fits_a_laptop() -> None:
    for d in app_of("cpu").deployments:
        assert d.ray_actor_options.num_cpus < 1, d.name
        assert not d.ray_actor_options.num_gpus
        assert d.autoscaling_config["max_replicas"] <= 2


def test_cluster_profile_pins_every_engine_to_its_worker_group() -> None:
    app = app_of("cluster")
    deployments = {d.name: d for d in app.deployments}
    assert CLONING <= set(deployments) and {"Ingress", "piper"} <= set(deployments)
    for name, d in deployments.items():
        options = d.ray_actor_options
        if name in CLONING:
            assert options.num_gpus >= 1 and "chorus_gpu" in options.resources, name
            assert options.runtime_env["py_executable"].startswith("/opt/chorus/venv-")
        else:
            assert not options.num_gpus and "chorus_cpu" in options.resources, name
        assert d.autoscaling_config["min_replicas"] >= 1


def test_render_overrides_and_drops_disabled_engines() -> None:
    config = render(profile_path("cpu"), args={"personalities": {"directory": "/tmp/p"}, "engines": {"piper": {"enabled": False}}},
                    port=9999)
    (app,) = config.applications
    assert app.args["personalities"] == {"directory": "/tmp/p"} and config.http_options.port == 9999
    assert [d.name for d in app.deployments] == ["Ingress", "Recognizer"]
    (app,) = render(profile_path("cpu"), args={"engines": {"piper": {"enabled": False}},
                                               "recognizer": {"enabled": False}}).applications
    assert [d.name for d in app.deployments] == ["Ingress"]
    assert build_app(app.args)._bound_deployment.init_args[2] is None  # built without it: nothing to configure


@pytest.mark.parametrize("profile", ["cpu", "cluster"])
def test_overload_is_a_fast_answer_in_both_profiles(profile: str) -> None:
    """Serve's own back pressure: a full queue is a 503 at once, a request is given up on
    after request_timeout_s, instead of an unbounded wait."""
    config = ServeDeploySchema.model_validate(yaml.safe_load(profile_path(profile).read_text()))
    assert config.http_options.request_timeout_s is not None
    (app,) = config.applications
    timeouts = app.args["engines"]
    # The proxy waits at least as long as the slowest single engine the router may wait for.
    assert config.http_options.request_timeout_s > max(e.get("timeout_s", 30) for e in timeouts.values())
    for d in app.deployments:
        assert "max_queued_requests" in d.model_fields_set, d.name
        assert d.max_ongoing_requests <= d.max_queued_requests, d.name


@pytest.mark.parametrize("profile", ["cpu", "cluster"])
def test_piper_queues_all_that_one_ingress_replica_admits(profile: str) -> None:
    """Piper is the fast last resort: a request the Ingress admitted waits in Piper's queue
    (each Ingress replica's handle has its own) instead of being refused while a replica is
    replaced (tests/integration/test_crosstalk.py saw that at 32 of 32)."""
    config = ServeDeploySchema.model_validate(yaml.safe_load(profile_path(profile).read_text()))
    deployments = {d.name: d for d in config.applications[0].deployments}
    assert deployments["piper"].max_queued_requests >= deployments["Ingress"].max_ongoing_requests


def test_render_passes_the_otel_variables_to_every_deployment() -> None:
    """`chorus serve` with OTEL_* set: the app's runtime_env carries them (Serve merges an
    app's env_vars into each deployment's, the engines' own interpreters included)."""
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "tts", "HOME": "/root"}
    (app,) = render(profile_path("cpu"), environ=environ).applications
    assert app.runtime_env["env_vars"] == {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318", "OTEL_SERVICE_NAME": "tts"}
    (plain,) = render(profile_path("cpu"), environ={"HOME": "/root"}).applications
    assert "env_vars" not in plain.runtime_env


@pytest.mark.parametrize("profile", ["cpu", "cluster"])
def test_the_router_ends_a_request_before_the_proxy_drops_it(profile: str) -> None:
    """The request deadline below Serve's request_timeout_s: the router cancels the engine
    call and answers with what it knows, instead of the proxy cutting the connection."""
    config = ServeDeploySchema.model_validate(yaml.safe_load(profile_path(profile).read_text()))
    (app,) = config.applications
    ingress = IngressConfig.model_validate({k: v for k, v in app.args.items() if k in IngressConfig.model_fields})
    assert config.http_options.request_timeout_s is not None
    assert ingress.request_deadline_s < config.http_options.request_timeout_s
    assert ingress.stream_chunk_timeout_s < ingress.request_deadline_s


@pytest.mark.parametrize("profile", ["cpu", "cluster"])
def test_a_drained_replica_finishes_what_it_was_given_in_both_profiles(profile: str) -> None:
    """Scale-down and redeploys drain replicas: each waits for its in-flight requests as long
    as one may run (the ingress: the proxy's request timeout; an engine: the request deadline,
    as long as a stream's call may run, and no less than its timeout_s), not Serve's default
    20 s, which would cut a long stream or a cloning call short."""
    config = ServeDeploySchema.model_validate(yaml.safe_load(profile_path(profile).read_text()))
    (app,) = config.applications
    deadline = IngressConfig.model_validate(
        {k: v for k, v in app.args.items() if k in IngressConfig.model_fields}).request_deadline_s
    longest = {name: max(deadline, args.get("timeout_s", 30)) for name, args in app.args["engines"].items()}
    longest["Ingress"] = config.http_options.request_timeout_s
    longest["Recognizer"] = app.args.get("recognizer", {}).get("timeout_s", 30)
    for d in app.deployments:
        assert {"graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s"} <= d.model_fields_set, d.name
        assert d.graceful_shutdown_timeout_s >= longest[d.name], d.name
        assert d.graceful_shutdown_wait_loop_s <= 2, d.name
