"""Voice samples over HTTP against the real app: upload, checks, storage, removal, and
every kind of bad upload leaving nothing behind."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.support import recordings as rec
from tests.support.chorus_app import STEADY_PIPER, ChorusApp

pytestmark = pytest.mark.ray

LIMIT = 4 * 1024 * 1024
AVA = {
    "activeProvider": "piper",
    "providers": {"piper": STEADY_PIPER, "xtts_v2": {"variant": "british"}, "styletts2": {}},
}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp) -> ChorusApp:
    chorus.deploy(samples={"directory": str(chorus.root / "samples-api"), "max_upload_bytes": LIMIT})
    chorus.samples_dir = chorus.root / "samples-api"
    chorus.write("ava", AVA)
    chorus.wait_for("ava")
    return chorus


def stored_files(app: ChorusApp) -> list[str]:
    folder = app.samples_dir / "ava"
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []


def upload(app: ChorusApp, data: bytes, filename: str = "sample.wav", **fields: str):
    with app.client() as c:
        return c.post("/v1/personalities/ava/samples", files={"file": (filename, data)}, data=fields)


def test_upload_list_read_delete(app: ChorusApp) -> None:
    clean = rec.recordings().clean()
    r = upload(app, rec.encode(clean.samples, clean.rate), language="en", notes="studio", id="studio-1")
    assert r.status_code == 201, r.text
    sample, report = r.json()["sample"], r.json()["report"]
    assert sample["id"] == "studio-1" and sample["sample_rate"] == 24000 and sample["notes"] == "studio"
    assert abs(sample["duration"] - clean.duration_s) < 0.05
    assert report["accepted"] and set(report["fit_for"]) == {"xtts_v2", "styletts2"}
    snr = next(c for c in report["checks"] if c["name"] == "snr")
    assert snr["passed"] and snr["threshold"] == 20.0
    assert stored_files(app) == ["studio-1.json", "studio-1.wav"]

    with app.client() as c:
        assert [s["id"] for s in c.get("/v1/personalities/ava/samples").json()] == ["studio-1"]
        assert c.get("/v1/personalities/ava/samples/studio-1").json()["sha256"] == sample["sha256"]
        audio = c.get("/v1/personalities/ava/samples/studio-1/audio")
        assert audio.headers["content-type"] == "audio/wav"
        data, rate = sf.read(io.BytesIO(audio.content))
        assert rate == 24000 and data.ndim == 1
        # The personality mirrors what is stored.
        spec = c.get("/v1/personalities/ava").json()["spec"]
        assert spec["voiceSamples"] == [{"id": "studio-1", "stored": True, "language": "en", "notes": "studio"}]

        # The same audio again, losslessly re-encoded as FLAC: detected by hash.
        ints, rate = sf.read(io.BytesIO(rec.encode(clean.samples, clean.rate)), dtype="int16")
        flac = io.BytesIO()
        sf.write(flac, ints, rate, format="FLAC", subtype="PCM_16")
        dup = c.post("/v1/personalities/ava/samples", files={"file": ("again.flac", flac.getvalue())})
        assert dup.status_code == 409 and dup.json()["existing_id"] == "studio-1"

        assert c.delete("/v1/personalities/ava/samples/studio-1").status_code == 204
        assert c.get("/v1/personalities/ava/samples/studio-1").status_code == 404
        assert c.delete("/v1/personalities/ava/samples/studio-1").status_code == 404
        assert c.get("/v1/personalities/ava").json()["spec"].get("voiceSamples", []) == []
    assert stored_files(app) == []


def test_stereo_mp3_is_mixed_resampled_and_another_speaker_is_refused_unless_forced(app: ChorusApp) -> None:
    recs = rec.recordings()
    first = recs.clean()
    assert upload(app, rec.encode(first.samples, first.rate), id="first").status_code == 201
    other = rec.encode(rec.stereo(rec.other_speaker(recs.clean_other_text())), first.rate, "MP3", "MPEG_LAYER_III")
    r = upload(app, other, "other.mp3", id="other")
    assert r.status_code == 422, r.text
    assert r.json()["problem"] == "speaker_mismatch" and r.json()["similarity"] < 0.75
    assert "first (similarity" in r.json()["detail"] and "force=true" in r.json()["detail"]
    assert stored_files(app) == ["first.json", "first.wav"]
    # Keys are off here: the caller is the local admin and may force it.
    r = upload(app, other, "other.mp3", id="other", force="true")
    assert r.status_code == 201, r.text
    report = r.json()["report"]
    assert report["channels"] == 2 and report["codec"].upper().startswith("MPEG")
    speaker = next(c for c in report["checks"] if c["name"] == "speaker_consistency")
    assert not speaker["passed"] and speaker["severity"] == "warning" and "first" in speaker["message"]
    assert any("first" in w for w in report["warnings"])
    with app.client() as c:
        for sid in ("first", "other"):
            assert c.delete(f"/v1/personalities/ava/samples/{sid}").status_code == 204


def degraded(kind: str) -> tuple[bytes, str]:
    recs = rec.recordings()
    clean = recs.clean()
    wav = rec.encode(clean.samples, clean.rate)
    return {
        "noisy": (rec.encode(rec.with_white_noise(clean, 10.0), clean.rate), "snr"),
        "clipped": (rec.encode(rec.hard_clipped(clean.samples, 8.0), clean.rate), "clipping"),
        "8khz": (rec.encode(rec.resampled(clean.samples, clean.rate, 8000), 8000), "sample_rate"),
        "too-short": (rec.encode(recs.too_short().samples, clean.rate), "duration"),
        "silence": (rec.encode(rec.with_trailing_silence(clean.samples, clean.rate, 12.0), clean.rate), "speech_ratio"),
        "empty": (b"", "empty"),
        "text": (b"this is not audio, just text pretending to be a wav file\n" * 20, "undecodable"),
        "corrupt-header": (rec.wav_with_corrupt_header(wav), "undecodable"),
        "lying-header": (rec.wav_with_lying_header(wav), "truncated"),
        "truncated-flac": (rec.truncated(rec.encode(clean.samples, clean.rate, "FLAC")), "truncated"),
        "aac-in-mp4": (rec.aac_in_mp4(clean.samples, clean.rate), "unsupported_codec"),
        "over-60s": (rec.encode(recs.over_max_duration().samples, clean.rate), "too_long"),
    }[kind]


@pytest.mark.parametrize("kind", ["noisy", "clipped", "8khz", "too-short", "silence", "empty", "text",
                                  "corrupt-header", "lying-header", "truncated-flac", "aac-in-mp4", "over-60s"])
def test_bad_uploads_are_refused_with_the_reason_and_store_nothing(app: ChorusApp, kind: str) -> None:
    data, expected = degraded(kind)
    r = upload(app, data)
    assert r.status_code == 422, r.text
    body = r.json()
    failed = [c["name"] for c in body.get("checks", []) if not c["passed"] and c["severity"] == "hard"]
    assert expected in failed or body.get("problem") == expected, body
    if kind == "noisy":
        snr = next(c for c in body["checks"] if c["name"] == "snr")
        assert abs(snr["value"] - 10.0) < 3.0
    assert stored_files(app) == []
    with app.client() as c:
        assert c.get("/v1/personalities/ava/samples").json() == []
        assert c.get("/healthz").status_code == 200


def test_upload_protocol_errors(app: ChorusApp) -> None:
    clean = rec.recordings().clean()
    wav = rec.encode(clean.samples, clean.rate)
    with app.client() as c:
        r = c.post("/v1/personalities/ava/samples", content=wav, headers={"content-type": "audio/wav"})
        assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
        r = c.post("/v1/personalities/ava/samples", files={"other": ("x.wav", wav)})
        assert r.status_code == 422 and "'file' part" in r.json()["detail"]
        r = c.post("/v1/personalities/nobody/samples", files={"file": ("x.wav", wav)})
        assert r.status_code == 404
        r = c.post("/v1/personalities/ava/samples", files={"file": ("x.wav", wav)}, data={"language": "klingon"})
        assert r.status_code == 422 and "language" in r.json()["detail"]
        r = c.post("/v1/personalities/ava/samples", files={"file": ("x.wav", wav)}, data={"id": "../etc"})
        assert r.status_code == 422
    assert stored_files(app) == []


def test_oversized_uploads_are_refused_before_being_read_whole(app: ChorusApp) -> None:
    big = np.zeros(LIMIT, dtype=np.int16).tobytes()  # 8 MiB of WAV data
    with app.client() as c:
        r = c.post("/v1/personalities/ava/samples", files={"file": ("big.wav", big)})
        assert r.status_code == 413 and r.json()["limit"] > 0

        # No Content-Length (chunked): refused while streaming.
        boundary = "chorusboundary"

        def chunks():
            yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"big.wav\"\r\n"
                   "Content-Type: audio/wav\r\n\r\n").encode()
            for _ in range(16):
                yield b"\0" * (1024 * 1024)
            yield f"\r\n--{boundary}--\r\n".encode()

        r = c.post("/v1/personalities/ava/samples", content=chunks(),
                   headers={"content-type": f"multipart/form-data; boundary={boundary}"})
        assert r.status_code == 413
        assert c.get("/healthz").status_code == 200
    assert stored_files(app) == []


def test_cli_samples_check_and_add(app: ChorusApp, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from chorus.cli import cli

    clean = rec.recordings().clean_long()
    good = tmp_path / "good.wav"
    good.write_bytes(rec.encode(clean.samples, clean.rate))
    noisy = tmp_path / "noisy.wav"
    noisy.write_bytes(rec.encode(rec.with_white_noise(clean, 10.0), clean.rate))

    runner = CliRunner()
    result = runner.invoke(cli, ["samples", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "accepted" in result.output and "fit for xtts_v2" in result.output
    result = runner.invoke(cli, ["samples", "check", str(noisy)])
    assert result.exit_code == 1 and "FAIL snr" in result.output and "rejected" in result.output

    result = runner.invoke(cli, ["samples", "add", "ava", str(good), "--id", "long-1", "--url", app.url])
    assert result.exit_code == 0, result.output
    assert "stored sample long-1 of ava" in result.output
    result = runner.invoke(cli, ["samples", "add", "ava", str(noisy), "--url", app.url])
    assert result.exit_code == 1 and "FAIL snr" in result.output
    with app.client() as c:
        assert [s["id"] for s in c.get("/v1/personalities/ava/samples").json()] == ["long-1"]
        assert c.delete("/v1/personalities/ava/samples/long-1").status_code == 204
