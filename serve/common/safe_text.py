"""Text that leaves the ingress built from data an engine, a file or a caller gave.

The first line of defence is choosing what to say by type (an attempt's outcome, an error's
class) instead of passing an engine's own words on; `scrubbed` is the second, for text that
is ours but may embed a value (a file name in a store error), and `header_value` makes any
text fit for an HTTP header."""

from __future__ import annotations

import re
import unicodedata
from pathlib import PurePosixPath
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator

# scheme://anything: endpoints, s3:// buckets, file:// URLs.
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://\S+")
# An absolute POSIX path (not the '/' inside "60/minute") or a Windows drive path.
_PATH = re.compile(r"(?<![\w.~/-])(?:/[^\s/'\"(),;:]+)+/?|\b[A-Za-z]:\\\S+")

HEADER_LIMIT = 300


def scrubbed(text: str) -> str:
    """`text` without URLs and with absolute paths cut to their last part (the file name
    says which file; the directories say how the host is laid out)."""
    text = _URL.sub("<url>", text)
    return _PATH.sub(lambda m: PurePosixPath(m.group().replace("\\", "/")).name or "<path>", text)


def public_source(source: str) -> str:
    """Where a personality came from, as callers without `admin` see it: a file's name,
    or a Kubernetes `namespace/name` as it is."""
    return PurePosixPath(source).name if PurePosixPath(source).is_absolute() else scrubbed(source)


def loggable(text: str, limit: int = 1024) -> str:
    """`text` for one log line: every character that is not printable (control characters
    such as ESC, which a terminal obeys; line and paragraph separators, which split the
    line) as its Python escape, and at most `limit` characters. A caller's path or id can
    then neither forge a line nor colour one."""
    text = text[:limit]
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def public_url(url: str) -> str:
    """An http(s) URL as callers without `admin` see it: scheme, host, port and path; no
    user info, query or fragment, where credentials and signed-URL tokens travel."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def header_value(text: str, limit: int = HEADER_LIMIT) -> str:
    """Visible ASCII only (0x20-0x7E), at most `limit` characters: accents are dropped from
    their letters, line breaks and other control characters become spaces, anything else
    outside ASCII becomes '?'. A CR/LF in a header value could split the response."""
    decomposed = unicodedata.normalize("NFKD", text)
    visible = "".join(
        c if " " <= c <= "~" else " " if c.isspace() or unicodedata.category(c) == "Cc" else "?"
        for c in decomposed
        if not unicodedata.combining(c)
    )
    return " ".join(visible.split())[:limit]


PublicText = Annotated[str, AfterValidator(scrubbed)]
"""Text for clients: scrubbed once more whatever built it."""
