"""Key sources: the key file (rewritten, atomically replaced, swapped like a Kubernetes Secret
volume), the environment and AWS Secrets Manager (moto's server on loopback), each replacing
only its own keys; a broken reload keeps the last good keys and never logs a key."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from chorus.auth.config import AuthConfig
from chorus.auth.keys import digest, new_key
from chorus.auth.ring import KeyRing
from chorus.auth.sources import FileKeySource, KeySourceError, KeySources, parse_keys
from tests.support.moto_server import moto_server


def document(*entries: tuple[str, str, list[str]], hashed: bool = True) -> dict:
    """Key file content: (name, key, scopes) each, given as its hash or as the key."""
    return {"keys": [
        {"name": name, "scopes": scopes, **({"sha256": digest(key)} if hashed else {"key": key})}
        for name, key, scopes in entries
    ]}


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> float:
    """Seconds until `check()` held."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not check():
        assert loop.time() - start < timeout, "condition never became true"
        await asyncio.sleep(0.05)
    return loop.time() - start


def name_of(ring: KeyRing, key: str) -> str | None:
    found = ring.lookup(key)
    return found.name if found else None


async def until_watching(ring: KeyRing, publish: Callable[[str], None], timeout: float = 10.0) -> None:
    """Returns once the watch is set up, as shown by a reload it made: `publish` (which writes
    the key document with one more key, `probe`) is repeated until that key is in `ring`. A
    change made before the watch was set up would be seen only at the far-off safety rescan."""
    probe = new_key()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while name_of(ring, probe) != "probe":
        assert loop.time() < deadline, "the watch never reloaded the file"
        publish(probe)
        settle = loop.time() + 1.0  # more than the watch's 200 ms debounce
        while name_of(ring, probe) != "probe" and loop.time() < settle:
            await asyncio.sleep(0.05)


# --- the document ------------------------------------------------------------------------


def test_yaml_and_json_documents_give_the_same_keys() -> None:
    key = new_key()
    doc = document(("ci", key, ["speak", "clone"]))
    for text in (yaml.safe_dump(doc), json.dumps(doc)):
        (api_key,) = parse_keys(text, "test").keys
        assert api_key.name == "ci" and api_key.matches(digest(key))
        assert {str(s) for s in api_key.scopes} == {"speak", "clone"}
    (inline,) = parse_keys(yaml.safe_dump(document(("ci", key, ["admin"]), hashed=False)), "test").keys
    assert inline.matches(digest(key)), "an entry giving the key itself is held as its hash"
    assert parse_keys("", "test") == ([], []), "an empty document grants nothing"


def test_an_invalid_entry_is_left_out_and_the_others_count() -> None:
    good, bad = new_key(), new_key()
    text = (f"keys:\n  - name: good\n    key: {good}\n    scopes: [speak]\n"
            f"  - name: bad\n    key: {bad}\n    scopes: [fly]\n")
    keys, problems = parse_keys(text, "keys.yaml")
    assert [k.name for k in keys] == ["good"]
    assert len(problems) == 1 and problems[0].startswith("keys.yaml: keys[1] ('bad') left out: scopes.0")
    assert bad not in problems[0]


@pytest.mark.parametrize("text,whole", [
    ("keys:\n  - name: ci\n    key: {key}\n    scopes: [speak]\n   bad: indent\n", True),  # not YAML
    ("keys:\n  - name: ci\n    key: {key}\n    scopes: [fly]\n", False),  # unknown scope
    ("keys:\n  - name: ci\n    key: {key}\n    sha256: {sha}\n    scopes: [speak]\n", False),  # both
    ("keys:\n  - name: 'c i'\n    key: {key}\n    scopes: [speak]\n", False),  # a name logs cannot carry
    ("keys: {key}\n", True),
])
def test_errors_never_quote_the_key(text: str, whole: bool) -> None:
    """A document that cannot be read raises; an entry that is not valid is left out. Neither
    says the key."""
    key = new_key()
    if whole:
        with pytest.raises(KeySourceError) as raised:
            parse_keys(text.format(key=key, sha=digest(key)), "keys.yaml")
        said = [raised.value.reason]
    else:
        keys, said = parse_keys(text.format(key=key, sha=digest(key)), "keys.yaml")
        assert keys == [] and len(said) == 1
    assert said[0].startswith("keys.yaml")
    assert key not in said[0] and digest(key) not in said[0]


# --- the key file ------------------------------------------------------------------------


def write_atomically(path: Path, content: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(content))
    os.replace(tmp, path)


async def test_file_reloads_on_change_and_keeps_the_last_good_keys(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys.yaml"
    first, second, third = new_key(), new_key(), new_key()
    path.write_text(yaml.safe_dump(document(("first", first, ["speak"]))))
    ring = KeyRing()
    # A safety rescan far beyond the test: only the directory's events can reload in time.
    source = FileKeySource(path, safety_rescan_s=600)
    source.load(ring)
    assert name_of(ring, first) == "first"
    stop = asyncio.Event()
    watcher = asyncio.create_task(source.watch(ring, stop))
    try:
        await until_watching(ring, lambda probe: path.write_text(yaml.safe_dump(
            document(("first", first, ["speak"]), ("probe", probe, ["speak"])))))
        # Rewritten in place.
        path.write_text(yaml.safe_dump(document(("second", second, ["speak"]))))
        assert await eventually(lambda: name_of(ring, second) == "second") < 5
        assert ring.lookup(first) is None, "a key removed from the file stops working"

        # An invalid entry beside a removal (security audit M-7): the removal counts, the
        # entry is left out, the log says why without the key.
        caplog.set_level(logging.INFO, logger="chorus.auth.sources")
        path.write_text(f"keys:\n  - name: third\n    key: {third}\n    scopes: [everything]\n")
        await eventually(lambda: "left out" in caplog.text)
        assert ring.lookup(second) is None and ring.lookup(third) is None
        assert "keys[0] ('third') left out: scopes.0" in caplog.text and third not in caplog.text
        assert not ring.stale_sources and ring.problems["file"]

        # Not a key document at all: nothing says what to drop, so the last good keys stay
        # and the source is stale until a reload succeeds.
        write_atomically(path, document(("second", second, ["speak"])))
        assert await eventually(lambda: name_of(ring, second) == "second") < 5
        path.write_text("keys:\n  - [unclosed\n")
        await eventually(lambda: "file" in ring.stale_sources)
        assert name_of(ring, second) == "second" and "not YAML" in ring.stale_sources["file"]

        # Atomically replaced (rename over it), fixed again.
        write_atomically(path, document(("third", third, ["clone"])))
        assert await eventually(lambda: name_of(ring, third) == "third") < 5
        assert ring.lookup(second) is None
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)


def kubernetes_secret_volume(directory: Path, content: object, generation: int) -> None:
    """What the kubelet does to a Secret volume: the files live in a timestamped directory,
    `..data` points at it, each key is a symlink through `..data`; an update writes a new
    directory and renames a fresh `..data_tmp` symlink over `..data`."""
    version = directory / f"..2026_11_30_{generation:02d}"
    version.mkdir()
    (version / "keys.yaml").write_text(yaml.safe_dump(content))
    (directory / "..data_tmp").symlink_to(version.name)
    os.replace(directory / "..data_tmp", directory / "..data")
    if not (directory / "keys.yaml").is_symlink():
        (directory / "keys.yaml").symlink_to("..data/keys.yaml")


async def test_file_follows_a_kubernetes_secret_update(tmp_path: Path) -> None:
    old, rotated = new_key(), new_key()
    kubernetes_secret_volume(tmp_path, document(("app", old, ["speak"])), 1)
    ring = KeyRing()
    source = FileKeySource(tmp_path / "keys.yaml", safety_rescan_s=600)
    source.load(ring)
    assert name_of(ring, old) == "app"
    stop = asyncio.Event()
    watcher = asyncio.create_task(source.watch(ring, stop))
    generations = itertools.count(2)
    try:
        await until_watching(ring, lambda probe: kubernetes_secret_volume(
            tmp_path, document(("app", old, ["speak"]), ("probe", probe, ["speak"])), next(generations)))
        kubernetes_secret_volume(tmp_path, document(("app", rotated, ["speak"])), next(generations))
        assert await eventually(lambda: name_of(ring, rotated) == "app") < 5
        assert ring.lookup(old) is None
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)


async def test_a_missing_file_grants_nothing_until_it_appears(tmp_path: Path) -> None:
    key = new_key()
    path = tmp_path / "secret" / "keys.yaml"
    ring = KeyRing()
    source = FileKeySource(path, safety_rescan_s=0.2)
    source.load(ring)
    assert len(ring) == 0
    stop = asyncio.Event()
    watcher = asyncio.create_task(source.watch(ring, stop))
    try:
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(document(("late", key, ["speak"]))))
        await eventually(lambda: name_of(ring, key) == "late")
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)


# --- the environment and merging ---------------------------------------------------------


def test_sources_merge_and_each_replaces_only_its_own(tmp_path: Path) -> None:
    file_key, env_key = new_key(), new_key()
    path = tmp_path / "keys.json"
    path.write_text(json.dumps(document(("from-file", file_key, ["speak"]))))
    environ = {"MY_KEYS": yaml.safe_dump(document(("from-env", env_key, ["admin"])))}
    ring = KeyRing()
    sources = KeySources(AuthConfig(keys_file=path, keys_env="MY_KEYS"), ring, environ=environ)
    sources.load()
    assert name_of(ring, file_key) == "from-file" and name_of(ring, env_key) == "from-env"

    path.write_text(json.dumps(document()))
    sources.sources[0].load(ring)
    assert ring.lookup(file_key) is None and name_of(ring, env_key) == "from-env"


def test_environment_is_read_from_the_configured_variable(caplog: pytest.LogCaptureFixture) -> None:
    key = new_key()
    environ = {"CHORUS_API_KEYS": yaml.safe_dump(document(("env", key, ["speak"])))}
    ring = KeyRing()
    KeySources(AuthConfig(), ring, environ=environ).load()  # keys_env defaults to CHORUS_API_KEYS
    assert name_of(ring, key) == "env"

    broken = KeyRing()
    KeySources(AuthConfig(), broken, environ={"CHORUS_API_KEYS": f"keys: [{{name: x, key: {key}}}]"}).load()
    assert len(broken) == 0 and key not in caplog.text
    assert "$CHORUS_API_KEYS" in caplog.text

    off = KeyRing()
    KeySources(AuthConfig(keys_env=None), off, environ=environ).load()
    assert len(off) == 0


def test_keys_file_env_turns_keys_on(tmp_path: Path) -> None:
    assert AuthConfig.from_environment({}) is None
    config = AuthConfig.from_environment({"CHORUS_API_KEYS_FILE": str(tmp_path / "k.yaml")})
    assert config is not None and config.keys_file == tmp_path / "k.yaml"


# --- AWS Secrets Manager -----------------------------------------------------------------


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def aws_env(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """Standard AWS configuration only: the source must find moto through it."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "eu-west-1",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return moto_endpoint


async def test_secrets_manager_loads_refreshes_and_keeps_the_last_good_keys(
    aws_env: str, caplog: pytest.LogCaptureFixture
) -> None:
    import boto3

    sm = boto3.client("secretsmanager")
    first, second, third = new_key(), new_key(), new_key()
    secret_id = f"chorus/keys-{os.getpid()}-{id(caplog)}"
    sm.create_secret(Name=secret_id, SecretString=yaml.safe_dump(document(("aws", first, ["speak"]))))

    ring = KeyRing()
    sources = KeySources(AuthConfig(keys_env=None, aws_secret_id=secret_id, aws_refresh_s=0.2), ring, environ={})
    sources.load()
    assert name_of(ring, first) == "aws", "loaded before serving"
    stop = asyncio.Event()
    watcher = asyncio.create_task(sources.watch(stop))
    try:
        sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(document(("aws", second, ["clone"]))))
        await eventually(lambda: name_of(ring, second) == "aws")
        assert ring.lookup(first) is None

        # An invalid entry: left out, and the key it replaced is gone (security audit M-7).
        sm.put_secret_value(SecretId=secret_id, SecretString=f"keys: [{{name: aws, key: {third}}}]")
        await eventually(lambda: f"AWS secret {secret_id}: keys[0] ('aws') left out" in caplog.text)
        assert ring.lookup(second) is None and ring.lookup(third) is None
        # Unreadable: nothing says what to drop, so the last good keys stay, marked stale.
        sm.put_secret_value(SecretId=secret_id, SecretString=json.dumps(document(("aws", second, ["clone"]))))
        await eventually(lambda: name_of(ring, second) == "aws")
        sm.delete_secret(SecretId=secret_id, ForceDeleteWithoutRecovery=True)
        await eventually(lambda: f"AWS secret {secret_id} not read" in caplog.text)
        assert name_of(ring, second) == "aws" and "aws" in ring.stale_sources
        # Ours only: botocore at DEBUG (another test may leave it there) logs whole responses.
        ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("chorus"))
        assert "left out" in ours and "not read, keeping the keys loaded before" in ours
        assert not any(key in ours for key in (first, second, third))
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)


# --- the ingress replica -----------------------------------------------------------------


async def test_an_ingress_replica_has_its_keys_before_serving_and_follows_the_file(tmp_path: Path) -> None:
    from chorus.ingress.asgi import create_app
    from chorus.ingress.config import IngressConfig
    from chorus.ingress.deployment import Ingress

    first, rotated = new_key(), new_key()
    path = tmp_path / "keys.yaml"
    path.write_text(yaml.safe_dump(document(("first", first, ["speak"]))))
    config = IngressConfig(personalities={"directory": str(tmp_path / "p")},
                           samples={"directory": str(tmp_path / "s")}, auth={"keysFile": str(path)})
    # The class under Serve's ASGI wrapper, constructed as a replica's would be, without Ray.
    replica_class = Ingress.func_or_class.__mro__[1]
    ingress = replica_class({}, config)
    try:
        assert name_of(ingress.replica.keys, first) == "first"
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ingress.replica)),
                                   base_url="http://127.0.0.1")
        async with client:
            assert (await client.get("/v1/personalities", headers={"x-api-key": first})).status_code == 200
            write_atomically(path, document(("rotated", rotated, ["speak"])))
            await eventually(lambda: name_of(ingress.replica.keys, rotated) == "rotated")
            assert (await client.get("/v1/personalities", headers={"x-api-key": first})).status_code == 401
            assert (await client.get("/v1/personalities", headers={"x-api-key": rotated})).status_code == 200
    finally:
        ingress._stop.set()
        await asyncio.wait_for(asyncio.gather(*ingress._watchers), 5)


def test_secrets_manager_without_boto3_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "boto3", None)  # what an install without the extra sees
    with pytest.raises(KeySourceError, match="needs boto3: install Chorus with the 'samples' extra"):
        KeySources(AuthConfig(aws_secret_id="chorus/keys"), KeyRing(), environ={})


def test_a_key_document_nested_too_deeply_is_refused_not_crashed_on() -> None:
    with pytest.raises(KeySourceError, match="nests too deeply"):
        parse_keys("keys: " + "[" * 30_000, "keys.yaml")
