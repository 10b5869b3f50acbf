"""A long stream whose Piper replica dies half way: the ingress asks the replica Serve starts
instead for the rest of the text only, and the listener gets every sentence once, to the end
(chorus.ingress.handles). Before, the repeat redid every sentence already heard, leaving the
stream silent that long: past the 30 s chunk timeout it ended, cleanly but short (seen in CI)."""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.load import TEXTS, WAV_HEADER_BYTES
from tests.support.replica_fault import kill_replica, replica_names
from tests.support.serve_logs import lines_saying

pytestmark = pytest.mark.ray

REPEATS = 60
LONG_TEXT = " ".join(TEXTS[i % len(TEXTS)] for i in range(REPEATS))
ONE_PIPER = {"autoscaling_config": {"min_replicas": 1, "initial_replicas": 1, "max_replicas": 1}}
RESUMED_WITH_THE_REST = "resuming once with the"  # what chorus.ingress.handles logs then


def test_a_stream_whose_replica_dies_resumes_with_the_rest_of_its_text(chorus: ChorusApp) -> None:
    chorus.deploy(engines={"piper": {"timeout_s": 30}}, deployments={"piper": ONE_PIPER})
    chorus.write("joe", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
    chorus.wait_for("joe")
    with httpx.Client(base_url=chorus.url, timeout=60) as client:
        each = [len(client.post("/v1/personalities/joe/speech", json={"text": t, "format": "pcm"}).content)
                for t in TEXTS]
    expected = sum(each[i % len(TEXTS)] for i in range(REPEATS))
    resumed = lines_saying(RESUMED_WITH_THE_REST)
    (piper,) = replica_names("piper")
    half_way, got = threading.Event(), {}

    def listen() -> None:
        body = {"text": LONG_TEXT, "format": "wav", "stream": True}
        with httpx.Client(base_url=chorus.url, timeout=300) as client:
            with client.stream("POST", "/v1/personalities/joe/speech", json=body) as r:
                got["status"] = r.status_code
                data = b""
                try:
                    for chunk in r.iter_bytes():
                        data += chunk
                        if len(data) > expected // 2:
                            half_way.set()
                except httpx.HTTPError as err:
                    got["error"] = repr(err)
                got["data"] = data

    listener = threading.Thread(target=listen)
    listener.start()
    assert half_way.wait(120), got
    assert listener.is_alive(), "the stream ended before half its audio"
    assert kill_replica("piper")[0] == piper
    listener.join()

    assert got["status"] == 200 and "error" not in got, got.get("error")
    assert piper not in replica_names("piper")  # the replica that began the stream is gone
    # The rest came from the new replica, asked for the rest of the text, not all of it again.
    assert lines_saying(RESUMED_WITH_THE_REST) == resumed + 1
    # Every sentence once: as much PCM as the texts spoken one by one (Piper's noise pinned).
    pcm = len(got["data"]) - WAV_HEADER_BYTES
    assert abs(pcm - expected) < 0.02 * expected, (pcm, expected)
