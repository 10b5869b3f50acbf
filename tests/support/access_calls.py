"""Who may call each route, and how to call it so that it succeeds: the table the access
tests (tests/unit/auth/test_auth.py, tests/integration/test_access.py) walk. The tests compare it
with the app's own route list, so a new route without an entry here fails them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from chorus.auth.scopes import ANY_KEY, PUBLIC, Scope
from tests.support import recordings as rec

# One key per scope, each with only that scope.
KEYS = {scope: f"chorus_test_{scope.value}_key_0123456789" for scope in Scope}
WRONG_KEY = "chorus_test_not_a_key_0123456789"
# For each scope, a key that lacks it.
LACKING = {Scope.SPEAK: Scope.SAMPLES, Scope.CLONE: Scope.SPEAK, Scope.SAMPLES: Scope.CLONE, Scope.ADMIN: Scope.SPEAK}


def recording(other_text: bool = False) -> dict[str, Any]:
    recs = rec.recordings()
    clean = recs.clean_other_text() if other_text else recs.clean()
    return {"file": ("clean.wav", rec.encode(clean.samples, clean.rate))}


@dataclass
class Call:
    """How to call one route so that it succeeds: its scope, path and request arguments."""

    scope: Scope | str
    path: str
    kwargs: Callable[[], dict[str, Any]] = dict
    status: int = 200


SPEC = {"activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": {}}}

# Every (method, route) of the app, against the personality `joe` with a stored sample `s0`.
CALLS: dict[tuple[str, str], Call] = {
    ("POST", "/v1/personalities/{name}/speech"): Call(Scope.SPEAK, "/v1/personalities/joe/speech",
                                                        lambda: {"json": {"text": "Hello."}}),
    ("POST", "/v1/audio/speech"): Call(Scope.SPEAK, "/v1/audio/speech",
                                       lambda: {"json": {"model": "tts-1", "voice": "joe", "input": "Hello."}}),
    ("POST", "/v1/clone"): Call(Scope.CLONE, "/v1/clone", lambda: {"files": recording(), "data": {"text": "Hello."}}),
    ("GET", "/v1/audio/voices"): Call(Scope.SPEAK, "/v1/audio/voices"),
    ("GET", "/v1/models"): Call(Scope.SPEAK, "/v1/models"),
    ("GET", "/v1/personalities"): Call(Scope.SPEAK, "/v1/personalities"),
    ("GET", "/v1/personalities/{name}"): Call(Scope.SPEAK, "/v1/personalities/joe"),
    ("PUT", "/v1/personalities/{name}"): Call(Scope.ADMIN, "/v1/personalities/ann", lambda: {"json": SPEC}, 201),
    ("DELETE", "/v1/personalities/{name}"): Call(Scope.ADMIN, "/v1/personalities/joe", status=204),
    ("POST", "/v1/personalities/{name}/samples"): Call(Scope.SAMPLES, "/v1/personalities/joe/samples",
                                                         lambda: {"files": recording(other_text=True)}, 201),
    ("POST", "/v1/personalities/{name}/samples/check"): Call(Scope.SAMPLES, "/v1/personalities/joe/samples/check",
                                                               lambda: {"files": recording(other_text=True)}),
    ("GET", "/v1/keys/me"): Call(ANY_KEY, "/v1/keys/me"),
    ("GET", "/v1/dashboard/links"): Call(Scope.ADMIN, "/v1/dashboard/links"),
    ("GET", "/v1/personalities/{name}/samples"): Call(Scope.SAMPLES, "/v1/personalities/joe/samples"),
    ("GET", "/v1/personalities/{name}/samples/{sample_id}"): Call(Scope.SAMPLES, "/v1/personalities/joe/samples/s0"),
    ("GET", "/v1/personalities/{name}/samples/{sample_id}/audio"): Call(
        Scope.CLONE, "/v1/personalities/joe/samples/s0/audio"),
    ("DELETE", "/v1/personalities/{name}/samples/{sample_id}"): Call(
        Scope.SAMPLES, "/v1/personalities/joe/samples/s0", status=204),
    ("GET", "/v1/providers"): Call(Scope.SPEAK, "/v1/providers"),
    ("GET", "/v1/stats"): Call(Scope.ADMIN, "/v1/stats?window=5m"),
    ("DELETE", "/v1/cache"): Call(Scope.ADMIN, "/v1/cache?personality=joe"),
    ("GET", "/v1/stats/series"): Call(Scope.ADMIN, "/v1/stats/series?window=1h&step=5m"),
    ("GET", "/v1/quotas"): Call(Scope.ADMIN, "/v1/quotas"),
    ("GET", "/healthz"): Call(PUBLIC, "/healthz"),
    ("GET", "/readyz"): Call(PUBLIC, "/readyz"),
    # The dashboard's page and scripts: public, its data calls send the key.
    ("GET", "/dashboard"): Call(PUBLIC, "/dashboard"),
    ("GET", "/dashboard/{name}"): Call(PUBLIC, "/dashboard/app.js"),
    # FastAPI's own documentation routes: "every other route" needs admin.
    ("GET", "/openapi.json"): Call(Scope.ADMIN, "/openapi.json"),
    ("GET", "/docs"): Call(Scope.ADMIN, "/docs"),
    ("GET", "/docs/oauth2-redirect"): Call(Scope.ADMIN, "/docs/oauth2-redirect"),
    ("GET", "/redoc"): Call(Scope.ADMIN, "/redoc"),
}




def api_routes(openapi: dict[str, Any]) -> set[tuple[str, str]]:
    """(method, path) of every operation in an OpenAPI document."""
    return {(method.upper(), path) for path, item in openapi["paths"].items() for method in item}
