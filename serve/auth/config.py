"""How a replica finds its keys (`IngressArgs.auth`); absent, the API is open."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

KEYS_FILE_ENV = "CHORUS_API_KEYS_FILE"
"""Names a key file and so turns keys on, for `chorus serve` and for any Serve config whose
args carry no `auth` (read by the CLI and by `chorus.app.build_app`)."""


class AuthConfig(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    keys_file: Path | None = Field(
        None, description="YAML or JSON key file (a mounted Secret); reloaded when it changes."
    )
    keys_env: str | None = Field(
        "CHORUS_API_KEYS", description="Environment variable holding a key document, read at start."
    )
    aws_secret_id: str | None = Field(None, description="AWS Secrets Manager secret holding a key document.")
    aws_region: str | None = None
    aws_refresh_s: float = Field(300.0, gt=0, description="How often the Secrets Manager secret is re-read.")
    failed_per_minute: int = Field(
        20, ge=1, description="Requests with a missing or wrong key one client address may send per minute "
        "(moving window); more get 429 without a key being looked at, and only the first of each minute is "
        "logged at INFO: no online guessing, no log flooding.",
    )

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AuthConfig | None:
        """`{keysFile: $CHORUS_API_KEYS_FILE}` when that is set, else None (keys off)."""
        path = environ.get(KEYS_FILE_ENV)
        return cls(keys_file=Path(path)) if path else None
