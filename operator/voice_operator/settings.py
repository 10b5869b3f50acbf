"""What the operator is told by its Deployment (environment, `CHORUS_OPERATOR_*`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from chorus.constants import MAX_SAMPLE_BYTES

ENV_PREFIX = "CHORUS_OPERATOR_"


class OperatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    samples_dir: Path = Field(
        Path("/var/lib/chorus/samples"),
        description="mount of the shared sample volume; one directory per personality",
    )
    sample_volumes: Literal["shared", "per-personality"] = Field(
        "shared", description="per-personality: also claim a PVC of its own for each personality"
    )
    storage_class: str | None = Field(None, description="storage class of per-personality PVCs")
    volume_size: str = Field("1Gi", pattern=r"^[0-9]+(Ki|Mi|Gi|Ti)$")
    fetch_timeout_s: float = Field(30.0, gt=0, description="download of one sample by URL")
    max_sample_bytes: int = Field(MAX_SAMPLE_BYTES, gt=0, description="same limit as uploads")
    watch_timeout_s: int = Field(300, gt=0, description="server-side timeout of kopf's watches")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values = {
            key.removeprefix(ENV_PREFIX).lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and value != ""
        }
        return cls.model_validate(values)
