"""Where the ingress reads personalities from.

Two stores with one surface (`PersonalityStore`): a directory of files for the embedded
default (here) and the operator's ConfigMaps in a cluster (`serve.kubernetes_store`).

The directory store keeps one YAML/JSON file per personality and reloads it on change
(watchfiles). A file that turns invalid keeps serving its last
good version and reports why; writes from the HTTP API are validated first and land
atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import watchfiles
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from serve.configmaps import PERSONALITY_LABEL
from serve.personalities import Personality, PersonalityError, dump_yaml, parse_text

log = logging.getLogger(__name__)

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
    """The operator's ConfigMaps (`serve.kubernetes_store`)."""

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
            from serve.kubernetes_store import KubernetesStore  # needs the kubernetes extra

            return KubernetesStore(self.kubernetes)
        assert self.directory is not None
        return DirectoryStore(self.directory)


class _FileState(BaseModel):
    digest: str
    personality: Personality | None = None
    loaded_at: datetime | None = None
    error: str | None = None


class DirectoryStore:
    """Personalities from a directory of files, one personality per file."""

    read_only = False
    loaded = True  # read in full by the constructor

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._files: dict[Path, _FileState] = {}
        self._by_name: dict[str, tuple[Personality, Path]] = {}
        self._conflicts: dict[Path, str] = {}
        self.generation = 0
        self.rescan()

    # --- reading -------------------------------------------------------------------

    def get(self, name: str) -> Personality | None:
        entry = self._by_name.get(name)
        return entry[0] if entry else None

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def status(self, name: str) -> PersonalityStatus | None:
        entry = self._by_name.get(name)
        if entry is None:
            return None
        state = self._files[entry[1]]
        return PersonalityStatus(
            source=str(entry[1]), loaded_at=state.loaded_at or datetime.now(UTC), error=state.error
        )

    def problems(self) -> list[FileProblem]:
        """Files that serve nothing: invalid with no last good version, or conflicting."""
        out = [
            FileProblem(source=str(p), error=s.error)
            for p, s in sorted(self._files.items())
            if s.personality is None and s.error
        ]
        out += [FileProblem(source=str(p), error=e) for p, e in sorted(self._conflicts.items())]
        return out

    # --- writing -------------------------------------------------------------------

    def put(self, personality: Personality) -> bool:
        """Write (create or replace) a validated personality; True if it was new."""
        existing = self._by_name.get(personality.name)
        path = existing[1] if existing else self.directory / f"{personality.name}.yaml"
        _atomic_write(path, dump_yaml(personality))
        self.rescan()
        return existing is None

    def delete(self, name: str) -> bool:
        entry = self._by_name.get(name)
        if entry is None:
            return False
        entry[1].unlink(missing_ok=True)
        _fsync_dir(entry[1].parent)
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
            state = self._files.get(path)
            if state is not None and state.digest == digest:
                continue
            changed = True
            try:
                personality = parse_text(raw.decode("utf-8"), default_name=path.stem)
            except (PersonalityError, UnicodeDecodeError) as err:
                reason = getattr(err, "reason", str(err))
                log.warning("personality file %s is invalid: %s", path, reason)
                self._files[path] = _FileState(
                    digest=digest,
                    personality=state.personality if state else None,
                    loaded_at=state.loaded_at if state else None,
                    error=reason,
                )
            else:
                self._files[path] = _FileState(
                    digest=digest, personality=personality, loaded_at=datetime.now(UTC)
                )
        for gone in set(self._files) - seen:
            del self._files[gone]
            changed = True
        if changed:
            self._index()
            self.generation += 1
        return changed

    def _index(self) -> None:
        by_name: dict[str, tuple[Personality, Path]] = {}
        conflicts: dict[Path, str] = {}
        for path, state in sorted(self._files.items()):
            p = state.personality
            if p is None:
                continue
            if p.name in by_name:
                conflicts[path] = f"personality {p.name!r} is already defined in {by_name[p.name][1]}"
                continue
            by_name[p.name] = (p, path)
        self._by_name, self._conflicts = by_name, conflicts

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


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

