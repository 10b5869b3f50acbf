"""What clients see (docs/security.md): engines' failure reasons as a category and a fixed
message, headers in visible ASCII, listings without paths for callers without `admin`, a
different speaker refused unless an admin forces it, and who did what in the log. The app
runs with API keys on, over in-process engines (tests/support/engine_handles.py)."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chorus.auth.keys import KeyEntry
from chorus.common.constants import MAX_SAMPLE_BYTES
from chorus.common.safe_text import header_value, public_source, scrubbed
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.samples.speaker import SAME_SPEAKER_MIN_SIMILARITY
from chorus.speech.attempts import FAILED, UNAVAILABLE
from chorus.speech.board import EngineBoard
from deployments.base import EngineFailedError, EngineUnavailableError, Health
from tests.support import recordings as rec
from tests.support.chorus_app import personality
from tests.support.engine_handles import LocalHandle, ScriptedEngine

JOE = {
    "activeProvider": "piper",
    "fallbackChain": ["google_tts"],
    "providers": {"piper": {}, "google_tts": {}},
    "voiceSamples": [{"id": "archive", "url": "file:///srv/voices/joe/archive.wav"},
                     {"id": "web", "url": "https://example.com/joe.wav"}],
}

# Engines' own reasons as they are today: model files, provider endpoints, buckets, and a
# provider's text with a line break in it.
MODEL_PATH = "/home/x/model.pth"
ENDPOINT = "https://texttospeech.googleapis.com/v1/text:synthesize"
BUCKET = "s3://voice-bucket/joe/archive.wav"
LEAKS = ("/home/x", "model.pth", "googleapis", "voice-bucket", "s3://", "Injected")

KEYS = {
    "speaker": ["speak", "samples", "clone"],
    "boss": ["admin"],
}


def secret(name: str) -> str:
    return f"chorus_test-key-of-{name}-0123456789"


class Api:
    def __init__(self, root: Path, *, keys: bool = True) -> None:
        (root / "personalities").mkdir()
        (root / "personalities" / "joe.yaml").write_text(yaml.safe_dump(personality("joe", JOE)))
        self.root = root
        self.piper = ScriptedEngine("piper", languages=("en",))
        self.google = ScriptedEngine("google_tts", languages=("en",), sample_rate=24_000, variant="neural2")
        config = IngressConfig(
            personalities={"directory": root / "personalities"},
            samples={"directory": root / "samples", "max_upload_bytes": MAX_SAMPLE_BYTES},
            timeouts={"piper": 5, "google_tts": 5},
            auth={"keysEnv": None} if keys else None,
        )
        board = EngineBoard({"piper": LocalHandle(self.piper), "google_tts": LocalHandle(self.google)})
        self.replica = Replica(config, board)
        if self.replica.keys is not None:
            self.replica.keys.replace("test", [
                KeyEntry(name=name, key=secret(name), scopes=scopes).api_key() for name, scopes in KEYS.items()
            ])
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.replica)),
                                        base_url="http://127.0.0.1")

    def as_(self, name: str) -> dict[str, str]:
        return {"x-api-key": secret(name)}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    api = Api(tmp_path)
    async with api.client:
        yield api


def assert_no_leak(text: str) -> None:
    for leak in LEAKS:
        assert leak not in text, (leak, text)


def visible_ascii(value: str) -> bool:
    return all(" " <= c <= "~" for c in value)


# --- the text helpers -------------------------------------------------------------------------


def test_header_values_are_visible_ascii() -> None:
    assert header_value("line one\r\nX-Evil: yes\x00 — café ☃") == "line one X-Evil: yes ? cafe ?"
    assert header_value("x" * 500) == "x" * 300


def test_scrubbing_cuts_paths_and_urls() -> None:
    said = scrubbed(f"cannot load {MODEL_PATH} (see {ENDPOINT}, {BUCKET}); C:\\models\\x.pth; 60/minute")
    assert said == "cannot load model.pth (see <url> <url> x.pth; 60/minute"
    assert public_source("/srv/personalities/joe.yaml") == "joe.yaml"
    assert public_source("voices/joe") == "voices/joe"  # a Kubernetes namespace/name


# --- engine failures ------------------------------------------------------------------------


async def test_failure_reasons_are_a_category_and_a_fixed_message(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api.piper.error = EngineUnavailableError(f"cannot load {MODEL_PATH}: No such file", "piper")
    api.google.error = EngineFailedError(f"{ENDPOINT} answered 500: {{\"error\": \"boom\"}}\r\nInjected: 1", "google_tts")
    caplog.set_level(logging.INFO, logger="chorus")
    for body in ({"text": "Hello."}, {"text": "Hello.", "stream": True}):
        r = await api.client.post("/v1/personalities/joe/speech", json=body, headers=api.as_("speaker"))
        assert r.status_code == 503, r.text
        assert r.json()["attempts"] == [
            {"engine": "piper", "outcome": "unavailable", "reason": UNAVAILABLE},
            {"engine": "google_tts", "outcome": "failed", "reason": FAILED},
        ]
        assert_no_leak(r.text)
    # The whole story is in the log, under the id the client got back and the key's name.
    logged = [m.getMessage() for m in caplog.records if "-> 503" in m.getMessage()][-1]
    assert MODEL_PATH in logged and ENDPOINT in logged
    assert r.headers["x-request-id"] in logged and "key speaker" in logged
    assert secret("speaker") not in caplog.text

    r = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "joe", "input": "Hi."},
                              headers=api.as_("speaker"))
    assert r.status_code == 503 and r.json()["error"]["type"] == "server_error"
    assert_no_leak(r.text)


async def test_the_fallback_header_is_safe_and_the_log_has_the_detail(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api.piper.error = EngineUnavailableError(f"sample {BUCKET} unreadable\r\nInjected: 1", "piper")
    api.google.variant = "neural\r\nInjected: 1 — ünïcode"
    caplog.set_level(logging.INFO, logger="chorus")
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": "Hello."}, headers=api.as_("speaker"))
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-fallback"] == f'piper;outcome=unavailable;reason="{UNAVAILABLE}"'
    assert r.headers["x-chorus-variant"] == "neural Injected: 1 ? unicode"
    assert all(visible_ascii(v) for v in r.headers.values())
    assert "injected" not in {k.lower() for k in r.headers}
    logged = next(m.getMessage() for m in caplog.records if "spoke after" in m.getMessage())
    assert BUCKET in logged and r.headers["x-request-id"] in logged and "key speaker" in logged


async def test_a_reason_the_engine_vouches_for_still_reaches_the_header_as_visible_ascii(api: Api) -> None:
    api.piper.error = EngineUnavailableError("x", "piper", public='voice "joe"\r\nnot loaded — try later')
    r = await api.client.post("/v1/personalities/joe/speech", json={"text": "Hello."}, headers=api.as_("speaker"))
    assert r.headers["x-chorus-fallback"] == 'piper;outcome=unavailable;reason="voice \\"joe\\" not loaded ? try later"'


async def test_provider_health_details_are_for_admins(api: Api) -> None:
    api.google.healthy = Health(healthy=False, reason=f"credentials rejected by {ENDPOINT} (403: {{...}})")

    async def google_health(key: str) -> dict[str, Any]:
        providers = (await api.client.get("/v1/providers", headers=api.as_(key))).json()["providers"]
        return next(p["health"] for p in providers if p["engine"] == "google_tts")

    shown = await google_health("speaker")
    assert shown["healthy"] is False and shown["reason"].startswith("unhealthy")
    assert_no_leak(str(shown))
    assert ENDPOINT in (await google_health("boss"))["reason"]
    ready = await api.client.get("/readyz")  # public: no key, no details (audit L-12)
    assert set(ready.json()) == {"ready", "personalitiesLoaded", "keysStale"}
    assert_no_leak(ready.text)
    boss = (await api.client.get("/readyz", headers=api.as_("boss"))).json()
    assert boss["engines"]["google_tts"]["healthy"] is False and ENDPOINT in boss["engines"]["google_tts"]["reason"]


# --- listings -------------------------------------------------------------------------------


async def test_listings_show_no_paths_without_admin(api: Api) -> None:
    (api.root / "personalities" / "broken.yaml").write_text("spec: [")
    (api.root / "personalities" / "zz-joe.yaml").write_text(yaml.safe_dump(personality("joe", JOE)))
    api.replica.store.rescan()
    root = str(api.root)

    listing = await api.client.get("/v1/personalities", headers=api.as_("speaker"))
    assert listing.status_code == 200, listing.text
    assert root not in listing.text and "file://" not in listing.text and "/srv/voices" not in listing.text
    joe = listing.json()["items"][0]
    assert joe["status"]["source"] == "joe.yaml"
    assert joe["spec"]["voiceSamples"] == [{"id": "web", "url": "https://example.com/joe.wav", "stored": False,
                                            "language": "en"}]
    assert {p["source"] for p in listing.json()["problems"]} == {"broken.yaml", "zz-joe.yaml"}
    assert any("joe.yaml" in p["error"] for p in listing.json()["problems"])  # the conflict names the file
    one = await api.client.get("/v1/personalities/joe", headers=api.as_("speaker"))
    assert root not in one.text and one.json()["status"]["source"] == "joe.yaml"

    listing = await api.client.get("/v1/personalities", headers=api.as_("boss"))
    assert listing.json()["items"][0]["status"]["source"] == str(api.root / "personalities" / "joe.yaml")
    assert "file:///srv/voices/joe/archive.wav" in listing.text and root in listing.json()["problems"][0]["source"]


async def test_sample_urls_lose_their_credentials_without_admin(api: Api) -> None:
    """Security audit M-3: a signed or password-bearing sample URL went to every speak key."""
    secret = "https://alice:s3cret@samples.example.com:8443/a.wav?X-Amz-Signature=deadbeef&token=tok123#frag"
    spec = {**JOE, "voiceSamples": [{"id": "web", "url": secret}]}
    assert (await api.client.put("/v1/personalities/joe", json=spec, headers=api.as_("boss"))).status_code == 200
    speaker = await api.client.get("/v1/personalities/joe", headers=api.as_("speaker"))
    assert speaker.json()["spec"]["voiceSamples"][0]["url"] == "https://samples.example.com:8443/a.wav"
    for leak in ("alice", "s3cret", "deadbeef", "tok123", "frag"):
        assert leak not in speaker.text
    boss = await api.client.get("/v1/personalities/joe", headers=api.as_("boss"))
    assert boss.json()["spec"]["voiceSamples"][0]["url"] == secret


async def test_without_keys_the_caller_is_the_local_admin(tmp_path: Path) -> None:
    api = Api(tmp_path, keys=False)
    async with api.client:
        one = await api.client.get("/v1/personalities/joe")
        assert one.json()["status"]["source"] == str(tmp_path / "personalities" / "joe.yaml")


# --- speaker mismatch -----------------------------------------------------------------------


def recording(kind: str) -> dict[str, Any]:
    recs = rec.recordings()
    audio = {
        "first": recs.clean().samples,
        "same": recs.clean_other_text().samples,
        "other": rec.other_speaker(recs.clean_other_text()),
    }[kind]
    return {"file": (f"{kind}.wav", rec.encode(audio, recs.clean().rate))}


async def test_a_different_speaker_is_refused_with_the_score_unless_an_admin_forces_it(
    api: Api, caplog: pytest.LogCaptureFixture,
) -> None:
    c, speaker, boss = api.client, api.as_("speaker"), api.as_("boss")
    caplog.set_level(logging.INFO, logger="chorus")
    r = await c.post("/v1/personalities/joe/samples", files=recording("first"), data={"id": "first"}, headers=speaker)
    assert r.status_code == 201, r.text
    upload_log = next(m.getMessage() for m in caplog.records if "uploaded sample" in m.getMessage())
    size = len(recording("first")["file"][1])
    assert re.search(rf"'first' to 'joe': {size} bytes, 7\.\d s \[request \S+, key speaker\]", upload_log), upload_log

    r = await c.post("/v1/personalities/joe/samples", files=recording("other"), data={"id": "other"}, headers=speaker)
    assert r.status_code == 422, r.text
    body = r.json()
    assert body["problem"] == "speaker_mismatch" and body["similarity"] < SAME_SPEAKER_MIN_SIMILARITY
    assert "first (similarity" in body["detail"] and "force=true" in body["detail"]
    check = next(c for c in body["checks"] if c["name"] == "speaker_consistency")
    assert check["severity"] == "hard" and not check["passed"] and check["value"] == body["similarity"]
    assert [s.id for s in api.replica.samples.store.list("joe")] == ["first"]  # nothing stored

    # The same speaker needs no force.
    r = await c.post("/v1/personalities/joe/samples", files=recording("same"), data={"id": "same"}, headers=speaker)
    assert r.status_code == 201, r.text

    r = await c.post("/v1/personalities/joe/samples", files=recording("other"), data={"id": "other", "force": "true"},
                     headers=speaker)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"] and "'speaker'" in r.json()["detail"], r.text
    r = await c.post("/v1/personalities/joe/samples", files=recording("other"), data={"id": "other", "force": "maybe"},
                     headers=boss)
    assert r.status_code == 422 and "force" in r.json()["detail"]

    r = await c.post("/v1/personalities/joe/samples", files=recording("other"), data={"id": "other", "force": "true"},
                     headers=boss)
    assert r.status_code == 201, r.text
    check = next(c for c in r.json()["report"]["checks"] if c["name"] == "speaker_consistency")
    assert check["severity"] == "warning" and not check["passed"]
    assert any("(forced)" in m.getMessage() and "key boss" in m.getMessage() for m in caplog.records)
    assert secret("speaker") not in caplog.text and secret("boss") not in caplog.text


async def test_without_keys_force_needs_no_key(tmp_path: Path) -> None:
    api = Api(tmp_path, keys=False)
    async with api.client:
        assert (await api.client.post("/v1/personalities/joe/samples", files=recording("first"))).status_code == 201
        r = await api.client.post("/v1/personalities/joe/samples", files=recording("other"), data={"force": "true"})
        assert r.status_code == 201, r.text


# --- who did what -----------------------------------------------------------------------------


async def test_deletes_and_clones_are_logged_with_the_key_name(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    c = api.client
    caplog.set_level(logging.INFO, logger="chorus")
    for kind in ("first", "same"):  # two: the last one is an admin's to remove
        r = await c.post("/v1/personalities/joe/samples", files=recording(kind), data={"id": kind},
                         headers=api.as_("speaker"))
        assert r.status_code == 201, r.text
    assert (await c.delete("/v1/personalities/joe/samples/first", headers=api.as_("speaker"))).status_code == 204
    assert (await c.delete("/v1/personalities/joe", headers=api.as_("boss"))).status_code == 204
    reference = recording("first")
    r = await c.post("/v1/clone", files=reference, data={"text": "Hello there."}, headers=api.as_("speaker"))
    assert r.status_code == 503  # no cloning engine here; the clone was still asked for

    def line(part: str) -> str:
        return next(m.getMessage() for m in caplog.records if part in m.getMessage() and m.levelno == logging.INFO)

    assert re.search(r"deleted sample 'first' of 'joe' \[request \S+, key speaker\]", line("deleted sample"))
    assert re.search(r"deleted personality 'joe' and its samples \[request \S+, key boss\]", line("deleted personality"))
    size = len(reference["file"][1])
    assert re.search(rf"clone with xtts_v2: {size}-byte reference, 12 characters \[request \S+, key speaker\]",
                     line("clone with"))
    for record in caplog.records:
        assert secret("speaker") not in record.getMessage() and secret("boss") not in record.getMessage()
        assert not any(isinstance(a, bytes) for a in (record.args or ()))  # never audio
