"""The one path a recording takes to become a voice sample, for the ingress (uploads through
the HTTP API) and the operator (samples a VoicePersonality gives by URL) alike: decode,
duplicate check, quality checks, speaker comparison with the personality's other samples,
store. `/v1/clone`'s one-off reference takes the same decode and checks and is not stored.

Everything here blocks (CPU, disk, network): run it in a worker thread from async code.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence

from pydantic import BaseModel, ConfigDict

from chorus.samples.audio import MAX_SAMPLE_RATE, DecodedAudio, canonical_wav, decode_audio
from chorus.samples.models import SampleModels
from chorus.samples.quality import SampleChecker
from chorus.samples.report import CheckResult, QualityReport, SpeakerMismatch
from chorus.samples.speaker import SpeakerComparer
from chorus.samples.storage import (
    DuplicateSample,
    SampleIdConflict,
    SampleMeta,
    SampleNotFound,
    SampleStore,
    StoredSample,
    check_personality_name,
    check_sample_id,
    default_sample_id,
)
from deployments.base import VoiceSampleRef


class IngestResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    sample: StoredSample
    report: QualityReport


class SampleCheck(BaseModel):
    """`SampleIngest.check`: the full table, the stored sample with the same audio, and
    why an upload of it would be refused, for people (empty when it would be stored)."""

    model_config = ConfigDict(frozen=True)

    report: QualityReport
    duplicate_of: str | None = None
    problems: list[str]


class SampleIngest:
    """Checks recordings with `models` and stores the accepted ones in `store`.
    Thread-safe; build one per process (it caches speaker embeddings). Recordings above
    `max_sample_rate` are refused from their header, before decoding (the decoded size,
    not the upload's, is what a process has to hold)."""

    def __init__(self, store: SampleStore, models: SampleModels, *, max_sample_rate: int = MAX_SAMPLE_RATE) -> None:
        self.store = store
        self.max_sample_rate = max_sample_rate
        self.checker = SampleChecker(models)
        self.speakers = SpeakerComparer(models)

    def add(
        self,
        personality: str,
        data: bytes,
        *,
        engines: Sequence[str] = (),
        sample_id: str | None = None,
        language: str = "en",
        notes: str | None = None,
        admit: Callable[[SampleMeta], None] | None = None,
        max_samples: int | None = None,
        force: bool = False,
    ) -> IngestResult:
        """Everything an upload goes through, in order of cost: decode (SampleRejected),
        duplicate check (DuplicateSample), quality checks (SampleRejected with the table),
        speaker consistency against the personality's other samples (SpeakerMismatch with
        the similarity; with `force` only a warning, kept in the metadata), `admit`
        (the caller's last word on the sample about to be stored, raising to refuse it),
        store (at most `max_samples` per personality: SampleLimitReached).
        Nothing is written unless every step before `put` passed."""
        check_personality_name(personality)
        if sample_id is not None:
            check_sample_id(sample_id)
            try:  # fail fast; put() checks again under its lock
                self.store.get(personality, sample_id)
            except SampleNotFound:
                pass
            else:
                raise SampleIdConflict(sample_id, personality)
        audio = decode_audio(data, max_sample_rate=self.max_sample_rate)
        wav = canonical_wav(audio)
        digest = hashlib.sha256(wav).hexdigest()
        existing = self.store.find_by_hash(personality, digest)
        if existing is not None:
            raise DuplicateSample(existing.id, personality)
        report = self.checker.check_sample(audio, engines)
        report.raise_if_rejected()
        speaker = self._speaker(personality, audio, digest, force)
        report = report.with_checks([speaker])
        if not speaker.passed and not force:
            # A voice cloned from a mix of speakers is nobody's: a mismatch is refused
            # unless whoever may decide that says so (`force`).
            raise SpeakerMismatch(f"sample {speaker.message}", speaker.value or 0.0, report.checks)
        meta = SampleMeta.from_report(
            report, id=sample_id or default_sample_id(digest), language=language, notes=notes
        )
        if admit is not None:
            admit(meta)
        return IngestResult(sample=self.store.put(personality, wav, meta, max_samples=max_samples), report=report)

    def check(self, personality: str, data: bytes, *, engines: Sequence[str] = (), force: bool = False) -> SampleCheck:
        """What `add` would conclude about `data`, with nothing stored: every check is run
        (the speaker's too, when quality fails), so the table is whole. Bytes that cannot
        be decoded still raise SampleRejected: there is nothing to check."""
        check_personality_name(personality)
        audio = decode_audio(data, max_sample_rate=self.max_sample_rate)
        digest = hashlib.sha256(canonical_wav(audio)).hexdigest()
        duplicate = self.store.find_by_hash(personality, digest)
        report = self.checker.check_sample(audio, engines)
        report = report.with_checks([self._speaker(personality, audio, digest, force)])
        problems = [DuplicateSample(duplicate.id).reason] if duplicate else []
        return SampleCheck(report=report, duplicate_of=duplicate.id if duplicate else None,
                           problems=problems + [c.message for c in report.hard_failures])

    def _speaker(self, personality: str, audio: DecodedAudio, digest: str, force: bool) -> CheckResult:
        """Speaker consistency against the personality's stored samples (a warning with `force`)."""
        others = {s.id: s for s in self.store.list(personality)}
        # Loaders: a stored sample's embedding is usually cached (by sha256), so its audio
        # is fetched and decoded only on a cache miss.
        loaders = {sid: functools.partial(self._decoded, personality, sid) for sid in others}
        return self.speakers.check(
            audio, loaders, key=digest, other_keys={sid: s.sha256 for sid, s in others.items()},
            severity="warning" if force else "hard",
        )

    def reference(self, data: bytes, engine: str, language: str) -> VoiceSampleRef:
        """A one-off reference for `engine`: decoded and checked like an upload
        (SampleRejected, with the check table), returned inline and canonical."""
        audio = decode_audio(data, max_sample_rate=self.max_sample_rate)
        self.checker.check_sample(audio, [engine]).raise_if_rejected()
        wav = canonical_wav(audio)
        return VoiceSampleRef(id="reference", language=language, sha256=hashlib.sha256(wav).hexdigest(), audio=wav)

    def _decoded(self, personality: str, sample_id: str) -> DecodedAudio:
        """A stored sample, decoded (for comparing)."""
        return decode_audio(self.store.audio(personality, sample_id))
