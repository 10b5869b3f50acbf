"""The CLI's side of API keys: `chorus keys new`, turning keys on for `chorus serve` (and
refusing an open non-loopback bind), `CHORUS_API_KEYS_FILE` in the app builder, and the
client commands sending a key. Nothing here starts Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from chorus import cli as chorus_cli
from chorus.auth.keys import KeyEntry, digest, new_key

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None):
    return runner.invoke(chorus_cli.cli, list(args), env=env, catch_exceptions=False)


# --- chorus keys new ---------------------------------------------------------------------


def test_keys_new_prints_the_key_and_an_entry_holding_only_its_hash() -> None:
    result = invoke("keys", "new", "--name", "ci-bot", "--scopes", "speak,clone",
                    "--rate-limit", "60/minute", "--characters-per-day", "5000")
    assert result.exit_code == 0, result.output
    key, *rest = result.stdout.splitlines()
    assert key.startswith("chorus_") and len(key) > 40
    entry_text = "\n".join(rest)
    assert key not in entry_text, "the entry must never carry the key"
    (entry,) = yaml.safe_load(entry_text)  # a list item, ready to go under `keys:`
    parsed = KeyEntry.model_validate(entry)
    assert parsed.sha256 == digest(key) and parsed.key is None
    assert parsed.name == "ci-bot" and [str(s) for s in parsed.scopes] == ["speak", "clone"]
    assert parsed.rate_limit == "60/minute" and parsed.characters_per_day == 5000

    again = invoke("keys", "new", "--name", "ci-bot", "--scopes", "speak")
    assert again.stdout.splitlines()[0] != key, "every key is fresh"


@pytest.mark.parametrize("args", [
    ["--name", "ci bot", "--scopes", "speak"],
    ["--name", "ci\n", "--scopes", "speak"],
    ["--name", "ci", "--scopes", "speak,fly"],
    ["--name", "ci", "--scopes", "speak", "--rate-limit", "often"],
])
def test_keys_new_refuses_what_a_key_file_would_refuse(args: list[str]) -> None:
    result = runner.invoke(chorus_cli.cli, ["keys", "new", *args])
    assert result.exit_code == 2 and "chorus_" not in result.stdout


# --- chorus serve ------------------------------------------------------------------------


class RayStarted(Exception):
    """What the fake `ray.init` raises: the command got past every check."""


@pytest.fixture
def no_ray(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """`ray.init` refuses (so a command that would start Ray stops there), and `deploy`
    records the config it was given."""
    import ray
    from ray import serve

    import chorus.deploy

    seen: dict[str, Any] = {}

    def init(*args: Any, **kwargs: Any) -> None:
        seen["ray"] = True

    def deploy(config: Any, **kwargs: Any) -> None:
        seen["config"] = config
        raise RayStarted

    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(serve, "shutdown", lambda: None)
    monkeypatch.setattr(chorus.deploy, "deploy", deploy)
    monkeypatch.delenv("CHORUS_API_KEYS_FILE", raising=False)
    return seen


def key_file(path: Path, key: str) -> Path:
    path.write_text(yaml.safe_dump({"keys": [{"name": "ops", "sha256": digest(key), "scopes": ["admin"]}]}))
    return path


def serve_args(tmp_path: Path, *args: str) -> list[str]:
    return ["serve", "--personalities", str(tmp_path / "personalities"), *args]


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "::", "chorus.example.com"])
def test_serve_refuses_an_open_non_loopback_host(tmp_path: Path, no_ray: dict[str, Any], host: str) -> None:
    result = runner.invoke(chorus_cli.cli, serve_args(tmp_path, "--host", host))
    assert result.exit_code == 2
    assert f"refusing to serve {host} without API keys" in result.stderr
    assert "--api-keys" in result.stderr and "--insecure-no-auth" in result.stderr
    assert not no_ray, "refused before Ray starts"
    assert not (tmp_path / "personalities").exists(), "refused before touching anything"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_serve_on_loopback_needs_no_keys(tmp_path: Path, no_ray: dict[str, Any], host: str) -> None:
    with pytest.raises(RayStarted):
        invoke(*serve_args(tmp_path, "--host", host))
    (app,) = no_ray["config"].applications
    assert "auth" not in app.args


def test_serve_insecure_no_auth_is_explicit(tmp_path: Path, no_ray: dict[str, Any]) -> None:
    with pytest.raises(RayStarted):
        invoke(*serve_args(tmp_path, "--host", "0.0.0.0", "--insecure-no-auth"))
    assert "auth" not in no_ray["config"].applications[0].args
    assert no_ray["config"].http_options.host == "0.0.0.0"


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_serve_api_keys_turns_keys_on(tmp_path: Path, no_ray: dict[str, Any], how: str) -> None:
    path = key_file(tmp_path / "keys.yaml", new_key())
    if how == "flag":
        args, env = serve_args(tmp_path, "--host", "0.0.0.0", "--api-keys", str(path)), None
    else:
        args, env = serve_args(tmp_path, "--host", "0.0.0.0"), {"CHORUS_API_KEYS_FILE": str(path)}
    with pytest.raises(RayStarted):
        invoke(*args, env=env)
    assert no_ray["config"].applications[0].args["auth"] == {"keysFile": str(path)}


def test_serve_refuses_a_broken_key_file_before_ray_starts(tmp_path: Path, no_ray: dict[str, Any]) -> None:
    key = new_key()
    broken = tmp_path / "keys.yaml"
    broken.write_text(f"keys:\n  - name: ops\n    key: {key}\n    scopes: [root]\n")
    result = runner.invoke(chorus_cli.cli, serve_args(tmp_path, "--api-keys", str(broken)))
    assert result.exit_code == 2 and "scopes.0" in result.output and "keys[0]" in result.output
    assert key not in result.output
    empty = tmp_path / "empty.yaml"
    empty.write_text("keys: []\n")
    result = runner.invoke(chorus_cli.cli, serve_args(tmp_path, "--api-keys", str(empty)))
    assert result.exit_code == 2 and "holds no key" in result.output
    assert not no_ray


def test_build_app_reads_the_keys_file_from_the_environment(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from chorus.app import build_app
    from chorus.auth.config import AuthConfig

    args = {"personalities": {"directory": str(tmp_path)}, "engines": {"piper": {}}}
    monkeypatch.delenv("CHORUS_API_KEYS_FILE", raising=False)
    assert build_app(args)._bound_deployment.init_args[1].auth is None

    monkeypatch.setenv("CHORUS_API_KEYS_FILE", str(tmp_path / "keys.yaml"))
    assert build_app(args)._bound_deployment.init_args[1].auth == AuthConfig(keys_file=tmp_path / "keys.yaml")
    # Args that say how to find keys win over the environment.
    given = build_app({**args, "auth": {"awsSecretId": "chorus/keys"}})._bound_deployment.init_args[1].auth
    assert given == AuthConfig(aws_secret_id="chorus/keys")


# --- client commands ---------------------------------------------------------------------


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> list[httpx.Request]:
    """A fake Chorus behind the CLI's httpx client: records requests, answers 401 unless
    the key is `good-key`."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.headers.get("x-api-key") != "good-key":
            return httpx.Response(401, json={"detail": "the API key is missing"})
        return httpx.Response(200, json={"providers": []})

    real = httpx.Client
    monkeypatch.setattr(chorus_cli.httpx, "Client",
                        lambda **kwargs: real(transport=httpx.MockTransport(handle), **kwargs))
    monkeypatch.delenv("CHORUS_API_KEY", raising=False)
    return seen


def test_client_commands_send_the_key(server: list[httpx.Request]) -> None:
    assert invoke("providers", "--api-key", "good-key").exit_code == 0
    assert invoke("providers", env={"CHORUS_API_KEY": "good-key"}).exit_code == 0
    assert [r.headers["x-api-key"] for r in server] == ["good-key", "good-key"]

    refused = runner.invoke(chorus_cli.cli, ["providers"])
    assert refused.exit_code == 1 and "x-api-key" not in server[-1].headers
    assert "--api-key or $CHORUS_API_KEY" in refused.stderr


def test_say_and_samples_add_send_the_key(server: list[httpx.Request], tmp_path: Path) -> None:
    audio = tmp_path / "a.wav"
    audio.write_bytes(b"RIFF")
    runner.invoke(chorus_cli.cli, ["say", "hi", "-o", str(tmp_path / "o.wav"), "--api-key", "k1"])
    runner.invoke(chorus_cli.cli, ["samples", "add", "ava", str(audio)], env={"CHORUS_API_KEY": "k2"})
    assert [(r.url.path, r.headers["x-api-key"]) for r in server] == [
        ("/v1/personalities/default/speech", "k1"), ("/v1/personalities/ava/samples", "k2"),
    ]
