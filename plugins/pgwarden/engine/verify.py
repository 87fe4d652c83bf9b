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
from dataclasses import dataclass
from pathlib import Path

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


def verify_tar_backup(directory: Path, *, server_major: int) -> Verification:
    """Check every file the manifest lists against the tars in ``directory``; raise naming the first bad one."""
    if pgtools.tool_major(pgtools.tool("pg_verifybackup")) >= 18:
        pgtools.run([pgtools.tool("pg_verifybackup"), "--no-parse-wal", str(directory)], timeout=7200)
        return Verification(method="pg_verifybackup", files_checked=len(read_backup_manifest(
            directory / "backup_manifest").files), ok=True)

    manifest = read_backup_manifest(directory / "backup_manifest")
    seen: set[str] = set()
    tars = sorted(p for p in directory.iterdir() if re.match(r"^(base|\d+)\.tar(\.zst|\.gz)?$", p.name))
    for tar_path in tars:
        prefix = "" if tar_path.name.startswith("base.") else f"pg_tblspc/{tar_path.name.split('.')[0]}/"
        with compress.tar_stream(tar_path) as archive:
            for member in archive:
                if not member.isfile():
                    continue
                path = prefix + member.name.removeprefix("./")
                if path not in manifest.files:
                    continue  # e.g. files the manifest deliberately omits
                size, algorithm, checksum = manifest.files[path]
                handle = archive.extractfile(member)
                assert handle is not None
                digest = hashlib.new((algorithm or "sha256").lower().replace("-", ""))
                for chunk in iter(lambda h=handle: h.read(_CHUNK), b""):
                    digest.update(chunk)
                if member.size != size or (checksum and digest.hexdigest() != checksum):
                    raise PermanentError(
                        f"{tar_path.name}: {path} does not match backup_manifest (size {member.size} vs {size}); "
                        f"the backup is corrupt and is not counted (it gets no pgwarden.json)"
                    )
                seen.add(path)
    missing = sorted(set(manifest.files) - seen)
    if missing:
        raise PermanentError(f"backup_manifest lists {len(missing)} file(s) not in the tar output, "
                             f"first: {missing[0]}")
    return Verification(method="manifest-checksums", files_checked=len(seen), ok=True)
