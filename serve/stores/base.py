"""Where the ingress reads personalities from.

Two stores with one surface (`PersonalityStore`): a directory of files for the embedded
default (here) and the operator's ConfigMaps in a cluster (`chorus.kubernetes_store`).

The directory store keeps one YAML/JSON file per personality and reloads it on change
(watchfiles). A file that turns invalid keeps serving its last
good version and reports why; writes from the HTTP API are validated first and land
atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import watchfiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from chorus.atomic_write import fsync_dir, write_atomic
from chorus.constants import PERSONALITY_LABEL
from chorus.personalities import Personality, PersonalityError, dump_yaml, parse_text

log = logging.getLogger(__name__)
K = TypeVar("K", Path, tuple[str, str])

SUFFIXES = (".yaml", ".yml", ".json")


class PersonalityStatus(BaseModel):
    """How a personality is being served, for `GET /v1/personalities/{name}`."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    source: str
    loaded_at: datetime
    # Set when the source changed and the new version is invalid: the last good
    # version keeps serving and this says why the new one was refused.
    error: str | None = None


class FileProblem(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)
    source: str
    error: str


class ReadOnlyStoreError(Exception):
    """This store takes no writes from the HTTP API; `reason` says where changes go."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PersonalityStore(Protocol):
    read_only: bool
    generation: int

    @property
    def loaded(self) -> bool:
        """True once the store holds what its source had (readiness waits for it)."""
        ...

    def get(self, name: str) -> Personality | None: ...
    def names(self) -> list[str]: ...
    def status(self, name: str) -> PersonalityStatus | None: ...
    def problems(self) -> list[FileProblem]: ...
    def put(self, personality: Personality) -> bool: ...
    def delete(self, name: str) -> bool: ...
    async def watch(self, stop: asyncio.Event) -> None: ...


class KubernetesSource(BaseModel):
    """The operator's ConfigMaps (`chorus.kubernetes_store`)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        None, description="namespace to watch; None = the pod's own, '*' = every namespace"
    )
    label_selector: str = Field(PERSONALITY_LABEL, description="selects the operator's ConfigMaps")
    kubeconfig: Path | None = Field(None, description="None = in-cluster config, else this file (or $KUBECONFIG)")
    watch_timeout_s: int = Field(300, gt=0, description="server-side timeout of one watch request")


class PersonalitySource(BaseModel):
    """Where personalities come from: exactly one of `directory` or `kubernetes`."""

    model_config = ConfigDict(extra="forbid")

    directory: Path | None = None
    kubernetes: KubernetesSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PersonalitySource:
        if (self.directory is None) == (self.kubernetes is None):
            raise ValueError("give exactly one of personalities.directory or personalities.kubernetes")
        if self.directory is not None:
            self.directory = self.directory.expanduser()
        return self

    def open(self) -> PersonalityStore:
        if self.kubernetes is not None:
            from chorus.stores.kubernetes import (
                KubernetesStore,  # needs the kubernetes extra
            )

            return KubernetesStore(self.kubernetes)
        assert self.directory is not None
        return DirectoryStore(self.directory)


class _Entry(BaseModel):
    version: str  # the file's sha256, or the ConfigMap's resourceVersion
    personality: Personality | None = None
    loaded_at: datetime | None = None
    error: str | None = None


class IndexedStore(Generic[K]):
    """What both stores share: entries by source key (a file, a ConfigMap), each keeping
    its last good personality when a new version is invalid, indexed by personality name
    (the first source of a name serves it; later ones are reported as conflicts)."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}
        self._by_name: dict[str, K] = {}
        self._conflicts: dict[K, str] = {}
        self.generation = 0

    def _source(self, key: K) -> str:
        raise NotImplementedError

    def get(self, name: str) -> Personality | None:
        key = self._by_name.get(name)
        return self._entries[key].personality if key is not None else None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def status(self, name: str) -> PersonalityStatus | None:
        key = self._by_name.get(name)
        if key is None:
            return None
        entry = self._entries[key]
        return PersonalityStatus(
            source=self._source(key), loaded_at=entry.loaded_at or datetime.now(UTC), error=entry.error
        )

    def problems(self) -> list[FileProblem]:
        """Sources that serve nothing: invalid with no last good version, or conflicting."""
        out = [
            FileProblem(source=self._source(k), error=e.error)
            for k, e in sorted(self._entries.items())
            if e.personality is None and e.error
        ]
        out += [FileProblem(source=self._source(k), error=e) for k, e in sorted(self._conflicts.items())]
        return out

    def _load(self, key: K, version: str, parse: Callable[[], Personality]) -> bool:
        """Take a source's new version (if it is new); True if it was."""
        before = self._entries.get(key)
        if before is not None and before.version == version:
            return False
        try:
            personality = parse()
        except PersonalityError as err:
            log.warning("personality %s is invalid: %s", self._source(key), err.reason)
            self._entries[key] = _Entry(
                version=version, error=err.reason,
                personality=before.personality if before else None,
                loaded_at=before.loaded_at if before else None,
            )
        else:
            self._entries[key] = _Entry(version=version, personality=personality, loaded_at=datetime.now(UTC))
        return True

    def _index(self) -> None:
        by_name: dict[str, K] = {}
        conflicts: dict[K, str] = {}
        for key, entry in sorted(self._entries.items()):
            p = entry.personality
            if p is None:
                continue
            if p.name in by_name:
                conflicts[key] = f"personality {p.name!r} is already defined in {self._source(by_name[p.name])}"
                continue
            by_name[p.name] = key
        self._by_name, self._conflicts = by_name, conflicts
        self.generation += 1


class DirectoryStore(IndexedStore[Path]):
    """Personalities from a directory of files, one personality per file."""

    read_only = False
    loaded = True  # read in full by the constructor

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rescan()

    def _source(self, key: Path) -> str:
        return str(key)

    # --- writing -------------------------------------------------------------------

    def put(self, personality: Personality) -> bool:
        """Write (create or replace) a validated personality; True if it was new."""
        existing = self._by_name.get(personality.name)
        path = existing or self.directory / f"{personality.name}.yaml"
        write_atomic(path, dump_yaml(personality))
        self.rescan()
        return existing is None

    def delete(self, name: str) -> bool:
        path = self._by_name.get(name)
        if path is None:
            return False
        path.unlink(missing_ok=True)
        fsync_dir(path.parent)
        self.rescan()
        return True

    # --- reloading -----------------------------------------------------------------

    def rescan(self) -> bool:
        """Re-read changed files; True if what is served changed."""
        seen: set[Path] = set()
        changed = False
        for path in sorted(self.directory.iterdir()):
            if path.name.startswith(".") or path.suffix not in SUFFIXES or not path.is_file():
                continue
            seen.add(path)
            try:
                raw = path.read_bytes()
            except OSError:
                continue  # vanished between listing and reading
            digest = hashlib.sha256(raw).hexdigest()
            changed |= self._load(path, digest, functools.partial(_parse_file, raw, path.stem))
        for gone in set(self._entries) - seen:
            del self._entries[gone]
            changed = True
        if changed:
            self._index()
        return changed

    async def watch(self, stop: asyncio.Event, safety_rescan_s: float = 2.0) -> None:
        """Rescan whenever the directory changes, until `stop` is set.

        Also rescans every `safety_rescan_s` without an event: changes made before the
        watch began, and volumes where inotify misses updates (network file systems,
        Kubernetes' symlink-swapped ConfigMap volumes), still arrive. Unchanged files
        cost one hash each."""
        async for _ in watchfiles.awatch(
            self.directory,
            stop_event=stop,
            debounce=200,
            recursive=False,
            ignore_permission_denied=True,
            rust_timeout=int(safety_rescan_s * 1000),
            yield_on_timeout=True,
        ):
            try:
                self.rescan()
            except Exception:  # keep watching whatever one rescan hit
                log.exception("rescanning %s failed", self.directory)


def _parse_file(raw: bytes, stem: str) -> Personality:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise PersonalityError(f"not UTF-8 text: {err}") from None
    return parse_text(text, default_name=stem)
