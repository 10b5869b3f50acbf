"""Keys off is loopback only (security audit H-1, M-6): refused on another address wherever
Chorus is built, and on loopback each request must name this machine and come from no
other site's page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

import chorus.app
from chorus.auth.exposure import ExposureRefused, check, is_loopback
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.speech.board import EngineBoard
from tests.support.engine_handles import LocalHandle, ScriptedEngine


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_addresses(host: str) -> None:
    assert is_loopback(host)
    check(keys=False, insecure_no_auth=False, host=host)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.0.0.5", "192.0.2.7", "chorus.example.com", "localhost.evil"])
def test_keys_off_elsewhere_is_refused_unless_keys_or_the_deployer_says_so(host: str) -> None:
    with pytest.raises(ExposureRefused, match=f"refusing to serve {host} without API keys"):
        check(keys=False, insecure_no_auth=False, host=host)
    check(keys=True, insecure_no_auth=False, host=host)
    check(keys=False, insecure_no_auth=True, host=host)


def test_build_app_refuses_keys_off_when_serve_listens_beyond_loopback(monkeypatch: pytest.MonkeyPatch,
                                                                        tmp_path: Path) -> None:
    """`build_app` asks the running Serve controller where its proxies listen."""
    args = {"personalities": {"directory": str(tmp_path)}}
    monkeypatch.setattr(chorus.app, "serving_host", lambda: "0.0.0.0")
    with pytest.raises(ExposureRefused):
        chorus.app.build_app(args)
    chorus.app.build_app({**args, "insecure_no_auth": True})
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys: []\n")
    chorus.app.build_app({**args, "auth": {"keysFile": str(keys)}})
    monkeypatch.setattr(chorus.app, "serving_host", lambda: "127.0.0.1")
    chorus.app.build_app(args)


def app(tmp_path: Path, **config: object) -> httpx.AsyncClient:
    (tmp_path / "personalities").mkdir(parents=True, exist_ok=True)
    replica = Replica(IngressConfig(personalities={"directory": tmp_path / "personalities"},
                                    samples={"directory": tmp_path / "s"}, **config),  # type: ignore[arg-type]
                      EngineBoard({"piper": LocalHandle(ScriptedEngine("piper"))}))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)), base_url="http://127.0.0.1")


@pytest.fixture
async def open_app(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with app(tmp_path) as client:
        yield client


@pytest.mark.parametrize("host", ["attacker.example:8000", "attacker.example", "10.0.0.5:8000", "[2001:db8::1]:8000"])
async def test_a_rebound_name_is_misdirected(open_app: httpx.AsyncClient, host: str) -> None:
    for method, path in (("GET", "/v1/personalities"), ("POST", "/v1/personalities/default/samples")):
        r = await open_app.request(method, path, headers={"host": host})
        assert r.status_code == 421, r.text
        assert r.json()["code"] == "misdirected_request"


@pytest.mark.parametrize("origin", ["https://attacker.example", "http://attacker.example:8000", "null"])
async def test_a_page_of_another_site_is_refused(open_app: httpx.AsyncClient, origin: str) -> None:
    r = await open_app.post("/v1/personalities/default/samples", headers={"origin": origin},
                            files={"file": ("a.wav", b"RIFF", "audio/wav")})
    assert r.status_code == 403 and r.json()["code"] == "foreign_origin"


@pytest.mark.parametrize("host,origin", [
    ("127.0.0.1:8000", None), ("localhost:8000", "http://localhost:8000"), ("[::1]:8000", "http://[::1]:8000"),
    ("127.0.0.1:8000", "http://127.0.0.1:8000"),
])
async def test_this_machine_and_its_own_pages_pass(open_app: httpx.AsyncClient, host: str, origin: str | None) -> None:
    headers = {"host": host} | ({"origin": origin} if origin else {})
    assert (await open_app.get("/v1/personalities", headers=headers)).status_code == 200


async def test_with_keys_or_a_guard_in_front_other_names_pass(tmp_path: Path) -> None:
    async with app(tmp_path / "a", insecure_no_auth=True) as client:
        r = await client.get("/v1/personalities", headers={"host": "chorus.internal", "origin": "https://ui.internal"})
        assert r.status_code == 200
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys: []\n")
    async with app(tmp_path / "b", auth={"keysFile": str(keys)}) as client:
        assert (await client.get("/healthz", headers={"host": "chorus.internal"})).status_code == 200
