"""Restore step 2, fetch and unpack: the base backup streamed into the data directory, the WAL beside it.

Every object is verified against its SHA-256 while it is read; nothing compressed is kept on local
disk, so a restore needs room for the data directory and the WAL it replays only.
"""

from __future__ import annotations

import shutil
import tarfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pgwarden.core import layout
from pgwarden.core.catalog import BackupEntry, Catalog
from pgwarden.core.lsn import Lsn
from pgwarden.core.walnames import segments_on_timeline
from pgwarden.engine import compress
from pgwarden.engine.restore.paths import tablespace_dir

Log = Callable[[str], None]

WAL_FETCH_WORKERS = 3


def unpack_object(repo, key: str, sha256: str | None, dest: Path) -> None:
    """Unpack a (compressed) tar straight from the repository, verifying its SHA-256 on the way.

    If the checksum fails at the end, the restore fails and removes what was unpacked.
    """
    name = key.rsplit("/", 1)[-1]
    dest.mkdir(parents=True, exist_ok=True)
    with (repo.open_verified(key, expected_sha256=sha256) as raw,
          compress.decompressed_from(raw, Path(name).suffix, name) as stream,
          tarfile.open(fileobj=stream, mode="r|") as archive):
        # "tar" filter: keeps modes and symlinks a data directory needs, refuses absolute/escaping paths.
        archive.extractall(dest, filter="tar")


def remap_tablespaces(datadir: Path, tablespace_root: Path) -> None:
    """Tablespaces land beside the data directory; tablespace_map is rewritten to point there."""
    mapping = datadir / "tablespace_map"
    if not mapping.exists() or not mapping.read_text().strip():
        return
    lines = []
    for line in mapping.read_text().splitlines():
        oid, _, _old = line.partition(" ")
        lines.append(f"{oid} {tablespace_root / oid}")
    mapping.write_text("\n".join(lines) + "\n")


def unpack_backup(repo, database: str, backup: BackupEntry, dest: Path) -> None:
    """Every file of the base backup into ``dest`` (tablespaces beside it), as the server wants them."""
    prefix = layout.backup_prefix(database, backup.id)
    tablespaces = tablespace_dir(dest)
    for stored in backup.manifest.files:
        key = prefix + stored.name
        if stored.role == "base":
            unpack_object(repo, key, stored.sha256, dest)
        elif stored.role == "wal":
            unpack_object(repo, key, stored.sha256, dest / "pg_wal")
        elif stored.role == "tablespace":
            unpack_object(repo, key, stored.sha256, tablespaces / stored.name.split(".")[0])
        elif stored.role == "backup_manifest":
            (dest / "backup_manifest").write_bytes(repo.get_bytes(key, expected_sha256=stored.sha256))
        # the logical dump ("dump") is not needed for a physical restore
    remap_tablespaces(dest, tablespaces)


def fetch_wal(repo, catalog: Catalog, backup: BackupEntry, end_lsn: Lsn | None, dest: Path, log: Log) -> int:
    """Download, verify and decompress the segments and history files recovery will need."""
    dest.mkdir(parents=True, exist_ok=True)
    by_name = {w.name: w for w in catalog.wal}
    end = catalog.wal_end
    if end is None:
        return 0
    end_timeline = end.timeline
    history = catalog.history.get(end_timeline, [])
    stop = end_lsn if end_lsn is not None else end.lsn
    wanted = segments_on_timeline(end_timeline, history, backup.start_lsn, max(stop, backup.start_lsn),
                                  catalog.segment_size) if stop > backup.start_lsn else []
    names = [n for n in by_name if n.endswith(".history")] + [n for n in wanted if n in by_name]

    def fetch(name: str) -> None:
        key = by_name[name].key
        with (repo.open_verified(key) as raw,
              compress.decompressed_from(raw, Path(key).suffix if key.endswith((".zst", ".gz")) else "", name)
              as stream, open(dest / name, "wb") as out):
            shutil.copyfileobj(stream, out, 1 << 20)

    with ThreadPoolExecutor(max_workers=WAL_FETCH_WORKERS, thread_name_prefix="pgwarden-walfetch") as pool:
        list(pool.map(fetch, names))  # list(): re-raise the first failure
    log(f"fetched {len(names)} WAL file(s) into {dest}")
    return len(names)
