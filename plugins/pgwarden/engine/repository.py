"""The backup repository: one content store over ``file:///abs/path`` and ``s3://bucket/prefix``.

Full backups, WAL upload, restore, drills, retention and the CLI all read and write through
:class:`Repository`; :func:`open_repository` picks the backend from ``RepositoryConfig.url``.

Keys
    Relative to the repository root, ``/``-separated, e.g. ``appdb/base/20261124T020000Z/base.tar.zst``.
    Rejected with ``ValueError``: empty keys, a leading or trailing ``/``, backslashes, control
    characters, empty, ``.`` or ``..`` segments, and any segment starting with ``.``. The last rule
    keeps nothing outside the root reachable and reserves dot-names for the repository's own
    bookkeeping files (below); the rules are the same on both backends, so a key that works on a
    laptop's ``file://`` repository works on S3.

Checksums
    Every object has its SHA-256 recorded when it is written, and ``get_file``/``get_bytes`` always
    verify what they read: against ``expected_sha256`` when the caller has it (from a backup
    manifest), else against the recorded one. An object with no recorded checksum and no expected
    one is refused (``ChecksumMismatch``) rather than restored unverified. ``head()`` reports the
    recorded checksum; ``list()`` does not (``sha256=None``), because S3 listings carry no user
    metadata and one HEAD per listed object would make listing a WAL archive slow.

file:// design
    ``put_*`` write ``.<name>.<random>.tmp`` in the object's folder (fsync), write the checksum to
    ``.<name>.sha256`` the same way, rename the checksum into place, fsync the folder, rename the
    object into place and fsync the folder again. So after a crash (``kill -9``, power loss) an
    object is either absent or complete and already has its checksum; a crash can leave only
    dot-files, which ``list()``/``head()`` never show. The checksum file is in ``sha256sum`` format
    (``<hex>  <name>``), so ``cd <folder> && sha256sum -c .<name>.sha256`` verifies an object by hand.
    Sidecars were chosen over extended attributes because ``cp``, ``tar``, ``rsync`` and many file
    systems drop xattrs silently; over computing on demand because a checksum computed from a
    corrupted file proves nothing. Overwriting an existing key is not atomic across the pair: a
    crash between the two renames leaves the new checksum beside the old data, which a read then
    reports as a mismatch (loud, never silent) until the write is retried. The root folder itself
    is never created: a missing root is a ``PermanentError`` so an unmounted volume is never taken
    for an empty repository. Folders under it are created on write and removed when a delete
    empties them. ``retain_until`` and ``sse`` do not apply to ``file://``.

s3:// design
    boto3 is imported lazily, one client per repository (``S3Settings`` says how to reach it).
    Requests retry in botocore's "standard" mode (backoff with jitter on 5xx, throttling and
    connection errors) up to ``S3Settings.max_attempts``; then ``TransientError`` names the key and
    the endpoint, never credentials. The SHA-256 is stored as user metadata ``sha256``
    (``x-amz-meta-sha256``), computed in one read pass before the upload starts. Server-side
    encryption follows ``RepositoryConfig.sse``. With ``object_lock_mode`` set, ``retain_until`` sends
    ``ObjectLockMode``/``ObjectLockRetainUntilDate`` with a SHA-256 request checksum (S3 requires one
    for object-lock writes). On an Object Lock bucket ``delete()`` adds delete markers; locked
    versions stay until their retention ends. Downloads pin the ETag seen by the HEAD that read the
    checksum, so the checksum and the bytes always belong to the same object version.

Memory and disk
    An upload of a file at or above 32 MiB goes in 16 MiB parts, at most 4 in flight, so its
    buffers peak at chunksize x concurrency = 64 MiB whatever the file's size; smaller files go in
    one PUT read straight from disk. Downloads use the same part size and concurrency plus
    s3transfer's write queue (at most 100 x 256 KiB), so a worker stays well under 200 MB for
    multi-GB objects. ``put_bytes``/``get_bytes`` hold the whole object in memory: use them for
    manifests and other small objects only. ``get_file`` needs free space for one copy of the object
    beside ``dest`` (a temp file renamed into place after verification) and reads it once more to
    hash it when it came from S3; ``put_file`` reads the source twice on S3 (hash, then upload) and
    once on ``file://`` (copy and hash together), and needs space for one temp copy there.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import secrets
import socket
import stat
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO
from urllib.parse import unquote, urlencode, urlparse

from pgwarden.engine.errors import PermanentError, PgwardenError, TransientError
from pgwarden.engine.s3settings import S3Settings

if TYPE_CHECKING:
    from pgwarden.core.config import RepositoryConfig

__all__ = [
    "ChecksumMismatch",
    "FileRepository",
    "ObjectInfo",
    "ObjectMissing",
    "Repository",
    "S3Repository",
    "S3Settings",
    "check_key",
    "open_repository",
]

CHUNK = 1024 * 1024
MULTIPART_THRESHOLD = 32 * 1024 * 1024  # above one default 16 MiB WAL segment: each segment is one PUT
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
MAX_CONCURRENCY = 4
DELETE_BATCH = 1000  # S3 DeleteObjects limit
PROBE_PREFIX = "_probe/"
SHA256_METADATA = "sha256"
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


def _check_prefix(prefix: str) -> str:
    if prefix:
        check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


def _normalize_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    normalized = value.strip().lower()
    if not _HEX64.match(normalized):
        raise ValueError(f"expected a SHA-256 as 64 hex digits, got {value[:80]!r}")
    return normalized


def _recorded_sha256(value: str | None) -> str | None:
    """A stored checksum as found (lowercased), so a garbled record fails verification loudly."""
    return value.strip().lower()[:128] if value else None


def _valid_or_none(value: str | None) -> str | None:
    return value if value and _HEX64.match(value) else None


def _check_retain_until(retain_until: datetime | None) -> None:
    if retain_until is not None and retain_until.tzinfo is None:
        raise ValueError("retain_until must be timezone-aware (e.g. datetime.now(timezone.utc) + ...)")


def _copy_hashing(src: BinaryIO, dst: BinaryIO | None) -> tuple[str, int]:
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


def _sha256_file(path: Path) -> tuple[str, int]:
    with open(path, "rb") as f:
        return _copy_hashing(f, None)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_temp_beside(final: Path) -> tuple[Path, BinaryIO]:
    """A new dot-file in ``final``'s folder: same file system, so ``os.replace`` is atomic."""
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    return tmp, os.fdopen(fd, "wb")


def _os_error(exc: OSError, doing: str) -> PgwardenError:
    """Classify a local file-system error; the message names the path and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    detail = f"{doing}: {exc.strerror or exc}{where}"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return PermanentError(f"{detail}; give the user running pgwarden (uid {os.getuid()}) access to it")
    if code == errno.EROFS:
        return PermanentError(f"{detail}; the file system is mounted read-only")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return PermanentError(f"{detail}; the file system is full: free space or grow the volume")
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return PermanentError(f"{detail}; a file is in the way of a folder (or the reverse): move it away")
    if code in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL, errno.ENOENT):
        return PermanentError(detail)
    return TransientError(f"{detail}; retry (I/O or network file system trouble)")


def _land_verified(
    dest: Path, key: str, where: str, expected: str | None, write: Callable[[BinaryIO], str | None]
) -> ObjectInfo:
    """Write into a temp file beside ``dest``, verify its SHA-256, then rename it into place.

    ``write`` fills the file and returns the SHA-256 if it hashed while writing, else ``None``.
    """
    dest = Path(dest)
    tmp: Path | None = None
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp, out = _open_temp_beside(dest)
        with out:
            digest = write(out)
            out.flush()
            os.fsync(out.fileno())
        if digest is None:
            digest, size = _sha256_file(tmp)
        else:
            size = os.stat(tmp).st_size
        _verify(key, where, expected, digest)
        os.replace(tmp, dest)
        tmp = None
        _fsync_dir(dest.parent)
    except OSError as exc:
        raise _os_error(exc, f"writing {dest} from {where}") from exc
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
        expected = _normalize_sha256(expected_sha256)
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


class FileRepository(Repository):
    """``file:///abs/path``: a folder tree; see the module docstring for the crash-safety design."""

    def __init__(self, config: RepositoryConfig) -> None:
        parsed = urlparse(config.url)
        if parsed.scheme != "file" or parsed.netloc or not parsed.path.startswith("/"):
            raise ValueError(f"not a file:///absolute/path URL: {config.url!r}")
        self.url = config.url.rstrip("/")
        self.root = Path(unquote(parsed.path))

    # -- paths -------------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_name(f".{path.name}.sha256")

    def _check_root(self) -> None:
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            raise PermanentError(
                f"repository directory {self.root} does not exist; create it (mkdir -p {self.root}) or fix "
                f"repository.url ({self.url}). pgwarden never creates it, so an unmounted volume is not "
                f"mistaken for an empty repository"
            ) from None
        except NotADirectoryError:
            raise PermanentError(
                f"repository directory {self.root} cannot exist: one of its parents is a regular file; "
                f"fix repository.url ({self.url})"
            ) from None
        except OSError as exc:
            raise _os_error(exc, f"opening repository {self.url}") from exc
        if not stat.S_ISDIR(st.st_mode):
            raise PermanentError(f"repository path {self.root} is not a directory; fix repository.url ({self.url})")

    def _ensure_folder(self, folder: Path) -> None:
        if folder.is_dir():
            return
        current = self.root
        for part in folder.relative_to(self.root).parts:
            current = current / part
            try:
                os.mkdir(current)
            except FileExistsError:
                if not current.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, "a file is in the way", str(current)) from None
                continue
            _fsync_dir(current.parent)

    def _read_sidecar(self, path: Path) -> str | None:
        try:
            text = self._sidecar(path).read_text(encoding="ascii", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, f"reading the checksum of {path}") from exc
        return _recorded_sha256(text.split(maxsplit=1)[0] if text.strip() else None)

    # -- writes ------------------------------------------------------------------------------------

    def _put(self, key: str, fill: Callable[[BinaryIO], tuple[str, int]]) -> ObjectInfo:
        path = self._path(key)
        where = self.uri(key)
        self._check_root()
        tmp: Path | None = None
        side_tmp: Path | None = None
        try:
            for attempt in range(3):
                self._ensure_folder(path.parent)
                try:
                    tmp, out = _open_temp_beside(path)
                    break
                except FileNotFoundError:
                    # A concurrent delete pruned the (then empty) folder between mkdir and open.
                    if attempt == 2:
                        raise
            with out:
                digest, size = fill(out)
                out.flush()
                os.fsync(out.fileno())
            side_tmp, side = _open_temp_beside(self._sidecar(path))
            with side:
                side.write(f"{digest}  {path.name}\n".encode())
                side.flush()
                os.fsync(side.fileno())
            os.replace(side_tmp, self._sidecar(path))
            side_tmp = None
            _fsync_dir(path.parent)
            os.replace(tmp, path)
            tmp = None
            _fsync_dir(path.parent)
            modified = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
        except OSError as exc:
            raise _os_error(exc, f"writing {where}") from exc
        finally:
            for leftover in (tmp, side_tmp):
                if leftover is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
        return ObjectInfo(key=key, size=size, sha256=digest, modified=modified)

    def put_file(self, key: str, path: Path, *, retain_until: datetime | None = None,
                 storage_class: str | None = None, tags: Mapping[str, str] | None = None) -> ObjectInfo:
        check_key(key)
        _check_retain_until(retain_until)
        try:
            src = open(path, "rb")
        except OSError as exc:
            raise _os_error(exc, f"reading local file {path} to store as {self.uri(key)}") from exc
        with src:
            return self._put(key, lambda out: _copy_hashing(src, out))

    def put_bytes(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> ObjectInfo:
        check_key(key)
        _check_retain_until(retain_until)

        def fill(out: BinaryIO) -> tuple[str, int]:
            out.write(data)
            return hashlib.sha256(data).hexdigest(), len(data)

        return self._put(key, fill)

    # -- reads -------------------------------------------------------------------------------------

    def _open_object(self, key: str) -> tuple[BinaryIO, str | None]:
        path = self._path(key)
        self._check_root()
        try:
            f = open(path, "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise ObjectMissing(f"{self.uri(key)} does not exist (key {key!r})") from None
        except OSError as exc:
            raise _os_error(exc, f"reading {self.uri(key)}") from exc
        try:
            return f, self._read_sidecar(path)
        except BaseException:
            f.close()
            raise

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        expected = _normalize_sha256(expected_sha256)
        src, stored = self._open_object(key)
        with src:
            return _land_verified(
                Path(dest), key, self.uri(key), expected or stored, lambda out: _copy_hashing(src, out)[0]
            )


    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        self._check_root()
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, f"reading metadata of {self.uri(key)}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(
            key=key,
            size=st.st_size,
            sha256=_valid_or_none(self._read_sidecar(path)),
            modified=datetime.fromtimestamp(st.st_mtime, timezone.utc),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        self._check_root()
        folder = prefix.rpartition("/")[0]
        base = self._path(folder) if folder else self.root
        errors: list[OSError] = []
        found = []
        for dirpath, dirnames, filenames in os.walk(base, onerror=errors.append):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            for name in filenames:
                if name.startswith("."):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if not key.startswith(prefix):
                    continue
                try:
                    st = os.stat(os.path.join(dirpath, name))
                except FileNotFoundError:  # deleted while we walked
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append(ObjectInfo(key, st.st_size, None, datetime.fromtimestamp(st.st_mtime, timezone.utc)))
        real_errors = [e for e in errors if not (isinstance(e, (FileNotFoundError, NotADirectoryError)))]
        if real_errors:
            raise _os_error(real_errors[0], f"listing {self.url}/{prefix}")
        found.sort(key=lambda info: info.key)
        return iter(found)

    # -- deletes -----------------------------------------------------------------------------------

    def delete(self, keys: Iterable[str]) -> int:
        wanted = list(dict.fromkeys(check_key(k) for k in keys))
        if not wanted:
            return 0
        self._check_root()
        folders: set[Path] = set()
        for key in wanted:
            path = self._path(key)
            # The object first: a crash in between leaves an orphan checksum, never an unverifiable object.
            for victim in (path, self._sidecar(path)):
                try:
                    os.unlink(victim)
                except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
                    pass
                except OSError as exc:
                    raise _os_error(exc, f"deleting {self.uri(key)}") from exc
            folders.add(path.parent)
        for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
            self._prune(folder)
        return len(wanted)

    def _prune(self, folder: Path) -> None:
        """Remove folders a delete emptied, up to (never including) the root."""
        while folder != self.root and self.root in folder.parents:
            try:
                os.rmdir(folder)
            except OSError:
                break
            folder = folder.parent
        with contextlib.suppress(OSError):
            _fsync_dir(folder)


# -- S3 --------------------------------------------------------------------------------------------

_ACCESS_DENIED = {
    "AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "InvalidSecurity", "403", "Forbidden",
}
_TRANSIENT_CODES = {
    "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "RequestThrottled",
    "InternalError", "ServiceUnavailable", "503", "500", "PreconditionFailed", "OperationAborted",
}
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


def _client_error_parts(exc: Any) -> tuple[str, str, int]:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
    return str(error.get("Code", "")), str(error.get("Message", "")), int(status)


def _unwrap(exc: BaseException) -> BaseException:
    """boto3/s3transfer wrap the real error; find the botocore one underneath."""
    for _ in range(5):
        last = getattr(exc, "last_exception", None)  # RetriesExceededError (boto3 and s3transfer)
        if last is not None:
            exc = last
            continue
        if type(exc).__name__ in ("S3UploadFailedError", "S3DownloadFailedError", "S3TransferFailedError"):
            inner = exc.__cause__ or exc.__context__
            if inner is not None:
                exc = inner
                continue
        break
    return exc


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
        self._client_obj: Any = None
        self._client_lock = threading.Lock()

    # -- plumbing ----------------------------------------------------------------------------------

    def _client(self) -> Any:
        with self._client_lock:
            if self._client_obj is None:
                self._client_obj = self.settings.client()
            return self._client_obj

    def _transfer_manager(self) -> Any:
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        config = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNKSIZE,
            max_concurrency=MAX_CONCURRENCY,
            # Downloads queue received bytes for the disk writer: up to 1000 x 256 KiB by default when
            # the disk is slower than the network. 16 x 256 KiB keeps memory flat either way.
            max_io_queue=16,
            num_download_attempts=self.settings.max_attempts,
            preferred_transfer_client="classic",
        )
        return create_transfer_manager(self._client(), config)

    def _object_key(self, key: str) -> str:
        return self.root_prefix + check_key(key)

    def _connection_hint(self) -> str:
        if self.config.conn_id:
            return f"Airflow connection {self.config.conn_id!r}"
        return "the AWS credentials of this host (environment, ~/.aws or instance role)"

    def _classify(self, exc: BaseException, doing: str) -> PgwardenError | None:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            CredentialRetrievalError,
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        exc = _unwrap(exc)
        endpoint = self.settings.describe_endpoint()
        attempts = self.settings.max_attempts
        if isinstance(exc, ClientError):
            code, message, status = _client_error_parts(exc)
            if code == "NoSuchBucket":
                return self._bucket_missing(doing)
            if code in _ACCESS_DENIED or status == 403:
                return PermanentError(
                    f"{doing}: access denied ({code or status}) by {endpoint}; check {self._connection_hint()} "
                    f"and that its policy allows s3:GetObject, s3:PutObject, s3:DeleteObject and "
                    f"s3:ListBucket on s3://{self.bucket}/{self.root_prefix}* (without s3:ListBucket, S3 "
                    f"also answers 403 for a missing key)"
                )
            if code in _NOT_FOUND:
                return ObjectMissing(f"{doing}: no such object")
            if code == "InvalidRequest" and "objectlock" in message.replace(" ", "").lower():
                return PermanentError(
                    f"{doing}: {message}; repository.object_lock_mode is set but bucket {self.bucket} has no "
                    f"Object Lock: use a bucket created with Object Lock enabled, or unset object_lock_mode"
                )
            if status >= 500 or code in _TRANSIENT_CODES:
                return TransientError(
                    f"{doing}: {code or status} from {endpoint}, still failing after {attempts} attempts; "
                    f"S3 is busy or failing, retry later"
                )
            return PermanentError(f"{doing}: {code or status}: {message} (endpoint {endpoint})")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            return PermanentError(f"{doing}: no usable AWS credentials ({type(exc).__name__}); set them in "
                                  f"{self._connection_hint()}")
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError, FlexibleChecksumError)):
            return TransientError(
                f"{doing}: could not talk to {endpoint} after {attempts} attempts "
                f"({type(exc).__name__}: {exc}); check that the endpoint is up and reachable from this worker"
            )
        if isinstance(exc, BotoCoreError):
            return PermanentError(f"{doing}: {type(exc).__name__}: {exc} (endpoint {endpoint})")
        if isinstance(exc, OSError):
            return _os_error(exc, doing)
        return None

    def _bucket_missing(self, doing: str) -> PermanentError:
        return PermanentError(
            f"{doing}: bucket {self.bucket} does not exist at {self.settings.describe_endpoint()}; create it "
            f"(aws s3 mb s3://{self.bucket}) or fix repository.url ({self.url})"
        )

    @contextlib.contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        try:
            yield
        except PgwardenError:
            raise
        except Exception as exc:
            classified = self._classify(exc, doing)
            if classified is None:
                raise
            raise classified from exc

    def _missing(self, key: str, doing: str) -> PgwardenError:
        """An absent key, or an absent bucket (HEAD answers a bare 404 for both)."""
        from botocore.exceptions import ClientError

        try:
            self._client().head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, _, status = _client_error_parts(exc)
            if code in ("NoSuchBucket", "404", "NotFound") or status == 404:
                return self._bucket_missing(doing)
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

        with self._errors(doing):
            try:
                return self._client().head_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as exc:
                code, _, status = _client_error_parts(exc)
                if code in _NOT_FOUND or status == 404:
                    return None
                raise

    # -- writes ------------------------------------------------------------------------------------

    def put_bytes(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> ObjectInfo:
        object_key = self._object_key(key)
        _check_retain_until(retain_until)
        digest = hashlib.sha256(data).hexdigest()
        args = self._upload_args(digest, retain_until)
        with self._errors(f"uploading {self.uri(key)}"):
            self._client().put_object(Bucket=self.bucket, Key=object_key, Body=data, **args)
        return ObjectInfo(key=key, size=len(data), sha256=digest)

    def put_file(self, key: str, path: Path, *, retain_until: datetime | None = None,
                 storage_class: str | None = None, tags: Mapping[str, str] | None = None) -> ObjectInfo:
        object_key = self._object_key(key)
        _check_retain_until(retain_until)
        doing = f"uploading {path} to {self.uri(key)}"
        try:
            before = os.stat(path)
            digest, size = _sha256_file(Path(path))
        except OSError as exc:
            raise _os_error(exc, f"reading local file {path} to store as {self.uri(key)}") from exc
        args = self._upload_args(digest, retain_until)
        if storage_class:
            args["StorageClass"] = storage_class
        if tags:
            args["Tagging"] = urlencode(tags)
        with self._errors(doing), self._transfer_manager() as manager:
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
        expected = _normalize_sha256(expected_sha256)
        doing = f"downloading {self.uri(key)}"
        head = self._head_raw(key, doing)
        if head is None:
            raise self._missing(key, doing)
        stored = _recorded_sha256(head.get("Metadata", {}).get(SHA256_METADATA))
        pin = _PinObject(int(head["ContentLength"]), head.get("ETag"))

        def download(out: BinaryIO) -> None:
            with self._errors(doing), self._transfer_manager() as manager:
                manager.download(self.bucket, self._object_key(key), out, subscribers=[pin]).result()

        return _land_verified(Path(dest), key, self.uri(key), expected or stored, download)

    def _open_object(self, key: str) -> tuple[Any, str | None]:
        from botocore.exceptions import ClientError

        doing = f"downloading {self.uri(key)}"
        with self._errors(doing):
            try:
                response = self._client().get_object(Bucket=self.bucket, Key=self._object_key(key))
            except ClientError as exc:
                code, _, status = _client_error_parts(exc)
                if code in _NOT_FOUND or status == 404:
                    raise self._missing(key, doing) from None
                raise
        return response["Body"], _recorded_sha256(response.get("Metadata", {}).get(SHA256_METADATA))


    def head(self, key: str) -> ObjectInfo | None:
        response = self._head_raw(key, f"reading metadata of {self.uri(key)}")
        if response is None:
            return None
        return ObjectInfo(
            key=key,
            size=int(response["ContentLength"]),
            sha256=_valid_or_none(_recorded_sha256(response.get("Metadata", {}).get(SHA256_METADATA))),
            modified=response.get("LastModified"),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        _check_prefix(prefix)
        paginator = self._client().get_paginator("list_objects_v2")
        with self._errors(f"listing {self.url}/{prefix}"):
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
            with self._errors(f"deleting {len(batch)} objects from {self.url}"):
                response = self._client().delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self.root_prefix + k} for k in batch], "Quiet": True},
                )
            failures = response.get("Errors", [])
            if failures:
                sample = "; ".join(f"{f.get('Key')}: {f.get('Code')} {f.get('Message', '')}".strip()
                                   for f in failures[:3])
                doing = f"deleting from {self.url}: {len(failures)} of {len(batch)} objects were not deleted"
                if all(f.get("Code") in _TRANSIENT_CODES for f in failures):
                    raise TransientError(f"{doing} ({sample}); retry")
                raise PermanentError(f"{doing} ({sample}); check {self._connection_hint()} and any Object "
                                     f"Lock retention or legal hold on them")
        return len(wanted)


def open_repository(config: RepositoryConfig, s3: S3Settings | None = None) -> Repository:
    """The repository at ``config.url``; ``s3`` says how to reach S3 (default: boto3's own lookup)."""
    scheme = urlparse(config.url).scheme
    if scheme == "file":
        return FileRepository(config)
    if scheme == "s3":
        return S3Repository(config, s3)
    raise ValueError(f"unknown repository URL scheme in {config.url!r}: use s3://bucket/prefix or file:///abs/path")
