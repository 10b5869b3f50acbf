"""What a key may do. `admin` may do everything; each route names the scope it needs in
its OpenAPI operation (`x-chorus-scope`), and a route that names none needs `admin`."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Scope(StrEnum):
    """What each opens: `ALLOWS`."""

    SPEAK = "speak"
    CLONE = "clone"
    SAMPLES = "samples"
    ADMIN = "admin"


PUBLIC = "public"
"""The `x-chorus-scope` of routes anyone may call (probes, the dashboard's static files)."""

ANY_KEY = "any"
"""The `x-chorus-scope` of routes any valid key may call (what the key itself may do)."""

ALLOWS: dict[Scope, str] = {
    Scope.SPEAK: "synthesize speech; read personalities and engines",
    Scope.CLONE: "clone a voice from a recording; play stored samples",
    Scope.SAMPLES: "upload, check, list and delete voice samples",
    Scope.ADMIN: "everything: personality writes, statistics, quotas, the cache",
}
"""What each scope opens, in words for people (`GET /v1/keys/me`, the dashboard)."""

OPENAPI_KEY = "x-chorus-scope"


def needs(scope: Scope | str) -> dict[str, Any]:
    """A route's `openapi_extra`: the scope it needs, also shown in the API docs."""
    return {OPENAPI_KEY: str(scope)}
