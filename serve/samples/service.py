"""Voice samples of personalities: upload (checked, stored), listing, removal, and the
sample refs cloning engines receive.

The sample store (`chorus.samples.storage`) is the truth; each personality's
`voiceSamples` mirrors it so `GET /v1/personalities/{name}` shows what a voice clones from.
Checks and storage block (CPU, disk, network), so callers run these methods in a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import ClassVar, Literal, ParamSpec, Protocol, TypeVar

from pydantic import BaseModel, Field, ValidationError

from chorus.common.constants import MAX_SAMPLE_BYTES, MAX_VOICE_SAMPLES
from chorus.personalities import (
    Personality,
    PersonalitySpec,
    VoiceSample,
    describe_validation_error,
)
from chorus.samples.audio import MAX_SAMPLE_RATE
from chorus.samples.ingest import IngestResult, SampleCheck, SampleIngest
from chorus.samples.models import SampleModels
from chorus.samples.quality import cloning_engines, duration_fit
from chorus.samples.storage import (
    DirectorySampleStore,
    InvalidSampleRequest,
    SampleLimitReached,
    SampleMeta,
    SampleStore,
    SampleStoreError,
    StoredSample,
)
from chorus.samples.storage_s3 import S3SampleStore
from deployments.base import EngineId, VoiceSampleRef

log = logging.getLogger(__name__)
P = ParamSpec("P")
R = TypeVar("R")


class SamplesConfig(BaseModel):
    backend: Literal["directory", "s3"] = "directory"
    directory: Path = Field(Path("~/.local/share/chorus/samples"), description="directory backend root")
    bucket: str | None = Field(None, description="s3 backend bucket")
    prefix: str = "samples"
    endpoint_url: str | None = Field(None, description="S3-compatible endpoint; None = AWS")
    expected_bucket_owner: str | None = Field(
        None, pattern=r"^[0-9]{12}$", description="The AWS account that must own the bucket, checked on every read of "
        "a sample by an engine (S3's ExpectedBucketOwner): a bucket name claimed by someone else supplies no voice.",
    )
    max_upload_bytes: int = Field(MAX_SAMPLE_BYTES, gt=0)
    max_samples: int = Field(
        MAX_VOICE_SAMPLES, ge=1, le=MAX_VOICE_SAMPLES,
        description="stored samples per personality (at most what the personality schema's voiceSamples holds)",
    )
    listing_ttl_s: float = Field(5.0, ge=0, description="how long a replica trusts its listing of a personality's samples")
    max_sample_rate: int = Field(
        MAX_SAMPLE_RATE, ge=16_000, le=192_000,
        description="recordings above this rate are refused from their header, before decoding",
    )
    max_concurrent_checks: int = Field(
        2, ge=1, description="uploads decoded and checked at once per replica; the others wait their turn",
    )
    max_queued_checks: int = Field(
        8, ge=0, description="uploads (and clone references) a replica lets wait for a check beyond those being "
        "checked; more get 503 with Retry-After before their body is read (each waiting one holds its body)",
    )


class ChecksBusy(SampleStoreError):
    """As many recordings as this replica lets in are being read or checked; 503, retry soon."""

    status_code: ClassVar[int] = 503
    retry_after_s: ClassVar[int] = 2


class PersonalityGone(SampleStoreError):
    """The personality was deleted while its upload was being checked."""

    status_code: ClassVar[int] = 404


class Personalities(Protocol):
    """What the service needs of the personality store (a protocol, so the samples package
    depends on no store module): where to mirror a personality's samples, whether that
    store takes writes at all, and deleting a personality with its samples."""

    @property
    def read_only(self) -> bool: ...

    def get(self, name: str) -> Personality | None: ...
    def update(self, name: str, change: Callable[[PersonalitySpec], PersonalitySpec]) -> bool: ...
    def delete(self, name: str) -> bool: ...
    def sample_key(self, name: str) -> str: ...


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
        self.ingest = SampleIngest(self.store, SampleModels(), max_sample_rate=config.max_sample_rate)
        # Decoding and checking a recording holds tens of MB and a core for seconds: a
        # burst of uploads must queue, not multiply a replica's memory. Waiting requests
        # hold no worker thread (an asyncio semaphore, taken before the thread is).
        self._checks = asyncio.Semaphore(config.max_concurrent_checks)
        self._admitted = 0
        self._listings: dict[str, tuple[float, list[StoredSample]]] = {}

    @contextlib.contextmanager
    def admitted(self) -> Iterator[None]:
        """A place among the recordings this replica reads and checks, taken before a body
        is read: at most `max_concurrent_checks + max_queued_checks` uploads hold theirs at
        once, so a burst cannot multiply a replica's memory by its request limit; the rest
        are refused (ChecksBusy) at once."""
        limit = self.config.max_concurrent_checks + self.config.max_queued_checks
        if self._admitted >= limit:
            raise ChecksBusy(f"{limit} recordings are being read or checked on this replica, the most it takes "
                             f"at once; try again in a few seconds")
        self._admitted += 1
        try:
            yield
        finally:
            self._admitted -= 1

    async def checked(self, work: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run `work` (an upload, a one-off reference: anything that decodes and checks a
        recording) in a worker thread, at most `max_concurrent_checks` at a time."""
        async with self._checks:
            return await asyncio.to_thread(work, *args, **kwargs)

    # --- writes ----------------------------------------------------------------------

    def upload(self, personality: Personality, data: bytes, *, language: str, notes: str | None,
               sample_id: str | None, force: bool = False) -> IngestResult:
        """Check and store a recording, then mirror it into `voiceSamples`. A full
        personality is refused (SampleLimitReached) before the costly checks; the store
        checks again under its lock, so concurrent uploads cannot overshoot. A different
        speaker than the stored samples is refused (SpeakerMismatch) unless `force`:
        who may force is the caller's to decide."""
        name, limit = personality.name, self.config.max_samples
        key = self.key(name)
        if len(self.store.list(key)) >= limit:
            raise SampleLimitReached(name, limit)
        result = self.ingest.add(
            key, data,
            engines=cloning_engines(personality.spec), sample_id=sample_id, language=language, notes=notes,
            admit=functools.partial(self._admit, name), max_samples=limit, force=force,
        )
        self._listings.pop(key, None)
        self._mirror(name)
        return result

    def check(self, personality: Personality, data: bytes, *, force: bool = False) -> SampleCheck:
        """What `upload` would conclude about `data`, storing nothing (a full personality
        is one more problem)."""
        key, limit = self.key(personality.name), self.config.max_samples
        result = self.ingest.check(key, data, engines=cloning_engines(personality.spec), force=force)
        if len(self.store.list(key)) >= limit:
            full = SampleLimitReached(personality.name, limit).reason
            result = result.model_copy(update={"problems": [*result.problems, full]})
        return result

    def delete(self, personality: Personality, sample_id: str) -> None:
        key = self.key(personality.name)
        self.store.delete(key, sample_id)
        self._listings.pop(key, None)
        self._mirror(personality.name)

    def key(self, name: str) -> str:
        """Where the sample store keeps `name`'s samples: its name, or in a cluster the
        uid of its VoicePersonality (the operator's layout, one per namespace's namesake)."""
        return self.personalities.sample_key(name)

    def delete_personality(self, name: str) -> bool:
        """Delete a personality and its samples; False when there is no such personality.

        Samples go first. A crash between the two steps then leaves a personality whose
        samples are gone (deleting it again finishes the job), never samples without a
        personality: those a personality re-created under the same name would inherit
        and clone from without anyone having uploaded them to it."""
        if self.personalities.read_only:
            return self.personalities.delete(name)  # refuses, naming where deletes go
        if self.personalities.get(name) is None:
            return False
        self.store.delete_all(name)
        self._listings.pop(name, None)
        return self.personalities.delete(name)

    def _admit(self, name: str, meta: SampleMeta) -> None:
        """The last step before a sample is stored: its personality still exists (an
        upload finishing after a delete would leave its sample to a re-created namesake)
        and, mirrored into voiceSamples with the sample, still validates."""
        current = self.personalities.get(name)
        if current is None:
            raise PersonalityGone(f"personality {name!r} was deleted while the sample was being checked")
        if self.personalities.read_only:
            return
        assert meta.id is not None  # SampleIngest.add names every sample before admitting it
        candidate = VoiceSample(id=meta.id, stored=True, language=meta.language, notes=meta.notes)
        self._mirrored_spec(current.spec, [*self.store.list(name), candidate])

    def _mirror(self, name: str) -> None:
        """Make the personality's voiceSamples list what is stored (URL-given samples that
        are not stored yet stay as they are). A read-only store's personalities come
        from elsewhere (a VoicePersonality) and are left alone."""
        if self.personalities.read_only:
            return
        try:
            # Applied to the spec stored when the write happens: a PUT in between is kept.
            self.personalities.update(name, lambda spec: self._mirrored_spec(spec, self.store.list(name)))
        except InvalidSampleRequest as err:
            # Only uploads racing past the limit on a lockless store get here: the store
            # stays the truth and the personality keeps a voiceSamples that loads.
            log.warning("not mirroring the samples of %s: %s", name, err.reason)

    @staticmethod
    def _mirrored_spec(spec: PersonalitySpec, stored: Sequence[StoredSample | VoiceSample]) -> PersonalitySpec:
        """`spec` with voiceSamples listing `stored`, validated (InvalidSampleRequest)."""
        stored_ids = {s.id for s in stored}
        kept = [s for s in spec.voice_samples if not s.stored and s.id not in stored_ids]
        mirrored = [VoiceSample(id=s.id, stored=True, language=s.language, notes=s.notes) for s in stored]
        data = spec.model_dump(by_alias=True, exclude_none=True) | {
            "voiceSamples": [s.model_dump(by_alias=True, exclude_none=True) for s in kept + mirrored]
        }
        try:
            return PersonalitySpec.model_validate(data)
        except ValidationError as err:
            raise InvalidSampleRequest(
                f"storing this sample would make the personality invalid: {describe_validation_error(err)}"
            ) from None

    # --- reads -----------------------------------------------------------------------

    def list(self, name: str) -> list[StoredSample]:
        """Stored samples of a personality (cached for `listing_ttl_s`: every synthesis
        of a cloning personality asks, and an S3 listing is a network round trip)."""
        now, key = time.monotonic(), self.key(name)
        cached = self._listings.get(key)
        if cached is None or now - cached[0] > self.config.listing_ttl_s:
            cached = (now, self.store.list(key))
            self._listings[key] = cached
        return cached[1]

    def refs(self, name: str, engine: EngineId) -> list[VoiceSampleRef]:
        """The samples `engine` should clone from: those whose duration suits it (all of
        them when none does, so the engine can say why it refuses)."""
        samples = self.list(name)
        fit = [s for s in samples if engine in duration_fit(s.duration, [engine])]
        chosen = fit or samples
        s3 = self.config.backend == "s3"
        return [
            VoiceSampleRef(id=s.id, language=s.language, sha256=s.sha256, path=self.store.locator(self.key(name), s.id),
                           endpoint_url=self.config.endpoint_url if s3 else None,
                           expected_owner=self.config.expected_bucket_owner if s3 else None)
            for s in chosen
        ]
