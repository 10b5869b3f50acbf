"""A replica being drained finishes its in-flight requests: a stream that outlasts Serve's
default 20 s drain keeps going to its last sentence while a redeploy replaces the Ingress
replica serving it and the Piper replica speaking it (the profiles' graceful_shutdown_timeout_s,
serve/configs/)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.load import TEXTS, WAV_HEADER_BYTES
from tests.support.replica_fault import replica_names
from tests.support.serve_logs import lines_saying

pytestmark = pytest.mark.ray

# Long enough to stream for well over Serve's default graceful_shutdown_timeout_s (20 s).
REPEATS = 150
LONG_TEXT = " ".join(TEXTS[i % len(TEXTS)] for i in range(REPEATS))
SERVE_DEFAULT_DRAIN_S = 20


def deploy(chorus: ChorusApp, refresh_s: float) -> None:
    # A changed application argument makes a new version of every deployment (Serve's code
    # version hashes the arguments): Serve starts new replicas and drains the old ones.
    chorus.deploy(engines={"piper": {"timeout_s": 30}}, status_refresh_s=refresh_s)
    chorus.write("joe", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
    chorus.wait_for("joe")


def ingress_replicas() -> set[str]:
    import ray

    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::chorus#Ingress#")}


def ingress_stopping() -> int:
    from ray import serve

    app = serve.status().applications.get("chorus")
    ingress = app.deployments.get("Ingress") if app is not None else None  # absent while the app builds
    return ingress.replica_states.get("STOPPING", 0) if ingress is not None else 0


def test_a_stream_outlives_the_redeploy_that_drains_its_replica(chorus: ChorusApp) -> None:
    assert len(LONG_TEXT) < 10_000  # the ingress's default max_text_characters
    deploy(chorus, refresh_s=1.0)
    old, old_pipers = ingress_replicas(), set(replica_names("piper"))
    resumed = lines_saying("resuming once")  # chorus.ingress.handles, when an engine replica dies
    body = {"text": LONG_TEXT, "format": "wav", "stream": True}
    under_way, got = threading.Event(), {}

    def listen() -> None:
        with httpx.Client(base_url=chorus.url, timeout=300) as client:
            with client.stream("POST", "/v1/personalities/joe/speech", json=body) as r:
                got["status"] = r.status_code
                chunks = r.iter_bytes()
                data = next(chunks)
                under_way.set()
                try:
                    got["data"] = data + b"".join(chunks)
                except httpx.HTTPError as err:  # the drained replica was stopped mid-stream
                    got["error"] = repr(err)
        got["ended"] = time.monotonic()

    listener = threading.Thread(target=listen)
    listener.start()
    assert under_way.wait(60)
    redeploy = threading.Thread(target=deploy, args=(chorus, 2.0))
    redeploy.start()  # returns once the app is RUNNING again: after the drain
    while not ingress_stopping():
        assert listener.is_alive(), "the stream ended before its replica was drained"
        time.sleep(0.1)
    draining = time.monotonic()
    listener.join()
    redeploy.join()

    assert got["status"] == 200 and "error" not in got, got.get("error")
    assert not old & ingress_replicas()  # the replica that served the stream is gone
    # The Piper replica speaking it was drained too, and finished the stream's call: it was not
    # killed under it (the ingress would have resumed the stream on another).
    assert not old_pipers & set(replica_names("piper"))
    assert lines_saying("resuming once") == resumed
    # It kept streaming while drained, longer than Serve's default drain would have let it.
    assert got["ended"] - draining > SERVE_DEFAULT_DRAIN_S, got["ended"] - draining
    # Full audio: as much PCM as its texts streamed one by one (Piper's noise is pinned, one
    # chunk per sentence), from the new replica, which serves.
    with httpx.Client(base_url=chorus.url, timeout=60) as client:
        each = [len(client.post("/v1/personalities/joe/speech", json={**body, "text": t}).content) - WAV_HEADER_BYTES
                for t in TEXTS]
    expected = sum(each[i % len(TEXTS)] for i in range(REPEATS))
    assert abs(len(got["data"]) - WAV_HEADER_BYTES - expected) < 0.02 * expected, (len(got["data"]), expected)
