"""``file:///abs/path``: the repository as a folder tree, crash-safe.

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
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import unquote, urlparse

from pgwarden.engine.errors import PermanentError, os_error
from pgwarden.engine.repository.contract import (
    ObjectInfo,
    ObjectMissing,
    Repository,
    check_key,
    check_prefix,
    check_retain_until,
    copy_hashing,
    fsync_dir,
    land_verified,
    normalize_sha256,
    open_temp_beside,
    recorded_sha256,
    valid_or_none,
)

if TYPE_CHECKING:
    from pgwarden.core.config import RepositoryConfig


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
            raise os_error(exc, f"opening repository {self.url}") from exc
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
            fsync_dir(current.parent)

    def _read_sidecar(self, path: Path) -> str | None:
        try:
            text = self._sidecar(path).read_text(encoding="ascii", errors="replace")
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise os_error(exc, f"reading the checksum of {path}") from exc
        return recorded_sha256(text.split(maxsplit=1)[0] if text.strip() else None)

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
                    tmp, out = open_temp_beside(path)
                    break
                except FileNotFoundError:
                    # A concurrent delete pruned the (then empty) folder between mkdir and open.
                    if attempt == 2:
                        raise
            with out:
                digest, size = fill(out)
                out.flush()
                os.fsync(out.fileno())
            side_tmp, side = open_temp_beside(self._sidecar(path))
            with side:
                side.write(f"{digest}  {path.name}\n".encode())
                side.flush()
                os.fsync(side.fileno())
            os.replace(side_tmp, self._sidecar(path))
            side_tmp = None
            fsync_dir(path.parent)
            os.replace(tmp, path)
            tmp = None
            fsync_dir(path.parent)
            modified = datetime.fromtimestamp(os.stat(path).st_mtime, timezone.utc)
        except OSError as exc:
            raise os_error(exc, f"writing {where}") from exc
        finally:
            for leftover in (tmp, side_tmp):
                if leftover is not None:
                    with contextlib.suppress(OSError):
                        os.unlink(leftover)
        return ObjectInfo(key=key, size=size, sha256=digest, modified=modified)

    def put_file(self, key: str, path: Path, *, retain_until: datetime | None = None,
                 storage_class: str | None = None, tags: Mapping[str, str] | None = None) -> ObjectInfo:
        check_key(key)
        check_retain_until(retain_until)
        try:
            src = open(path, "rb")
        except OSError as exc:
            raise os_error(exc, f"reading local file {path} to store as {self.uri(key)}") from exc
        with src:
            return self._put(key, lambda out: copy_hashing(src, out))

    def put_bytes(self, key: str, data: bytes, *, retain_until: datetime | None = None) -> ObjectInfo:
        check_key(key)
        check_retain_until(retain_until)

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
            raise os_error(exc, f"reading {self.uri(key)}") from exc
        try:
            return f, self._read_sidecar(path)
        except BaseException:
            f.close()
            raise

    def get_file(self, key: str, dest: Path, *, expected_sha256: str | None = None) -> ObjectInfo:
        expected = normalize_sha256(expected_sha256)
        src, stored = self._open_object(key)
        with src:
            return land_verified(
                Path(dest), key, self.uri(key), expected or stored, lambda out: copy_hashing(src, out)[0]
            )


    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        self._check_root()
        try:
            st = os.stat(path)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise os_error(exc, f"reading metadata of {self.uri(key)}") from exc
        if not stat.S_ISREG(st.st_mode):
            return None
        return ObjectInfo(
            key=key,
            size=st.st_size,
            sha256=valid_or_none(self._read_sidecar(path)),
            modified=datetime.fromtimestamp(st.st_mtime, timezone.utc),
        )

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        check_prefix(prefix)
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
            raise os_error(real_errors[0], f"listing {self.url}/{prefix}")
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
                    raise os_error(exc, f"deleting {self.uri(key)}") from exc
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
            fsync_dir(folder)
