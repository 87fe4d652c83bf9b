"""Catalogs built by hand for the unit tests of ``core.catalog`` and ``core.restore_plan``: no repository."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta, timezone

from pgwarden.core.catalog import BackupEntry, Catalog, UnreadableBackup, WalObject, wal_coverage, wal_end
from pgwarden.core.lsn import Lsn
from pgwarden.core.manifest import BackupManifest, StoredFile, Verification
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.retention import RetentionPolicy, plan_retention
from pgwarden.core.walnames import HistoryEntry, is_segment_name, parse_segment_name, segment_name

SEG = 16 * 2**20
DAY0 = datetime(2026, 11, 20, 2, tzinfo=timezone.utc)


def at(segment: int, offset: int = 0x28) -> Lsn:
    """An LSN ``offset`` bytes into segment number ``segment``."""
    return Lsn(segment * SEG + offset)


def seg(timeline: int, number: int) -> str:
    return segment_name(timeline, Lsn(number * SEG), SEG)


def backup(day: int, start_segment: int, *, timeline: int = 1, valid: bool = True,
           minutes: int = 10, seg_size: int = SEG) -> BackupEntry:
    """A backup started at 02:00 on day ``day`` in segment ``start_segment``, consistent in the same segment."""
    started = DAY0 + timedelta(days=day)
    start = at(start_segment)
    manifest = BackupManifest(
        database="shop", backup_id=started.strftime("%Y%m%dT%H%M%SZ"), started_at=started,
        finished_at=started + timedelta(minutes=minutes), duration_seconds=minutes * 60.0,
        start_lsn=str(start), stop_lsn=str(start + 0x1000), timeline=timeline, wal_segment_size=seg_size,
        system_identifier="7300000000000000000", server_version="17.2", server_version_num=170002,
        compression="zstd", checkpoint="fast", database_size_bytes=2**30, stored_bytes=2**28,
        files=[StoredFile(name="base.tar.zst", size=2**28, sha256="0" * 64, role="base")],
        verification=Verification(method="pg_verifybackup", files_checked=10, ok=True),
        pgwarden_version="test",
    )
    return BackupEntry(manifest, valid, [] if valid else ["base.tar.zst is missing"])


def point(name: str, segment: int, created_at: datetime, offset: int = 0x100) -> RestorePoint:
    return RestorePoint(name, at(segment, offset), created_at)


def catalog(backups: list[BackupEntry], wal_names: list[str], *, points: list[RestorePoint] = (),
            history: dict[int, list[HistoryEntry]] | None = None, policy: RetentionPolicy | None = None,
            unreadable: tuple[UnreadableBackup, ...] = ()) -> Catalog:
    """The catalog ``engine.catalog.read_catalog`` would make of such a repository."""
    policy = policy or RetentionPolicy(daily=30, monthly=0, yearly=0)
    segments: dict[int, list[int]] = defaultdict(list)
    for name in wal_names:
        if is_segment_name(name):
            tli, first = parse_segment_name(name, SEG)
            segments[tli].append(first.value // SEG)
    ordered = tuple(sorted(backups, key=lambda b: (b.started_at, b.id)))
    return Catalog(
        database="shop", url="s3://bucket/pg", policy=policy, backups=ordered, orphans=(), unreadable=unreadable,
        wal=tuple(WalObject(n, f"shop/wal/{n}.zst", 1000, None) for n in sorted(wal_names)), segment_size=SEG,
        history=history or {}, coverage=tuple(wal_coverage(segments, SEG)), wal_end=wal_end(segments, SEG),
        plan=plan_retention([b.ref() for b in ordered], policy),
        restore_points=tuple(sorted(points, key=lambda p: (p.lsn, p.name))),
    )
