"""The repository layout: where every object of a database lives, relative to the repository URL.

This layout is a public contract (README, "Repository layout"): a person with tar, zstd, an S3
client and PostgreSQL's own tools restores from it without pgwarden.

    <database>/base/<backup_id>/base.tar.zst          pg_basebackup -Ft output (tablespaces: <oid>.tar.zst)
    <database>/base/<backup_id>/pg_wal.tar.zst        the WAL that makes the backup consistent on its own
    <database>/base/<backup_id>/backup_manifest       PostgreSQL's manifest (SHA-256 of every file)
    <database>/base/<backup_id>/dump/...              optional logical dump (pg_dump -Fd)
    <database>/base/<backup_id>/pgwarden.json         written LAST: a backup without it does not exist
    <database>/wal/<segment>.zst                      WAL segments collected from pgwarden's slot
    <database>/wal/<timeline>.history                 timeline history files (uncompressed, tiny)
    <database>/restore_points/<name>.json             named restore points pgwarden created
    <database>/drills/<drill_id>.json                 restore-drill evidence
    <database>/ledger/entries/<first>-<last>.json     erasure ledger entries first..last (12-digit seqs), never rewritten
    <database>/ledger/head.json                       the exported chain's head: last seq and its entry hash
    <database>/ledger/certificates/<seq>.json|.html   erasure certificate of ledger entry <seq> (12 digits)
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

MANIFEST_NAME = "pgwarden.json"
BACKUP_ID = re.compile(r"^\d{8}T\d{6}Z$")
COMPRESSION_SUFFIX = {"zstd": ".zst", "gzip": ".gz", "none": ""}


def backup_id_for(moment: datetime) -> str:
    """Backup ids are their UTC start time: sortable, readable, unique per database and second."""
    return moment.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def base_prefix(database: str) -> str:
    return f"{database}/base/"


def backup_prefix(database: str, backup_id: str) -> str:
    return f"{database}/base/{backup_id}/"


def manifest_key(database: str, backup_id: str) -> str:
    return f"{backup_prefix(database, backup_id)}{MANIFEST_NAME}"


def wal_prefix(database: str) -> str:
    return f"{database}/wal/"


def wal_key(database: str, file_name: str, compression: str = "zstd") -> str:
    """Segments are compressed; ``.history`` files are stored as they are."""
    suffix = "" if file_name.endswith(".history") else COMPRESSION_SUFFIX[compression]
    return f"{wal_prefix(database)}{file_name}{suffix}"


def wal_file_name(key: str) -> str:
    """The PostgreSQL file name of a WAL object key (compression suffix removed)."""
    name = key.rsplit("/", 1)[-1]
    for suffix in (".zst", ".gz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def restore_points_prefix(database: str) -> str:
    return f"{database}/restore_points/"


def restore_point_key(database: str, name: str) -> str:
    return f"{restore_points_prefix(database)}{name}.json"


def drill_key(database: str, drill_id: str) -> str:
    return f"{database}/drills/{drill_id}.json"


LEDGER_ENTRIES_NAME = re.compile(r"^(\d{12})-(\d{12})\.json$")


def ledger_prefix(database: str) -> str:
    return f"{database}/ledger/"


def ledger_entries_prefix(database: str) -> str:
    return f"{database}/ledger/entries/"


def ledger_entries_key(database: str, first_seq: int, last_seq: int) -> str:
    """Fixed-width seqs, so a listing sorts in chain order."""
    return f"{ledger_entries_prefix(database)}{first_seq:012d}-{last_seq:012d}.json"


def ledger_entries_range(key: str) -> tuple[int, int] | None:
    """``(first, last)`` of an entries object key, or ``None`` for any other key."""
    match = LEDGER_ENTRIES_NAME.match(key.rsplit("/", 1)[-1])
    return (int(match.group(1)), int(match.group(2))) if match else None


def ledger_head_key(database: str) -> str:
    return f"{ledger_prefix(database)}head.json"


def certificates_prefix(database: str) -> str:
    return f"{ledger_prefix(database)}certificates/"


def certificate_key(database: str, seq: int, extension: str) -> str:
    """A certificate of ledger entry ``seq``: ``extension`` is ``json`` or ``html``."""
    return f"{certificates_prefix(database)}{seq:012d}.{extension}"


def backup_id_of(key: str) -> str | None:
    """The backup id of an object key under ``<database>/base/<id>/``, if it is one."""
    parts = key.split("/")
    if len(parts) >= 4 and parts[1] == "base" and BACKUP_ID.match(parts[2]):
        return parts[2]
    return None
