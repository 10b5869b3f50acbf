"""Cloud quotas in the real app: the Google TTS engine talking to a local server that
speaks Google's REST protocol, its neural allowance enforced, Piper behind it."""

from __future__ import annotations

import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.servers.google_tts import GoogleTTSServer

pytestmark = pytest.mark.ray

TEXT = "Thank you for your help."  # 24 characters


def test_an_exhausted_enforced_allowance_falls_back_to_piper(chorus: ChorusApp, google: GoogleTTSServer) -> None:
    chorus.deploy(
        engines={"piper": {}, "google_tts": {"config": {"endpoint": google.base_url, "anonymous": True}}},
        cloud_quotas={"google_tts": {"neural": len(TEXT)}},
    )
    chorus.write("cloudy", {"activeProvider": "google_tts", "fallbackChain": ["piper"],
                            "providers": {"google_tts": {"voice": "en-US-Neural2-D"}, "piper": STEADY_PIPER}})
    chorus.wait_for("cloudy")
    with chorus.client() as c:
        first = c.post("/v1/personalities/cloudy/speech", json={"text": TEXT})
        second = c.post("/v1/personalities/cloudy/speech", json={"text": TEXT})
        quotas = c.get("/v1/quotas").json()["quotas"]
    assert first.status_code == 200 and first.headers["x-chorus-provider"] == "google_tts", first.text
    assert second.status_code == 200 and second.headers["x-chorus-provider"] == "piper", second.text
    assert second.headers["x-chorus-fallback"] == 'google_tts;outcome=skipped;reason="quota exhausted"'
    assert sum(r.path.endswith("text:synthesize") for r in google.requests) == 1
    neural = next(q for q in quotas if (q["engine"], q["voiceClass"]) == ("google_tts", "neural"))
    assert (neural["used"], neural["remaining"], neural["exhausted"]) == (len(TEXT), 0, True)
    # Kept beside the samples, where a restarted replica finds it.
    assert (chorus.samples_dir / ".cloud-quotas.sqlite3").is_file()
