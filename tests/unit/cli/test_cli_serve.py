"""`chorus serve` without Ray: what it asks `ray.init` for (the dashboard on loopback only,
the metrics port) and the addresses it prints. tests/integration/test_ray_metrics.py reads
the same metrics port from a real node."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

import chorus.cli as chorus_cli


class Stopped:
    """The stop event: Ctrl-C at once, so the command shuts down after printing."""

    def set(self) -> None:
        pass

    def wait(self) -> None:
        raise KeyboardInterrupt


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    import ray
    from ray import serve

    import chorus.deploy

    seen: dict[str, Any] = {"shutdown": 0}

    def init(**kwargs: Any) -> SimpleNamespace:
        seen["init"] = kwargs
        return SimpleNamespace(dashboard_url="127.0.0.1:8265" if kwargs["include_dashboard"] else "",
                               address_info={"gcs_address": "127.0.0.1:6379"})

    def shutdown() -> None:
        seen["shutdown"] += 1

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", shutdown)
    monkeypatch.setattr(ray, "nodes", lambda: [{"NodeID": "other", "MetricsExportPort": 1},
                                               {"NodeID": "this", "MetricsExportPort": 43210}])
    monkeypatch.setattr(ray, "get_runtime_context", lambda: SimpleNamespace(get_node_id=lambda: "this"))
    monkeypatch.setattr(serve, "shutdown", lambda: None)
    monkeypatch.setattr(chorus.deploy, "deploy", lambda config, **kwargs: seen.update(config=config))
    monkeypatch.setattr(chorus_cli.threading, "Event", Stopped)
    monkeypatch.setattr(chorus_cli.signal, "signal", lambda *args: None)
    monkeypatch.delenv("CHORUS_API_KEYS_FILE", raising=False)
    return seen


def run(tmp_path: Path, *args: str) -> str:
    result = CliRunner().invoke(chorus_cli.cli, ["serve", "--personalities", str(tmp_path / "p"), *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_serve_starts_the_dashboard_on_loopback_and_prints_both_addresses(tmp_path: Path,
                                                                            fake_ray: dict[str, Any]) -> None:
    out = run(tmp_path, "--dashboard", "--host", "0.0.0.0", "--insecure-no-auth")
    init = fake_ray["init"]
    assert init["include_dashboard"] is True
    assert init["dashboard_host"] == "127.0.0.1", "never where --host points"
    assert init["_metrics_export_port"] is None, "Ray picks a free port"
    assert "Ray dashboard: http://127.0.0.1:8265" in out
    assert "http://127.0.0.1:43210/metrics" in out, "this node's port, not another's"
    assert fake_ray["shutdown"] == 1
    # The web dashboard's Engines view links to it.
    assert fake_ray["config"].applications[0].args["links"] == {"rayDashboard": "http://127.0.0.1:8265"}


def test_serve_has_no_dashboard_unless_asked(tmp_path: Path, fake_ray: dict[str, Any]) -> None:
    """The dashboard holds about a sixth of the embedded default's memory and serves no request."""
    out = run(tmp_path)
    assert fake_ray["init"]["include_dashboard"] is False
    assert "Ray dashboard" not in out
    assert "links" not in fake_ray["config"].applications[0].args
    assert "http://127.0.0.1:43210/metrics" in out, "the metrics agent runs without the dashboard"


def test_serve_ports_and_no_dashboard(tmp_path: Path, fake_ray: dict[str, Any]) -> None:
    out = run(tmp_path, "--no-dashboard", "--dashboard-port", "9265", "--metrics-port", "8080")
    init = fake_ray["init"]
    assert (init["include_dashboard"], init["dashboard_port"], init["_metrics_export_port"]) == (False, 9265, 8080)
    assert "Ray dashboard" not in out
    assert "/metrics" in out


def test_serve_says_when_the_dashboard_did_not_start(tmp_path: Path, fake_ray: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    monkeypatch.setattr(ray, "init", lambda **kwargs: SimpleNamespace(dashboard_url=None,
                                                                     address_info={"gcs_address": "127.0.0.1:6379"}))
    out = run(tmp_path, "--dashboard")
    assert "Ray dashboard: did not start" in out
    assert "http://127.0.0.1:43210/metrics" in out
