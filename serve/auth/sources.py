"""Where a replica's keys come from: the key file, the environment, AWS Secrets Manager.

Each source fills the `KeyRing` under its own name (`file`, `env`, `aws`) and replaces only
that part when it reloads. Every source reads the same document (`chorus.auth.keys.KeyFile`).
`KeySources.load()` reads them all once, synchronously, before the replica serves, so the
first request already sees the keys; `KeySources.watch()` then keeps them current: the file
on every change (it is a mounted Secret, swapped through `..data` symlinks), Secrets
Manager every `aws_refresh_s`.

A reload applies what it can and never keeps what was removed: a document is read entry by
entry, an entry that is not valid is dropped (and named in the log and in `/readyz`) while
the others, removals included, take effect at once. Only a document that cannot be read at
all (not YAML, no `keys` list, the file or secret gone) keeps the source's last good keys,
since nothing in it says which to drop; the ring then marks the source stale and the
replica stops being ready until a reload succeeds. Nothing here ever logs a key (YAML errors
are reduced to their position, pydantic errors are rendered without their input).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import watchfiles
import yaml
from pydantic import ValidationError

from chorus.auth.config import AuthConfig
from chorus.auth.keys import ApiKey, KeyEntry
from chorus.auth.ring import KeyRing
from chorus.common import documents

log = logging.getLogger(__name__)


class KeySourceError(Exception):
    """A key document that could not be read or is not valid; `reason` never holds a key."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ParsedKeys(NamedTuple):
    keys: list[ApiKey]
    problems: list[str]  # the entries left out, and why


def parse_keys(text: str | bytes, origin: str) -> ParsedKeys:
    """A key document (YAML or JSON) → the keys its valid entries grant, and what is wrong
    with the others. Raises `KeySourceError` when the document as a whole is unreadable."""
    try:
        document = documents.load(text)
    except documents.DocumentRefused as err:
        raise KeySourceError(f"{origin}: {err.reason}") from None
    except yaml.YAMLError as err:
        # Only the problem and its position: the error's own text quotes the document.
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise KeySourceError(f"{origin}: not YAML or JSON{where}: {getattr(err, 'problem', None) or 'unreadable'}") \
            from None
    if document is None:
        document = {}
    entries = document.get("keys", []) if isinstance(document, dict) else None
    if not isinstance(entries, list) or set(document) - {"keys"}:
        raise KeySourceError(f"{origin}: a key document is a mapping with one field, `keys`, a list of entries")
    keys, problems = [], []
    for index, entry in enumerate(entries):
        try:
            keys.append(KeyEntry.model_validate(entry).api_key())
        except ValidationError as err:
            name = entry.get("name") if isinstance(entry, dict) and isinstance(entry.get("name"), str) else None
            said = f"keys[{index}]" + (f" ({name[:64]!r})" if name else "")
            problems.append(f"{origin}: {said} left out: {_describe(err)}")
    return ParsedKeys(keys, problems)


def _describe(err: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(part) for part in e['loc']) or 'document'}: {e['msg']}"
        for e in err.errors(include_input=False, include_url=False, include_context=False)
    ]
    return "; ".join(problems)


def _fill(ring: KeyRing, source: str, text: str | bytes, origin: str) -> bool:
    """The keys `text` grants into `ring` as `source`'s, its invalid entries left out; when
    it cannot be read at all, `ring` keeps what it holds for `source` and marks it stale.
    The log says why, never quoting a key."""
    try:
        parsed = parse_keys(text, origin)
    except KeySourceError as err:
        log.error("API keys not reloaded, the keys loaded before stay until a reload succeeds: %s", err.reason)
        ring.stale(source, err.reason)
        return False
    ring.replace(source, parsed.keys, problems=parsed.problems)
    for problem in parsed.problems:
        log.error("API key entry refused: %s", problem)
    log.info("API keys from %s: %s", origin, ", ".join(key.name for key in parsed.keys) or "none")
    return True


class KeySource(Protocol):
    name: str

    def load(self, ring: KeyRing) -> None:
        """Read once into `ring`, blocking; on failure keep what `ring` holds and log."""

    async def watch(self, ring: KeyRing, stop: asyncio.Event) -> None:
        """Keep `ring` current until `stop` is set."""


class FileKeySource:
    """The key file: reloaded when its directory changes (a Kubernetes Secret volume is
    updated by swapping the `..data` symlink, an event on the directory, not on the file)
    and re-read every `safety_rescan_s` in case an event was missed; a reload that reads
    the same bytes does nothing."""

    name = "file"

    def __init__(self, path: Path, *, safety_rescan_s: float = 2.0) -> None:
        self.path = Path(path).expanduser()
        self.safety_rescan_s = safety_rescan_s
        self._seen: str | None = None  # digest of the last content read, valid or not

    def load(self, ring: KeyRing) -> None:
        try:
            raw = self.path.read_bytes()
        except OSError as err:
            if self._seen != "unreadable":
                self._seen = "unreadable"
                log.error("API key file %s cannot be read (%s); keeping the keys loaded before",
                          self.path, err.strerror or err)
                ring.stale(self.name, f"{self.path}: cannot be read ({err.strerror or type(err).__name__})")
            return
        seen = hashlib.sha256(raw).hexdigest()
        if seen == self._seen:
            return
        self._seen = seen
        _fill(ring, self.name, raw, str(self.path))

    async def watch(self, ring: KeyRing, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if not self.path.parent.is_dir():  # awatch needs the directory; wait for the mount
                await _wait(stop, self.safety_rescan_s)
                self.load(ring)
                continue
            try:
                async for _ in watchfiles.awatch(
                    self.path.parent,
                    stop_event=stop,
                    debounce=200,
                    recursive=False,
                    ignore_permission_denied=True,
                    rust_timeout=int(self.safety_rescan_s * 1000),
                    yield_on_timeout=True,
                ):
                    self.load(ring)
            except OSError as err:  # the directory went away under the watch
                log.warning("watching %s stopped (%s); retrying", self.path.parent, err)
                await _wait(stop, self.safety_rescan_s)


class EnvKeySource:
    """A key document in an environment variable, read once at start."""

    name = "env"

    def __init__(self, variable: str, environ: Mapping[str, str]) -> None:
        self.variable = variable
        self.environ = environ

    def load(self, ring: KeyRing) -> None:
        text = self.environ.get(self.variable)
        if not text:
            return
        _fill(ring, self.name, text, f"${self.variable}")

    async def watch(self, ring: KeyRing, stop: asyncio.Event) -> None:
        return  # a process's environment does not change


class AwsSecretKeySource:
    """A key document in an AWS Secrets Manager secret (its SecretString, or SecretBinary as
    UTF-8), re-read every `refresh_s` in a worker thread. boto3's standard configuration
    applies: credentials, `AWS_REGION`, `AWS_ENDPOINT_URL(_SECRETS_MANAGER)`."""

    name = "aws"

    def __init__(self, secret_id: str, *, region: str | None, refresh_s: float, client: Any = None) -> None:
        self.secret_id = secret_id
        self.refresh_s = refresh_s
        self.client = client if client is not None else _secrets_manager(region)
        self._version: str | None = None

    def _fetch(self) -> tuple[str, str | bytes]:
        answer = self.client.get_secret_value(SecretId=self.secret_id)
        return answer.get("VersionId", ""), answer.get("SecretString") or answer.get("SecretBinary") or b""

    def load(self, ring: KeyRing) -> None:
        try:
            version, text = self._fetch()
        except Exception as err:  # botocore's errors are many; any failure keeps the last keys
            # Their text names the error code and the operation, never the secret's value.
            log.error("AWS secret %s not read, keeping the keys loaded before: %s: %s",
                      self.secret_id, type(err).__name__, err)
            ring.stale(self.name, f"AWS secret {self.secret_id}: not read ({type(err).__name__})")
            return
        if version and version == self._version:
            return
        if _fill(ring, self.name, text, f"AWS secret {self.secret_id}"):
            self._version = version

    async def watch(self, ring: KeyRing, stop: asyncio.Event) -> None:
        while not await _wait(stop, self.refresh_s):
            await asyncio.to_thread(self.load, ring)


def _secrets_manager(region: str | None) -> Any:
    try:
        import boto3  # in the `samples` extra; only a replica reading Secrets Manager needs it
    except ImportError:
        raise KeySourceError(
            "auth.awsSecretId needs boto3: install Chorus with the 'samples' extra "
            "(scripts/install.sh samples)"
        ) from None
    from botocore.config import Config

    # Bounded: the first read happens while the replica starts, and must not hang it for minutes.
    timeouts = Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 3, "mode": "standard"})
    return boto3.client("secretsmanager", region_name=region, config=timeouts)


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True as soon as `stop` is set."""
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        return False
    return True


class KeySources:
    """Every source `config` names, filling one ring."""

    def __init__(self, config: AuthConfig, ring: KeyRing, *, environ: Mapping[str, str] = os.environ,
                 aws_client: Any = None) -> None:
        self.ring = ring
        self.sources: list[KeySource] = []
        if config.keys_file is not None:
            self.sources.append(FileKeySource(config.keys_file))
        if config.keys_env:
            self.sources.append(EnvKeySource(config.keys_env, environ))
        if config.aws_secret_id:
            self.sources.append(AwsSecretKeySource(
                config.aws_secret_id, region=config.aws_region, refresh_s=config.aws_refresh_s, client=aws_client,
            ))

    def load(self) -> None:
        """Read every source once (blocking: the replica is not serving yet). With no key
        at all every request is refused, which is the safe way to be misconfigured."""
        for source in self.sources:
            source.load(self.ring)
        if not len(self.ring):
            log.error("API keys are on but no source gave a key: every request needing one gets 401")

    async def watch(self, stop: asyncio.Event) -> None:
        await asyncio.gather(*(source.watch(self.ring, stop) for source in self.sources))
