"""The edge of the HTTP layer (issue 11, section 3): body caps before parsing, deep nesting
and late validation errors as 422, names with a trailing newline refused, and
`X-Request-Id` on every answer. The app is `create_app` over in-process engines, as in
tests/unit/ingress/test_http.py; after each abuse `/healthz` must still answer."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.personalities import LanguageCode, PersonalityName
from chorus.samples.storage import InvalidSampleRequest, SampleId, check_personality_name, check_sample_id
from chorus.speech.board import EngineBoard
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine

BODY_LIMIT = 64 * 1024  # the default, left unset below
MAX_UPLOAD = 256 * 1024  # larger than the JSON cap: uploads keep their own limit
SPEC = {"activeProvider": "piper", "languages": {"primary": "en"}, "providers": {"piper": {}}}
DEPTH = 10_000


class Boom(BaseModel):
    n: int


async def late_validation() -> None:
    Boom.model_validate({"n": "not a number"})  # after FastAPI's own validation


async def crash() -> None:
    raise RuntimeError("/secret/path/in/a/traceback")


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "personalities").mkdir()
    (tmp_path / "personalities" / "joe.yaml").write_text(yaml.safe_dump(personality("joe", SPEC)))
    config = IngressConfig(
        personalities={"directory": tmp_path / "personalities"},
        samples={"directory": tmp_path / "samples", "max_upload_bytes": MAX_UPLOAD},
        timeouts={"piper": 5},
    )
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper", languages=("en",)))}))
    app = create_app(replica)
    app.add_api_route("/test/late-validation", late_validation)
    app.add_api_route("/test/crash", crash)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        yield client
        r = await client.get("/healthz")  # still answering after whatever the test sent
        assert r.status_code == 200, r.text


class Chunks:
    """A body sent chunked (no Content-Length) that counts how much the server pulled."""

    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.sent = chunk, count, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.count):
            self.sent += 1
            yield self.chunk


def assert_names_limit(r: httpx.Response, limit: int) -> None:
    assert r.status_code == 413, r.text
    assert r.json()["limit"] == limit
    assert str(limit) in (r.json().get("detail") or r.json()["error"]["message"])


# --- body size -------------------------------------------------------------------------------


async def test_a_declared_length_over_the_cap_is_413_before_parsing(client: httpx.AsyncClient) -> None:
    big = b'{"text": "' + b"a" * BODY_LIMIT + b'"}'
    r = await client.post("/v1/personalities/joe/speech", content=big, headers={"content-type": "application/json"})
    assert_names_limit(r, BODY_LIMIT)
    assert str(len(big)) in r.json()["detail"]


async def test_the_openai_route_refuses_in_its_own_shape(client: httpx.AsyncClient) -> None:
    big = b'{"input": "' + b"a" * BODY_LIMIT + b'"}'
    r = await client.post("/v1/audio/speech", content=big, headers={"content-type": "application/json"})
    assert_names_limit(r, BODY_LIMIT)
    assert r.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(("path", "method", "ctype"), [
    ("/v1/personalities/joe/speech", "POST", "application/json"),
    ("/v1/personalities/joe", "PUT", "application/yaml"),
])
async def test_a_chunked_body_is_refused_as_it_passes_the_cap(
    client: httpx.AsyncClient, path: str, method: str, ctype: str
) -> None:
    body = Chunks(b"a" * 4096, 200)  # 800 KiB, never declared
    r = await client.request(method, path, content=body, headers={"content-type": ctype})
    assert "content-length" not in r.request.headers
    assert_names_limit(r, BODY_LIMIT)
    assert body.sent <= BODY_LIMIT // 4096 + 2  # refused while streaming, not read whole


async def test_uploads_keep_their_own_larger_limit(client: httpx.AsyncClient) -> None:
    noise = b"\x01" * (BODY_LIMIT * 2)  # over the JSON cap, under the upload limit
    r = await client.post("/v1/personalities/joe/samples", files={"file": ("a.wav", noise, "audio/wav")})
    assert r.status_code == 422, r.text  # reached the sample checks (not audio), not 413
    too_big = Chunks(b"\x01" * 4096, 200)
    r = await client.post("/v1/personalities/joe/samples", content=too_big,
                          headers={"content-type": "multipart/form-data; boundary=x"})
    assert r.status_code == 413, r.text
    assert too_big.sent < 200


async def test_the_cap_is_configurable(tmp_path: Path) -> None:
    config = IngressConfig(personalities={"directory": tmp_path}, max_body_bytes=2048)
    app = create_app(Replica(config, EngineBoard({})))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        r = await client.post("/v1/personalities/joe/speech", json={"text": "a" * 3000})
    assert_names_limit(r, 2048)


# --- parsing ---------------------------------------------------------------------------------


async def test_deeply_nested_json_is_422(client: httpx.AsyncClient) -> None:
    deep = "[" * DEPTH + "]" * DEPTH
    r = await client.put("/v1/personalities/deep", content=deep, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "nests too deeply" in r.json()["detail"]
    # FastAPI's own JSON decoding, on a route with a body model
    r = await client.post("/v1/personalities/joe/speech", content='{"text": ' + deep + "}",
                          headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "nests too deeply" in r.json()["detail"]
    r = await client.post("/v1/audio/speech", content='{"input": ' + deep + "}",
                          headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert "nests too deeply" in r.json()["error"]["message"]


@pytest.mark.parametrize("deep", [
    "[" * DEPTH + "]" * DEPTH,  # flow style
    "activeProvider: " + "[" * DEPTH + "]" * DEPTH,
    "- " * DEPTH + "x",  # block style, compact
    "a:\n" + "".join("  " * i + "b:\n" for i in range(1, 200)),  # block style, indented
    # Unterminated and deep enough that libyaml's C composer would overflow the thread's
    # stack and kill the replica (it did, behind the real proxy), not raise.
    "a: " + "[" * 30_000,
])
async def test_deeply_nested_yaml_is_422(client: httpx.AsyncClient, deep: str) -> None:
    r = await client.put("/v1/personalities/deep", content=deep, headers={"content-type": "application/yaml"})
    assert r.status_code == 422, r.text
    assert "nests too deeply (more than 64 levels)" in r.json()["detail"]
    assert (await client.get("/v1/personalities/deep")).status_code == 404


async def test_yaml_aliases_are_refused(client: httpx.AsyncClient) -> None:
    # A billion laughs in a few lines: safe to load (shared nodes), not to walk.
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    r = await client.put("/v1/personalities/laughs", content=laughs, headers={"content-type": "application/yaml"})
    assert r.status_code == 422 and "YAML alias" in r.json()["detail"], r.text


async def test_a_late_validation_error_is_422(client: httpx.AsyncClient) -> None:
    r = await client.get("/test/late-validation")
    assert r.status_code == 422, r.text
    assert r.json()["detail"].startswith("n: ")


# --- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("adapter", "value"), [
    (PersonalityName, "alice\n"), (SampleId, "a1\n"), (LanguageCode, "en\n"),
])
def test_pydantic_patterns_refuse_a_trailing_newline(adapter: Any, value: str) -> None:
    TypeAdapter(adapter).validate_python(value.rstrip("\n"))
    with pytest.raises(ValidationError):
        TypeAdapter(adapter).validate_python(value)


def test_sample_name_checks_refuse_a_trailing_newline() -> None:
    with pytest.raises(InvalidSampleRequest):
        check_personality_name("joe\n")
    with pytest.raises(InvalidSampleRequest):
        check_sample_id("a1\n")


async def test_a_name_with_a_trailing_newline_is_never_accepted(client: httpx.AsyncClient) -> None:
    r = await client.put("/v1/personalities/alice%0A", json=SPEC)
    assert r.status_code == 422, r.text
    assert (await client.put("/v1/personalities/alice", json=SPEC)).status_code == 201  # the same, well named
    for path in ("/v1/personalities/joe%0A", "/v1/personalities/joe%0A/samples"):
        assert (await client.get(path)).status_code == 404
    # The personality exists, so the sample store judges the id, and refuses it as no id at all.
    r = await client.get("/v1/personalities/joe/samples/a1%0A")
    assert r.status_code == 422 and "is not a sample id" in r.json()["detail"], r.text
    assert (await client.delete("/v1/personalities/joe%0A")).status_code == 404
    assert (await client.get("/v1/personalities/joe")).status_code == 200


# --- request ids -----------------------------------------------------------------------------


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    ok = await client.get("/v1/personalities/joe")
    missing = await client.get("/v1/personalities/nobody")
    too_big = await client.post("/v1/audio/speech", content=b"a" * (BODY_LIMIT + 1),
                                headers={"content-type": "application/json"})
    ids = [r.headers.get("x-request-id") for r in (ok, missing, too_big)]
    assert [ok.status_code, missing.status_code, too_big.status_code] == [200, 404, 413]
    assert all(ids) and len(set(ids)) == 3


async def test_a_well_formed_request_id_is_honoured(client: httpx.AsyncClient) -> None:
    r = await client.get("/healthz", headers={"x-request-id": "trace-42.abc_DEF"})
    assert r.headers["x-request-id"] == "trace-42.abc_DEF"
    for bad in ("has space", "x" * 129, "a;b=c"):
        r = await client.get("/healthz", headers={"x-request-id": bad})
        assert r.headers["x-request-id"] not in (bad, "")


async def test_behind_the_serve_proxy_the_app_logs_its_id_and_leaves_the_header_to_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = IngressConfig(personalities={"directory": tmp_path})
    app = create_app(Replica(config, EngineBoard({})), behind_serve_proxy=True)
    app.add_api_route("/test/crash", crash)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
        with caplog.at_level(logging.INFO, logger="chorus.ingress.errors"):
            missing = await client.get("/v1/personalities/nobody", headers={"x-request-id": "from-proxy"})
            crashed = await client.get("/test/crash", headers={"x-request-id": "from-proxy-2"})
    # The proxy appends the header itself; a second one would read "id, id".
    assert "x-request-id" not in missing.headers and "x-request-id" not in crashed.headers
    assert any("from-proxy" in m and "'nobody' not found" in m for m in caplog.messages)
    assert "from-proxy-2" in crashed.json()["detail"]


async def test_errors_are_logged_with_the_request_id(client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="chorus.ingress.errors"):
        r = await client.get("/v1/personalities/nobody", headers={"x-request-id": "req-1"})
    assert r.headers["x-request-id"] == "req-1"
    assert any("req-1" in m and "'nobody' not found" in m for m in caplog.messages)


async def test_an_unexpected_error_is_500_with_the_id_and_no_details(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="chorus.ingress.errors"):
        r = await client.get("/test/crash", headers={"x-request-id": "req-2"})
    assert r.status_code == 500
    assert r.headers["x-request-id"] == "req-2"
    assert "/secret" not in r.text and "req-2" in r.json()["detail"]
    assert any("req-2" in rec.getMessage() and rec.exc_info for rec in caplog.records)


async def test_a_large_body_of_a_type_the_route_refuses_hears_415_not_413(client: httpx.AsyncClient) -> None:
    wav = b"RIFF" + b"\x00" * (BODY_LIMIT * 2)  # a bare audio body, over the JSON cap
    r = await client.post("/v1/personalities/joe/samples", content=wav, headers={"content-type": "audio/wav"})
    assert r.status_code == 415, r.text
    assert "multipart/form-data" in r.json()["detail"]
    assert (await client.get("/healthz")).status_code == 200


async def test_a_callers_path_and_id_cannot_forge_or_colour_a_log_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Security audit L-1: ESC and U+2028 from a path reached the log as they came, and behind
    the proxy an id like `x, key admin-key]` forged the line's key field."""
    config = IngressConfig(personalities={"directory": tmp_path})
    app = create_app(Replica(config, EngineBoard({})), behind_serve_proxy=True)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
        with caplog.at_level(logging.INFO, logger="chorus.ingress.errors"):
            await client.get("/v1/personalities/x%1b[31mFAKE%E2%80%A8INFO forged",
                             headers={"x-request-id": "x, key admin-key]"})
    # Only the ingress's own line: httpx logs the request too when INFO reaches the root.
    (line,) = [r.getMessage() for r in caplog.records if r.name == "chorus.ingress.errors" and "FAKE" in r.getMessage()]
    assert "\x1b" not in line and "\u2028" not in line
    assert "\\x1b[31mFAKE\\u2028INFO forged" in line
    assert "[request x%2C%20key%20admin-key%5D, key -]" in line
