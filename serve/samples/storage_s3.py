"""Samples in an S3-compatible bucket, through a boto3 client, committed as
`chorus.samples.storage` describes (create-only PUTs; orphans removed after a grace period)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from chorus.samples.storage import (
    SampleIdConflict,
    SampleMeta,
    SampleNotFound,
    SampleStore,
    StoredSample,
    check_personality_name,
    check_sample_id,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client  # type: ignore[import-not-found]
else:
    S3Client = Any

# No upload of a <= 48 MiB WAV takes 10 minutes: an orphan this old has no live writer.
S3_ORPHAN_GRACE = timedelta(minutes=10)


class S3SampleStore(SampleStore):
    """s3://<bucket>/<prefix>/<personality>/<id>.wav + <id>.json, through a boto3 S3
    client (any S3-compatible endpoint). Commit protocol as in `chorus.samples.storage`."""

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
        check_personality_name(personality)
        check_sample_id(sample_id)
        body = self._get_bytes(self._key(personality, f"{sample_id}.json"))
        if body is None:
            raise SampleNotFound(personality, sample_id)
        return StoredSample.model_validate_json(body)

    def audio(self, personality: str, sample_id: str) -> bytes:
        record = self.get(personality, sample_id)
        data = self._get_bytes(self._key(personality, f"{sample_id}.wav"))
        if data is None:
            raise SampleNotFound(personality, sample_id)
        return self._verified(record, data)

    def list(self, personality: str) -> list[StoredSample]:
        check_personality_name(personality)
        out = []
        for obj in self._keys(self._folder(personality)):
            if obj["Key"].endswith(".json"):
                body = self._get_bytes(obj["Key"])
                if body is not None:
                    out.append(StoredSample.model_validate_json(body))
        return sorted(out, key=lambda s: (s.uploaded_at, s.id))

    def locator(self, personality: str, sample_id: str) -> str:
        check_personality_name(personality)
        check_sample_id(sample_id)
        return f"s3://{self.bucket}/{self._key(personality, f'{sample_id}.wav')}"

    # -- writing --

    def put(
        self, personality: str, audio_wav: bytes, meta: SampleMeta, *, max_samples: int | None = None
    ) -> StoredSample:
        record = self._prepare(personality, audio_wav, meta)
        # Without locks max_samples holds for one upload at a time: concurrent uploads to
        # a nearly full personality can overshoot it (the service's mirror still never
        # writes a personality that would not load).
        self._check_new(record, max_samples)
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
        check_personality_name(personality)
        check_sample_id(sample_id)
        json_key = self._key(personality, f"{sample_id}.json")
        if not self._exists(json_key):
            raise SampleNotFound(personality, sample_id)
        self._delete_keys([json_key])  # uncommit first
        self._delete_keys([self._key(personality, f"{sample_id}.wav")])

    def delete_all(self, personality: str) -> int:
        check_personality_name(personality)
        keys = [o["Key"] for o in self._keys(self._folder(personality))]
        jsons = [k for k in keys if k.endswith(".json")]
        self._delete_keys(jsons)
        self._delete_keys([k for k in keys if k not in jsons])
        return len(jsons)

    def recover(self, personality: str | None = None, *, older_than: timedelta | None = None) -> int:
        grace = self.orphan_grace if older_than is None else older_than
        if personality is not None:
            check_personality_name(personality)
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
