"""Durable storage of accepted voice samples, per personality.

A stored sample is two objects side by side: `<id>.wav` (the canonical 16-bit mono WAV
from `chorus.samples.quality.canonical_wav`) and `<id>.json` (its `StoredSample` metadata).

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
- `S3SampleStore`: a PUT is atomic on S3 (an interrupted upload leaves no object), and
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
import functools
import hashlib
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from chorus.atomic_write import TMP_SUFFIX, fsync_dir, write_atomic
from chorus.personalities import LanguageCode, PersonalityName
from chorus.samples.quality import (
    CANONICAL_RATE,
    CheckResult,
    DecodedAudio,
    QualityReport,
    SampleChecker,
    canonical_wav,
    decode_audio,
)
from deployments.base import VoiceSampleRef

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # type: ignore[import-not-found]
else:
    S3Client = Any

# Sample ids become file names and object keys: no path separators, no leading dot
# (temp files and the lock are dot-files), nothing a shell or URL must escape.
SAMPLE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
SampleId = Annotated[str, StringConstraints(pattern=SAMPLE_ID_PATTERN)]
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


class SampleCorrupt(SampleStoreError):
    """Stored audio no longer matches its recorded sha256 (disk or bucket damage)."""


# --- the interface ---------------------------------------------------------------------------


class SampleStore(abc.ABC):
    """Samples of each personality. `put` raises DuplicateSample when the same audio is
    already stored and SampleIdConflict when the id is taken; `get`, `audio` and
    `delete` raise SampleNotFound."""

    @abc.abstractmethod
    def put(self, personality: str, audio_wav: bytes, meta: SampleMeta) -> StoredSample: ...

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
        _check_name(personality)
        if len(audio_wav) < 44 or audio_wav[:4] != b"RIFF" or audio_wav[8:12] != b"WAVE":
            raise InvalidSampleRequest("sample audio must be a WAV file (see canonical_wav)")
        digest = hashlib.sha256(audio_wav).hexdigest()
        return StoredSample(
            **meta.model_dump(exclude={"id"}),
            id=meta.id or digest[:16],
            personality=personality,
            sha256=digest,
            uploaded_at=datetime.now(UTC),
        )

    def _check_new(self, record: StoredSample) -> None:
        dup = self.find_by_hash(record.personality, record.sha256)
        if dup is not None:
            raise DuplicateSample(dup.id, record.personality)


def _check_name(personality: str) -> None:
    try:
        _name_adapter.validate_python(personality)
    except ValidationError:
        raise InvalidSampleRequest(
            f"{personality!r} is not a personality name (lowercase letters, digits and '-')"
        ) from None


def _check_id(sample_id: str) -> None:
    try:
        _id_adapter.validate_python(sample_id)
    except ValidationError:
        raise InvalidSampleRequest(
            f"{sample_id!r} is not a sample id (letters, digits, '_', '.', '-'; at most 128)"
        ) from None


def _verify(record: StoredSample, data: bytes) -> bytes:
    if hashlib.sha256(data).hexdigest() != record.sha256:
        raise SampleCorrupt(
            f"stored audio of {record.personality}/{record.id} does not match its sha256"
        )
    return data


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
        _check_name(personality)
        _check_id(sample_id)
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
        return _verify(record, data)

    def list(self, personality: str) -> list[StoredSample]:
        _check_name(personality)
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
        _check_name(personality)
        _check_id(sample_id)
        return str((self.root / personality / f"{sample_id}.wav").resolve())

    # -- writing --

    def put(self, personality: str, audio_wav: bytes, meta: SampleMeta) -> StoredSample:
        record = self._prepare(personality, audio_wav, meta)
        folder = self.root / personality
        with self._locked(personality):
            self._recover_locked(folder)
            self._check_new(record)
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
        _check_name(personality)
        _check_id(sample_id)
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
        _check_name(personality)
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
            _check_name(personality)
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




# --- S3 backend --------------------------------------------------------------------------------

# No upload of a <= 48 MiB WAV takes 10 minutes: an orphan this old has no live writer.
S3_ORPHAN_GRACE = timedelta(minutes=10)


class S3SampleStore(SampleStore):
    """s3://<bucket>/<prefix>/<personality>/<id>.wav + <id>.json, through a boto3 S3
    client (any S3-compatible endpoint). Commit protocol as in the module docstring."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "samples",
        client: S3Client | None = None,
        *,
        orphan_grace: timedelta = S3_ORPHAN_GRACE,
    ) -> None:
        if client is None:
            import boto3

            client = boto3.client("s3")
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.orphan_grace = orphan_grace

    def _folder(self, personality: str) -> str:
        return f"{self.prefix}/{personality}/" if self.prefix else f"{personality}/"

    def _key(self, personality: str, name: str) -> str:
        return self._folder(personality) + name

    def _keys(self, prefix: str) -> Iterator[dict[str, Any]]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            yield from page.get("Contents", [])

    def _get_bytes(self, key: str) -> bytes | None:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.client.exceptions.NoSuchKey:
            return None

    def _create(self, key: str, body: bytes, content_type: str) -> bool:
        """PUT that only creates (If-None-Match: *); False when the key exists."""
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*"
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    # -- reading --

    def get(self, personality: str, sample_id: str) -> StoredSample:
        _check_name(personality)
        _check_id(sample_id)
        body = self._get_bytes(self._key(personality, f"{sample_id}.json"))
        if body is None:
            raise SampleNotFound(personality, sample_id)
        return StoredSample.model_validate_json(body)

    def audio(self, personality: str, sample_id: str) -> bytes:
        record = self.get(personality, sample_id)
        data = self._get_bytes(self._key(personality, f"{sample_id}.wav"))
        if data is None:
            raise SampleNotFound(personality, sample_id)
        return _verify(record, data)

    def list(self, personality: str) -> list[StoredSample]:
        _check_name(personality)
        out = []
        for obj in self._keys(self._folder(personality)):
            if obj["Key"].endswith(".json"):
                body = self._get_bytes(obj["Key"])
                if body is not None:
                    out.append(StoredSample.model_validate_json(body))
        return sorted(out, key=lambda s: (s.uploaded_at, s.id))

    def locator(self, personality: str, sample_id: str) -> str:
        _check_name(personality)
        _check_id(sample_id)
        return f"s3://{self.bucket}/{self._key(personality, f'{sample_id}.wav')}"

    # -- writing --

    def put(self, personality: str, audio_wav: bytes, meta: SampleMeta) -> StoredSample:
        record = self._prepare(personality, audio_wav, meta)
        self._check_new(record)
        wav_key = self._key(personality, f"{record.id}.wav")
        json_key = self._key(personality, f"{record.id}.json")
        if self._exists(json_key):
            raise SampleIdConflict(record.id, personality)
        if not self._create(wav_key, audio_wav, "audio/wav"):
            # A WAV without a JSON: an orphan, or another upload of this id in flight.
            if self._exists(json_key) or not self._remove_if_orphan(personality, record.id):
                raise SampleIdConflict(record.id, personality)
            if not self._create(wav_key, audio_wav, "audio/wav"):
                raise SampleIdConflict(record.id, personality)
        try:
            committed = self._create(
                json_key, record.model_dump_json(indent=2).encode(), "application/json"
            )
        except BaseException:
            # Unknown outcome (e.g. a timeout after the server stored it): remove the
            # WAV only if the commit record is certainly absent.
            with contextlib.suppress(Exception):
                if not self._exists(json_key):
                    self._delete_keys([wav_key])
            raise
        if not committed:  # lost a race for this id: leave the winner's objects alone
            raise SampleIdConflict(record.id, personality)
        return record

    def delete(self, personality: str, sample_id: str) -> None:
        _check_name(personality)
        _check_id(sample_id)
        json_key = self._key(personality, f"{sample_id}.json")
        if not self._exists(json_key):
            raise SampleNotFound(personality, sample_id)
        self._delete_keys([json_key])  # uncommit first
        self._delete_keys([self._key(personality, f"{sample_id}.wav")])

    def delete_all(self, personality: str) -> int:
        _check_name(personality)
        keys = [o["Key"] for o in self._keys(self._folder(personality))]
        jsons = [k for k in keys if k.endswith(".json")]
        self._delete_keys(jsons)
        self._delete_keys([k for k in keys if k not in jsons])
        return len(jsons)

    def recover(self, personality: str | None = None, *, older_than: timedelta | None = None) -> int:
        grace = self.orphan_grace if older_than is None else older_than
        if personality is not None:
            _check_name(personality)
            prefix = self._folder(personality)
        else:
            prefix = f"{self.prefix}/" if self.prefix else ""
        objects = list(self._keys(prefix))
        keys = {o["Key"] for o in objects}
        now = datetime.now(UTC)
        orphans = [
            o["Key"] for o in objects
            if o["Key"].endswith(".wav")
            and o["Key"][:-4] + ".json" not in keys
            and now - o["LastModified"] >= grace
        ]
        self._delete_keys(orphans)
        return len(orphans)

    def _remove_if_orphan(self, personality: str, sample_id: str) -> bool:
        key = self._key(personality, f"{sample_id}.wav")
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError:
            return True  # gone already
        if datetime.now(UTC) - head["LastModified"] < self.orphan_grace:
            return False  # maybe an upload in flight
        self._delete_keys([key])
        return True

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _delete_keys(self, keys: Sequence[str]) -> None:
        for i in range(0, len(keys), 1000):  # DeleteObjects takes at most 1000 keys
            batch = keys[i : i + 1000]
            if batch:
                self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                )


# --- the upload flow ---------------------------------------------------------------------------


class IngestResult(BaseModel):
    model_config = ConfigDict(frozen=True)

    sample: StoredSample
    report: QualityReport


def ingest_sample(
    store: SampleStore,
    checker: SampleChecker,
    personality: str,
    data: bytes,
    *,
    engines: Sequence[str] = (),
    sample_id: str | None = None,
    language: str = "en",
    notes: str | None = None,
) -> IngestResult:
    """Everything an upload goes through, in order of cost: decode (SampleRejected),
    duplicate check (DuplicateSample), quality checks (SampleRejected with the table),
    speaker consistency against the personality's other samples (a warning), store.
    Nothing is written unless every step before `put` passed."""
    _check_name(personality)
    if sample_id is not None:
        _check_id(sample_id)
        try:  # fail fast; put() checks again under its lock
            store.get(personality, sample_id)
        except SampleNotFound:
            pass
        else:
            raise SampleIdConflict(sample_id, personality)
    audio = decode_audio(data)
    wav = canonical_wav(audio)
    digest = hashlib.sha256(wav).hexdigest()
    existing = store.find_by_hash(personality, digest)
    if existing is not None:
        raise DuplicateSample(existing.id, personality)
    report = checker.check_sample(audio, engines)
    report.raise_if_rejected()
    others = {s.id: s for s in store.list(personality)}
    # Loaders: a stored sample's embedding is usually cached (by sha256), so its audio
    # is fetched and decoded only on a cache miss.
    loaders = {sid: functools.partial(decoded_sample, store, personality, sid) for sid in others}
    speaker = checker.speaker_check(
        audio, loaders, key=digest, other_keys={sid: s.sha256 for sid, s in others.items()}
    )
    report = report.with_checks([speaker])
    meta = SampleMeta.from_report(report, id=sample_id, language=language, notes=notes)
    return IngestResult(sample=store.put(personality, wav, meta), report=report)


def decoded_sample(store: SampleStore, personality: str, sample_id: str) -> DecodedAudio:
    """A stored sample, decoded (for re-checking or comparing)."""
    return decode_audio(store.audio(personality, sample_id))
