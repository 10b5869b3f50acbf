"""The dashboard's files as the ingress serves them: public, complete, locked down (CSP),
and written so that API data never becomes markup."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest

from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.ingress.routes.dashboard import STATIC
from chorus.speech.board import EngineBoard
from tests.support.engine_handles import LocalHandle, ScriptedEngine


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "personalities").mkdir()
    config = IngressConfig(personalities={"directory": tmp_path / "personalities"},
                           samples={"directory": tmp_path / "samples"}, timeouts={"piper": 5}, auth={})
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper"))}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)), base_url="http://127.0.0.1") as c:
        yield c


async def test_the_page_loads_without_a_key_under_a_strict_policy(client: httpx.AsyncClient) -> None:
    # Keys are on (auth={}) and none is sent: the page itself is public.
    r = await client.get("/dashboard")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/dashboard/app.js">' in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # The data behind it is not.
    assert (await client.get("/v1/providers")).status_code == 401


async def test_every_file_the_page_and_its_modules_name_is_served(client: httpx.AsyncClient) -> None:
    page = (STATIC / "index.html").read_text()
    wanted = set(re.findall(r'(?:src|href)="/dashboard/([\w.-]+)"', page))
    for script in STATIC.glob("*.js"):
        wanted |= set(re.findall(r'from "\./([\w.-]+)"', script.read_text()))
    assert {"app.js", "app.css", "api.js", "performance.js"} <= wanted
    for name in wanted:
        r = await client.get(f"/dashboard/{name}")
        assert r.status_code == 200, name
        kind = {"js": "text/javascript", "css": "text/css"}[name.rsplit(".", 1)[1]]
        assert r.headers["content-type"].startswith(kind), name


async def test_only_the_shipped_files_are_served(client: httpx.AsyncClient) -> None:
    assert (await client.get("/dashboard/nope.js")).status_code == 404
    # A path with a slash in it matches no public route: the guard wants a key before it says more.
    for path in ("/dashboard/..%2Fapi.py", "/dashboard/%2E%2E%2Fingress.py", "/dashboard/../api.py"):
        r = await client.get(path)
        assert r.status_code in {401, 404}, path
        assert "import" not in r.text


def test_scripts_never_turn_data_into_markup() -> None:
    """Names, notes and engine reasons go in as text (`el` in dom.js); the browser test
    shows one `<script>` name staying inert, this keeps every other path from parsing HTML."""
    sinks = re.compile(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|createContextualFragment|\beval\(")
    for script in STATIC.glob("*.js"):
        assert not sinks.search(script.read_text()), script.name


def test_a_wheel_ships_every_dashboard_file() -> None:
    """A non-editable install has only the package data pyproject names (checked by building
    a wheel once; this keeps a new kind of file from being left out)."""
    pyproject = tomllib.loads((Path(__file__).resolve().parents[3] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["chorus"]
    for path in STATIC.iterdir():
        assert any(fnmatch(f"dashboard/{path.name}", p) for p in patterns), path.name


async def test_the_links_are_the_configured_ones_for_any_key(tmp_path: Path) -> None:
    links = {"rayDashboard": "http://127.0.0.1:8265", "trace": "https://jaeger.example/trace/{trace_id}"}
    (tmp_path / "personalities").mkdir()
    config = IngressConfig(personalities={"directory": tmp_path / "personalities"},
                           samples={"directory": tmp_path / "samples"}, links=links)
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper"))}))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(replica)), base_url="http://127.0.0.1") as c:
        assert (await c.get("/v1/dashboard/links")).json() == {**links, "engineTraces": None}


@pytest.mark.parametrize(("links", "said"), [
    ({"rayDashboard": "javascript:alert(1)"}, "not an http(s) URL"),
    ({"trace": "https://jaeger.example/trace/"}, "must contain {trace_id}"),
    ({"engineTraces": "https://jaeger.example/search"}, "must contain {engine}"),
    ({"grafana": "https://grafana.example"}, "Extra inputs are not permitted"),
])
def test_a_link_that_could_not_work_is_refused_at_start(tmp_path: Path, links: dict[str, str], said: str) -> None:
    with pytest.raises(ValueError, match=re.escape(said)):
        IngressConfig(personalities={"directory": tmp_path}, links=links)


def test_the_engines_view_links_to_the_application_chorus_deploys() -> None:
    """Each engine's replicas page in the Ray dashboard is under the Serve application's name."""
    from chorus.deploy import APP_NAME

    assert f'const APP = "{APP_NAME}";' in (STATIC / "engines.js").read_text()
