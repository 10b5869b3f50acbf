"""YAML documents from outside (request bodies, personality files, key files), read by
libyaml's C loader after a scan that refuses what would crash it or blow up behind it.

libyaml's composer recurses in C once per nesting level: a 64 KiB body of `[` overflows the
thread's stack and kills the whole replica, with no RecursionError to catch. The token scan
that runs first is iterative and stops at the first level past `MAX_DEPTH`. Aliases are
refused as well: a few lines of anchors can stand for billions of nodes once a model walks
them, and no document Chorus reads needs them.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_DEPTH = 64

_OPEN = (yaml.BlockMappingStartToken, yaml.BlockSequenceStartToken, yaml.FlowMappingStartToken,
         yaml.FlowSequenceStartToken)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


class DocumentRefused(ValueError):
    """A document Chorus will not parse; `reason` says why (a YAML syntax error is
    `yaml.YAMLError` instead)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def check(text: str | bytes) -> None:
    """Refuse nesting deeper than `MAX_DEPTH` and aliases, before anything recurses."""
    depth = 0
    for token in yaml.scan(text, Loader=yaml.CSafeLoader):
        if isinstance(token, _OPEN):
            depth += 1
            if depth > MAX_DEPTH:
                raise DocumentRefused(f"the document nests too deeply (more than {MAX_DEPTH} levels)")
        elif isinstance(token, _CLOSE):
            depth -= 1
        elif isinstance(token, yaml.AliasToken):
            raise DocumentRefused("the document uses a YAML alias (*name); write the value out instead")


def load(text: str | bytes) -> Any:
    """One YAML (or JSON) document. Raises `DocumentRefused` or `yaml.YAMLError`."""
    check(text)
    return yaml.load(text, Loader=yaml.CSafeLoader)


def load_all(text: str | bytes) -> list[Any]:
    """Every document of a YAML stream (empty ones dropped)."""
    check(text)
    return [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d is not None]
