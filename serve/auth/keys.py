"""API keys: the key file's entries, and the key as a replica holds it (a hash, never the
key). The file format (`keys: [{name, sha256 | key, scopes, rateLimit?, charactersPerDay?}]`)
is the same wherever keys come from: a mounted Secret, the environment, Secrets Manager."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated, Self

import limits
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.alias_generators import to_camel

from chorus.auth.scopes import Scope

KEY_PREFIX = "chorus_"


def _rate_limit(value: str) -> str:
    try:
        limits.parse(value)
    except ValueError as err:
        raise ValueError(f"not a rate limit like '60/minute': {err}") from None
    return value


RateLimit = Annotated[str, AfterValidator(_rate_limit)]


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh key: 256 random bits, prefixed so a leaked one is recognisable in a scan."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyLimits(BaseModel):
    """What one key may spend; absent means unlimited."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    rate_limit: RateLimit | None = Field(None, description="Requests per window, e.g. '60/minute' (moving window).")
    characters_per_day: int | None = Field(None, ge=1, description="Characters synthesized per UTC day.")
    characters_per_month: int | None = Field(None, ge=1, description="Characters synthesized per UTC calendar month.")
    max_concurrent: int | None = Field(
        None, ge=1, description="Requests the key may have under way at once on one ingress replica (429 beyond).",
    )


class KeyEntry(KeyLimits):
    """One entry of a key file: the key itself or its SHA-256 (hex), and what it may do."""

    # Anchored: pydantic searches a pattern anywhere in the value ("a b\n" would pass unanchored).
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$", description="Shown in logs, spans and stats.")
    sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    # At least 32 characters: a short hand-chosen key could be guessed online.
    key: SecretStr | None = Field(None, min_length=32)
    scopes: list[Scope] = Field(min_length=1)

    @model_validator(mode="after")
    def _one_secret(self) -> Self:
        if (self.sha256 is None) == (self.key is None):
            raise ValueError(f"key {self.name!r}: give exactly one of 'sha256' and 'key'")
        return self

    def api_key(self) -> ApiKey:
        hashed = self.sha256 or digest(self.key.get_secret_value())  # type: ignore[union-attr]
        spend = {field: getattr(self, field) for field in KeyLimits.model_fields}
        return ApiKey(name=self.name, sha256=hashed, scopes=frozenset(self.scopes), **spend)


class KeyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[KeyEntry] = Field(default_factory=list)


class ApiKey(KeyLimits):
    """A key as a replica holds it, and the caller a request authenticated as."""

    name: str
    sha256: str = Field(repr=False, exclude=True)
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return Scope.ADMIN in self.scopes or scope in self.scopes

    def matches(self, presented_sha256: str) -> bool:
        return hmac.compare_digest(self.sha256, presented_sha256)

