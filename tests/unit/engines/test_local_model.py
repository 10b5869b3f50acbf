"""What the local-model engines share (`deployments.local_model`), without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deployments.base import EngineUnavailableError, VoiceSampleRef
from deployments.local_model import ConditioningCache, LocalModelConfig, pcm16, read_sample, sample_bytes

ROOT = Path(__file__).resolve().parents[3]


def test_importing_the_engines_loads_no_model_library() -> None:
    code = (
        "import sys, deployments.xtts, deployments.styletts2; "
        "assert not {'torch', 'TTS', 'styletts2'} & set(sys.modules), sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


async def test_conditioning_cache_is_an_lru_with_counters() -> None:
    cache: ConditioningCache[str, str] = ConditioningCache(capacity=2)
    computed: list[str] = []

    def compute(key: str) -> str:
        computed.append(key)
        return key.upper()

    assert await cache.get("a", compute, "a") == ("A", "computed")
    assert await cache.get("b", compute, "b") == ("B", "computed")
    assert await cache.get("a", compute, "a") == ("A", "cached")  # a is now the most recent
    assert await cache.get("c", compute, "c") == ("C", "computed")  # b goes
    assert await cache.get("a", compute, "a") == ("A", "cached")
    assert await cache.get("b", compute, "b") == ("B", "computed")
    assert computed == ["a", "b", "c", "b"]
    assert cache.stats() == {"hits": 2, "misses": 4, "entries": 2, "capacity": 2}


def test_config_expands_the_model_dir() -> None:
    assert LocalModelConfig(model_dir="~/models").model_dir == Path("~/models").expanduser()
    with pytest.raises(ValueError, match="Extra inputs"):
        LocalModelConfig.model_validate({"model_directory": "/x"})


def test_pcm16_clips_and_zeroes_nan() -> None:
    pcm = np.frombuffer(pcm16(np.array([0.0, 0.5, 2.0, -2.0, np.nan], dtype=np.float32)), dtype="<i2")
    assert pcm.tolist() == [0, 16383, 32767, -32767, 0]


def test_unreadable_sample_makes_the_engine_unavailable() -> None:
    ref = VoiceSampleRef(id="broken", language="en", sha256="0" * 64, audio=b"not a wav")
    with pytest.raises(EngineUnavailableError, match="reference sample 'broken' unreadable"):
        read_sample(ref, "xtts_v2")


def test_an_s3_sample_is_read_from_the_sample_stores_endpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Security audit L4: engines read `s3://` refs from AWS's default endpoint whatever the
    sample store used, so a same-named bucket on AWS could supply the voice."""
    import boto3

    from tests.support.s3_server import CREDENTIALS, s3_server

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    for var, value in CREDENTIALS.items():  # what the engine's boto3 finds in its environment
        monkeypatch.setenv(var, value)
    # A fresh default session, as in an engine's process: boto3 keeps the credentials its
    # default session first found, and an earlier test's would be refused here.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with s3_server(tmp_path) as endpoint:
        s3 = boto3.client("s3", endpoint_url=endpoint)
        s3.create_bucket(Bucket="voices")
        s3.put_object(Bucket="voices", Key="joe/s0.wav", Body=b"RIFF-the-sample")
        ref = VoiceSampleRef(id="s0", language="en", sha256="0" * 64, path="s3://voices/joe/s0.wav",
                             endpoint_url=endpoint)
        assert sample_bytes(ref) == b"RIFF-the-sample"
