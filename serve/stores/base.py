"""What every personality store is: the surface the ingress uses (`PersonalityStore`),
the status it reports, and `IndexedStore`, the bookkeeping both backends share.

Two backends: a directory of files for the embedded default (`chorus.stores.directory`)
and the operator's ConfigMaps in a cluster (`chorus.stores.kubernetes`). In both, a
source that turns invalid keeps serving its last good version and reports why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from chorus.personalities import Personality, PersonalityError, PersonalitySpec

log = logging.getLogger(__name__)
K = TypeVar("K", Path, tuple[str, str])


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
    def resolve(self, voice: str) -> Personality | None:
        """The personality `voice` names: by its name, else by one of its aliases."""
        ...
    def alias_owner(self, alias: str) -> str | None:
        """The personality that has `alias` (or is named it), if one does."""
        ...
    def names(self) -> list[str]: ...
    def status(self, name: str) -> PersonalityStatus | None: ...
    def problems(self) -> list[FileProblem]: ...
    def put(self, personality: Personality) -> bool: ...
    def update(self, name: str, change: Callable[[PersonalitySpec], PersonalitySpec]) -> bool:
        """Replace `name`'s spec with `change` of the one stored now, with no write from
        anywhere in between; False when there is no such personality."""
        ...
    def delete(self, name: str) -> bool: ...
    def sample_key(self, name: str) -> str: ...
    async def watch(self, stop: asyncio.Event) -> None: ...


class _Entry(BaseModel):
    version: str  # the file's sha256, or the ConfigMap's resourceVersion
    personality: Personality | None = None
    loaded_at: datetime | None = None
    error: str | None = None


class IndexedStore(Generic[K]):
    """What both stores share: entries by source key (a file, a ConfigMap), each keeping
    its last good personality when a new version is invalid, indexed by personality name
    (the first source of a name serves it; later ones are reported as conflicts)."""

    # Whether a name two sources define is served by neither (instead of the first): a
    # store whose sources belong to different people (namespaces) must not let one take
    # another's personality, and its samples, by sorting first.
    conflicts_serve_neither = False

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}
        self._by_name: dict[str, K] = {}
        self._by_alias: dict[str, str] = {}  # alias -> personality name
        self._conflicts: dict[K, str] = {}
        self._alias_problems: list[FileProblem] = []
        self.generation = 0

    def _source(self, key: K) -> str:
        raise NotImplementedError

    def get(self, name: str) -> Personality | None:
        key = self._by_name.get(name)
        return self._entries[key].personality if key is not None else None

    def resolve(self, voice: str) -> Personality | None:
        return self.get(voice) or self.get(self._by_alias.get(voice, ""))

    def alias_owner(self, alias: str) -> str | None:
        if alias in self._by_name:
            return alias
        if owner := self._by_alias.get(alias):
            return owner
        # A contested alias belongs to neither, but both have claimed it.
        return next((p.name for n in self.names() if (p := self.get(n)) and alias in p.spec.aliases), None)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def sample_key(self, name: str) -> str:
        """Where the sample store keeps this personality's samples: under its name here;
        a store whose names can repeat across sources (namespaces) overrides it."""
        return name

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
        return out + self._alias_problems

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
        if self.conflicts_serve_neither:
            for key in list(conflicts):
                name = self._entries[key].personality.name  # type: ignore[union-attr]
                if (first := by_name.pop(name, None)) is not None:
                    conflicts[first] = f"personality {name!r} is also defined in {self._source(key)}: neither is served"
        self._by_name, self._conflicts = by_name, conflicts
        self._by_alias, self._alias_problems = self._index_aliases(by_name)
        self.generation += 1

    def _index_aliases(self, by_name: dict[str, K]) -> tuple[dict[str, str], list[FileProblem]]:
        """Aliases of the served personalities. One that names another personality, or that two
        personalities claim, calls neither: a voice never goes to a personality by chance of
        which file sorts first."""
        claims: dict[str, list[str]] = {}
        for name, key in sorted(by_name.items()):
            for alias in self._entries[key].personality.spec.aliases:  # type: ignore[union-attr]
                claims.setdefault(alias, []).append(name)
        by_alias, problems = {}, []
        for alias, owners in sorted(claims.items()):
            if alias in by_name and owners != [alias]:
                problems += [FileProblem(source=self._source(by_name[o]),
                                         error=f"alias {alias!r} is the name of personality {alias!r}; not used")
                             for o in owners if o != alias]
            elif len(owners) > 1:
                problems += [FileProblem(source=self._source(by_name[o]), error=f"alias {alias!r} is also claimed by "
                                         f"{', '.join(repr(x) for x in owners if x != o)}: it calls neither")
                             for o in owners]
            elif owners != [alias]:
                by_alias[alias] = owners[0]
        return by_alias, problems
