"""Each personality's sample volume: its directory on the shared sample volume (the
layout the ingress's directory sample store reads), and its own PVC when the chart
asks for one volume per personality.

Samples given by URL are downloaded and go through the same checks as uploads
(`chorus.samples.ingest`); what was fetched from where is remembered in
the resource's status, so a changed URL is fetched again and a removed one deleted.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field

from chorus.personalities import Personality
from chorus.samples.ingest import SampleIngest
from chorus.samples.models import SampleModels
from chorus.samples.quality import cloning_engines
from chorus.samples.report import SampleRejected
from chorus.samples.storage import DirectorySampleStore, SampleNotFound, SampleStoreError
from voice_operator.safe_fetch import FetchError, SampleRefused, fetch, redact
from voice_operator.settings import OperatorSettings


@dataclass
class SyncResult:
    stored: int = 0
    fetched: dict[str, str] = field(default_factory=dict)  # sample id -> the URL it came from
    refused: dict[str, str] = field(default_factory=dict)  # sample id -> why
    retry: dict[str, str] = field(default_factory=dict)  # sample id -> what failed for now
    changed: list[str] = field(default_factory=list)  # human-readable, for events


class SampleVolumes:
    def __init__(self, settings: OperatorSettings) -> None:
        self.settings = settings
        self.store = DirectorySampleStore(settings.samples_dir)
        # The VAD and speaker models load on the first URL sample, in the worker thread
        # that checks it: loading torch on kopf's event loop would stall every handler.
        # The chart's memory limit allows decoding at most `max_sample_rate` (checked from
        # the header, before decoding): a rate-bomb URL is refused, not OOM-killed.
        self.ingest = SampleIngest(self.store, SampleModels(), max_sample_rate=settings.max_sample_rate)

    def location(self, key: str) -> str:
        return str(self.settings.samples_dir / key)

    async def sync(self, personality: Personality, key: str, previously: dict[str, str]) -> SyncResult:
        """Make the samples stored under `key` (the resource's uid) what the spec's URLs say.
        URLs are remembered redacted (status is readable by more people than the spec's
        author): a URL whose credentials alone change is not fetched again."""
        (self.settings.samples_dir / key).mkdir(parents=True, exist_ok=True)
        wanted = {s.id: redact(str(s.url)) for s in personality.spec.voice_samples if s.url is not None}
        urls = {s.id: str(s.url) for s in personality.spec.voice_samples if s.url is not None}
        result = SyncResult()
        # Samples this operator fetched whose entry is gone or points elsewhere now.
        for sample_id, shown in previously.items():
            if wanted.get(sample_id) != shown:
                await asyncio.to_thread(self._delete, key, sample_id)
                result.changed.append(f"removed sample {sample_id} (was {shown})")
            elif await asyncio.to_thread(self._exists, key, sample_id):
                result.fetched[sample_id] = shown
        samples = {s.id: s for s in personality.spec.voice_samples}
        policy = self.settings.fetch_policy()
        for sample_id, shown in wanted.items():
            if result.fetched.get(sample_id) == shown:
                continue
            sample = samples[sample_id]
            try:
                data = await fetch(urls[sample_id], policy)
                await asyncio.to_thread(
                    self.ingest.add, key, data,
                    engines=cloning_engines(personality.spec), sample_id=sample_id,
                    language=sample.language, notes=sample.notes,
                )
            except FetchError as err:
                result.retry[sample_id] = str(err)
            except (SampleRefused, SampleRejected, SampleStoreError) as err:
                result.refused[sample_id] = str(err)
            else:
                result.fetched[sample_id] = shown
                result.changed.append(f"fetched and checked sample {sample_id} from {shown}")
        result.stored = len(await asyncio.to_thread(self.store.list, key))
        return result

    def _exists(self, key: str, sample_id: str) -> bool:
        try:
            self.store.get(key, sample_id)
        except SampleNotFound:
            return False
        return True

    def _delete(self, key: str, sample_id: str) -> None:
        try:
            self.store.delete(key, sample_id)
        except SampleNotFound:
            pass

    def remove(self, key: str) -> int:
        """Delete every sample stored under `key` and its directory; how many there were."""
        count = self.store.delete_all(key)
        shutil.rmtree(self.settings.samples_dir / key, ignore_errors=True)
        return count
