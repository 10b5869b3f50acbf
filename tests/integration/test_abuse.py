"""The abuse corpus against the real app, keys on: each hostile request gets a 4xx that
names its problem, nothing is half-written, and `/healthz` keeps answering throughout."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from chorus.auth.keys import digest
from chorus.common.constants import MAX_VOICE_SAMPLES
from chorus.samples.storage import DirectorySampleStore, SampleMeta
from tests.support import recordings as rec
from tests.support.chorus_app import STEADY_PIPER, ChorusApp, personality
from tests.support.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

ADMIN_KEY = "chorus_test_abuse_admin_0123456789"
SAMPLES_KEY = "chorus_test_abuse_samples_0123456789"
ADMIN = {"x-api-key": ADMIN_KEY}
SAMPLES = {"x-api-key": SAMPLES_KEY}
GOOGLE = {"voice": "en-US-Neural2-D"}
# What a provider might put in an error: a header injection, its endpoint, a path, a bucket.
HOSTILE_REASON = ("quota\r\nSet-Cookie: stolen=1\r\n at https://texttospeech.googleapis.com/v1/text:synthesize "
                  "reading /home/chorus/keys/google.json from s3://private-bucket/x — échec")


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer, tmp_path_factory: pytest.TempPathFactory) -> ChorusApp:
    keys = tmp_path_factory.mktemp("secret") / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [
        {"name": "ops", "sha256": digest(ADMIN_KEY), "scopes": ["admin"]},
        {"name": "uploader", "sha256": digest(SAMPLES_KEY), "scopes": ["samples"]},
    ]}))
    chorus.deploy(
        engines={"piper": {}, "google_tts": {"timeout_s": 5, "config": {"endpoint": google.base_url, "anonymous": True}}},
        auth={"keysFile": str(keys)},
    )
    chorus.write("joe", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
    chorus.write("cloudy", {"activeProvider": "google_tts", "fallbackChain": ["piper"],
                            "providers": {"google_tts": GOOGLE, "piper": STEADY_PIPER}})
    with chorus.client(headers=ADMIN) as c:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not all(
                c.get(f"/v1/personalities/{n}").status_code == 200 for n in ("joe", "cloudy")):
            time.sleep(0.2)
    return chorus


class Heartbeat:
    """Polls /healthz in the background; every answer must come, and be 200."""

    def __init__(self, url: str) -> None:
        self.url, self.answers, self.failures = url, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=5) as c:
            while not self._stop.is_set():
                try:
                    r = c.get("/healthz")
                    if r.status_code == 200:
                        self.answers += 1
                    else:
                        self.failures.append(f"{r.status_code}")
                except httpx.HTTPError as err:
                    self.failures.append(repr(err))
                time.sleep(0.05)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def visible_ascii(value: str) -> bool:
    return all(0x20 <= ord(ch) <= 0x7E for ch in value)


def test_the_corpus_gets_4xx_and_healthz_keeps_answering(app: ChorusApp, google: GoogleTTSServer) -> None:
    speech = "/v1/personalities/joe/speech"
    json_type = {"content-type": "application/json", **ADMIN}

    def chunked():  # no Content-Length
        for _ in range(256):
            yield b"a" * 4096

    with Heartbeat(app.url) as heartbeat, app.client() as c:
        # Oversized bodies, with and without Content-Length.
        r = c.post(speech, content=b"a" * 200_000, headers=json_type)
        assert r.status_code == 413 and "the limit is 65536 bytes" in r.json()["detail"]
        r = c.post(speech, content=chunked(), headers=json_type)
        assert r.status_code == 413, r.text
        # Deep nesting, JSON and YAML.
        r = c.post(speech, content=b"[" * 60_000, headers=json_type)
        assert r.status_code == 422 and "nests too deeply" in r.text, r.text
        r = c.put("/v1/personalities/deep", content=b"a: " + b"[" * 30_000,
                  headers={"content-type": "application/yaml", **ADMIN})
        assert r.status_code == 422 and "nests too deeply" in r.text, r.text
        # A name with a trailing newline.
        r = c.put("/v1/personalities/joe%0A", json={"activeProvider": "piper", "providers": {"piper": {}}}, headers=ADMIN)
        assert r.status_code == 422 and r.json()["detail"].startswith("name 'joe\\n'"), r.text
        # A 2,000-character note on a real recording.
        clean = rec.recordings().clean()
        wav = rec.encode(clean.samples, clean.rate)
        r = c.post("/v1/personalities/joe/samples", files={"file": ("a.wav", wav)}, data={"notes": "n" * 2000},
                   headers=SAMPLES)
        assert r.status_code == 422 and "notes" in r.text, r.text
        # A provider error carrying CR/LF, an endpoint, a path and a bucket: the client sees a category.
        google.knobs.force_status, google.knobs.force_message = 500, HOSTILE_REASON
        try:
            r = c.post("/v1/personalities/cloudy/speech", json={"text": "Hello."}, headers=ADMIN)
        finally:
            google.reset()
        assert r.status_code == 200 and r.headers["x-chorus-provider"] == "piper"
        fallback = r.headers["x-chorus-fallback"]
        assert fallback.startswith("google_tts;outcome=") and visible_ascii(fallback)
        for secret in ("Set-Cookie", "googleapis", "/home/", "s3://", "private-bucket"):
            assert secret not in fallback and secret not in r.text
        # A different speaker than the personality's samples.
        assert c.post("/v1/personalities/joe/samples", files={"file": ("a.wav", wav)}, headers=SAMPLES).status_code == 201
        other = rec.encode(rec.other_speaker(rec.recordings().clean_other_text()), clean.rate)
        r = c.post("/v1/personalities/joe/samples", files={"file": ("b.wav", other)}, headers=SAMPLES)
        assert r.status_code == 422 and "similarity" in r.text, r.text
        # The sample over the cap.
        store = DirectorySampleStore(app.samples_dir)
        for i in range(MAX_VOICE_SAMPLES - 1):
            store.put("joe", rec.minimal_wav(0.5, seed=i), SampleMeta(id=f"filler-{i}", duration=0.5, quality_score=1.0))
        r = c.post("/v1/personalities/joe/samples", files={"file": ("c.wav", rec.encode(
            rec.with_trailing_silence(clean.samples, clean.rate, 0.5), clean.rate))}, headers=SAMPLES)
        assert r.status_code == 409 and r.json()["limit"] == MAX_VOICE_SAMPLES, r.text
        assert len(store.list("joe")) == MAX_VOICE_SAMPLES
    assert heartbeat.failures == [] and heartbeat.answers > 0


def test_a_deleted_and_recreated_personality_has_no_samples(app: ChorusApp) -> None:
    clean = rec.recordings().clean()
    spec = {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}}
    with app.client(headers=ADMIN) as c:
        assert c.put("/v1/personalities/ann", json=spec).status_code == 201
        r = c.post("/v1/personalities/ann/samples", files={"file": ("a.wav", rec.encode(clean.samples, clean.rate))})
        assert r.status_code == 201, r.text
        assert c.delete("/v1/personalities/ann").status_code == 204
        assert c.put("/v1/personalities/ann", json=personality("ann", spec)).status_code == 201
        assert c.get("/v1/personalities/ann/samples").json() == []
        assert c.get("/v1/personalities/ann").json()["spec"].get("voiceSamples", []) == []
    assert not (Path(app.samples_dir) / "ann").exists() or not any((Path(app.samples_dir) / "ann").iterdir())
