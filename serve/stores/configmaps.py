"""The per-personality ConfigMap: what the operator renders from a VoicePersonality and
the ingress's Kubernetes store reads. Both sides use this module, so the format is
defined once."""

from __future__ import annotations

from typing import Any

from chorus.common.constants import GENERATION_ANNOTATION, PERSONALITY_LABEL
from chorus.personalities import Personality, dump_yaml, parse_text

DATA_KEY = "personality.yaml"
NAME_PREFIX = "chorus-personality-"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "chorus-operator"


def configmap_name(personality: str) -> str:
    return f"{NAME_PREFIX}{personality}"


def render(personality: Personality, *, generation: int) -> dict[str, Any]:
    """The ConfigMap body (without namespace and ownerReferences, which the caller adds)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(personality.name),
            "labels": {
                PERSONALITY_LABEL: personality.name,
                "app.kubernetes.io/part-of": "chorus",
                MANAGED_BY_LABEL: MANAGED_BY,
            },
            "annotations": {GENERATION_ANNOTATION: str(generation)},
        },
        "data": {DATA_KEY: dump_yaml(personality)},
    }


def parse(data: dict[str, str] | None, *, name: str) -> Personality:
    """The personality a ConfigMap carries (PersonalityError when it is not one)."""
    return parse_text((data or {}).get(DATA_KEY, ""), default_name=name)
