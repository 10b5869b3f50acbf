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

import httpx

from chorus.personalities import Personality
from chorus.samples.ingest import SampleIngest
from chorus.samples.models import SampleModels
from chorus.samples.quality import cloning_engines
from chorus.samples.report import SampleRejected
from chorus.samples.storage import DirectorySampleStore, SampleNotFound, SampleStoreError
from voice_operator.settings import OperatorSettings


class FetchError(Exception):
    """A download that may work later (network, 5xx)."""


class SampleRefused(Exception):
    """A sample that will not work until the spec changes (4xx, too big, failed checks)."""


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
        self.ingest = SampleIngest(self.store, SampleModels())

    def location(self, name: str) -> str:
        return str(self.settings.samples_dir / name)

    async def sync(self, personality: Personality, previously: dict[str, str]) -> SyncResult:
        name = personality.name
        (self.settings.samples_dir / name).mkdir(parents=True, exist_ok=True)
        wanted = {s.id: s for s in personality.spec.voice_samples if s.url is not None}
        result = SyncResult()
        # Samples this operator fetched whose entry is gone or points elsewhere now.
        for sample_id, url in previously.items():
            if sample_id not in wanted or str(wanted[sample_id].url) != url:
                await asyncio.to_thread(self._delete, name, sample_id)
                result.changed.append(f"removed sample {sample_id} (was {url})")
            elif await asyncio.to_thread(self._exists, name, sample_id):
                result.fetched[sample_id] = url
        async with httpx.AsyncClient(timeout=self.settings.fetch_timeout_s, follow_redirects=True) as http:
            for sample_id, sample in wanted.items():
                url = str(sample.url)
                if result.fetched.get(sample_id) == url:
                    continue
                try:
                    data = await self._download(http, url)
                    await asyncio.to_thread(
                        self.ingest.add, name, data,
                        engines=cloning_engines(personality.spec), sample_id=sample_id,
                        language=sample.language, notes=sample.notes,
                    )
                except FetchError as err:
                    result.retry[sample_id] = str(err)
                except (SampleRefused, SampleRejected, SampleStoreError) as err:
                    result.refused[sample_id] = str(err)
                else:
                    result.fetched[sample_id] = url
                    result.changed.append(f"fetched and checked sample {sample_id} from {url}")
        result.stored = len(await asyncio.to_thread(self.store.list, name))
        return result

    async def _download(self, http: httpx.AsyncClient, url: str) -> bytes:
        if httpx.URL(url).scheme not in ("http", "https"):
            raise SampleRefused(f"{url}: the operator fetches http and https URLs only")
        limit = self.settings.max_sample_bytes
        try:
            async with http.stream("GET", url) as resp:
                if resp.status_code >= 500 or resp.status_code == 429:
                    raise FetchError(f"{url}: HTTP {resp.status_code}")
                if resp.status_code >= 400:
                    raise SampleRefused(f"{url}: HTTP {resp.status_code}")
                chunks, size = [], 0
                async for chunk in resp.aiter_bytes():
                    size += len(chunk)
                    if size > limit:
                        raise SampleRefused(f"{url}: larger than {limit} bytes")
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as err:
            raise FetchError(f"{url}: {type(err).__name__}: {err}") from None

    def _exists(self, name: str, sample_id: str) -> bool:
        try:
            self.store.get(name, sample_id)
        except SampleNotFound:
            return False
        return True

    def _delete(self, name: str, sample_id: str) -> None:
        try:
            self.store.delete(name, sample_id)
        except SampleNotFound:
            pass

    def remove(self, name: str) -> int:
        """Delete every sample of a personality and its directory; how many there were."""
        count = self.store.delete_all(name)
        shutil.rmtree(self.settings.samples_dir / name, ignore_errors=True)
        return count
