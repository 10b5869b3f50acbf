"""Cloud quotas at the HTTP layer, without Ray: `create_app` over scripted cloud engines
(tests/support/engine_handles.py), counting in the embedded SQLite file or a real `redis-server`.
The counts must be exactly the characters each cloud engine was sent and answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chorus.app import build_app
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.quotas.providers import voice_class
from chorus.speech.board import EngineBoard
from deployments.base import EngineFailedError
from deployments.google_tts import GoogleTTSConfig
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine
from tests.support.redis_server import command, redis_server

NOVEMBER = datetime(2026, 11, 30, 23, 59, tzinfo=UTC)
DECEMBER = datetime(2026, 12, 1, 0, 0, 1, tzinfo=UTC)
STANDARD, NEURAL = "en-US-Standard-A", "en-US-Neural2-D"
# Two sentences of 23 characters; engines take at most 30 a call, so it goes as two pieces.
TEXT = "The first one is here. The second is here."
PIECES = ["The first one is here.", "The second is here."]


def spec(engine: str, voice: str | None = None) -> dict[str, Any]:
    cfg = {"voice": voice} if voice else {}
    return {"activeProvider": engine, "fallbackChain": ["piper"], "languages": {"primary": "en"},
            "providers": {engine: cfg, "piper": {}}}


PERSONALITIES = {
    "std": spec("google_tts", STANDARD), "neu": spec("google_tts", NEURAL), "plain": spec("google_tts"),
    "az": spec("azure_tts", "en-US-JennyNeural"), "ibm": spec("ibm_watson", "en-US_MichaelV3Voice"),
}


class CloudReplica:
    """One ingress replica over `root`: scripted Piper and the three cloud engines."""

    def __init__(self, root: Path, redis_url: str | None = None, **cloud_quotas: Any) -> None:
        folder = root / "personalities"
        folder.mkdir(parents=True, exist_ok=True)
        for name, body in PERSONALITIES.items():
            (folder / f"{name}.yaml").write_text(yaml.safe_dump(personality(name, body)))
        self.piper = ScriptedEngine("piper")
        self.google = ScriptedEngine("google_tts", voices=(STANDARD, NEURAL), max_characters=30)
        self.azure = ScriptedEngine("azure_tts", voices=("en-US-JennyNeural",), max_characters=30)
        self.ibm = ScriptedEngine("ibm_watson", voices=("en-US_MichaelV3Voice",), max_characters=30)
        engines = {e.engine_id: e for e in (self.piper, self.google, self.azure, self.ibm)}
        config = IngressConfig(
            personalities={"directory": folder}, samples={"directory": root / "samples"},
            timeouts={e: 5 for e in engines}, redis_url=redis_url, cloud_quotas=cloud_quotas,
            cache={"enabled": False},  # every request reaches an engine and is billed (cached ones are not)
        )
        self.replica = Replica(config, EngineBoard({e: LocalHandle(x) for e, x in engines.items()}))
        self.now = NOVEMBER
        self.replica.meter.clock = lambda: self.now
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.replica)),
                                        base_url="http://127.0.0.1")

    async def speak(self, name: str, text: str = TEXT, **body: Any) -> httpx.Response:
        r = await self.client.post(f"/v1/personalities/{name}/speech", json={"text": text, **body})
        assert r.status_code == 200, r.text
        return r

    async def quotas(self) -> dict[tuple[str, str], dict[str, Any]]:
        r = await self.client.get("/v1/quotas")
        assert r.status_code == 200, r.text
        return {(q["engine"], q["voiceClass"]): q for q in r.json()["quotas"]}

    async def used(self) -> dict[tuple[str, str], int]:
        return {k: q["used"] for k, q in (await self.quotas()).items()}

    async def flagged(self) -> dict[str, list[str]]:
        r = await self.client.get("/v1/providers")
        return {p["engine"]: p["quota_exhausted"] for p in r.json()["providers"]}


@pytest.fixture
async def replicas(tmp_path: Path) -> AsyncIterator[Any]:
    made: list[CloudReplica] = []

    def make(root: Path = tmp_path, redis_url: str | None = None, **cloud_quotas: Any) -> CloudReplica:
        made.append(CloudReplica(root, redis_url, **cloud_quotas))
        return made[-1]

    yield make
    for r in made:
        await r.client.aclose()


def sent(engine: ScriptedEngine) -> int:
    return sum(len(r.text) for r in engine.requests)


# --- counting ---------------------------------------------------------------------------------


async def test_each_piece_sent_and_answered_counts_in_its_engine_and_voice_class(replicas: Any) -> None:
    api = replicas()
    await api.speak("std")
    await api.speak("neu", "Short one.")
    await api.speak("az")
    await api.speak("ibm", "Hi.")
    assert [r.text for r in api.google.requests[:2]] == PIECES  # packed into two calls
    counted = api.replica.meter.last_used()  # the metrics gauge's view: what this replica counted
    used = await api.used()
    assert used == {("google_tts", "standard"): len(PIECES[0]) + len(PIECES[1]), ("google_tts", "neural"): 10,
                    ("azure_tts", "neural"): sent(api.azure), ("ibm_watson", "standard"): 3}
    assert sent(api.azure) == 41 and api.piper.requests == []  # Piper is free: never metered
    assert sorted(counted) == sorted((e, c, n) for (e, c), n in used.items() if n)


async def test_a_failed_call_is_not_billed_and_a_stream_counts_its_pieces(replicas: Any) -> None:
    api = replicas()
    api.google.error = EngineFailedError("503 from Google", "google_tts")
    r = await api.speak("neu")
    assert r.headers["x-chorus-provider"] == "piper"
    api.google.error = None
    r = await api.speak("std", stream=True)
    assert r.headers["x-chorus-provider"] == "google_tts"
    used = await api.used()
    assert used[("google_tts", "neural")] == 0 and used[("google_tts", "standard")] == 41


async def test_quotas_show_allowances_remaining_and_the_months_end(replicas: Any) -> None:
    api = replicas(google_tts={"neural": 50, "policy": "warn"})
    await api.speak("neu", "Short one.")
    quotas = await api.quotas()
    assert quotas[("google_tts", "neural")] == {
        "engine": "google_tts", "voiceClass": "neural", "used": 10, "allowed": 50, "remaining": 40,
        "resetsAt": "2026-12-01T00:00:00Z", "policy": "warn", "exhausted": False,
    }
    # The defaults of the original design document.
    assert {k: q["allowed"] for k, q in quotas.items() if k != ("google_tts", "neural")} == {
        ("google_tts", "standard"): 1_000_000, ("azure_tts", "neural"): 500_000, ("ibm_watson", "standard"): 10_000}
    assert {q["policy"] for k, q in quotas.items() if k[0] != "google_tts"} == {"enforce"}


async def test_a_personality_without_a_voice_counts_in_its_engines_default_voice_class(tmp_path: Path) -> None:
    built = build_app({"personalities": {"directory": str(tmp_path)}, "samples": {"directory": str(tmp_path)},
                       "engines": {"piper": {}, "google_tts": {"config": {"default_voice": STANDARD}}}})
    assert built._bound_deployment.init_args[1].default_voices == {"google_tts": STANDARD}
    # Unknown default (a replica built by hand): the dearest class, the safe side.
    plain = CloudReplica(tmp_path)
    await plain.speak("plain", "Short one.")
    assert (await plain.used())[("google_tts", "neural")] == 10
    await plain.client.aclose()
    # The shipped default voice is neural: what an unconfigured engine really bills.
    assert voice_class("google_tts", GoogleTTSConfig.model_fields["default_voice"].default) == "neural"


@pytest.mark.parametrize("voice,cls", [
    ("en-US-Standard-A", "standard"), ("en-US-Neural2-D", "neural"), ("en-US-Wavenet-B", "neural"),
    ("en-US-Studio-O", "neural"), ("en-US-Chirp3-HD-Achernar", "neural"),
])
def test_google_voice_classes_come_from_the_voice_name(voice: str, cls: str) -> None:
    assert voice_class("google_tts", voice) == cls
    assert voice_class("azure_tts", "en-US-JennyNeural") == "neural"


# --- policy -----------------------------------------------------------------------------------


async def test_enforce_skips_an_exhausted_class_with_quota_exhausted_and_falls_back(replicas: Any) -> None:
    api = replicas(google_tts={"neural": 30})
    r = await api.speak("neu")  # 41 of 30: admitted while any character was left
    assert r.headers["x-chorus-provider"] == "google_tts"
    r = await api.speak("neu")
    assert r.headers["x-chorus-provider"] == "piper"
    assert r.headers["x-chorus-fallback"] == 'google_tts;outcome=skipped;reason="quota exhausted"'
    assert len(api.google.requests) == 2  # the skipped utterance never reached Google
    # Another class of the same engine still speaks.
    assert (await api.speak("std")).headers["x-chorus-provider"] == "google_tts"
    quota = (await api.quotas())[("google_tts", "neural")]
    assert (quota["used"], quota["remaining"], quota["exhausted"]) == (41, 0, True)
    assert (await api.flagged())["google_tts"] == ["neural"]


async def test_warn_keeps_speaking_and_flags_the_engine(replicas: Any) -> None:
    api = replicas(google_tts={"neural": 30, "policy": "warn"})
    for _ in range(2):
        r = await api.speak("neu")
        assert r.headers["x-chorus-provider"] == "google_tts" and "x-chorus-fallback" not in r.headers
    quota = (await api.quotas())[("google_tts", "neural")]
    assert (quota["used"], quota["exhausted"], quota["policy"]) == (82, True, "warn")
    assert (await api.flagged()) == {"piper": [], "google_tts": ["neural"], "azure_tts": [], "ibm_watson": []}


async def test_a_new_utc_month_starts_from_zero(replicas: Any) -> None:
    api = replicas(ibm_watson={"standard": 3})
    await api.speak("ibm", "Hi.")
    assert (await api.speak("ibm", "Hi.")).headers["x-chorus-provider"] == "piper"
    api.now = DECEMBER
    assert (await api.speak("ibm", "Hi.")).headers["x-chorus-provider"] == "ibm_watson"
    quota = (await api.quotas())[("ibm_watson", "standard")]
    assert (quota["used"], quota["resetsAt"]) == (3, "2027-01-01T00:00:00Z")


# --- storage ----------------------------------------------------------------------------------


async def test_the_embedded_count_survives_a_restart(replicas: Any, tmp_path: Path) -> None:
    first = replicas(azure_tts={"neural": 60})
    await first.speak("az")
    await first.client.aclose()
    again = replicas()  # a new Chorus over the same directory
    assert (await again.used())[("azure_tts", "neural")] == 41
    assert (tmp_path / "samples" / ".cloud-quotas.sqlite3").is_file()


async def test_replicas_on_one_machine_count_exactly_together(replicas: Any) -> None:
    a, b = replicas(), replicas()
    await asyncio.gather(*(r.speak("std") for r in (a, b) for _ in range(10)))
    assert sent(a.google) + sent(b.google) == 20 * 41
    assert (await a.used())[("google_tts", "standard")] == 20 * 41


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with redis_server(tmp_path_factory.mktemp("redis")) as url:
        yield url


async def test_replicas_sharing_redis_count_exactly_and_enforce_together(
    replicas: Any, tmp_path: Path, redis_url: str
) -> None:
    command(int(redis_url.rsplit(":", 1)[1].split("/")[0]), "FLUSHALL")
    # Separate directories: only Redis joins them.
    a = replicas(tmp_path / "a", redis_url, google_tts={"neural": 41 * 30})
    b = replicas(tmp_path / "b", redis_url, google_tts={"neural": 41 * 30})
    await asyncio.gather(*(r.speak("neu") for r in (a, b) for _ in range(15)))
    assert (await a.used())[("google_tts", "neural")] == (await b.used())[("google_tts", "neural")] == 30 * 41
    assert not (tmp_path / "a" / "samples" / ".cloud-quotas.sqlite3").exists()
    r = await b.speak("neu")
    assert r.headers["x-chorus-provider"] == "piper"  # a's characters used up b's allowance too


async def test_unreadable_counts_are_503_on_quotas_and_close_enforced_classes(replicas: Any, tmp_path: Path) -> None:
    """Security audit L-13: with the counts unreadable the plan went on without them, so a
    key without budgets spent an enforced free tier past its end. Enforced classes are now
    skipped until the counts come back (speech falls back); `warn` classes speak."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}"
    (tmp_path / "dead").mkdir()
    api = replicas(tmp_path / "dead", dead, google_tts={"neural": 1_000_000})
    r = await api.client.get("/v1/quotas")
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "quotas_unavailable" and r.headers["Retry-After"] == "5"
    assert "127.0.0.1" not in r.text
    spoken = await api.speak("neu")
    assert spoken.headers["x-chorus-provider"] == "piper"
    assert 'google_tts;outcome=skipped;reason="its quota cannot be counted now"' in spoken.headers["x-chorus-fallback"]
    (tmp_path / "warn").mkdir()
    warned = replicas(tmp_path / "warn", dead, google_tts={"neural": 1_000_000, "policy": "warn"})
    assert (await warned.speak("neu")).headers["x-chorus-provider"] == "google_tts"