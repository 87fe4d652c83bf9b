"""Proving a tar-format base backup against PostgreSQL's own ``backup_manifest``.

``pg_verifybackup`` reads tar-format backups only from PostgreSQL 18 on. Before that, pgwarden
does the same file check itself: it streams every tar (through ``zstd -dc``/gzip, never unpacking
to disk), hashes each member and compares path, size and checksum with the manifest, and checks
the manifest's own checksum. Memory stays at one read buffer.
"""

from __future__ import annotations

import hashlib
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from pgwarden.core.manifest import Verification
from pgwarden.engine import compress, pgtools
from pgwarden.engine.errors import PermanentError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class ManifestSummary:
    files: dict[str, tuple[int, str | None, str | None]]  # path -> (size, algorithm, checksum)
    wal_ranges: list[dict[str, object]]
    system_identifier: str | None


def read_backup_manifest(path: Path) -> ManifestSummary:
    raw = path.read_bytes()
    data = json.loads(raw)
    # The manifest checksum covers everything up to and including the newline before its own line.
    cut = raw.rfind(b'"Manifest-Checksum"')
    expected = data.get("Manifest-Checksum")
    if cut < 0 or expected is None or hashlib.sha256(raw[:cut]).hexdigest() != expected:
        raise PermanentError(f"{path.name}: the manifest's own SHA-256 does not match; the backup is corrupt")
    files = {f["Path"] if "Path" in f else bytes.fromhex(f["Encoded-Path"]).decode(errors="surrogateescape"):
             (int(f["Size"]), f.get("Checksum-Algorithm"), f.get("Checksum")) for f in data["Files"]}
    return ManifestSummary(files, data.get("WAL-Ranges", []), str(data.get("System-Identifier") or "") or None)


_BLOCK = 512


def _read_exact(stream: BinaryIO, view: memoryview) -> None:
    got = 0
    while got < len(view):
        n = stream.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise PermanentError("the tar stream ended in the middle of a file; the backup is truncated")
        got += n


def _hash_members(stream: BinaryIO, prefix: str, wanted: dict) -> Iterator[tuple[str, int, Any]]:
    """Yield (path, size, hasher) of each regular file in a ustar stream that ``wanted`` lists.

    pg_basebackup writes plain ustar (no pax or GNU long names), so headers are parsed with
    ``TarInfo.frombuf`` and data is hashed through one reused 1 MiB buffer: several times faster than
    ``tarfile``'s stream mode, which reads a pipe in small pieces.
    """
    header = bytearray(_BLOCK)
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    while True:
        _read_exact(stream, memoryview(header))
        if not any(header):
            return  # end-of-archive marker
        info = tarfile.TarInfo.frombuf(bytes(header), "utf-8", "surrogateescape")
        if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK):
            raise PermanentError(f"unexpected tar extension header ({info.type!r}) in a pg_basebackup archive")
        remaining = info.size + (-info.size % _BLOCK)  # data is padded to whole blocks
        path = prefix + info.name.removeprefix("./")
        hasher = None
        if info.isfile() and path in wanted:
            algorithm = wanted[path][1] or "sha256"
            hasher = hashlib.new(algorithm.lower().replace("-", ""))
        data_left = info.size
        while remaining:
            step = min(remaining, _CHUNK)
            _read_exact(stream, view[:step])
            if hasher is not None and data_left:
                take = min(step, data_left)
                hasher.update(view[:take])
                data_left -= take
            remaining -= step
        if hasher is not None:
            yield path, info.size, hasher


def verify_tar_backup(directory: Path) -> Verification:
    """Check every file the manifest lists against the tars in ``directory``; raise naming the first bad one.

    The worker's ``pg_verifybackup`` decides the method, not the server's version: from 18 on it reads
    tar-format backups of older servers too.
    """
    if pgtools.tool_major(pgtools.tool("pg_verifybackup")) >= 18:
        pgtools.run([pgtools.tool("pg_verifybackup"), "--no-parse-wal", str(directory)], timeout=7200)
        return Verification(method="pg_verifybackup", files_checked=len(read_backup_manifest(
            directory / "backup_manifest").files), ok=True)

    manifest = read_backup_manifest(directory / "backup_manifest")
    seen: set[str] = set()
    tars = sorted(p for p in directory.iterdir() if re.match(r"^(base|\d+)\.tar(\.zst|\.gz)?$", p.name))
    for tar_path in tars:
        prefix = "" if tar_path.name.startswith("base.") else f"pg_tblspc/{tar_path.name.split('.')[0]}/"
        with compress.decompressed(tar_path) as stream:
            for path, size, hasher in _hash_members(stream, prefix, manifest.files):
                expected_size, _, checksum = manifest.files[path]
                if size != expected_size or (checksum and hasher.hexdigest() != checksum):
                    raise PermanentError(
                        f"{tar_path.name}: {path} does not match backup_manifest (size {size} vs {expected_size}); "
                        f"the backup is corrupt and is not counted (it gets no pgwarden.json)"
                    )
                seen.add(path)
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise PermanentError(f"backup_manifest lists {len(missing)} file(s) not in the tar output, "
                             f"first: {missing[0]}")
    return Verification(method="manifest-checksums", files_checked=len(seen), ok=True)
