"""The keys one replica knows, merged from every source, looked up in constant time."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from chorus.auth.keys import ApiKey, digest

log = logging.getLogger(__name__)


class KeyRing:
    """Keys by source (`file`, `env`, `aws`, ...); a source's keys are replaced as a whole
    when it reloads, so a rotated or removed key stops working at once. A source whose
    last reload could not be read keeps its keys and is `stale` until one succeeds; the
    entries a reload left out are its `problems`."""

    def __init__(self) -> None:
        self._by_source: dict[str, tuple[ApiKey, ...]] = {}
        self._keys: tuple[ApiKey, ...] = ()
        self.stale_sources: dict[str, str] = {}
        self.problems: dict[str, list[str]] = {}

    def stale(self, source: str, reason: str) -> None:
        self.stale_sources[source] = reason

    def replace(self, source: str, keys: Iterable[ApiKey], problems: Iterable[str] = ()) -> None:
        self.stale_sources.pop(source, None)
        self.problems[source] = list(problems)
        self._by_source[source] = tuple(keys)
        self._keys = tuple(key for keys_of in self._by_source.values() for key in keys_of)
        names = [key.name for key in self._keys]
        for name in {n for n in names if names.count(n) > 1}:
            log.warning("API key name %r is used by more than one key; logs cannot tell them apart", name)

    def __len__(self) -> int:
        return len(self._keys)

    def lookup(self, presented: str) -> ApiKey | None:
        """The key `presented` is, or None. Every stored hash is compared, each in constant
        time, so neither the answer's timing nor its path tells how close a guess came."""
        hashed = digest(presented)
        found = None
        for key in self._keys:
            if key.matches(hashed) and found is None:
                found = key
        return found
