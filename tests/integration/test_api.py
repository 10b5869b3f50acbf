"""The HTTP API around speech: personalities, providers, probes, bad input, OpenAI
compatibility — against the real Serve app with real Piper."""

from __future__ import annotations

import io

import av
import openai
import pytest
import yaml

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.speech import decode, word_error_rate

pytestmark = pytest.mark.ray

JOE = {"activeProvider": "piper", "languages": {"primary": "en", "supported": ["en"]}, "providers": {"piper": STEADY_PIPER}}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp) -> ChorusApp:
    chorus.deploy(max_text_characters=2000)
    chorus.write("joe", JOE)
    chorus.wait_for("joe")
    return chorus


def files(app: ChorusApp) -> list[str]:
    return sorted(p.name for p in app.personalities_dir.iterdir())


# --- personalities ------------------------------------------------------------------


def test_put_get_delete_roundtrip(app: ChorusApp) -> None:
    spec = {"displayName": "Ava", "activeProvider": "piper", "providers": {"piper": {"settings": {"speed": 1.1}}}}
    with app.client() as c:
        r = c.put("/v1/personalities/ava", json=spec)
        assert r.status_code == 201, r.text
        body = r.json()
        assert body["metadata"]["name"] == "ava" and body["spec"]["providers"]["piper"]["settings"]["speed"] == 1.1
        assert body["status"]["source"].endswith("ava.yaml") and body["status"].get("error") is None
        # Written as a kubectl-applicable resource.
        doc = yaml.safe_load((app.personalities_dir / "ava.yaml").read_text())
        assert doc["kind"] == "VoicePersonality" and doc["spec"]["displayName"] == "Ava"

        r = c.put("/v1/personalities/ava", content=yaml.safe_dump({**spec, "displayName": "Ava 2"}),
                  headers={"content-type": "application/yaml"})
        assert r.status_code == 200 and r.json()["spec"]["displayName"] == "Ava 2"
        assert c.get("/v1/personalities/ava").json()["spec"]["displayName"] == "Ava 2"
        names = [i["metadata"]["name"] for i in c.get("/v1/personalities").json()["items"]]
        assert {"ava", "joe"} <= set(names)

        assert c.post("/v1/personalities/ava/speech", json={"text": "Hello."}).status_code == 200
        assert c.delete("/v1/personalities/ava").status_code == 204
        assert c.get("/v1/personalities/ava").status_code == 404
        assert c.delete("/v1/personalities/ava").status_code == 404
        assert c.post("/v1/personalities/ava/speech", json={"text": "Hello."}).status_code == 404
    assert "ava.yaml" not in files(app)


@pytest.mark.parametrize(
    "body,ctype,status,message",
    [
        ({"activeProvider": "festival", "providers": {"piper": {}}}, "application/json", 422, "activeProvider"),
        ({"activeProvider": "piper", "fallbackChain": ["google_tts"], "providers": {"piper": {}}}, "application/json", 422,
         "fallbackChain[0] 'google_tts' is not configured"),
        ({"activeProvider": "piper", "providers": {"piper": {"settings": {"speed": 9}}}}, "application/json", 422,
         "providers.piper.settings.speed"),
        ({"activeProvider": "piper", "languages": {"primary": "de", "supported": ["en"]}, "providers": {"piper": {}}},
         "application/json", 422, "languages.primary 'de'"),
        ('{"activeProvider": ', "application/json", 422, "malformed JSON"),
        ("", "application/json", 422, "body is empty"),
        ("activeProvider: piper", "text/plain", 415, "application/json or application/yaml"),
        ({"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": "other"},
          "spec": {"activeProvider": "piper", "providers": {"piper": {}}}}, "application/json", 422, "differs from the path"),
    ],
)
def test_invalid_put_is_refused_and_writes_nothing(app: ChorusApp, body, ctype: str, status: int, message: str) -> None:
    import json

    before = files(app)
    content = body if isinstance(body, str) else json.dumps(body)
    with app.client() as c:
        r = c.put("/v1/personalities/newbie", content=content, headers={"content-type": ctype})
        assert r.status_code == status, r.text
        assert message in r.json()["detail"]
        assert c.get("/v1/personalities/newbie").status_code == 404
        assert c.get("/healthz").status_code == 200
    assert files(app) == before


def test_invalid_name_in_path(app: ChorusApp) -> None:
    with app.client() as c:
        r = c.put("/v1/personalities/Not_OK", json=JOE)
    assert r.status_code == 422 and "lowercase" in r.json()["detail"]


def test_file_edits_reload_without_restart_and_bad_edits_keep_last_good(app: ChorusApp) -> None:
    app.write("zed", {**JOE, "displayName": "Zed 1"})
    app.wait_for("zed")
    path = app.personalities_dir / "zed.yaml"
    with app.client() as c:
        doc = yaml.safe_load(path.read_text())
        doc["spec"]["activeProvider"] = "nonsense"
        path.write_text(yaml.safe_dump(doc))
        for _ in range(100):
            status = c.get("/v1/personalities/zed").json()["status"]
            if status.get("error"):
                break
            import time

            time.sleep(0.1)
        assert "activeProvider" in status["error"]
        got = c.get("/v1/personalities/zed").json()
        assert got["spec"]["displayName"] == "Zed 1"  # last good version still served
        assert c.post("/v1/personalities/zed/speech", json={"text": "Still here."}).status_code == 200
    path.unlink()
    app.wait_for("zed", present=False)


# --- bad speech input ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/v1/personalities/joe/speech", {"text": "   "}, 422, "text is empty"),
        ("/v1/personalities/joe/speech", {"text": "word " * 500}, 413, "the limit is 2000"),
        ("/v1/personalities/nobody/speech", {"text": "Hi."}, 404, "personality 'nobody' not found"),
        ("/v1/personalities/joe/speech", {"text": "Hi.", "provider": "festival"}, 422, "provider"),
        ("/v1/personalities/joe/speech", {"text": "Hi.", "provider": "google_tts"}, 422, "not configured for personality"),
        ("/v1/personalities/joe/speech", {"text": "Hi.", "format": "ogg"}, 422, "format"),
        ("/v1/personalities/joe/speech", {"text": "Hi.", "format": "opus", "stream": True}, 422,
         "streaming sends alaw, mp3, mulaw, pcm, wav, not opus"),
        ("/v1/personalities/joe/speech", {"text": "Hi.", "language": "ja"}, 422, "does not speak 'ja'"),
        ("/v1/personalities/joe/speech", {"text": "Hi.", "volume": 3}, 422, "volume"),
        ("/v1/personalities/joe/speech", {"text": "....."}, 422, "nothing speakable"),
    ],
)
def test_bad_speech_requests(app: ChorusApp, path: str, body: dict, status: int, message: str) -> None:
    with app.client() as c:
        r = c.post(path, json=body)
        assert r.status_code == status, r.text
        assert message in r.json()["detail"]
        assert c.post("/v1/personalities/joe/speech", json={"text": "Fine."}).status_code == 200


def test_malformed_json_and_wrong_content_type(app: ChorusApp) -> None:
    with app.client() as c:
        r = c.post("/v1/personalities/joe/speech", content=b'{"text": "hi"', headers={"content-type": "application/json"})
        assert r.status_code == 422 and "malformed JSON" in r.json()["detail"]
        r = c.post("/v1/personalities/joe/speech", content=b"text=hi", headers={"content-type": "application/x-www-form-urlencoded"})
        assert r.status_code == 415 and "application/json" in r.json()["detail"]


# --- engines and probes -------------------------------------------------------------


def test_providers_report_capabilities_and_health(app: ChorusApp) -> None:
    with app.client() as c:
        providers = c.get("/v1/providers").json()["providers"]
        assert c.get("/healthz").json() == {"status": "ok"}
        ready = c.get("/readyz")
        openapi = c.get("/openapi.json").json()
    piper = next(p for p in providers if p["engine"] == "piper")
    assert piper["health"]["healthy"] is True
    caps = piper["capabilities"]
    assert "en" in caps["languages"] and caps["voices"][0]["id"] == "en_US-joe-medium"
    assert caps["streaming"] is True and caps["cloning"] is False and caps["sample_rate"] == 22050
    assert ready.status_code == 200 and ready.json()["engines"]["piper"]["healthy"] is True
    assert "/v1/audio/speech" in openapi["paths"] and "/v1/personalities/{name}/speech" in openapi["paths"]


# --- OpenAI compatibility -----------------------------------------------------------


@pytest.mark.parametrize("fmt,codec", [("mp3", "mp3"), ("opus", "opus"), ("aac", "aac"), ("flac", "flac"), ("wav", "pcm_s16le"), ("pcm", None)])
def test_openai_client_gets_playable_audio(app: ChorusApp, fmt: str, codec: str | None, ear) -> None:
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="unused")
    response = client.audio.speech.create(model="tts-1", voice="joe", input="Thank you for your help.", response_format=fmt)
    data = response.read()
    if codec is None:
        # OpenAI's pcm: raw 24 kHz 16-bit mono.
        assert word_error_rate("Thank you for your help.", ear.hear_pcm(data, 24000)) <= 0.25
        return
    with av.open(io.BytesIO(data)) as container:
        assert container.streams.audio[0].codec_context.name.startswith(codec)
    samples, rate = decode(data)
    assert 0.8 < len(samples) / rate < 3.0
    if fmt in ("wav", "flac"):
        assert word_error_rate("Thank you for your help.", ear.hear(data)) <= 0.25


def test_openai_speed_and_errors(app: ChorusApp) -> None:
    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="unused")
    normal = client.audio.speech.create(model="tts-1", voice="joe", input="It is a beautiful day.", response_format="wav").read()
    fast = client.audio.speech.create(model="piper", voice="joe", input="It is a beautiful day.", response_format="wav", speed=2.0).read()
    ratio = len(decode(fast)[0]) / len(decode(normal)[0])
    assert 0.4 < ratio < 0.75  # fixed sentence padding is not scaled
    with pytest.raises(openai.NotFoundError) as err:
        client.audio.speech.create(model="tts-1", voice="nobody", input="Hi.")
    assert "nobody" in err.value.body["message"]
    with pytest.raises(openai.UnprocessableEntityError) as err:
        client.audio.speech.create(model="dall-e", voice="joe", input="Hi.")
    assert "unknown model" in err.value.body["message"]


# --- CLI against the running app ----------------------------------------------------


def test_cli_say_and_providers(app: ChorusApp, tmp_path, ear) -> None:
    from typer.testing import CliRunner

    from chorus.cli import cli

    runner = CliRunner()
    out = tmp_path / "said.wav"
    result = runner.invoke(cli, ["say", "Can you hear me now?", "--personality", "joe", "-o", str(out), "--url", app.url])
    assert result.exit_code == 0, result.output
    assert "spoken by piper" in result.output
    assert word_error_rate("Can you hear me now?", ear.hear(out.read_bytes())) <= 0.25

    result = runner.invoke(cli, ["say", "Hi.", "--personality", "nobody", "-o", str(tmp_path / "x.wav"), "--url", app.url])
    assert result.exit_code == 1 and "personality 'nobody' not found" in result.output
    assert not (tmp_path / "x.wav").exists()

    result = runner.invoke(cli, ["providers", "--url", app.url])
    assert result.exit_code == 0 and "piper" in result.output and "healthy" in result.output
    assert "en_US-joe-medium" in result.output

    result = runner.invoke(cli, ["providers", "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "no Chorus at" in result.output


def test_the_edge_through_the_real_proxy(app: ChorusApp) -> None:
    """Body caps and request ids hold behind Ray Serve's proxy, on a real HTTP connection."""
    def chunked():  # no Content-Length: 1 MiB, sent as it is produced
        for _ in range(256):
            yield b"a" * 4096

    with app.client() as c:
        r = c.post("/v1/personalities/joe/speech", content=chunked(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["limit"] == 64 * 1024, r.text
        r = c.post("/v1/audio/speech", content=b"a" * 100_000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["type"] == "invalid_request_error", r.text
        assert len(r.headers.get_list("x-request-id")) == 1
        r = c.get("/v1/personalities/joe%0A", headers={"x-request-id": "edge-1"})
        assert r.status_code == 404 and r.headers.get_list("x-request-id") == ["edge-1"]
        assert c.get("/healthz").status_code == 200


def test_openai_client_lists_models_and_speaks_through_an_alias(app: ChorusApp, ear) -> None:
    """An app written against OpenAI moves by changing only the base URL: its model names,
    its voice name (an alias), its `instructions`, and its streaming call."""
    with app.client() as c:
        assert c.put("/v1/personalities/ann", json={**JOE, "aliases": ["alloy"]}).status_code == 201
    app.wait_for("ann")
    try:
        client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="unused")
        ids = [m.id for m in client.models.list()]
        assert {"tts-1", "tts-1-hd", "gpt-4o-mini-tts", "piper"} <= set(ids)
        for model in ("tts-1", "tts-1-hd", "gpt-4o-mini-tts"):
            raw = client.audio.speech.with_raw_response.create(
                model=model, voice="alloy", input="Thank you for your help.", response_format="wav",
                instructions="Speak warmly.")
            assert raw.headers["x-chorus-instructions"] == "not-applied"
            assert word_error_rate("Thank you for your help.", ear.hear(raw.content)) <= 0.25
        with client.audio.speech.with_streaming_response.create(
                model="gpt-4o-mini-tts", voice="alloy", input="Can you hear me now?", response_format="wav") as streamed:
            data = b"".join(streamed.iter_bytes())
        assert word_error_rate("Can you hear me now?", ear.hear(data)) <= 0.25
    finally:
        with app.client() as c:
            c.delete("/v1/personalities/ann")


def test_openai_client_streams_sse_events(app: ChorusApp, ear) -> None:
    """`stream_format="sse"` through the official client's streaming call: the deltas are the
    speech (mp3, OpenAI's default), the last event has the usage."""
    import base64
    import json

    client = openai.OpenAI(base_url=f"{app.url}/v1", api_key="unused")
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="joe", input="Please open the door.", stream_format="sse") as streamed:
        assert streamed.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in streamed.iter_lines() if line.startswith("data:")]
    events = [json.loads(line.removeprefix("data:")) for line in lines]
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["characters"] == len("Please open the door.")
    mp3 = b"".join(base64.b64decode(e["audio"]) for e in events if e["type"] == "speech.audio.delta")
    assert word_error_rate("Please open the door.", ear.hear(mp3)) <= 0.25


def test_voices_are_listed(app: ChorusApp) -> None:
    with app.client() as c:
        voices = {v["id"]: v for v in c.get("/v1/audio/voices").json()["voices"]}
    assert voices["joe"]["engine"] == "piper" and voices["joe"]["clones"] is False and voices["joe"]["languages"] == ["en"]
