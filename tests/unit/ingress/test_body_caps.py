"""Bodies are capped by the route they are for, never by the type the caller claims
(security audit H-3), and only HTTP reaches the app (L-4, L-5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from chorus.common.constants import MAX_SAMPLE_BYTES
from tests.support.ingress_app import Api

CHUNK = 64 * 1024
SMALL_CAP = 64 * 1024  # IngressArgs.max_body_bytes' default


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES)  # the uploads' cap is the real one, 48 MiB
    async with api.client:
        yield api


class Body:
    """A chunked body of `chunks` x 64 KiB that counts what the server pulled."""

    def __init__(self, chunks: int) -> None:
        self.chunks, self.pulled = chunks, 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.pulled += 1
            yield b"x" * CHUNK


NOT_UPLOADS = [
    ("POST", "/v1/audio/speech"),
    ("POST", "/v1/personalities/joe/speech"),
    ("PUT", "/v1/personalities/zed"),
    ("DELETE", "/v1/cache"),
    ("POST", "/v1/no-such-route"),
]
CLAIMED = ["application/octet-stream", "application/json, text/plain", "audio/wav", "multipart/form-data; boundary=x"]


@pytest.mark.parametrize("ctype", CLAIMED)
@pytest.mark.parametrize("method,path", NOT_UPLOADS)
async def test_a_route_that_takes_no_upload_reads_no_more_than_the_small_cap(
    api: Api, method: str, path: str, ctype: str,
) -> None:
    body = Body(64)  # 4 MiB, far under the uploads' cap
    r = await api.client.request(method, path, content=body, headers={"content-type": ctype})
    assert body.pulled * CHUNK <= SMALL_CAP + CHUNK  # never read past the cap
    if path not in ("/v1/cache", "/v1/no-such-route"):  # one that reads its body: refused once past the cap
        assert r.status_code == 413, r.text
        assert r.json()["limit"] == SMALL_CAP


@pytest.mark.parametrize("method,path", NOT_UPLOADS)
async def test_a_declared_length_over_the_small_cap_is_refused_before_reading(api: Api, method: str, path: str) -> None:
    r = await api.client.request(method, path, content=b"x" * (SMALL_CAP + 1),
                                 headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413 and r.json()["limit"] == SMALL_CAP


async def test_the_upload_routes_take_bodies_up_to_the_upload_cap(api: Api) -> None:
    """A 1 MiB form is over the small cap and reaches the upload routes, which read it."""
    noise = b"RIFF" + b"\0" * (1 << 20)
    for path in ("/v1/personalities/joe/samples", "/v1/personalities/joe/samples/check", "/v1/clone"):
        r = await api.client.post(path, files={"file": ("a.wav", noise, "audio/wav")}, data={"text": "Hello."})
        assert r.status_code != 413, (path, r.text)
        assert r.status_code in (415, 422), (path, r.text)  # read, and refused as not a recording


def test_a_websocket_is_closed_before_the_app(tmp_path: Path) -> None:
    api = Api(tmp_path)
    with TestClient(api.client._transport.app) as client:  # type: ignore[attr-defined]
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect("/v1/personalities/joe/speech"):
                pass
    assert closed.value.code == 1008


async def test_a_trailing_slash_is_not_redirected(api: Api) -> None:
    r = await api.client.get("/v1/stats/")
    assert r.status_code == 404 and "location" not in r.headers
