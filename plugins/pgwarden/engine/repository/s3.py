"""``s3://bucket/prefix``: the repository in an S3 bucket, through boto3.

One client per repository (``S3Settings`` says how to reach it; ``pgwarden.engine.s3.client``
builds it and bounds transfer memory); after botocore's retries, failures become pgwarden's errors
through ``pgwarden.engine.s3.errors``, naming the key and the endpoint, never credentials. The
SHA-256 is stored as user metadata ``sha256`` (``x-amz-meta-sha256``), computed in one read pass
before the upload starts. Server-side encryption follows ``RepositoryConfig.sse``. With
``object_lock_mode`` set, ``retain_until`` sends ``ObjectLockMode``/``ObjectLockRetainUntilDate``
with a SHA-256 request checksum (S3 requires one for object-lock writes). On an Object Lock bucket
``delete()`` adds delete markers; locked versions stay until their retention ends. Downloads pin
the ETag seen by the HEAD that read the checksum, so the checksum and the bytes always belong to
the same object version.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import urlencode, urlparse

from pgwarden.engine.errors import PermanentError, PgwardenError, TransientError, os_error
from pgwarden.engine.repository.contract import (
    ObjectInfo,
    ObjectMissing,
    Repository,
    check_key,
    check_prefix,
    check_retain_until,
    land_verified,
    normalize_sha256,
    recorded_sha256,
    sha256_file,
    valid_or_none,
)
from pgwarden.engine.s3.client import new_client, transfer_manager
from pgwarden.engine.s3.errors import TRANSIENT_CODES, S3Errors, client_error_parts, is_not_found
from pgwarden.engine.s3.settings import S3Settings

if TYPE_CHECKING:
    from pgwarden.core.config import RepositoryConfig

DELETE_BATCH = 1000  # S3 DeleteObjects limit
SHA256_METADATA = "sha256"


class _PinObject:
    """s3transfer subscriber: download exactly the size and ETag our HEAD saw (no second HEAD)."""

    def __init__(self, size: int, etag: str | None) -> None:
        self.size = size
        self.etag = etag

    def on_queued(self, future: Any, **kwargs: Any) -> None:
        future.meta.provide_transfer_size(self.size)
        if self.etag:
            future.meta.provide_object_etag(self.etag)

    def on_progress(self, future: Any, bytes_transferred: int, **kwargs: Any) -> None:
        pass

    def on_done(self, future: Any, **kwargs: Any) -> None:
        pass


class S3Repository(Repository):
    """``s3://bucket/prefix`` through boto3 with bounded-memory multipart transfers."""

    def __init__(self, config: RepositoryConfig, settings: S3Settings | None = None) -> None:
        parsed = urlparse(config.url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {config.url!r}")
        self.url = config.url.rstrip("/")
        self.bucket = parsed.netloc
        prefix = parsed.path.strip("/")
        self.root_prefix = f"{prefix}/" if prefix else ""
        self.config = config
        self.settings = settings or S3Settings()
        self._errors = S3Errors(self.settings, self.bucket, self.root_prefix, self.url, config.conn_id,
                                not_found=ObjectMissing)
        self._client_obj: Any = None
        self._client_lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = new_client(self.settings)
            return self._client_obj

    def _transfer_manager(self) -> Any:
        return transfer_manager(self._client(), self.settings)

    def _object_key(self, key: str) -> str:
        return self.root_prefix + check_key(key)

    def _missing(self, key: str, doing: str) -> PgwardenError:
        """An absent key, or an absent bucket (HEAD answers a bare 404 for both)."""
        from botocore.exceptions import ClientError

        try:
            self._client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, _, status = client_error_parts(exc)
            if code in ("NoSuchBucket", "404", "NotFound") or status == 404:
                return self._errors.bucket_missing(doing)
        except Exception:  # the key is missing either way; this only refines the message
            pass
        return ObjectMissing(f"{doing}: {self.uri(key)} does not exist (key {key!r})")

    def _upload_args(self, digest: str, retain_until: datetime | None) -> dict[str, Any]:
        args: dict[str, Any] = {"Metadata": {SHA256_METADATA: digest}}
        if self.config.sse == "AES256":
            args["ServerSideEncryption"] = "AES256"
        elif self.config.sse == "aws:kms":
            args["ServerSideEncryption"] = "aws:kms"
            args["SSEKMSKeyId"] = self.config.kms_key_id
        if retain_until is not None and self.config.object_lock_mode:
            args["ObjectLockMode"] = self.config.object_lock_mode
            args["ObjectLockRetainUntilDate"] = retain_until
            args["ChecksumAlgorithm"] = "SHA256"
        return args

    def _head_raw(self, key: str, doing: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        with self._errors.translated(doing):
            try:
                return self._client().head_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as exc:
                if is_not_found(exc):
                    return None
                raise

    # -- writes ------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> ObjectInfo:
        object_key = self._object_key(key)
        check_retain_until(retain_until)
        digest = hashlib.sha256(data).hexdigest()
        args = self._upload_args(digest, retain_until)
        with self._errors.translated(f"uploading {self.uri(key)}"):
            self._client().put_object(Bucket=self.bucket, Key=object_key, Body=data, **args)
        return ObjectInfo(key=key, size=len(data), sha256=digest)

    def put_file(self, key: str, path: Path, *, retain_until: datetime | None = None,
                 storage_class: str | None = None, tags: Mapping[str, str] | None = None) -> ObjectInfo:
        object_key = self._object_key(key)
        check_retain_until(retain_until)
        doing = f"uploading {path} to {self.uri(key)}"
        try:
            before = os.stat(path)
            digest, size = sha256_file(Path(path))
        except OSError as exc:
            raise os_error(exc, f"reading local file {path} to store as {self.uri(key)}") from exc
        args = self._upload_args(digest, retain_until)
        if storage_class:
            args["StorageClass"] = storage_class
        if tags:
            args["Tagging"] = urlencode(tags)
        with self._errors.translated(doing), self._transfer_manager() as manager:
            manager.upload(str(path), self.bucket, object_key, extra_args=args).result()
        after = os.stat(path)
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or size != before.st_size:
            # The recorded checksum may not describe what was sent: never leave such an object behind.
            with contextlib.suppress(PgwardenError):
                self.delete([key])
            raise TransientError(f"{doing}: {path} changed while it was read; retry once the file is complete")
        return ObjectInfo(key=key, size=size, sha256=digest)

    # -- reads -------------------------------------------------------------------------------------

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        expected = normalize_sha256(expected_sha256)
        doing = f"downloading {self.uri(key)}"
        head = self._head_raw(key, doing)
        if head is None:
            raise self._missing(key, doing)
        stored = recorded_sha256(head.get("Metadata", {}).get(SHA256_METADATA))
        pin = _PinObject(int(head["ContentLength"]), head.get("ETag"))

        def download(out: BinaryIO) -> None:
            with self._errors.translated(doing), self._transfer_manager() as manager:
                manager.download(self.bucket, self._object_key(key), out, subscribers=[pin]).result()

        return land_verified(Path(dest), key, self.uri(key), expected or stored, download)

    def _open_object(self, key: str) -> tuple[Any, str | None]:
        from botocore.exceptions import ClientError

        doing = f"downloading {self.uri(key)}"
        with self._errors.translated(doing):
            try:
                response = self._client().get_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as exc:
                if is_not_found(exc):
                    raise self._missing(key, doing) from None
                raise
        return response["Body"], recorded_sha256(response.get("Metadata", {}).get(SHA256_METADATA))


    def head(self, key: str) -> ObjectInfo | None:
        response = self._head_raw(key, f"reading metadata of {self.uri(key)}")
        if response is None:
            return None
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            sha256=valid_or_none(recorded_sha256(response.get("Metadata", {}).get(SHA256_METADATA))),
            modified=response.get("LastModified"),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
        paginator = self._client().get_paginator("list_objects_v2")
        with self._errors.translated(f"listing {self.url}/{prefix}"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.root_prefix + prefix):
                for obj in page.get("Contents", []):
                    key = obj["Key"][len(self.root_prefix):]
                    try:
                        check_key(key)
                    except ValueError:
                        continue  # console "folder" markers and names no pgwarden key can address
                    yield ObjectInfo(key, int(obj["Size"]), None, obj.get("LastModified"))

    # -- deletes -----------------------------------------------------------------------------------

    def delete(self, keys: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        for start in range(0, len(wanted), DELETE_BATCH):
            batch = wanted[start:start + DELETE_BATCH]
            with self._errors.translated(f"deleting {len(batch)} objects from {self.url}"):
                response = self._client().delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.root_prefix + k} for k in batch], "Quiet": True},
                )
            failures = response.get("Errors", [])
            if failures:
                sample = "; ".join(f"{f.get('Key')}: {f.get('Code')} {f.get('Message', '')}".strip()
                                   for f in failures[:3])
                doing = f"deleting from {self.url}: {len(failures)} of {len(batch)} objects were not deleted"
                if all(f.get("Code") in TRANSIENT_CODES for f in failures):
                    raise TransientError(f"{doing} ({sample}); retry")
                raise PermanentError(f"{doing} ({sample}); check {self._errors.connection_hint()} and any Object "
                                     f"Lock retention or legal hold on them")
        return len(wanted)
