"""Voice samples of personalities: upload (checked, stored), listing, removal, and the
sample refs cloning engines receive.

The sample store (`chorus.samples.storage`) is the truth; each personality's
`voiceSamples` mirrors it so `GET /v1/personalities/{name}` shows what a voice clones from.
Checks and storage block (CPU, disk, network), so callers run these methods in a thread.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, Field

from chorus.constants import MAX_SAMPLE_BYTES
from chorus.personalities import Personality, VoiceSample
from chorus.samples.ingest import IngestResult, SampleIngest
from chorus.samples.models import SampleModels
from chorus.samples.quality import cloning_engines, duration_fit
from chorus.samples.storage import DirectorySampleStore, SampleStore, StoredSample
from chorus.samples.storage_s3 import S3SampleStore
from deployments.base import EngineId, VoiceSampleRef


class SamplesConfig(BaseModel):
    backend: Literal["directory", "s3"] = "directory"
    directory: Path = Field(Path("~/.local/share/chorus/samples"), description="directory backend root")
    bucket: str | None = Field(None, description="s3 backend bucket")
    prefix: str = "samples"
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint; None = AWS")
    max_upload_bytes: int = Field(MAX_SAMPLE_BYTES, gt=0)
    listing_ttl_s: float = Field(5.0, ge=0, description="how long a replica trusts its listing of a personality's samples")


class Personalities(Protocol):
    """What the service needs of the personality store (a protocol, so the samples package
    depends on no store module): where to mirror a personality's samples, and whether that
    store takes writes at all."""

    @property
    def read_only(self) -> bool: ...

    def get(self, name: str) -> Personality | None: ...
    def put(self, personality: Personality) -> bool: ...


class SampleService:
    def __init__(self, config: SamplesConfig, personalities: Personalities) -> None:
        self.config = config
        self.personalities = personalities
        if config.backend == "s3":
            if not config.bucket:
                raise ValueError("samples.bucket is required for the s3 backend")
            import boto3

            client = boto3.client("s3", endpoint_url=config.endpoint_url)
            self.store: SampleStore = S3SampleStore(config.bucket, config.prefix, client)
        else:
            self.store = DirectorySampleStore(config.directory.expanduser())
        # The VAD and speaker models load on the first upload, not at replica start.
        self.ingest = SampleIngest(self.store, SampleModels())
        self._listings: dict[str, tuple[float, list[StoredSample]]] = {}

    # --- writes ----------------------------------------------------------------------

    def upload(self, personality: Personality, data: bytes, *, language: str, notes: str | None,
               sample_id: str | None) -> IngestResult:
        result = self.ingest.add(
            personality.name, data,
            engines=cloning_engines(personality.spec), sample_id=sample_id, language=language, notes=notes,
        )
        self._listings.pop(personality.name, None)
        self._mirror(personality.name)
        return result

    def delete(self, personality: Personality, sample_id: str) -> None:
        self.store.delete(personality.name, sample_id)
        self._listings.pop(personality.name, None)
        self._mirror(personality.name)

    def _mirror(self, name: str) -> None:
        """Make the personality's voiceSamples list what is stored (URL-given samples that
        are not stored yet stay as they are). A read-only store's personalities come
        from elsewhere (a VoicePersonality) and are left alone."""
        current = self.personalities.get(name)
        if current is None or self.personalities.read_only:
            return
        stored = self.store.list(name)
        stored_ids = {s.id for s in stored}
        kept = [s for s in current.spec.voice_samples if not s.stored and s.id not in stored_ids]
        mirrored = [VoiceSample(id=s.id, stored=True, language=s.language, notes=s.notes) for s in stored]
        spec = current.spec.model_copy(update={"voice_samples": kept + mirrored})
        if spec != current.spec:
            self.personalities.put(Personality(name=name, spec=spec))

    # --- reads -----------------------------------------------------------------------

    def list(self, name: str) -> list[StoredSample]:
        """Stored samples of a personality (cached for `listing_ttl_s`: every synthesis
        of a cloning personality asks, and an S3 listing is a network round trip)."""
        now = time.monotonic()
        cached = self._listings.get(name)
        if cached is None or now - cached[0] > self.config.listing_ttl_s:
            cached = (now, self.store.list(name))
            self._listings[name] = cached
        return cached[1]

    def refs(self, name: str, engine: EngineId) -> list[VoiceSampleRef]:
        """The samples `engine` should clone from: those whose duration suits it (all of
        them when none does, so the engine can say why it refuses)."""
        samples = self.list(name)
        fit = [s for s in samples if engine in duration_fit(s.duration, [engine])]
        chosen = fit or samples
        return [
            VoiceSampleRef(id=s.id, language=s.language, sha256=s.sha256, path=self.store.locator(name, s.id))
            for s in chosen
        ]
