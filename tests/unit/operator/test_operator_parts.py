"""The operator's pure parts: settings from its environment and status conditions."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from voice_operator.conditions import Condition, merge, ready
from voice_operator.settings import OperatorSettings


def test_settings_come_from_the_deployment_environment() -> None:
    s = OperatorSettings.from_env({
        "CHORUS_OPERATOR_SAMPLES_DIR": "/data/samples", "CHORUS_OPERATOR_SAMPLE_VOLUMES": "per-personality",
        "CHORUS_OPERATOR_STORAGE_CLASS": "", "CHORUS_OPERATOR_VOLUME_SIZE": "2Gi", "HOME": "/root",
    })
    assert s.samples_dir == Path("/data/samples") and s.sample_volumes == "per-personality"
    assert s.storage_class is None and s.volume_size == "2Gi"
    with pytest.raises(ValidationError, match="sample_volumes"):
        OperatorSettings.from_env({"CHORUS_OPERATOR_SAMPLE_VOLUMES": "some"})
    with pytest.raises(ValidationError, match="extra"):
        OperatorSettings.from_env({"CHORUS_OPERATOR_SAMPLE_DIR": "/typo"})


def test_transition_time_moves_only_when_the_status_flips() -> None:
    ok = Condition(type="ConfigRendered", status="True", reason="Rendered")
    first = merge(None, [ok], generation=1)
    old = [{**first[0], "lastTransitionTime": "2020-01-01T00:00:00Z"}]
    same = merge(old, [ok], generation=2)
    assert same[0]["lastTransitionTime"] == "2020-01-01T00:00:00Z" and same[0]["observedGeneration"] == 2
    flipped = merge(old, [ok.model_copy(update={"status": "False", "reason": "InvalidSpec"})], generation=3)
    assert flipped[0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"


def test_ready_names_the_first_part_that_is_not() -> None:
    config = Condition(type="ConfigRendered", status="True", reason="Rendered")
    samples = Condition(type="SamplesReady", status="False", reason="FetchFailed", message="a: HTTP 503")
    r = ready(config, samples)
    assert (r.status, r.reason, r.message) == ("False", "FetchFailed", "a: HTTP 503")
    assert ready(config, samples.model_copy(update={"status": "True"})).status == "True"
