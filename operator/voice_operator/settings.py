"""What the operator is told by its Deployment (environment, `CHORUS_OPERATOR_*`)."""

from __future__ import annotations

import os
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from chorus.common.constants import MAX_SAMPLE_BYTES
from voice_operator.safe_fetch import FetchPolicy

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
    fetch_timeout_s: float = Field(
        30.0, gt=0, description="deadline of one sample's whole download by URL, redirects included"
    )
    max_sample_bytes: int = Field(MAX_SAMPLE_BYTES, gt=0, description="same limit as uploads")
    max_sample_rate: int = Field(
        48_000, gt=0, description="refused from the header, before decoding (chorus.samples.audio)"
    )
    allowed_domains: tuple[str, ...] = Field(
        (), description="comma-separated hosts sample URLs may name (subdomains included); empty: any public host"
    )
    # Sample URLs reach only public addresses, save these (the chart's
    # operator.allowPrivateSampleNetworks: an artifact server inside the cluster; tests' loopback).
    allow_private_networks: tuple[IPv4Network | IPv6Network, ...] = Field(
        (), description="comma-separated CIDRs exempt from the public-address rule"
    )
    watch_timeout_s: int = Field(300, gt=0, description="server-side timeout of kopf's watches")

    @field_validator("allowed_domains", "allow_private_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def fetch_policy(self) -> FetchPolicy:
        return FetchPolicy(
            max_bytes=self.max_sample_bytes, deadline_s=self.fetch_timeout_s,
            allowed_domains=self.allowed_domains, allowed_networks=self.allow_private_networks,
        )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OperatorSettings:
        env = os.environ if environ is None else environ
        values = {
            key.removeprefix(ENV_PREFIX).lower(): value
            for key, value in env.items()
            if key.startswith(ENV_PREFIX) and value != ""
        }
        return cls.model_validate(values)
