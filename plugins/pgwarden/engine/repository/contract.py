"""What every repository backend promises: keys, recorded checksums and verified reads.

Keys
    Relative to the repository root, ``/``-separated, e.g. ``appdb/base/20261124T020000Z/base.tar.zst``.
    Rejected with ``ValueError``: empty keys, a leading or trailing ``/``, backslashes, control
    characters, empty, ``.`` or ``..`` segments, and any segment starting with ``.``. The last rule
    keeps nothing outside the root reachable and reserves dot-names for the repository's own
    bookkeeping files (see ``file``); the rules are the same on both backends, so a key that works on
    a laptop's ``file://`` repository works on S3.

Checksums
    Every object has its SHA-256 recorded when it is written, and ``get_file``/``get_bytes`` always
    verify what they read: against ``expected_sha256`` when the caller has it (from a backup
    manifest), else against the recorded one. An object with no recorded checksum and no expected
    one is refused (``ChecksumMismatch``) rather than restored unverified. ``head()`` reports the
    recorded checksum; ``list()`` does not (``sha256=None``), because S3 listings carry no user
    metadata and one HEAD per listed object would make listing a WAL archive slow.

Memory and disk
    ``put_bytes``/``get_bytes`` hold the whole object in memory: use them for manifests and other
    small objects only. ``get_file`` needs free space for one copy of the object beside ``dest`` (a
    temp file renamed into place after verification) and reads it once more to hash it when it came
    from S3; ``put_file`` reads the source twice on S3 (hash, then upload) and once on ``file://``
    (copy and hash together), and needs space for one temp copy there.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import re
import secrets
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, BinaryIO

from pgwarden.engine.errors import PermanentError, PgwardenError, TransientError, os_error

CHUNK = 1024 * 1024
PROBE_PREFIX = "_probe/"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ChecksumMismatch(PermanentError):
    """What was read is not what was written (or nothing was recorded to tell)."""


class ObjectMissing(PermanentError):
    """The key names no object in the repository."""


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    sha256: str | None
    modified: datetime | None = None


def check_key(key: str) -> str:
    """Return ``key`` if it stays inside the repository root, else raise ``ValueError``."""
    problem = None
    if not isinstance(key, str) or not key:
        problem = "keys are non-empty strings"
    elif key.startswith("/"):
        problem = "it starts with '/'"
    elif "\\" in key:
        problem = "it contains a backslash"
    elif key.endswith("/"):
        problem = "it ends with '/', which names a folder, not an object"
    elif any(ord(ch) < 32 or ch == "\x7f" for ch in key):
        problem = "it contains control characters"
    else:
        for segment in key.split("/"):
            if not segment:
                problem = "it has an empty segment ('//')"
            elif segment in (".", ".."):
                problem = f"it has a {segment!r} segment"
            elif segment.startswith("."):
                problem = f"segment {segment!r} starts with '.', reserved for the repository's own files"
            if problem:
                break
    if problem:
        raise ValueError(f"invalid repository key {key!r}: {problem}")
    return key


def check_prefix(prefix: str) -> str:
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def normalize_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    normalized = value.strip().lower()
    if not _HEX64.match(normalized):
        raise ValueError(f"expected a SHA-256 as 64 hex digits, got {value[:80]!r}")
    return normalized


def recorded_sha256(value: str | None) -> str | None:
    """A stored checksum as found (lowercased), so a garbled record fails verification loudly."""
    return value.strip().lower()[:128] if value else None


def valid_or_none(value: str | None) -> str | None:
    return value if value and _HEX64.match(value) else None


def check_retain_until(retain_until: datetime | None) -> None:
    if retain_until is not None and retain_until.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware (e.g. datetime.now(timezone.utc) + ...)")


def copy_hashing(src: BinaryIO, dst: BinaryIO | None) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    while True:
        n = src.readinto(buffer)
        if not n:
            break
        digest.update(view[:n])
        if dst is not None:
            dst.write(view[:n])
        size += n
    return digest.hexdigest(), size


def sha256_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return copy_hashing(f, None)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_temp_beside(final: Path) -> tuple[Path, BinaryIO]:
    """A new dot-file in ``final``'s folder: same file system, so ``os.replace`` is atomic."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    return tmp, os.fdopen(fd, "wb")


def land_verified(
    dest: Path, key: str, where: str, expected: str | None, write: Callable[[BinaryIO], str | None]
) -> ObjectInfo:
    """Write into a temp file beside ``dest``, verify its SHA-256, then rename it into place.

    ``write`` fills the file and returns the SHA-256 if it hashed while writing, else ``None``.
    """
    dest = Path(dest)
    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp, out = open_temp_beside(dest)
        with out:
            digest = write(out)
            out.flush()
            os.fsync(out.fileno())
        if digest is None:
            digest, size = sha256_file(tmp)
        else:
            size = os.stat(tmp).st_size
        _verify(key, where, expected, digest)
        os.replace(tmp, dest)
        tmp = None
        fsync_dir(dest.parent)
    except OSError as exc:
        raise os_error(exc, f"writing {dest} from {where}") from exc
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
    return ObjectInfo(key=key, size=size, sha256=digest)


def _verify(key: str, where: str, expected: str | None, actual: str) -> None:
    if expected is None:
        raise ChecksumMismatch(
            f"cannot verify {where} (key {key!r}): no SHA-256 is recorded for it; pass the checksum "
            f"from the backup manifest (expected_sha256) or write the object again through pgwarden"
        )
    if actual != expected:
        raise ChecksumMismatch(
            f"checksum mismatch for {where} (key {key!r}): expected sha256 {expected}, read {actual}; "
            f"the stored object is corrupt or was replaced: do not restore from it, use another backup "
            f"or the offsite copy, and check the storage"
        )


class _VerifyingReader(io.RawIOBase):
    """A read-only stream that hashes what passes through; read errors become TransientError."""

    def __init__(self, raw: Any, where: str) -> None:
        super().__init__()
        self._raw = raw
        self._where = where
        self._hash = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._raw.read(len(buffer))
        except PgwardenError:
            raise
        except Exception as exc:
            raise TransientError(f"reading {self._where} stopped: {type(exc).__name__}: {exc}") from exc
        n = len(data)
        buffer[:n] = data
        self._hash.update(data)
        return n

    def readall(self) -> bytes:
        chunks = []
        while chunk := self.read(CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)

    def drain(self) -> None:
        while self.read(CHUNK):
            pass

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class Repository(ABC):
    """A content store of immutable-by-convention objects under one URL."""

    url: str

    def uri(self, key: str) -> str:
        """The object's full URL, for messages and runbooks."""
        return f"{self.url}/{check_key(key)}"

    @abstractmethod
    def put_file(self, key: str, path: Path, *, retain_until: datetime | None = None,
                 storage_class: str | None = None, tags: Mapping[str, str] | None = None) -> ObjectInfo:
        """Store ``path`` under ``key``. ``storage_class`` (e.g. ``GLACIER_IR``) and ``tags`` (S3 object
        tags, e.g. for a bucket lifecycle rule that expires them) apply to S3 only; ``file://`` ignores them."""

    @abstractmethod
    def put_bytes(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> ObjectInfo: ...

    @abstractmethod
    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo: ...

    @abstractmethod
    def _open_object(self, key: str) -> tuple[Any, str | None]:
        """A readable stream of the object and its recorded SHA-256 (or None)."""

    @contextlib.contextmanager
    def open_verified(self, key: str, *, expected_sha256: str | None = None) -> Iterator[BinaryIO]:
        """Stream an object, hashing as it is read; its SHA-256 is checked when the block ends.

        For readers that consume as they go (unpacking a tar), so nothing is copied to local disk
        first. Whatever the reader leaves unread is drained so the whole object is always checked. If
        the reader fails first (zstd or tar choking on corrupt bytes), the object is still hashed to
        the end, and a mismatch is what gets reported: it names the object, a tar error would not.
        """
        expected = normalize_sha256(expected_sha256)
        raw, stored = self._open_object(key)
        reader = _VerifyingReader(raw, self.uri(key))
        try:
            try:
                yield reader  # type: ignore[misc]
            except Exception as exc:
                if isinstance(exc, TransientError):
                    raise  # reading itself failed: retrying is the answer, not a checksum verdict
                try:
                    reader.drain()
                    _verify(key, self.uri(key), expected or stored, reader.hexdigest())
                except ChecksumMismatch as corrupt:
                    raise corrupt from exc
                except Exception:  # the reader's own error is the one to report
                    pass
                raise
            reader.drain()
        finally:
            raw.close()
        _verify(key, self.uri(key), expected or stored, reader.hexdigest())

    def get_bytes(self, key: str, *, expected_sha256: str | None = None) -> bytes:
        """A small object (manifest, record) in memory, verified like every read."""
        with self.open_verified(key, expected_sha256=expected_sha256) as stream:
            return stream.read()

    @abstractmethod
    def head(self, key: str) -> ObjectInfo | None: ...

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    @abstractmethod
    def delete(self, keys: Iterable[str]) -> int:
        """Delete ``keys`` (missing ones are fine); returns how many keys were asked for and are gone."""

    def probe(self) -> None:
        """Write, read back and delete a small object under ``_probe/``; raise what to fix."""
        host = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64]
        key = f"{PROBE_PREFIX}probe-{host}-{os.getpid()}-{secrets.token_hex(4)}"
        payload = f"pgwarden probe {datetime.now(timezone.utc).isoformat()}\n".encode()
        try:
            self.put_bytes(key, payload)
            try:
                self.get_bytes(key, expected_sha256=hashlib.sha256(payload).hexdigest())
            except BaseException:
                with contextlib.suppress(PgwardenError):
                    self.delete([key])
                raise
            self.delete([key])
        except PgwardenError as exc:
            raise type(exc)(f"repository {self.url} failed its write/read/delete probe: {exc}") from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
