"""The HTTP layer without Ray: the ingress's FastAPI app (`create_app`) over a `Replica`
whose engines run in process (tests/support/engine_handles.py) and whose personalities are
files in a temporary directory, driven through httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import io
import json
import math
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import soundfile as sf

from chorus.common.constants import MAX_SAMPLE_BYTES, MAX_VOICE_SAMPLES
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.samples.storage import SampleMeta
from chorus.speech.attempts import BUSY, FAILED, UNAVAILABLE, EngineBusy
from deployments.base import (
    BadInputError,
    EngineFailedError,
    EngineUnavailableError,
    Health,
    TextTooLongError,
)
from tests.support import recordings as rec
from tests.support.chorus_app import personality
from tests.support.ingress_app import JOE, MAX_TEXT, MAX_UPLOAD, Api
from tests.support.servers import running


@pytest.fixture
async def recording_api(tmp_path: Path) -> AsyncIterator[Api]:
    """An app that takes real recordings (the default upload limit)."""
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES)
    async with api.client:
        yield api


def speech(text: str = "Hello there.", **body: Any) -> dict[str, Any]:
    return {"text": text, **body}


# --- speech and its headers ------------------------------------------------------------------


async def test_speech_is_wav_with_the_engine_and_latency_in_headers(api: Api) -> None:
    api.piper.delay_s = 0.05  # the latency must include the engine's time, and no more than the request's
    sent_at = time.perf_counter()
    r = await api.client.post("/v1/personalities/joe/speech", json=speech())
    took_ms = (time.perf_counter() - sent_at) * 1000
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "audio/wav"
    audio, rate = sf.read(io.BytesIO(r.content), dtype="int16")
    assert rate == 16_000 and audio.tobytes() == api.piper.pcm("Hello there.")
    assert r.headers["x-chorus-provider"] == "piper"
    assert 50 <= float(r.headers["x-chorus-latency-ms"]) <= took_ms
    assert "x-chorus-fallback" not in r.headers and "x-chorus-variant" not in r.headers
    sent = api.piper.requests[0]
    assert (sent.voice, sent.language, sent.settings.speed) == ("en_US-joe-medium", "en", 1.5)


async def test_fallback_is_an_rfc8941_list_and_the_variant_is_named(api: Api) -> None:
    api.piper.error = EngineUnavailableError("not loaded", "piper", public='voice "joe" said \\no\\ — not loaded')
    r = await api.client.post("/v1/personalities/joe/speech", json=speech())
    assert r.status_code == 200, r.text
    assert r.headers["x-chorus-provider"] == "google_tts" and r.headers["x-chorus-variant"] == "neural2"
    assert r.headers["x-chorus-fallback"] == 'piper;outcome=unavailable;reason="voice \\"joe\\" said \\\\no\\\\ ? not loaded"'


async def test_a_language_the_active_voice_lacks_goes_to_the_next_engine(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json=speech("Hola.", language="es"))
    assert r.headers["x-chorus-provider"] == "google_tts"
    assert r.headers["x-chorus-fallback"] == "piper;outcome=skipped;reason=\"voice 'en_US-joe-medium' does not speak 'es'\""
    assert api.google.requests[0].language == "es"


async def test_an_explicit_provider_speaks_first(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json=speech(provider="google_tts"))
    assert r.headers["x-chorus-provider"] == "google_tts" and api.piper.requests == []


@pytest.mark.parametrize("fmt,media_type", [
    ("mp3", "audio/mpeg"), ("flac", "audio/flac"), ("opus", "audio/ogg; codecs=opus"),
    ("pcm", "audio/L16; rate=16000; channels=1"),
])
async def test_formats(api: Api, fmt: str, media_type: str) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json=speech(format=fmt))
    assert r.status_code == 200 and r.headers["content-type"] == media_type
    if fmt == "pcm":
        assert r.content == api.piper.pcm("Hello there.")


async def test_a_stream_is_a_wav_header_then_pcm_per_sentence(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json=speech("One. Two.", stream=True))
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
    assert r.content[:4] == b"RIFF" and r.content[40:44] == b"\xff\xff\xff\xff"  # length unknown
    assert r.content[44:] == api.piper.pcm("One.") + api.piper.pcm("Two.")


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path,body,status,message", [
    ("/v1/personalities/joe/speech", speech("   "), 422, "text is empty"),
    ("/v1/personalities/joe/speech", speech("word " * 50), 413, f"the limit is {MAX_TEXT}"),
    ("/v1/personalities/nobody/speech", speech(), 404, "personality 'nobody' not found"),
    ("/v1/personalities/joe/speech", speech(provider="festival"), 422, "provider"),
    ("/v1/personalities/joe/speech", speech(provider="azure_tts"), 422, "'azure_tts' is not configured for personality 'joe'"),
    ("/v1/personalities/joe/speech", speech(format="ogg"), 422, "format"),
    ("/v1/personalities/joe/speech", speech(format="aac", stream=True), 422, "streaming sends alaw, mp3, mulaw, pcm, wav, not aac"),
    ("/v1/personalities/joe/speech", speech(language="ja"), 422, "does not speak 'ja'"),
    ("/v1/personalities/joe/speech", speech(volume=3), 422, "volume: Extra inputs are not permitted"),
])
async def test_bad_speech_requests(api: Api, path: str, body: dict, status: int, message: str) -> None:
    r = await api.client.post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert api.piper.requests == [] and api.google.requests == []
    if status == 413:
        assert r.json()["limit"] == MAX_TEXT


async def test_validation_errors_list_each_problem(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", json={"format": "ogg"})
    assert r.status_code == 422
    body = r.json()
    assert [(e["loc"], e["type"]) for e in body["errors"]] == [(["body", "text"], "missing"), (["body", "format"], "enum")]
    assert body["detail"].startswith("text: Field required; format: Input should be")


async def test_malformed_json_and_other_content_types(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/speech", content=b'{"text": "hi"',
                              headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["detail"].startswith("malformed JSON at character 13")
    r = await api.client.post("/v1/personalities/joe/speech", content=b"text=hi",
                              headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 415
    assert r.json() == {"detail": "send the body as application/json (got application/x-www-form-urlencoded)"}


async def test_an_engines_bad_input_is_the_callers_and_not_retried(api: Api) -> None:
    api.piper.error = BadInputError("nothing speakable in '.....'", "piper", public="nothing speakable")
    r = await api.client.post("/v1/personalities/joe/speech", json=speech("....."))
    assert r.status_code == 422 and r.json() == {"detail": "nothing speakable"}
    api.piper.error = BadInputError("Google said: 400 bad SSML", "piper")  # an engine's own words: not shown
    r = await api.client.post("/v1/personalities/joe/speech", json=speech("....."))
    assert r.status_code == 422 and r.json() == {"detail": "piper refused the input as invalid"}
    api.piper.error = TextTooLongError("a sentence is too long", "piper", limit=40)
    r = await api.client.post("/v1/personalities/joe/speech", json=speech())
    assert r.status_code == 413
    assert r.json() == {"detail": "the text is too long for piper (its limit per request is 40)", "limit": 40}
    assert api.google.requests == []


async def test_every_engine_failing_is_503_with_each_attempt(api: Api) -> None:
    api.piper.error = EngineUnavailableError("voice missing", "piper")
    api.google.error = EngineFailedError("HTTP 500", "google_tts")
    for body in (speech(), speech(stream=True)):
        r = await api.client.post("/v1/personalities/joe/speech", json=body)
        assert r.status_code == 503
        assert r.json() == {
            "detail": f"no engine could speak this: piper unavailable ({UNAVAILABLE}); google_tts failed ({FAILED})",
            "attempts": [{"engine": "piper", "outcome": "unavailable", "reason": UNAVAILABLE},
                         {"engine": "google_tts", "outcome": "failed", "reason": FAILED}],
        }


async def test_engines_only_busy_is_503_inviting_a_retry(api: Api) -> None:
    """A full queue is load: the answer says so and when to try again (Retry-After), on the
    JSON and OpenAI routes, whole and streamed; an engine that failed gives no such hint."""
    api.piper.error = EngineBusy("Request dropped due to backpressure (num_queued_requests=64, ...)", retry_after_s=2)
    api.google.error = EngineBusy("Request dropped due to backpressure (num_queued_requests=32, ...)", retry_after_s=1)
    for path, body in (("/v1/personalities/joe/speech", speech()), ("/v1/personalities/joe/speech", speech(stream=True)),
                       ("/v1/audio/speech", openai())):
        r = await api.client.post(path, json=body)
        assert r.status_code == 503, path
        assert r.headers["retry-after"] == "1"  # the sooner of the two
        assert r.json()["attempts"] == [{"engine": "piper", "outcome": "unavailable", "reason": BUSY},
                                        {"engine": "google_tts", "outcome": "unavailable", "reason": BUSY}]
        assert "backpressure" not in r.text  # Serve's words stay in the log
    api.google.error = EngineFailedError("HTTP 500", "google_tts")
    r = await api.client.post("/v1/personalities/joe/speech", json=speech())
    assert r.status_code == 503 and r.headers["retry-after"] == "2"
    api.piper.error = EngineUnavailableError("voice missing", "piper")
    r = await api.client.post("/v1/personalities/joe/speech", json=speech())
    assert r.status_code == 503 and "retry-after" not in r.headers


# --- OpenAI's speech API --------------------------------------------------------------------


def openai(**body: Any) -> dict[str, Any]:
    return {"model": "tts-1", "voice": "joe", "input": "Hello there.", **body}


async def test_openai_model_voice_and_format(api: Api) -> None:
    r = await api.client.post("/v1/audio/speech", json=openai())
    assert r.status_code == 200 and r.headers["content-type"] == "audio/mpeg"  # OpenAI's default format
    assert r.headers["x-chorus-provider"] == "piper"
    r = await api.client.post("/v1/audio/speech", json=openai(model="google_tts", response_format="wav"))
    assert r.headers["x-chorus-provider"] == "google_tts" and r.headers["content-type"] == "audio/wav"
    assert [q.language for q in api.piper.requests + api.google.requests] == ["en", "en"]  # the primary language


async def test_openai_pcm_is_24khz(api: Api) -> None:
    r = await api.client.post("/v1/audio/speech", json=openai(response_format="pcm"))
    assert r.headers["content-type"] == "audio/L16; rate=24000; channels=1"
    assert len(r.content) == pytest.approx(len(api.piper.pcm("Hello there.")) * 1.5, abs=64)


async def test_openai_speed_multiplies_the_engines_speed_setting(api: Api) -> None:
    r = await api.client.post("/v1/audio/speech", json=openai(speed=2.0, instructions="cheerful", extra="ignored"))
    assert r.status_code == 200
    assert api.piper.requests[0].settings.speed == 3.0  # the personality's 1.5, doubled
    r = await api.client.post("/v1/audio/speech", json=openai(speed=3.0))  # 4.5: over Piper's range
    assert r.status_code == 422 and "speed 3.0 makes piper's speed 4.5" in r.json()["error"]["message"]


@pytest.mark.parametrize("body,status,param,message", [
    (openai(model="dall-e"), 422, "model", "unknown model 'dall-e'"),
    (openai(voice="nobody"), 404, "voice", "voice 'nobody' is neither a personality nor an alias of one"),
    (openai(input=" "), 422, "input", "text is empty"),
    (openai(model="azure_tts"), 422, "provider", "'azure_tts' is not configured"),
    (openai(speed=5), 422, "speed", "speed: Input should be less than or equal to 4"),
    (openai(response_format="ogg"), 422, "response_format", "response_format"),
])
async def test_openai_errors_come_in_openais_shape(api: Api, body: dict, status: int, param: str, message: str) -> None:
    r = await api.client.post("/v1/audio/speech", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] is None
    assert message in error["message"]


async def test_openai_all_failed_is_a_server_error_with_the_attempts(api: Api) -> None:
    api.piper.error = EngineFailedError("crashed", "piper")
    api.google.error = EngineFailedError("crashed", "google_tts")
    r = await api.client.post("/v1/audio/speech", json=openai())
    assert r.status_code == 503
    body = r.json()
    assert body["error"]["type"] == "server_error" and body["error"]["message"].startswith("no engine could speak this")
    assert [a["engine"] for a in body["attempts"]] == ["piper", "google_tts"]


# --- personalities and samples: the personality in the path ----------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/v1/personalities/nobody"),
    ("GET", "/v1/personalities/nobody/samples"),
    ("GET", "/v1/personalities/nobody/samples/studio-1"),
    ("DELETE", "/v1/personalities/nobody/samples/studio-1"),
    ("POST", "/v1/personalities/nobody/samples"),
])
async def test_an_unknown_personality_is_404_on_every_route(api: Api, method: str, path: str) -> None:
    r = await api.client.request(method, path)
    assert r.status_code == 404 and r.json() == {"detail": "personality 'nobody' not found"}


async def test_a_known_personality_is_served_with_its_status(api: Api) -> None:
    r = await api.client.get("/v1/personalities/joe")
    assert r.status_code == 200
    body = r.json()
    assert body["metadata"] == {"name": "joe"} and body["spec"]["activeProvider"] == "piper"
    assert body["status"]["source"].endswith("joe.yaml")
    assert (await api.client.get("/v1/personalities/joe/samples")).json() == []


async def test_uploads_are_multipart_within_the_limit(api: Api) -> None:
    r = await api.client.post("/v1/personalities/joe/samples", json={"file": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    r = await api.client.post("/v1/personalities/joe/samples", files={"file": ("big.wav", b"\0" * (MAX_UPLOAD + 1))})
    assert r.status_code == 413 and r.json()["limit"] == MAX_UPLOAD
    r = await api.client.post("/v1/personalities/joe/samples", files={"other": ("a.wav", b"RIFF")})
    assert r.status_code == 422 and r.json()["detail"] == "the 'file' part with the audio is missing"


# --- voice data belongs to its personality ---------------------------------------------------


def clean_recording(other_text: bool = False) -> dict[str, Any]:
    recs = rec.recordings()
    clean = recs.clean_other_text() if other_text else recs.clean()
    return {"file": ("clean.wav", rec.encode(clean.samples, clean.rate))}


def store_directly(api: Api, count: int, start: int = 0) -> None:
    """Stored samples of `joe` without the checks (storage needs bytes, not speech)."""
    for i in range(start, start + count):
        api.replica.samples.store.put("joe", rec.minimal_wav(0.5, seed=i), SampleMeta(id=f"s{i}", duration=0.5, quality_score=1.0))


async def test_deleting_a_personality_deletes_its_samples(recording_api: Api) -> None:
    api, c = recording_api, recording_api.client
    ava = personality("ava", JOE)
    assert (await c.put("/v1/personalities/ava", json=ava)).status_code == 201
    r = await c.post("/v1/personalities/ava/samples", files=clean_recording(), data={"id": "studio-1"})
    assert r.status_code == 201, r.text
    assert [s["id"] for s in (await c.get("/v1/personalities/ava/samples")).json()] == ["studio-1"]

    assert (await c.delete("/v1/personalities/ava")).status_code == 204
    assert api.replica.samples.store.list("ava") == []
    assert (await c.put("/v1/personalities/ava", json=ava)).status_code == 201
    assert (await c.get("/v1/personalities/ava/samples")).json() == []
    assert (await c.get("/v1/personalities/ava")).json()["spec"].get("voiceSamples", []) == []


async def test_a_crash_between_samples_and_personality_leaves_no_samples(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples go first: dying before the personality is deleted orphans no sample that a
    namesake would inherit; deleting again finishes the job."""
    store_directly(api, 2)

    def crash(name: str) -> bool:
        raise RuntimeError("killed mid-delete")

    monkeypatch.setattr(api.replica.store, "delete", crash)
    with pytest.raises(RuntimeError, match="killed mid-delete"):
        await api.client.delete("/v1/personalities/joe")
    assert api.replica.samples.store.list("joe") == []
    monkeypatch.undo()
    assert (await api.client.delete("/v1/personalities/joe")).status_code == 204
    assert (await api.client.get("/v1/personalities/joe")).status_code == 404


async def test_a_sample_whose_personality_is_deleted_during_its_checks_is_not_stored(
    recording_api: Api, monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = recording_api
    check_sample = api.replica.samples.ingest.checker.check_sample

    def deleted_meanwhile(*args: Any, **kwargs: Any) -> Any:
        assert api.replica.samples.delete_personality("joe")
        return check_sample(*args, **kwargs)

    monkeypatch.setattr(api.replica.samples.ingest.checker, "check_sample", deleted_meanwhile)
    r = await api.client.post("/v1/personalities/joe/samples", files=clean_recording())
    assert r.status_code == 404 and "deleted while the sample was being checked" in r.json()["detail"], r.text
    assert api.replica.samples.store.list("joe") == []


async def test_the_sample_over_the_limit_is_refused_and_stores_nothing(recording_api: Api, tmp_path: Path) -> None:
    api, c = recording_api, recording_api.client
    assert api.replica.config.samples.max_samples == MAX_VOICE_SAMPLES == 32  # the schema's voiceSamples limit
    store_directly(api, MAX_VOICE_SAMPLES + 1)
    # Deleting one mirrors the rest into voiceSamples: the personality is full.
    assert (await c.delete("/v1/personalities/joe/samples/s0")).status_code == 204
    personality_file = tmp_path / "personalities" / "joe.yaml"
    before = personality_file.read_bytes()
    sample_files = sorted((tmp_path / "samples" / "joe").iterdir())
    assert len((await c.get("/v1/personalities/joe")).json()["spec"]["voiceSamples"]) == MAX_VOICE_SAMPLES

    r = await c.post("/v1/personalities/joe/samples", files=clean_recording(), data={"id": "one-too-many"})
    assert r.status_code == 409, r.text
    assert r.json()["limit"] == MAX_VOICE_SAMPLES and f"already has {MAX_VOICE_SAMPLES} voice samples" in r.json()["detail"]
    assert sorted((tmp_path / "samples" / "joe").iterdir()) == sample_files
    assert personality_file.read_bytes() == before
    api.replica.store.rescan()
    body = (await c.get("/v1/personalities/joe")).json()
    assert "error" not in body["status"] and len(body["spec"]["voiceSamples"]) == MAX_VOICE_SAMPLES


async def test_the_limit_is_configurable(tmp_path: Path) -> None:
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES)
    api.replica.samples.config = api.replica.samples.config.model_copy(update={"max_samples": 1})
    async with api.client:
        r = await api.client.post("/v1/personalities/joe/samples", files=clean_recording())
        assert r.status_code == 201, r.text
        r = await api.client.post("/v1/personalities/joe/samples", files=clean_recording(other_text=True))
        assert r.status_code == 409 and r.json()["limit"] == 1, r.text
    with pytest.raises(ValueError, match=f"less than or equal to {MAX_VOICE_SAMPLES}"):
        IngressConfig(personalities={"directory": tmp_path}, samples={"max_samples": MAX_VOICE_SAMPLES + 1})


async def test_a_sample_the_personality_has_no_room_for_is_refused_before_storing(recording_api: Api, tmp_path: Path) -> None:
    """Samples a personality names by URL count towards voiceSamples too: the mirrored
    personality is validated before the upload is stored."""
    api, c = recording_api, recording_api.client
    by_url = [{"id": f"u{i}", "url": f"https://example.com/u{i}.wav"} for i in range(MAX_VOICE_SAMPLES)]
    assert (await c.put("/v1/personalities/joe", json=personality("joe", {**JOE, "voiceSamples": by_url}))).status_code == 200
    before = (tmp_path / "personalities" / "joe.yaml").read_bytes()

    r = await c.post("/v1/personalities/joe/samples", files=clean_recording())
    assert r.status_code == 422, r.text
    assert "would make the personality invalid" in r.json()["detail"] and "voiceSamples" in r.json()["detail"]
    assert api.replica.samples.store.list("joe") == []
    assert not any(p.name.endswith((".wav", ".json")) for p in (tmp_path / "samples").rglob("*"))
    assert (tmp_path / "personalities" / "joe.yaml").read_bytes() == before


async def test_clone_checks_its_fields_before_the_reference(api: Api) -> None:
    reference = {"file": ("me.wav", b"RIFF")}  # never decoded: every request fails before
    for data, status, message in (
        ({}, 422, "text: field required"),
        ({"text": "x" * (MAX_TEXT + 1)}, 413, f"the limit is {MAX_TEXT}"),
        ({"text": "Hi.", "provider": "piper"}, 422, "provider: Input should be 'xtts_v2' or 'styletts2'"),
        ({"text": "Hi.", "language": "english"}, 422, "language: String should match pattern"),
        ({"text": "Hi.", "format": "ogg"}, 422, "format: Input should be"),
    ):
        r = await api.client.post("/v1/clone", files=reference, data=data)
        assert r.status_code == status and message in r.json()["detail"], r.text
    r = await api.client.post("/v1/clone", content=json.dumps({"text": "Hi."}), headers={"content-type": "application/json"})
    assert r.status_code == 415


# --- engines and probes ---------------------------------------------------------------------


async def test_providers_and_readiness(api: Api) -> None:
    api.google.healthy = Health(healthy=False, reason="credentials rejected")
    providers = (await api.client.get("/v1/providers")).json()["providers"]
    assert [(p["engine"], p["health"]["healthy"], p["timeout_s"]) for p in providers] == [
        ("piper", True, 5.0), ("google_tts", False, 5.0)]
    ready = await api.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"ready": True, "personalitiesLoaded": True, "keysStale": False, "personalities": 1, "engines": {
        "piper": {"healthy": True, "reason": None},
        "google_tts": {"healthy": False, "reason": "credentials rejected"}}}
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}


async def test_providers_flooded_ask_the_engines_at_most_once_per_interval(api: Api) -> None:
    await asyncio.gather(*(api.client.get("/v1/providers") for _ in range(100)))
    assert (api.piper.status_calls, api.google.status_calls) == (1, 1)  # the board's cached view
    api.replica.board.refresh_s = 0.05
    began = time.monotonic()
    while time.monotonic() - began < 0.3:
        answers = await asyncio.gather(*(api.client.get("/v1/providers") for _ in range(20)))
        assert all(a.status_code == 200 for a in answers)
    # one refresh per interval at most (and the one under way when the flood stopped)
    assert api.piper.status_calls <= 1 + math.ceil((time.monotonic() - began) / 0.05) + 1


async def test_synthesis_never_waits_for_a_status_refresh(api: Api) -> None:
    await api.client.get("/v1/providers")
    api.replica.board.refresh_s = 0  # every read finds the statuses stale
    api.piper.status_gate = asyncio.Event()  # and the refresh hangs on piper
    said = await asyncio.wait_for(api.client.post("/v1/personalities/joe/speech", json=speech()), timeout=2)
    assert said.status_code == 200 and said.headers["x-chorus-provider"] == "piper"
    flood = await asyncio.wait_for(asyncio.gather(*(api.client.get("/v1/providers") for _ in range(20))), timeout=2)
    assert all(a.status_code == 200 for a in flood)
    assert api.piper.status_calls == 2  # the first load, and the one refresh everyone joined
    api.piper.status_gate.set()


async def test_providers_show_each_engines_circuit(api: Api) -> None:
    api.piper.error = EngineFailedError("down", "piper")
    for _ in range(5):  # the default: 5 failures in a row open it
        assert (await api.client.post("/v1/personalities/joe/speech", json=speech())).status_code == 200
    providers = {p["engine"]: p["circuit"] for p in (await api.client.get("/v1/providers")).json()["providers"]}
    assert providers["google_tts"] == {"state": "closed", "failures": 0, "retry_at": None}
    assert providers["piper"]["state"] == "open" and providers["piper"]["failures"] == 5
    assert providers["piper"]["retry_at"] is not None
    r = await api.client.post("/v1/personalities/joe/speech", json=speech())
    assert r.headers["x-chorus-fallback"] == 'piper;outcome=skipped;reason="circuit open"'


# --- checking a recording without storing it -------------------------------------------------


async def test_a_check_answers_the_upload_table_and_stores_nothing(recording_api: Api, tmp_path: Path) -> None:
    api, c = recording_api, recording_api.client
    r = await c.post("/v1/personalities/joe/samples/check", files=clean_recording())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] is True and body["problems"] == [] and body["duplicate_of"] is None
    names = [check["name"] for check in body["report"]["checks"]]
    assert {"snr", "speaker_consistency"} <= set(names), names
    assert api.replica.samples.store.list("joe") == []
    assert not (tmp_path / "samples" / "joe").exists() or not any((tmp_path / "samples" / "joe").iterdir())

    # The same recording uploaded is what the check said: stored, with the same figures.
    r = await c.post("/v1/personalities/joe/samples", files=clean_recording(), data={"id": "first"})
    assert r.status_code == 201, r.text
    assert r.json()["report"]["checks"] == body["report"]["checks"]
    again = (await c.post("/v1/personalities/joe/samples/check", files=clean_recording())).json()
    assert again["accepted"] is False and again["duplicate_of"] == "first"
    assert again["problems"] == ["identical audio is already stored as sample 'first'"]


async def test_a_check_of_a_noisy_recording_names_what_fails(recording_api: Api) -> None:
    speech = rec.recordings().clean()
    noisy = {"file": ("noisy.wav", rec.encode(rec.with_white_noise(speech, snr_db=3), speech.rate))}
    r = await recording_api.client.post("/v1/personalities/joe/samples/check", files=noisy)
    assert r.status_code == 200, r.text
    body = r.json()
    failed = [check for check in body["report"]["checks"] if not check["passed"] and check["severity"] == "hard"]
    assert body["accepted"] is False and failed
    assert body["problems"] == [check["message"] for check in failed]
    # The table is whole: the speaker was compared even though quality failed.
    assert body["report"]["checks"][-1]["name"] == "speaker_consistency"
    assert recording_api.replica.samples.store.list("joe") == []


async def test_a_check_says_when_the_personality_is_full(recording_api: Api) -> None:
    recording_api.replica.samples.config = recording_api.replica.samples.config.model_copy(update={"max_samples": 1})
    store_directly(recording_api, 1)
    body = (await recording_api.client.post("/v1/personalities/joe/samples/check", files=clean_recording())).json()
    assert body["accepted"] is False
    assert any("already has 1 voice samples" in problem for problem in body["problems"]), body["problems"]


async def test_a_check_of_bytes_that_are_no_recording_is_a_422(recording_api: Api) -> None:
    r = await recording_api.client.post("/v1/personalities/joe/samples/check", files={"file": ("x.wav", b"not audio" * 100)})
    assert r.status_code == 422, r.text
    assert r.json()["detail"] == "not audio: the upload is a text file"


async def test_uploads_beyond_what_a_replica_takes_are_refused_before_their_body(
        recording_api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """`max_concurrent_checks` (2) are checked and `max_queued_checks` (set to 1) wait, each
    holding its body; the next upload, check or clone gets 503 with Retry-After at once,
    and the places are given back when those are done."""
    api, c = recording_api, recording_api.client
    api.replica.samples.config = api.replica.samples.config.model_copy(update={"max_queued_checks": 1})
    checking, release = threading.Semaphore(0), threading.Event()
    check_sample = api.replica.samples.ingest.checker.check_sample

    def held(*args: Any, **kwargs: Any) -> Any:
        checking.release()
        release.wait(30)
        return check_sample(*args, **kwargs)

    monkeypatch.setattr(api.replica.samples.ingest.checker, "check_sample", held)
    recordings = [clean_recording(), clean_recording(other_text=True), clean_recording()]
    busy = [asyncio.create_task(c.post("/v1/personalities/joe/samples/check", files=f)) for f in recordings]
    for _ in range(2):  # two in the checks, the third waiting for one
        assert await asyncio.to_thread(checking.acquire, True, 30)
    for path, form in (("/v1/personalities/joe/samples", {}), ("/v1/personalities/joe/samples/check", {}),
                       ("/v1/clone", {"data": {"text": "Hello."}})):
        r = await c.post(path, files=clean_recording(), **form)
        assert r.status_code == 503, (path, r.text)
        assert r.headers["retry-after"] == "2" and "3 recordings are being read or checked" in r.json()["detail"]
    release.set()
    assert [(await task).status_code for task in busy] == [200, 200, 200]
    assert api.replica.samples._admitted == 0
    assert (await c.post("/v1/personalities/joe/samples", files=clean_recording())).status_code == 201


def chorus_cli(*args: str) -> Any:
    """The `chorus` command, run in process (its HTTP client talks to a real server)."""
    from typer.testing import CliRunner

    from chorus import cli

    return CliRunner().invoke(cli.cli, list(args))


def test_the_cli_lists_the_engines_with_their_circuits(tmp_path: Path) -> None:
    api = Api(tmp_path)
    api.piper.error = EngineFailedError("down", "piper")
    with running(create_app(api.replica)) as url:
        for _ in range(5):  # the default: 5 failures in a row open it
            assert httpx.post(f"{url}/v1/personalities/joe/speech", json=speech()).status_code == 200
        out = chorus_cli("providers", "--url", url)
    assert out.exit_code == 0, out.output
    assert "piper       healthy" in out.output and "google_tts  healthy" in out.output
    assert "circuit: open (5 failures in a row, one probe from 20" in out.output
    assert "circuit: closed (0 failures in a row)" in out.output


def test_the_cli_checks_a_recording_through_the_api(tmp_path: Path) -> None:
    """`chorus samples check FILE --personality joe`: the API's table and verdict, nothing stored."""
    api = Api(tmp_path, max_upload=MAX_SAMPLE_BYTES)
    speech = rec.recordings().clean()
    clean, noisy = tmp_path / "clean.wav", tmp_path / "noisy.wav"
    clean.write_bytes(rec.encode(speech.samples, speech.rate))
    noisy.write_bytes(rec.encode(rec.with_white_noise(speech, snr_db=3), speech.rate))

    with running(create_app(api.replica)) as url:
        ok = chorus_cli("samples", "check", str(clean), "--personality", "joe", "--url", url)
        refused = chorus_cli("samples", "check", str(noisy), "--personality", "joe", "--url", url)
        missing = chorus_cli("samples", "check", str(clean), "--personality", "nobody", "--url", url)
    assert ok.exit_code == 0, ok.output
    assert "speaker_consistency" in ok.output and "would be stored: quality score" in ok.output
    assert refused.exit_code == 1 and "would be refused: signal-to-noise ratio" in refused.output
    assert missing.exit_code == 1 and "error 404" in missing.output
    assert api.replica.samples.store.list("joe") == []
