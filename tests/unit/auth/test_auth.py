"""API keys and scopes at the HTTP layer, without Ray: every route of the app, generated
from the app's own route table, refuses a missing or wrong key (401) and a key without
the route's scope (403), and serves the right one."""

from __future__ import annotations

import io
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf
import yaml
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.websockets import WebSocket

from chorus.auth.keys import KeyEntry
from chorus.auth.ring import KeyRing
from chorus.auth.scopes import ANY_KEY, PUBLIC, Scope
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.samples.audio import canonical_wav, decode_audio
from chorus.samples.storage import SampleMeta
from chorus.speech.board import EngineBoard
from tests.support.access_calls import CALLS, KEYS, LACKING, WRONG_KEY, api_routes, recording
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine

JOE = {"activeProvider": "piper", "fallbackChain": ["xtts_v2"], "languages": {"primary": "en"},
       "providers": {"piper": {"voice": "en_US-joe-medium"}, "xtts_v2": {}}}


class AuthApi:
    """An app with keys on: Piper and a cloning engine scripted, the personality `joe`
    with stored samples `s0` and `s1`, one key per scope."""

    def __init__(self, root: Path, redis_url: str | None = None, **auth: Any) -> None:
        (root / "personalities").mkdir()
        (root / "personalities" / "joe.yaml").write_text(yaml.safe_dump(personality("joe", JOE)))
        config = IngressConfig(
            personalities={"directory": root / "personalities"}, samples={"directory": root / "samples"},
            timeouts={"piper": 5, "xtts_v2": 5}, auth=auth, redis_url=redis_url,
        )
        engines = {"piper": ScriptedEngine("piper"), "xtts_v2": ScriptedEngine("xtts_v2")}
        self.replica = Replica(config, EngineBoard({e: LocalHandle(engine) for e, engine in engines.items()}))
        assert self.replica.keys is not None
        self.replica.keys.replace("test", [
            KeyEntry(name=f"{scope.value}-key", key=key, scopes=[scope]).api_key() for scope, key in KEYS.items()
        ])
        # The speaker of the upload the samples route is called with: a different one is refused.
        clean = canonical_wav(decode_audio(recording()["file"][1]))
        # Two: deleting a personality's last sample needs admin (test below). The second is
        # the first with one sample's lowest bit flipped: another file, the same voice.
        again = bytearray(clean)
        again[-2] ^= 1
        for sample_id, audio in (("s0", clean), ("s1", bytes(again))):
            self.replica.samples.store.put("joe", audio, SampleMeta(id=sample_id, duration=7.6, quality_score=1.0))
        self.app = create_app(self.replica)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://127.0.0.1")


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[AuthApi]:
    api = AuthApi(tmp_path)
    async with api.client:
        yield api


def route_table(routes: list[BaseRoute]) -> Iterator[BaseRoute]:
    """Every route, those of included routers too (FastAPI keeps them nested, each router's
    paths already prefixed)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from route_table(included.routes)
        else:
            yield route


def app_routes(app: Any) -> set[tuple[str, str]]:
    """The app's API (its OpenAPI paths), every HTTP route (FastAPI's own /docs and
    /openapi.json among them), and every other entry (a websocket route, a mount) under its
    class name: CALLS holds HTTP methods only, so such an entry can never match it."""
    api = api_routes(app.openapi())
    routes = list(route_table(app.routes))
    http = {(method, route.path) for route in routes if isinstance(route, Route) for method in route.methods}
    other = {(type(route).__name__, getattr(route, "path", repr(route))) for route in routes
             if not isinstance(route, Route)}
    return api | http - {(m, p) for m, p in http if m == "HEAD"} | other


def test_every_route_of_the_app_has_a_rule(tmp_path: Path) -> None:
    """The table above is the app's route table: a new route must say who may call it."""
    assert app_routes(AuthApi(tmp_path).app) == set(CALLS)


def test_the_route_check_sees_websocket_routes_and_mounts(tmp_path: Path) -> None:
    """The key check passes every non-HTTP scope on, and CALLS holds HTTP routes only: a
    websocket route or a mount added to the app must fail the check above, not slip by."""

    async def echo(websocket: WebSocket) -> None:
        await websocket.close()

    app = AuthApi(tmp_path).app
    app.add_api_websocket_route("/v1/listen", echo)
    app.mount("/files", Starlette())
    assert app_routes(app) - set(CALLS) == {("APIWebSocketRoute", "/v1/listen"), ("Mount", "/files")}


@pytest.mark.parametrize("route", list(CALLS), ids=lambda r: f"{r[0]} {r[1]}")
async def test_each_route_needs_a_key_with_its_scope(api: AuthApi, route: tuple[str, str]) -> None:
    method, call = route[0], CALLS[route]

    async def send(headers: dict[str, str]) -> httpx.Response:
        return await api.client.request(method, call.path, headers=headers, **call.kwargs())

    if call.scope == PUBLIC:
        assert (await send({})).status_code == call.status
        return
    for headers, said in (({}, "is missing"), ({"x-api-key": WRONG_KEY}, "is not valid"),
                          ({"authorization": f"Bearer {WRONG_KEY}"}, "is not valid")):
        r = await send(headers)
        assert r.status_code == 401, r.text
        assert r.headers["www-authenticate"] == 'Bearer realm="chorus"'
        assert said in r.text
    if call.scope == ANY_KEY:  # no scope to lack: every key may
        for key in KEYS.values():
            assert (await send({"x-api-key": key})).status_code == call.status
        return
    scope = Scope(call.scope)
    r = await send({"x-api-key": KEYS[LACKING[scope]]})
    assert r.status_code == 403, r.text
    assert f"lacks the '{scope.value}' scope" in r.text
    r = await send({"x-api-key": KEYS[scope]})
    assert r.status_code == call.status, r.text


@pytest.mark.parametrize("route", list(CALLS), ids=lambda r: f"{r[0]} {r[1]}")
async def test_admin_may_call_every_route(api: AuthApi, route: tuple[str, str]) -> None:
    """`admin` opens every scope: each route, called as the table calls it, succeeds with
    the admin key alone (sent the way OpenAI's clients send it)."""
    call = CALLS[route]
    admin = {"authorization": f"Bearer {KEYS[Scope.ADMIN]}"}
    r = await api.client.request(route[0], call.path, headers=admin, **call.kwargs())
    assert r.status_code == call.status, r.text


async def test_an_admins_speech_is_audio(api: AuthApi) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": "Hi."},
                              headers={"authorization": f"Bearer {KEYS[Scope.ADMIN]}"})
    assert r.status_code == 200
    assert sf.info(io.BytesIO(r.content)).samplerate == 16_000


async def test_openai_routes_refuse_in_openais_shape(api: AuthApi) -> None:
    r = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "joe", "input": "Hi."},
                              headers={"authorization": "Bearer "})
    assert r.status_code == 401
    error = r.json()["error"]
    assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
    assert "API key is missing" in error["message"]


@pytest.mark.parametrize("scheme", ["Basic", "Token", "Digest", "BearerX", ""])
async def test_a_key_is_read_from_the_bearer_scheme_only(api: AuthApi, scheme: str) -> None:
    """A key under another scheme (a Basic password, a token of some other service) is not
    taken for an API key; the scheme's name is read in any case."""
    sent = {"authorization": f"{scheme} {KEYS[Scope.ADMIN]}".strip()}
    r = await api.client.get("/v1/personalities", headers=sent)
    assert r.status_code == 401 and "is missing" in r.json()["detail"]
    r = await api.client.get("/v1/personalities", headers={"authorization": f"bEaReR {KEYS[Scope.ADMIN]}"})
    assert r.status_code == 200


async def test_a_caller_without_a_key_learns_nothing_about_paths(api: AuthApi) -> None:
    assert (await api.client.get("/v1/nothing-here")).status_code == 401
    assert (await api.client.patch("/v1/personalities/joe")).status_code == 401
    key = {"x-api-key": KEYS[Scope.SPEAK]}
    assert (await api.client.get("/v1/nothing-here", headers=key)).status_code == 404
    assert (await api.client.patch("/v1/personalities/joe", headers=key)).status_code == 405


async def test_a_body_without_a_key_is_refused_before_it_is_read(api: AuthApi) -> None:
    read = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal read
        for _ in range(64):
            read += 1
            yield b"x" * 65536

    r = await api.client.post("/v1/personalities/joe/samples", content=body(),
                              headers={"content-type": "multipart/form-data; boundary=b"})
    assert r.status_code == 401
    assert read <= 1  # the transport may pull the first chunk; the app never asks for more


async def test_a_removed_key_stops_working_at_once(api: AuthApi) -> None:
    key = {"x-api-key": KEYS[Scope.SPEAK]}
    assert (await api.client.get("/v1/providers", headers=key)).status_code == 200
    assert api.replica.keys is not None
    api.replica.keys.replace("test", [])
    assert (await api.client.get("/v1/providers", headers=key)).status_code == 401


def test_the_api_docs_name_each_routes_scope(tmp_path: Path) -> None:
    schema = AuthApi(tmp_path).app.openapi()
    assert schema["paths"]["/v1/clone"]["post"]["x-chorus-scope"] == "clone"
    assert schema["paths"]["/healthz"]["get"]["x-chorus-scope"] == "public"
    assert schema["paths"]["/v1/personalities/{name}"]["put"]["x-chorus-scope"] == "admin"


# --- what a key may do -----------------------------------------------------------------------


async def test_a_key_learns_its_scopes_and_the_routes_they_open(api: AuthApi) -> None:
    r = await api.client.get("/v1/keys/me", headers={"x-api-key": KEYS[Scope.SPEAK]})
    assert r.status_code == 200, r.text
    me = r.json()
    assert (me["auth"], me["name"]) == (True, "speak-key")
    assert [s["scope"] for s in me["scopes"]] == ["speak"] and "synthesize" in me["scopes"][0]["allows"]
    assert "POST /v1/personalities/{name}/speech" in me["routes"] and "GET /v1/keys/me" in me["routes"]
    assert "PUT /v1/personalities/{name}" not in me["routes"] and "GET /v1/stats" not in me["routes"]
    assert not any(route.startswith("GET /dashboard") for route in me["routes"])  # public, not the key's doing
    # What the key may call is exactly what the guard lets through.
    for route in me["routes"]:
        method, path = route.split(" ", 1)
        call = CALLS[(method, path)]
        assert call.scope in (Scope.SPEAK, ANY_KEY), route

    admin = (await api.client.get("/v1/keys/me", headers={"x-api-key": KEYS[Scope.ADMIN]})).json()
    documented = api_routes(api.app.openapi())  # FastAPI's own /docs and /openapi.json are not the API
    assert set(admin["routes"]) == {f"{m} {p}" for m, p in documented if CALLS[(m, p)].scope != PUBLIC}


async def test_a_keys_limits_are_shown_with_it(tmp_path: Path) -> None:
    api = AuthApi(tmp_path)
    assert api.replica.keys is not None
    api.replica.keys.replace("test", [KeyEntry(name="metered", key=KEYS[Scope.SPEAK], scopes=[Scope.SPEAK, Scope.CLONE],
                                              rate_limit="60/minute", characters_per_day=5000).api_key()])
    async with api.client:
        me = (await api.client.get("/v1/keys/me", headers={"authorization": f"Bearer {KEYS[Scope.SPEAK]}"})).json()
    assert me["name"] == "metered"
    assert me["limits"] == {"rateLimit": "60/minute", "charactersPerDay": 5000, "charactersPerMonth": None,
                            "maxConcurrent": None}
    assert [s["scope"] for s in me["scopes"]] == ["speak", "clone"]
    assert "POST /v1/clone" in me["routes"]


async def test_without_keys_every_route_is_open_and_said_so(tmp_path: Path) -> None:
    (tmp_path / "personalities").mkdir()
    config = IngressConfig(personalities={"directory": tmp_path / "personalities"}, samples={"directory": tmp_path / "s"})
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper"))}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)), base_url="http://127.0.0.1") as c:
        me = (await c.get("/v1/keys/me")).json()
    assert (me["auth"], me["name"]) == (False, None)
    assert me["limits"] == {"rateLimit": None, "charactersPerDay": None, "charactersPerMonth": None,
                            "maxConcurrent": None}
    assert [s["scope"] for s in me["scopes"]] == [s.value for s in Scope]
    assert "PUT /v1/personalities/{name}" in me["routes"]


async def test_only_admins_hear_whether_an_answer_came_from_the_cache(api: AuthApi) -> None:
    """`X-Chorus-Cache` would tell any key whether another key had this voice say a text."""
    body = {"text": "Your code is 4821."}
    admin = await api.client.post("/v1/personalities/joe/speech", json=body, headers={"x-api-key": KEYS[Scope.ADMIN]})
    speaker = await api.client.post("/v1/personalities/joe/speech", json=body, headers={"x-api-key": KEYS[Scope.SPEAK]})
    assert admin.status_code == speaker.status_code == 200
    assert admin.headers["x-chorus-cache"] == "miss" and "x-chorus-cache" not in speaker.headers


async def test_a_personality_cached_per_key_never_answers_one_key_with_anothers_audio(api: AuthApi) -> None:
    admin = {"x-api-key": KEYS[Scope.ADMIN]}
    put = await api.client.put("/v1/personalities/joe", json={**JOE, "cache": {"scope": "key"}}, headers=admin)
    assert put.status_code == 200, put.text
    body = {"text": "Your code is 4821."}
    await api.client.post("/v1/personalities/joe/speech", json=body, headers={"x-api-key": KEYS[Scope.SPEAK]})
    again = await api.client.post("/v1/personalities/joe/speech", json=body, headers=admin)
    twice = await api.client.post("/v1/personalities/joe/speech", json=body, headers=admin)
    assert (again.headers["x-chorus-cache"], twice.headers["x-chorus-cache"]) == ("miss", "hit")


async def test_a_personality_with_its_cache_off_keeps_nothing(api: AuthApi) -> None:
    admin = {"x-api-key": KEYS[Scope.ADMIN]}
    put = await api.client.put("/v1/personalities/joe", json={**JOE, "cache": {"scope": "off"}}, headers=admin)
    assert put.status_code == 200, put.text
    for _ in range(2):
        r = await api.client.post("/v1/personalities/joe/speech", json={"text": "Hello."}, headers=admin)
        assert r.headers["x-chorus-cache"] == "bypass"


async def test_a_key_source_that_could_not_be_reloaded_makes_the_replica_unready(api: AuthApi) -> None:
    """Security audit M-7: until the keys are current again a removed key may still work, so
    the replica leaves the load balancer; only an admin sees why."""
    assert (await api.client.get("/readyz")).json()["keysStale"] is False
    assert api.replica.keys is not None
    api.replica.keys.stale("file", "keys.yaml: not YAML or JSON at line 2, column 3")
    public = await api.client.get("/readyz")
    admin = await api.client.get("/readyz", headers={"x-api-key": KEYS[Scope.ADMIN]})
    assert public.status_code == admin.status_code == 503
    assert public.json() == {"ready": False, "personalitiesLoaded": True, "keysStale": True}
    assert admin.json()["keys"]["stale"] == {"file": "keys.yaml: not YAML or JSON at line 2, column 3"}
    speak_key = await api.client.get("/readyz", headers={"x-api-key": KEYS[Scope.SPEAK]})
    assert "keys" not in speak_key.json()


async def test_the_last_sample_of_a_personality_is_removed_by_admins_only(api: AuthApi) -> None:
    """Security audit M-4: a `samples` key deleting every sample could then upload any voice
    (uploads are compared with the stored samples), which `force` keeps for admins."""
    samples, admin = {"x-api-key": KEYS[Scope.SAMPLES]}, {"x-api-key": KEYS[Scope.ADMIN]}
    assert (await api.client.delete("/v1/personalities/joe/samples/s0", headers=samples)).status_code == 204
    last = await api.client.delete("/v1/personalities/joe/samples/s1", headers=samples)
    assert last.status_code == 403 and "is the last of personality 'joe'" in last.json()["detail"]
    assert [s["id"] for s in (await api.client.get("/v1/personalities/joe/samples", headers=samples)).json()] == ["s1"]
    assert (await api.client.delete("/v1/personalities/joe/samples/s1", headers=admin)).status_code == 204


async def test_wrong_keys_from_one_address_are_throttled_and_logged_once(
    api: AuthApi, caplog: pytest.LogCaptureFixture
) -> None:
    """Security audit L-3: 401s were neither counted nor quiet (online guessing, log floods)."""
    caplog.set_level(logging.DEBUG, logger="chorus.ingress.errors")
    answers = [(await api.client.get("/v1/personalities", headers={"x-api-key": WRONG_KEY})).status_code
               for _ in range(23)]
    assert answers == [401] * 20 + [429] * 3  # auth.failedPerMinute's default
    over = await api.client.get("/v1/personalities")
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.json()["code"] == "too_many_failed_keys"
    refused = [r for r in caplog.records if "-> 401" in r.getMessage() or "-> 429" in r.getMessage()]
    assert [r.levelno for r in refused] == [logging.INFO] + [logging.DEBUG] * 23
    # A valid key from the same address still passes.
    ok = await api.client.get("/v1/personalities", headers={"x-api-key": KEYS[Scope.SPEAK]})
    assert ok.status_code == 200


def refusals(caplog: pytest.LogCaptureFixture) -> list[int]:
    """The levels the refused requests (401, 429) were logged at, in order."""
    return [r.levelno for r in caplog.records if "-> 401" in r.getMessage() or "-> 429" in r.getMessage()]


def from_address(api: AuthApi, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api.app, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1")


async def test_wrong_keys_are_counted_per_client_address(api: AuthApi) -> None:
    async with from_address(api, "192.0.2.1") as guesser, from_address(api, "192.0.2.2") as other:
        answers = [(await guesser.get("/v1/personalities", headers={"x-api-key": WRONG_KEY})).status_code
                   for _ in range(21)]
        assert answers == [401] * 20 + [429]
        # Another address has its own count: not throttled by the first one's guesses.
        assert (await other.get("/v1/personalities", headers={"x-api-key": WRONG_KEY})).status_code == 401


async def test_with_the_counters_out_of_reach_a_wrong_key_is_refused_and_each_refusal_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as s:  # a Redis port nothing listens on: the shared counters are down
        s.bind(("127.0.0.1", 0))
        api = AuthApi(tmp_path, redis_url=f"redis://127.0.0.1:{s.getsockname()[1]}")
    caplog.set_level(logging.DEBUG, logger="chorus.ingress.errors")
    answers = [await api.client.get("/v1/personalities", headers={"x-api-key": WRONG_KEY}) for _ in range(3)]
    assert [r.status_code for r in answers] == [401] * 3  # uncounted, still refused
    assert refusals(caplog) == [logging.INFO] * 3  # no count says which is the first: each is told


async def test_the_first_refusal_of_a_window_is_told_at_any_limit(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Over 256 (CPython's cached small ints): the window's count compared by value, not identity.
    api = AuthApi(tmp_path, failedPerMinute=1000)
    caplog.set_level(logging.DEBUG, logger="chorus.ingress.errors")
    for _ in range(2):
        assert (await api.client.get("/v1/personalities", headers={"x-api-key": WRONG_KEY})).status_code == 401
    assert refusals(caplog) == [logging.INFO, logging.DEBUG]


async def test_the_app_starts_and_stops_through_the_key_check(api: AuthApi) -> None:
    """The ASGI lifespan (how Serve and uvicorn start the app) passes the key check untouched."""
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return inbox.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await api.app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_a_key_given_in_the_file_has_at_least_32_characters() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        KeyEntry(name="short", key="a-guessable-key-1234", scopes=[Scope.SPEAK])
    assert KeyEntry(name="long", key="k" * 32, scopes=[Scope.SPEAK]).key is not None


async def test_what_a_key_was_shown_is_kept_by_no_cache(api: AuthApi) -> None:
    """Security audit L-12: authenticated answers (sample audio among them) carried no
    Cache-Control, and `x-api-key` is not a header shared caches vary on."""
    speaker, samples = {"x-api-key": KEYS[Scope.SPEAK]}, {"x-api-key": KEYS[Scope.CLONE]}
    listing = await api.client.get("/v1/personalities", headers=speaker)
    audio = await api.client.get("/v1/personalities/joe/samples/s0/audio", headers=samples)
    assert listing.headers["cache-control"] == audio.headers["cache-control"] == "no-store"
    page = await api.client.get("/dashboard")  # public, the same for everyone
    assert page.status_code == 200 and page.headers.get("cache-control") != "no-store"


def test_a_key_name_used_twice_across_sources_is_warned_of_once(caplog: pytest.LogCaptureFixture) -> None:
    """Logs name the key that asked: two keys under one name could not be told apart."""
    ring = KeyRing()
    caplog.set_level(logging.WARNING, logger="chorus.auth.ring")
    ring.replace("file", [KeyEntry(name="ci", key="a" * 32, scopes=[Scope.SPEAK]).api_key(),
                          KeyEntry(name="ops", key="b" * 32, scopes=[Scope.ADMIN]).api_key()])
    assert caplog.records == []  # distinct names: nothing to say
    ring.replace("env", [KeyEntry(name="ci", key="c" * 32, scopes=[Scope.SPEAK]).api_key()])
    assert [r.getMessage() for r in caplog.records] == [
        "API key name 'ci' is used by more than one key; logs cannot tell them apart"]
    assert len(ring) == 3 and ring.lookup("c" * 32) is not None
