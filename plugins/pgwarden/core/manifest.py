"""pgwarden's per-backup manifest (``pgwarden.json``): what a backup is, written last.

PostgreSQL's own ``backup_manifest`` proves the files; this one says what the backup means:
its LSN range and timeline, the server it came from, sizes, how it was verified, and a row-count
snapshot the restore drill compares against.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

FORMAT = "pgwarden.backup/1"


class StoredFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="path relative to the backup's folder, e.g. base.tar.zst")
    size: int
    sha256: str
    role: Literal["base", "tablespace", "wal", "backup_manifest", "dump"]


class RowCounts(BaseModel):
    """Row counts taken under one snapshot, right beside a named restore point.

    The snapshot is taken an instant before ``restore_point`` is written, so a restore to that
    restore point holds these counts unless a transaction committed inside that instant.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    restore_point: str
    lsn: str
    taken_at: datetime
    counts: dict[str, int]


class Verification(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["pg_verifybackup", "manifest-checksums"]
    files_checked: int
    ok: bool


class BackupManifest(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["pgwarden.backup/1"] = FORMAT
    database: str
    backup_id: str
    kind: Literal["full"] = "full"
    method: Literal["pg_basebackup"] = "pg_basebackup"
    started_at: datetime
    finished_at: datetime
    duration_seconds: float
    start_lsn: str
    stop_lsn: str
    timeline: int
    wal_segment_size: int
    system_identifier: str
    server_version: str
    server_version_num: int
    compression: Literal["zstd", "gzip", "none"]
    checkpoint: Literal["fast", "spread"]
    database_size_bytes: int
    stored_bytes: int
    files: list[StoredFile]
    verification: Verification
    row_counts: RowCounts | None = None
    pgwarden_version: str

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode()

    @classmethod
    def from_json(cls, data: bytes) -> BackupManifest:
        return cls.model_validate_json(data)
