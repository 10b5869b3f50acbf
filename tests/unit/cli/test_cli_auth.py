"""The CLI's side of API keys: `chorus keys new`, turning keys on for `chorus serve` (and
refusing an open non-loopback bind), `CHORUS_API_KEYS_FILE` in the app builder, and the
client commands sending a key to the real ingress app (keys on) served by uvicorn on
loopback. Nothing here starts Ray."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import soundfile as sf
import yaml
from click.testing import Result
from typer.testing import CliRunner

from chorus import cli as chorus_cli
from chorus.auth.keys import KeyEntry, digest, new_key
from chorus.auth.scopes import Scope
from chorus.common.constants import MAX_SAMPLE_BYTES
from chorus.ingress.asgi import create_app
from deployments.base import Health
from tests.support import recordings as rec
from tests.support.access_calls import KEYS, WRONG_KEY
from tests.support.ingress_app import Api
from tests.support.servers import running

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


# --- client commands, against the real app -------------------------------------------------


@dataclass
class Served:
    """The ingress app with keys on (one key per scope), scripted Piper and Google, the
    personality `joe` and a sample store in a temporary directory, served by uvicorn."""

    api: Api
    url: str


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.delenv("CHORUS_API_KEY", raising=False)  # only the key a test passes
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES, auth={})
    assert api.replica.keys is not None
    api.replica.keys.replace("test", [
        KeyEntry(name=f"{scope.value}-key", key=key, scopes=[scope]).api_key() for scope, key in KEYS.items()
    ])
    with running(create_app(api.replica)) as url:
        yield Served(api, url)


def client(served: Served, *args: str, key: str | None = None, env_key: str | None = None) -> Result:
    """Run a client command against `served`, the key as `--api-key` or `$CHORUS_API_KEY`."""
    flag = ["--api-key", key] if key else []
    env = {"CHORUS_API_KEY": env_key} if env_key else None
    return runner.invoke(chorus_cli.cli, [*args, "--url", served.url, *flag], env=env)


@pytest.mark.parametrize("how", ["flag", "environment"])
def test_say_with_a_key_writes_the_spoken_wav(served: Served, tmp_path: Path, how: str) -> None:
    out = tmp_path / "hello.wav"
    key = KEYS[Scope.SPEAK]
    result = client(served, "say", "Hello there.", "-p", "joe", "-o", str(out),
                    key=key if how == "flag" else None, env_key=key if how == "environment" else None)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout and "spoken by piper" in result.stdout
    audio, rate = sf.read(out, dtype="int16")  # a WAV file, the engine's samples unchanged
    assert rate == 16_000 and audio.tobytes() == served.api.piper.pcm("Hello there.")


@pytest.mark.parametrize("key", [None, WRONG_KEY])
def test_say_without_a_valid_key_fails_and_says_how_to_pass_one(served: Served, tmp_path: Path,
                                                                key: str | None) -> None:
    out = tmp_path / "hello.wav"
    result = client(served, "say", "Hello there.", "-p", "joe", "-o", str(out), key=key)
    assert result.exit_code == 1, result.output
    said = "is not valid" if key else "is missing"
    assert f"error 401: the API key {said}" in result.stderr
    assert "pass a key with --api-key or $CHORUS_API_KEY" in result.stderr
    assert not out.exists() and served.api.piper.requests == []


def test_samples_add_with_a_key_stores_the_sample(served: Served, tmp_path: Path) -> None:
    clean = rec.recordings().clean()
    audio = tmp_path / "clean.wav"
    audio.write_bytes(rec.encode(clean.samples, clean.rate))
    refused = client(served, "samples", "add", "joe", str(audio))
    assert refused.exit_code == 1 and "error 401: the API key is missing" in refused.stderr
    assert served.api.replica.samples.store.list("joe") == []

    result = client(served, "samples", "add", "joe", str(audio), env_key=KEYS[Scope.SAMPLES])
    assert result.exit_code == 0, result.output
    (stored,) = served.api.replica.samples.store.list("joe")
    assert f"stored sample {stored.id} of joe: 7.6 s" in result.stdout


def test_providers_sends_the_key(served: Served) -> None:
    assert client(served, "providers", key=KEYS[Scope.SPEAK]).exit_code == 0
    assert client(served, "providers", env_key=KEYS[Scope.SPEAK]).exit_code == 0
    refused = client(served, "providers")
    assert refused.exit_code == 1 and "error 401: the API key is missing" in refused.stderr
    assert "--api-key or $CHORUS_API_KEY" in refused.stderr


def test_with_every_engine_unhealthy_say_fails_and_providers_says_why(served: Served, tmp_path: Path) -> None:
    served.api.piper.healthy = Health(healthy=False, reason="voice files missing")
    served.api.google.healthy = Health(healthy=False, reason="credentials expired")
    out = tmp_path / "hello.wav"
    said = client(served, "say", "Hello there.", "-p", "joe", "-o", str(out), key=KEYS[Scope.SPEAK])
    assert said.exit_code == 1, said.output
    assert "error 503: no engine could speak this: piper skipped (unhealthy); google_tts skipped (unhealthy)" \
        in said.stderr
    assert not out.exists()

    # Only admins read an engine's own reason; other keys are told it is unhealthy.
    admin = client(served, "providers", key=KEYS[Scope.ADMIN])
    assert admin.exit_code == 0, admin.output
    assert "piper       UNAVAILABLE: voice files missing" in admin.stdout
    assert "google_tts  UNAVAILABLE: credentials expired" in admin.stdout
    speaker = client(served, "providers", key=KEYS[Scope.SPEAK])
    assert speaker.exit_code == 0, speaker.output
    assert "piper       UNAVAILABLE: unhealthy (details for admin keys" in speaker.stdout
    assert "voice files missing" not in speaker.stdout
