"""Personalities from a directory of files (the embedded default's store).

One YAML/JSON file per personality, reloaded on change (watchfiles). A file that turns
invalid keeps serving its last good version and reports why; writes from the HTTP API
are validated first and land atomically, so a reader never sees half a file.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import watchfiles

from chorus.common.atomic_write import fsync_dir, write_atomic
from chorus.personalities import Personality, PersonalityError, PersonalitySpec, dump_yaml, parse_text
from chorus.stores.base import IndexedStore

log = logging.getLogger(__name__)

SUFFIXES = (".yaml", ".yml", ".json")


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
    # Every write holds an exclusive lock on the directory's `.write.lock` (flock: other
    # threads, and other replicas sharing the directory, wait) and reads the directory
    # again first, so an update is applied to what is there now, never to a copy read
    # before someone else's write (a sample upload mirroring into `voiceSamples` while an
    # admin PUTs the personality would otherwise write back the spec before the PUT).

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        with open(self.directory / ".write.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                self.rescan()
                yield
                self.rescan()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def put(self, personality: Personality) -> bool:
        """Write (create or replace) a validated personality; True if it was new."""
        with self._writing():
            existing = self._by_name.get(personality.name)
            path = existing or self.directory / f"{personality.name}.yaml"
            write_atomic(path, dump_yaml(personality))
        return existing is None

    def update(self, name: str, change: Callable[[PersonalitySpec], PersonalitySpec]) -> bool:
        with self._writing():
            path, current = self._by_name.get(name), self.get(name)
            if path is None or current is None:
                return False
            spec = change(current.spec)
            if spec != current.spec:
                write_atomic(path, dump_yaml(Personality(name=name, spec=spec)))
        return True

    def delete(self, name: str) -> bool:
        with self._writing():
            path = self._by_name.get(name)
            if path is None:
                return False
            path.unlink(missing_ok=True)
            fsync_dir(path.parent)
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
