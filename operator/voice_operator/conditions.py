"""Status conditions in the Kubernetes convention (type, status, reason, message,
observedGeneration, lastTransitionTime that moves only when the status flips)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ConditionType = Literal["Ready", "ConfigRendered", "SamplesReady"]


class Condition(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)

    type: ConditionType
    status: Literal["True", "False", "Unknown"]
    reason: str = Field(pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    message: str = ""
    observed_generation: int | None = None
    last_transition_time: str | None = None


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(previous: list[dict[str, Any]] | None, updates: list[Condition], generation: int) -> list[dict[str, Any]]:
    """The new conditions list: `updates` replace conditions of their type, keeping the
    old transition time when the status did not change."""
    old = {c.get("type"): c for c in previous or []}
    out = []
    for cond in updates:
        before = old.get(cond.type)
        since = before.get("lastTransitionTime") if before and before.get("status") == cond.status else None
        out.append(
            cond.model_copy(update={"observed_generation": generation, "last_transition_time": since or now()})
            .model_dump(by_alias=True, exclude_none=True)
        )
    return out


def ready(config: Condition, samples: Condition) -> Condition:
    """Ready when both halves are; otherwise the first that is not says why."""
    for part in (config, samples):
        if part.status != "True":
            return Condition(type="Ready", status=part.status, reason=part.reason, message=part.message)
    return Condition(type="Ready", status="True", reason="Serving", message="config rendered and samples ready")
