"""Durable storage of accepted voice samples, per personality.

A stored sample is two objects side by side: `<id>.wav` (the canonical 16-bit mono WAV
from `chorus.samples.audio.canonical_wav`) and `<id>.json` (its `StoredSample` metadata).

Commit protocol (both backends): the WAV is written completely first, then the JSON.
**The JSON is the commit record**: a sample exists exactly when its JSON exists, and
readers look at JSONs only. A WAV without a JSON is an orphan left by a writer that died
between the two steps; it is invisible and `recover()` deletes it. Deleting reverses the
order (JSON first, so the sample vanishes at once, then the WAV).

- `DirectorySampleStore` (embedded default; the shared volume in a cluster): every file
  is written to a hidden temp name in the same directory, fsynced, renamed into place
  (atomic on POSIX) and the directory fsynced, so a crash leaves either nothing, a
  temp file, or an orphan WAV, all invisible and removed by `recover()`. Writers of one
  personality serialise on an flock of `<personality>/.lock`, which also makes
  recovery safe: whoever holds the lock knows no other writer is mid-commit, so every
  temp file and orphan it sees is debris from a dead process.
- `S3SampleStore` (`chorus.samples.storage_s3`): a PUT is atomic on S3 (an interrupted upload leaves no object), and
  both PUTs are create-only (`If-None-Match: *`). S3 has no locks, so `recover()` only
  deletes orphans older than a grace period that no live upload can take.

Duplicates are found by the sha256 of the canonical WAV: the same audio uploaded again,
in any format, decodes to the same bytes. All methods block (disk or network I/O): run
them in a worker thread from async code.
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from chorus.common.atomic_write import TMP_SUFFIX, fsync_dir, write_atomic
from chorus.personalities import LanguageCode, PersonalityName, SampleId
from chorus.samples.audio import CANONICAL_RATE
from chorus.samples.report import CheckResult, QualityReport
from deployments.base import VoiceSampleRef

# Sample ids become file names and object keys: the personality schema's own type.
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]

_name_adapter: TypeAdapter[str] = TypeAdapter(PersonalityName)
_id_adapter: TypeAdapter[str] = TypeAdapter(SampleId)


# --- models ----------------------------------------------------------------------------------


class SampleMeta(BaseModel):
    """What the caller knows about a sample it wants stored; the store adds the rest."""

    model_config = ConfigDict(frozen=True)

    id: SampleId | None = Field(None, description="generated from the audio's sha256 if omitted")
    language: LanguageCode = "en"
    duration: float = Field(gt=0, description="seconds")
    sample_rate: int = Field(CANONICAL_RATE, gt=0, description="rate of the stored WAV")
    quality_score: float = Field(ge=0.0, le=1.0)
    checks: list[CheckResult] = Field(default_factory=list)
    notes: str | None = Field(None, max_length=1024)

    @classmethod
    def from_report(
        cls,
        report: QualityReport,
        *,
        id: str | None = None,
        language: str = "en",
        notes: str | None = None,
    ) -> SampleMeta:
        return cls(
            id=id,
            language=language,
            duration=report.duration_s,
            sample_rate=CANONICAL_RATE,
            quality_score=report.quality_score,
            checks=report.checks,
            notes=notes,
        )


class StoredSample(SampleMeta):
    """The metadata JSON beside each stored WAV."""

    id: SampleId
    personality: PersonalityName
    sha256: Sha256
    uploaded_at: datetime


# --- errors ---------------------------------------------------------------------------------


class SampleStoreError(Exception):
    """Base class; `reason` is shown to clients. Pickles via `args`."""

    status_code: ClassVar[int] = 500
    retry_after_s: ClassVar[int | None] = None  # set for refusals worth retrying soon (`Retry-After`)

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class InvalidSampleRequest(SampleStoreError):
    status_code: ClassVar[int] = 422


class SampleNotFound(SampleStoreError):
    status_code: ClassVar[int] = 404

    def __init__(self, personality: str, sample_id: str) -> None:
        Exception.__init__(self, personality, sample_id)
        self.personality = personality
        self.sample_id = sample_id
        self.reason = f"personality {personality!r} has no sample {sample_id!r}"


class DuplicateSample(SampleStoreError):
    """The same audio is already stored for this personality, as `existing_id`."""

    status_code: ClassVar[int] = 409

    def __init__(self, existing_id: str, personality: str = "") -> None:
        Exception.__init__(self, existing_id, personality)
        self.existing_id = existing_id
        self.personality = personality
        self.reason = f"identical audio is already stored as sample {existing_id!r}"


class SampleIdConflict(SampleStoreError):
    """Another sample (different audio) already has this id."""

    status_code: ClassVar[int] = 409

    def __init__(self, sample_id: str, personality: str = "") -> None:
        Exception.__init__(self, sample_id, personality)
        self.sample_id = sample_id
        self.personality = personality
        self.reason = f"sample id {sample_id!r} is taken by a different recording"


class SampleLimitReached(SampleStoreError):
    """The personality already has as many samples as it may keep (`limit`). 409, not
    422: the upload itself is fine, the personality is full; deleting a sample makes room."""

    status_code: ClassVar[int] = 409

    def __init__(self, personality: str, limit: int) -> None:
        Exception.__init__(self, personality, limit)
        self.personality = personality
        self.limit = limit
        self.reason = (
            f"personality {personality!r} already has {limit} voice samples, the most it may keep; "
            "delete one first"
        )


class SampleCorrupt(SampleStoreError):
    """Stored audio no longer matches its recorded sha256 (disk or bucket damage)."""


# --- the interface ---------------------------------------------------------------------------


class SampleStore(abc.ABC):
    """Samples of each personality. `put` raises DuplicateSample when the same audio is
    already stored, SampleIdConflict when the id is taken and SampleLimitReached when
    the personality already has `max_samples`; `get`, `audio` and `delete` raise
    SampleNotFound."""

    @abc.abstractmethod
    def put(
        self, personality: str, audio_wav: bytes, meta: SampleMeta, *, max_samples: int | None = None
    ) -> StoredSample: ...

    @abc.abstractmethod
    def get(self, personality: str, sample_id: str) -> StoredSample: ...

    @abc.abstractmethod
    def audio(self, personality: str, sample_id: str) -> bytes:
        """The stored WAV, verified against its sha256."""

    @abc.abstractmethod
    def list(self, personality: str) -> list[StoredSample]:
        """Committed samples, oldest first."""

    @abc.abstractmethod
    def delete(self, personality: str, sample_id: str) -> None: ...

    @abc.abstractmethod
    def delete_all(self, personality: str) -> int:
        """Remove every sample of a personality (it was deleted); returns how many."""

    @abc.abstractmethod
    def recover(self, personality: str | None = None) -> int:
        """Delete what interrupted writes left behind (temp files, orphan WAVs), for one
        personality or all; returns how many objects were removed."""

    @abc.abstractmethod
    def locator(self, personality: str, sample_id: str) -> str:
        """Where an engine finds the WAV: a file path or an s3:// URL."""

    def find_by_hash(self, personality: str, sha256: str) -> StoredSample | None:
        for sample in self.list(personality):
            if sample.sha256 == sha256:
                return sample
        return None

    def ref(self, personality: str, sample_id: str) -> VoiceSampleRef:
        """What a SynthesisRequest carries for this sample."""
        s = self.get(personality, sample_id)
        return VoiceSampleRef(
            id=s.id, path=self.locator(personality, s.id), language=s.language, sha256=s.sha256
        )

    # -- shared by the backends --

    def _prepare(self, personality: str, audio_wav: bytes, meta: SampleMeta) -> StoredSample:
        """Validate the request and build the record the store will commit."""
        check_personality_name(personality)
        if len(audio_wav) < 44 or audio_wav[:4] != b"RIFF" or audio_wav[8:12] != b"WAVE":
            raise InvalidSampleRequest("sample audio must be a WAV file (see canonical_wav)")
        digest = hashlib.sha256(audio_wav).hexdigest()
        return StoredSample(
            **meta.model_dump(exclude={"id"}),
            id=meta.id or default_sample_id(digest),
            personality=personality,
            sha256=digest,
            uploaded_at=datetime.now(UTC),
        )

    def _check_new(self, record: StoredSample, max_samples: int | None) -> None:
        stored = self.list(record.personality)
        dup = next((s for s in stored if s.sha256 == record.sha256), None)
        if dup is not None:
            raise DuplicateSample(dup.id, record.personality)
        if max_samples is not None and len(stored) >= max_samples:
            raise SampleLimitReached(record.personality, max_samples)

    @staticmethod
    def _verified(record: StoredSample, data: bytes) -> bytes:
        if hashlib.sha256(data).hexdigest() != record.sha256:
            raise SampleCorrupt(
                f"stored audio of {record.personality}/{record.id} does not match its sha256"
            )
        return data


def default_sample_id(sha256: str) -> str:
    """The id of a sample stored without one: its canonical audio's digest, shortened."""
    return sha256[:16]


def check_personality_name(personality: str) -> None:
    """InvalidSampleRequest unless it is a personality name (a folder or key prefix here)."""
    try:
        _name_adapter.validate_python(personality)
    except ValidationError:
        raise InvalidSampleRequest(
            f"{personality!r} is not a personality name (lowercase letters, digits and '-')"
        ) from None


def check_sample_id(sample_id: str) -> None:
    """InvalidSampleRequest unless it is a sample id (a file name or key here)."""
    try:
        _id_adapter.validate_python(sample_id)
    except ValidationError:
        raise InvalidSampleRequest(
            f"{sample_id!r} is not a sample id (letters, digits, '_', '.', '-'; at most 128)"
        ) from None


# --- directory backend -----------------------------------------------------------------------

_LOCK_NAME = ".lock"


class DirectorySampleStore(SampleStore):
    """root/<personality>/<id>.wav + <id>.json. See the module docstring for the commit
    protocol. Safe for several processes (and hosts, given a filesystem with working
    flock, as NFSv4 and local disks have) sharing one root."""

    def __init__(self, root: str | os.PathLike[str], *, recover: bool = True) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        if recover:
            self.recover()

    # -- reading: no locks; only committed JSONs are looked at --

    def get(self, personality: str, sample_id: str) -> StoredSample:
        check_personality_name(personality)
        check_sample_id(sample_id)
        try:
            text = (self.root / personality / f"{sample_id}.json").read_text()
        except FileNotFoundError:
            raise SampleNotFound(personality, sample_id) from None
        return StoredSample.model_validate_json(text)

    def audio(self, personality: str, sample_id: str) -> bytes:
        record = self.get(personality, sample_id)
        try:
            data = (self.root / personality / f"{sample_id}.wav").read_bytes()
        except FileNotFoundError:  # deleted between the two reads
            raise SampleNotFound(personality, sample_id) from None
        return self._verified(record, data)

    def list(self, personality: str) -> list[StoredSample]:
        check_personality_name(personality)
        folder = self.root / personality
        out = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return []
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith(".json"):
                continue
            try:
                out.append(StoredSample.model_validate_json(Path(entry.path).read_text()))
            except FileNotFoundError:  # deleted while we listed
                continue
        return sorted(out, key=lambda s: (s.uploaded_at, s.id))

    def locator(self, personality: str, sample_id: str) -> str:
        check_personality_name(personality)
        check_sample_id(sample_id)
        return str((self.root / personality / f"{sample_id}.wav").resolve())

    # -- writing --

    def put(
        self, personality: str, audio_wav: bytes, meta: SampleMeta, *, max_samples: int | None = None
    ) -> StoredSample:
        record = self._prepare(personality, audio_wav, meta)
        folder = self.root / personality
        with self._locked(personality):  # so concurrent uploads cannot exceed max_samples
            self._recover_locked(folder)
            self._check_new(record, max_samples)
            if (folder / f"{record.id}.json").exists():
                raise SampleIdConflict(record.id, personality)
            wav, meta_path = folder / f"{record.id}.wav", folder / f"{record.id}.json"
            try:
                write_atomic(wav, audio_wav)  # 1. audio: invisible until step 2
                write_atomic(meta_path, record.model_dump_json(indent=2).encode())  # 2. commit
            except BaseException:
                # A failed write (disk full, I/O error) must not leave an orphan behind;
                # a crash skips this, and the next put/recover cleans up instead.
                with contextlib.suppress(FileNotFoundError):
                    if not meta_path.exists():
                        wav.unlink()
                raise
        return record

    def delete(self, personality: str, sample_id: str) -> None:
        check_personality_name(personality)
        check_sample_id(sample_id)
        folder = self.root / personality
        if not folder.is_dir():
            raise SampleNotFound(personality, sample_id)
        with self._locked(personality):
            try:
                (folder / f"{sample_id}.json").unlink()  # uncommit first
            except FileNotFoundError:
                raise SampleNotFound(personality, sample_id) from None
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{sample_id}.wav").unlink()
            fsync_dir(folder)

    def delete_all(self, personality: str) -> int:
        check_personality_name(personality)
        folder = self.root / personality
        if not folder.is_dir():
            return 0
        with self._locked(personality, remove_after=True):
            names = os.listdir(folder)
            jsons = [n for n in names if n.endswith(".json") and not n.startswith(".")]
            for name in jsons:  # uncommit everything first
                (folder / name).unlink()
            fsync_dir(folder)
            for name in names:
                if name != _LOCK_NAME and name not in jsons:
                    with contextlib.suppress(FileNotFoundError):
                        (folder / name).unlink()
        return len(jsons)

    def recover(self, personality: str | None = None) -> int:
        if personality is not None:
            check_personality_name(personality)
            names = [personality]
        else:
            names = sorted(
                e.name for e in os.scandir(self.root)
                if e.is_dir() and not e.name.startswith(".")
            )
        removed = 0
        for name in names:
            if (self.root / name).is_dir():
                with self._locked(name):
                    removed += self._recover_locked(self.root / name)
        return removed

    def _recover_locked(self, folder: Path) -> int:
        """With the personality's lock held: no writer is mid-commit, so every temp file
        and every WAV without its JSON is debris from a process that died."""
        names = set(os.listdir(folder))
        debris = [
            n for n in names
            if (n.startswith(".") and n.endswith(TMP_SUFFIX))
            or (n.endswith(".wav") and not n.startswith(".") and n[:-4] + ".json" not in names)
        ]
        for name in debris:
            with contextlib.suppress(FileNotFoundError):
                (folder / name).unlink()
        if debris:
            fsync_dir(folder)
        return len(debris)

    @contextlib.contextmanager
    def _locked(self, personality: str, *, remove_after: bool = False) -> Iterator[None]:
        """Exclusive flock of <personality>/.lock. `remove_after` deletes the lock file and
        the (then empty) directory before unlocking; a process that was waiting on the
        old lock file notices it was unlinked and starts over with a fresh one."""
        folder = self.root / personality
        lock_path = folder / _LOCK_NAME
        while True:
            folder.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # folder removed under us by delete_all
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    current = os.stat(lock_path)
                except FileNotFoundError:
                    current = None
                held = os.fstat(fd)
                if current is None or (current.st_ino, current.st_dev) != (held.st_ino, held.st_dev):
                    continue  # the lock file was removed while we waited: retry
                yield
                if remove_after:
                    os.unlink(lock_path)
                    with contextlib.suppress(OSError):
                        folder.rmdir()
                    fsync_dir(self.root)
                return
            finally:
                os.close(fd)  # also releases the flock
