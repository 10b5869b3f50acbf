"""API keys against the real app: every route behind the Serve proxy, the official OpenAI
client, and a key file rotated while serving. Piper and a tiny XTTS v2 (so /v1/clone can
succeed), keys from a file the way a mounted Secret provides them."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from chorus.auth.keys import digest
from chorus.auth.scopes import ANY_KEY, PUBLIC, Scope
from deployments import xtts
from tests.support.access_calls import CALLS, KEYS, LACKING, SPEC, WRONG_KEY, Call, api_routes, recording
from tests.support.chorus_app import STEADY_PIPER, ChorusApp

pytestmark = pytest.mark.ray

ADMIN = {"x-api-key": KEYS[Scope.ADMIN]}
# FastAPI's own routes, which the OpenAPI document does not list.
FASTAPI_OWN = {("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/docs/oauth2-redirect"), ("GET", "/redoc")}


def key_file(path: Path, keys: dict[str, tuple[str, list[str]]]) -> None:
    """Writes the file the way Kubernetes updates a mounted Secret: a new file swapped in."""
    entries = [{"name": name, "sha256": digest(key), "scopes": scopes} for name, (key, scopes) in keys.items()]
    tmp = path.with_name(path.name + ".new")
    tmp.write_text(yaml.safe_dump({"keys": entries}))
    tmp.replace(path)


SCOPED_KEYS = {f"{scope.value}-key": (key, [scope.value]) for scope, key in KEYS.items()}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, xtts_models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> ChorusApp:
    keys = tmp_path_factory.mktemp("secret") / "keys.yaml"
    key_file(keys, SCOPED_KEYS)
    chorus.deploy(
        engines={"piper": {}, "xtts_v2": {"timeout_s": 180, "config": {"model_dir": str(xtts_models["base"])}}},
        deployments={"xtts_v2": {"ray_actor_options": xtts.actor_options(num_cpus=0.5)}},
        # Every route is called with missing and wrong keys here: not the failed-key throttle's test.
        auth={"keysFile": str(keys), "failedPerMinute": 100_000},
    )
    chorus.keys_file = keys  # type: ignore[attr-defined]
    chorus.write("joe", {"activeProvider": "piper", "fallbackChain": ["xtts_v2"],
                         "providers": {"piper": STEADY_PIPER, "xtts_v2": {}}})
    with chorus.client(headers=ADMIN) as c:
        deadline = time.monotonic() + 30
        while c.get("/v1/personalities/joe").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        r = c.post("/v1/personalities/joe/samples", files=recording(), data={"id": "s0"})
        assert r.status_code == 201, r.text
    return chorus


def test_the_table_is_the_apps_route_list(app: ChorusApp) -> None:
    with app.client(headers=ADMIN) as c:
        openapi = c.get("/openapi.json").json()
    assert api_routes(openapi) | FASTAPI_OWN == set(CALLS)


def prepared(c: httpx.Client, route: tuple[str, str], call: Call) -> Call:
    """Deleting routes get something of their own to delete, so the other routes keep `joe` and `s0`."""
    if route == ("DELETE", "/v1/personalities/{name}"):
        assert c.put("/v1/personalities/gone", json=SPEC, headers=ADMIN).status_code == 201
        return Call(call.scope, "/v1/personalities/gone", status=204)
    if route == ("DELETE", "/v1/personalities/{name}/samples/{sample_id}"):
        r = c.post("/v1/personalities/joe/samples", files=recording(other_text=True), data={"id": "gone"}, headers=ADMIN)
        assert r.status_code == 201, r.text
        return Call(call.scope, "/v1/personalities/joe/samples/gone", status=204)
    if route == ("POST", "/v1/personalities/{name}/samples"):
        # Uploaded and deleted again, so the sample-deleting route can upload the same recording.
        return Call(call.scope, call.path, lambda: {"files": recording(other_text=True), "data": {"id": "posted"}}, 201)
    return call


@pytest.mark.parametrize("route", list(CALLS), ids=lambda r: f"{r[0]} {r[1]}")
def test_each_route_behind_the_proxy_needs_a_key_with_its_scope(app: ChorusApp, route: tuple[str, str]) -> None:
    method = route[0]
    with app.client() as c:
        call = prepared(c, route, CALLS[route])

        def send(headers: dict[str, str]) -> httpx.Response:
            return c.request(method, call.path, headers=headers, **call.kwargs())

        if call.scope == PUBLIC:
            assert send({}).status_code == call.status
            return
        for headers in ({}, {"x-api-key": WRONG_KEY}, {"authorization": f"Bearer {WRONG_KEY}"}):
            r = send(headers)
            assert r.status_code == 401, r.text
            assert r.headers["x-request-id"]
        if call.scope == ANY_KEY:  # no scope to lack: every key may
            assert all(send({"x-api-key": key}).status_code == call.status for key in KEYS.values())
            return
        scope = Scope(call.scope)
        assert send({"x-api-key": KEYS[LACKING[scope]]}).status_code == 403
        r = send({"x-api-key": KEYS[scope]})
        assert r.status_code == call.status, r.text
        if route == ("POST", "/v1/personalities/{name}/samples"):
            assert c.delete("/v1/personalities/joe/samples/posted", headers=ADMIN).status_code == 204


def test_the_openai_client_authenticates_with_its_api_key(app: ChorusApp) -> None:
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key=KEYS[Scope.SPEAK], max_retries=0)
    audio = client.audio.speech.create(model="tts-1", voice="joe", input="Hello there.", response_format="wav")
    assert audio.content[:4] == b"RIFF" and len(audio.content) > 10_000
    stranger = openai.OpenAI(base_url=f"{app.url}/v1", api_key=WRONG_KEY, max_retries=0)
    # A wrong key, and no key at all (the client insists on one, so the header is dropped).
    for headers in ({}, {"Authorization": openai.Omit()}):
        with pytest.raises(openai.AuthenticationError) as refused:
            stranger.audio.speech.create(model="tts-1", voice="joe", input="Hello there.", extra_headers=headers)
        assert refused.value.code == "invalid_api_key"


def test_a_rotated_key_file_takes_effect_without_a_restart(app: ChorusApp) -> None:
    new_key = "chorus_test_rotated_in_0123456789"
    speak = KEYS[Scope.SPEAK]
    try:
        key_file(app.keys_file, {**{n: k for n, k in SCOPED_KEYS.items() if n != "speak-key"},  # type: ignore[attr-defined]
                                 "rotated": (new_key, ["speak"])})
        with app.client() as c:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                old = c.get("/v1/providers", headers={"x-api-key": speak}).status_code
                new = c.get("/v1/providers", headers={"x-api-key": new_key}).status_code
                if (old, new) == (401, 200):
                    break
                time.sleep(0.25)
            assert (old, new) == (401, 200)
    finally:
        key_file(app.keys_file, SCOPED_KEYS)  # type: ignore[attr-defined]
