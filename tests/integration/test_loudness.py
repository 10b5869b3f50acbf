"""One loudness for a personality through the real Serve app: the same text through real Piper
and through Google's, Azure's and IBM's wire-protocol servers (real Piper speech, each at its
own level) lands within 1 LU of the personality's target, whole or streamed, measured by an
ITU-R BS.1770 meter; with levelling off the engines are several LU apart, as they speak."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf
import soxr

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.servers.azure_tts import KEY, AzureTTSServer
from tests.support.servers.google_tts import GoogleTTSServer
from tests.support.servers.ibm_watson import IBMWatsonServer

pytestmark = pytest.mark.ray

TEXT = "Please open the door. I would like a cup of coffee. Thank you for your help."
ENGINES = ("piper", "google_tts", "azure_tts", "ibm_watson")
# Each engine at its own level: Piper a quarter of its volume, Google 6 dB up.
PROVIDERS = {
    "piper": {**STEADY_PIPER, "settings": {**STEADY_PIPER["settings"], "volume": 0.25}},
    "google_tts": {"voice": "en-US-Neural2-D", "settings": {"volumeGainDb": 6}},
    "azure_tts": {"voice": "en-US-JennyNeural"},
    "ibm_watson": {"voice": "en-US_MichaelV3Voice"},
}


@pytest.fixture(scope="module")
def servers(google: GoogleTTSServer) -> Iterator[dict[str, str]]:
    ibm, azure = IBMWatsonServer(google.speaker), AzureTTSServer(google.speaker)
    with ibm.serve(), azure.serve():
        yield {"ibm": ibm.base_url, "azure": azure.base_url}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp, google: GoogleTTSServer, servers: dict[str, str]) -> ChorusApp:
    chorus.deploy(engines={
        "piper": {"timeout_s": 30},
        "google_tts": {"timeout_s": 30, "config": {"endpoint": google.base_url, "anonymous": True}},
        "azure_tts": {"timeout_s": 30, "config": {"endpoint": servers["azure"], "key": KEY}},
        "ibm_watson": {"timeout_s": 30, "config": {"url": servers["ibm"], "bearer_token": "test-token"}},
    })
    chain = {"activeProvider": "piper", "fallbackChain": list(ENGINES[1:]), "providers": PROVIDERS}
    chorus.write("levelled", chain)
    chorus.write("quieter", {**chain, "loudness": {"targetLufs": -23}})
    chorus.write("as-spoken", {**chain, "loudness": {"enabled": False}})
    for name in ("levelled", "quieter", "as-spoken"):
        chorus.wait_for(name)
    return chorus


def loudness(app: ChorusApp, name: str, engine: str, stream: bool = False) -> tuple[float, float]:
    """The answer's integrated loudness (LUFS) and true peak (dBTP, 4x oversampled)."""
    body = {"text": TEXT, "provider": engine, "format": "wav", "stream": stream}
    with app.client() as c:
        r = c.post(f"/v1/personalities/{name}/speech", json=body)
    assert r.status_code == 200 and r.headers["x-chorus-provider"] == engine, r.text
    if stream:  # a stream's WAV header cannot know the length: 44 bytes, then PCM
        rate = int.from_bytes(r.content[24:28], "little")
        audio = np.frombuffer(r.content[44:], "<i2") / 32768.0
    else:
        audio, rate = sf.read(io.BytesIO(r.content), dtype="float64")
    peak = np.abs(soxr.resample(audio, rate, 4 * rate, quality="VHQ")).max()
    return float(pyloudnorm.Meter(rate).integrated_loudness(audio)), 20 * math.log10(peak)


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_every_engine_lands_on_the_personalitys_target(app: ChorusApp, stream: bool) -> None:
    heard = {engine: loudness(app, "levelled", engine, stream) for engine in ENGINES}
    assert all(abs(lufs - -16.0) <= 1.0 for lufs, _ in heard.values()), heard
    assert all(peak <= -1.0 + 0.05 for _, peak in heard.values()), heard
    quieter = {engine: loudness(app, "quieter", engine, stream)[0] for engine in ENGINES}
    assert all(abs(lufs - -23.0) <= 1.0 for lufs in quieter.values()), quieter


def test_off_each_engine_speaks_at_its_own_level(app: ChorusApp) -> None:
    own = {engine: loudness(app, "as-spoken", engine)[0] for engine in ENGINES}
    assert max(own.values()) - min(own.values()) >= 6.0, own  # what levelling evens out
