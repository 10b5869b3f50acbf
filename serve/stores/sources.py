"""Where personalities come from, as configured in `AppArgs.personalities`: pure data,
so validating a config never imports a backend (`chorus.stores.opening.open_store` picks one)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from chorus.common.constants import PERSONALITY_LABEL


class KubernetesSource(BaseModel):
    """The operator's ConfigMaps (`chorus.stores.kubernetes`)."""

    model_config = ConfigDict(extra="forbid")

    namespace: str | None = Field(
        None, description="namespace to watch; None = the pod's own, '*' = every namespace"
    )
    label_selector: str = Field(PERSONALITY_LABEL, description="selects the operator's ConfigMaps")
    kubeconfig: Path | None = Field(None, description="None = in-cluster config, else this file (or $KUBECONFIG)")
    watch_timeout_s: int = Field(300, gt=0, description="server-side timeout of one watch request")


class PersonalitySource(BaseModel):
    """Where personalities come from: exactly one of `directory` or `kubernetes`."""

    model_config = ConfigDict(extra="forbid")

    directory: Path | None = None
    kubernetes: KubernetesSource | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> PersonalitySource:
        if (self.directory is None) == (self.kubernetes is None):
            raise ValueError("give exactly one of personalities.directory or personalities.kubernetes")
        if self.directory is not None:
            self.directory = self.directory.expanduser()
        return self
