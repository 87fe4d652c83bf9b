"""What a database's repository holds, as a model: backups, WAL and restore points. Pure.

``engine.catalog.read_catalog`` fills it from the repository (see there for what each part means);
here are the decisions made on it: the WAL coverage and end, whether the WAL chain is unbroken
(``Catalog.check_chain``), and which WAL and restore point records retention may delete
(``deletable_wal``, ``unreachable_restore_points``; ``engine.prune`` carries them out).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, Protocol

from pgwarden.core.lsn import Lsn
from pgwarden.core.manifest import BackupManifest
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.retention import PITR_REASONS, BackupRef, RetentionPlan, RetentionPolicy
from pgwarden.core.walchain import ChainReport, check_chain
from pgwarden.core.walnames import (
    DEFAULT_SEGMENT_SIZE,
    HistoryEntry,
    is_backup_history_name,
    is_history_name,
    is_partial,
    is_segment_name,
    parse_segment_name,
    segment_end,
)


class StoredObject(Protocol):
    """An object in the repository as listed (``engine.repository.ObjectInfo`` is one)."""

    @property
    def key(self) -> str: ...
    @property
    def size(self) -> int: ...


@dataclass(frozen=True)
class BackupEntry:
    """One backup with a readable ``pgwarden.json``; ``objects`` is everything in its folder."""

    manifest: BackupManifest
    valid: bool
    problems: list[str]
    objects: tuple[StoredObject, ...] = ()

    @property
    def id(self) -> str:
        return self.manifest.backup_id

    @property
    def started_at(self) -> datetime:
        return self.manifest.started_at

    @property
    def start_lsn(self) -> Lsn:
        return Lsn.parse(self.manifest.start_lsn)

    @property
    def stop_lsn(self) -> Lsn:
        return Lsn.parse(self.manifest.stop_lsn)

    @property
    def stored_bytes(self) -> int:
        """Bytes in the repository: every object of the folder (the manifest's own ``stored_bytes`` is what it wrote)."""
        return sum(o.size for o in self.objects)

    def ref(self) -> BackupRef:
        return BackupRef(self.id, self.started_at, self.start_lsn, self.stop_lsn, self.manifest.timeline, self.valid)


@dataclass(frozen=True)
class Orphan:
    """A backup folder without ``pgwarden.json``."""

    backup_id: str
    newest_modified: datetime | None
    total_bytes: int
    keys: tuple[str, ...]


@dataclass(frozen=True)
class UnreadableBackup:
    """A backup folder whose ``pgwarden.json`` cannot be read; left for a person to look at."""

    backup_id: str
    problem: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class WalObject:
    name: str
    """PostgreSQL's file name: a segment, ``.partial``, ``.backup`` or ``.history`` file"""
    key: str
    size: int
    modified: datetime | None


class WalRange(NamedTuple):
    """Consecutive segments of one timeline holding the WAL ``[start_lsn, end_lsn)``."""

    timeline: int
    start_lsn: Lsn
    end_lsn: Lsn
    segments: int


class WalPosition(NamedTuple):
    timeline: int
    lsn: Lsn


def segment_size_of(manifests: Iterable[tuple[BackupManifest, bool]]) -> int:
    """The WAL segment size of the newest backup, valid ones first (16 MiB without a backup)."""
    ordered = sorted(manifests, key=lambda mv: (mv[1], mv[0].started_at, mv[0].backup_id))
    return ordered[-1][0].wal_segment_size if ordered else DEFAULT_SEGMENT_SIZE


def wal_coverage(segments: dict[int, list[int]], seg_size: int) -> list[WalRange]:
    """Runs of consecutive segments per timeline, from segment numbers (``lsn // seg_size``)."""
    ranges: list[WalRange] = []
    for tli in sorted(segments):
        numbers = sorted(set(segments[tli]))
        if not numbers:
            continue
        run_start = previous = numbers[0]
        for number in [*numbers[1:], None]:
            if number is not None and number == previous + 1:
                previous = number
                continue
            ranges.append(WalRange(tli, Lsn(run_start * seg_size), Lsn((previous + 1) * seg_size),
                                   previous - run_start + 1))
            if number is not None:
                run_start = previous = number
    return ranges


def wal_end(segments: dict[int, list[int]], seg_size: int) -> WalPosition | None:
    """The end of the newest segment on the newest timeline that has segments."""
    timelines = [tli for tli, numbers in segments.items() if numbers]
    if not timelines:
        return None
    tli = max(timelines)
    return WalPosition(tli, Lsn((max(segments[tli]) + 1) * seg_size))


@dataclass(frozen=True)
class Catalog:
    database: str
    url: str
    policy: RetentionPolicy
    backups: tuple[BackupEntry, ...]
    """oldest first (by ``started_at``, then id)"""
    orphans: tuple[Orphan, ...]
    unreadable: tuple[UnreadableBackup, ...]
    wal: tuple[WalObject, ...]
    """every object under ``<db>/wal/``, by name"""
    segment_size: int
    history: dict[int, list[HistoryEntry]]
    """timeline -> its parsed ``.history`` file (timelines whose file was readable)"""
    coverage: tuple[WalRange, ...]
    wal_end: WalPosition | None
    """the end of the newest segment on the newest timeline that has segments"""
    plan: RetentionPlan
    problems: tuple[str, ...] = field(default=())
    """things in the repository that are not as the layout says (never fatal for a listing)"""
    restore_points: tuple[RestorePoint, ...] = field(default=())
    """oldest first (by LSN)"""

    @property
    def gfs_classes(self) -> dict[str, frozenset[str]]:
        """backup id -> why retention keeps it (``daily``, ``monthly``, ...); empty when it would go."""
        return {b.id: self.plan.classes(b.id) for b in self.backups}

    @property
    def valid_backups(self) -> list[BackupEntry]:
        return [b for b in self.backups if b.valid]

    @property
    def newest_valid(self) -> BackupEntry | None:
        valid = self.valid_backups
        return valid[-1] if valid else None

    def backup(self, backup_id: str) -> BackupEntry:
        for entry in self.backups:
            if entry.id == backup_id:
                return entry
        raise KeyError(f"{self.database} has no backup {backup_id!r} in {self.url}")

    @property
    def wal_names(self) -> set[str]:
        return {w.name for w in self.wal}

    def check_chain(self, start: BackupEntry | None = None, end: WalPosition | None = None) -> ChainReport | None:
        """Is the WAL there to replay from ``start`` (default: the oldest backup kept for point-in-time
        recovery) to ``end`` (default: ``wal_end``)? ``None`` when there is no valid backup. On a gap
        the report says how far ``start`` replays and the newest restore point before the gap."""
        if start is None:
            pitr = [b for b in self.valid_backups if self.plan.classes(b.id) & PITR_REASONS]
            if not pitr:
                return None
            start = pitr[0]
        if end is None:
            end = self.wal_end or WalPosition(start.manifest.timeline, start.start_lsn)
        end_lsn = max(end.lsn, start.start_lsn)
        return check_chain(
            self.wal_names, start.manifest.timeline, start.start_lsn, end.timeline, end_lsn,
            self.history.get(end.timeline, []), self.segment_size, database=self.database,
            points=self.restore_points, consistent_at=start.stop_lsn,
        )

    def to_json_dict(self) -> dict[str, Any]:
        """Ids, times, sizes and LSNs only: safe for logs, XCom and the CLI's ``--json``."""
        classes = self.gfs_classes
        chain = self.check_chain()
        return {
            "database": self.database,
            "repository": self.url,
            "retention": {"daily": self.policy.daily, "monthly": self.policy.monthly, "yearly": self.policy.yearly},
            "backups": [
                {
                    "id": b.id,
                    "kind": b.manifest.kind,
                    "gfs": sorted(classes[b.id]),
                    "started_at": b.started_at.isoformat(),
                    "finished_at": b.manifest.finished_at.isoformat(),
                    "stored_bytes": b.stored_bytes,
                    "database_size_bytes": b.manifest.database_size_bytes,
                    "start_lsn": b.manifest.start_lsn,
                    "stop_lsn": b.manifest.stop_lsn,
                    "timeline": b.manifest.timeline,
                    "server_version": b.manifest.server_version,
                    "valid": b.valid,
                    "problems": list(b.problems),
                }
                for b in self.backups
            ],
            "unreadable": [{"id": u.backup_id, "problem": u.problem, "objects": len(u.keys)} for u in self.unreadable],
            "orphans": [
                {
                    "id": o.backup_id,
                    "objects": len(o.keys),
                    "total_bytes": o.total_bytes,
                    "newest_modified": o.newest_modified.isoformat() if o.newest_modified else None,
                }
                for o in self.orphans
            ],
            "wal": {
                "segment_size": self.segment_size,
                "objects": len(self.wal),
                "bytes": sum(w.size for w in self.wal),
                "history_files": sorted(w.name for w in self.wal if is_history_name(w.name)),
                "coverage": [
                    {"timeline": r.timeline, "start_lsn": str(r.start_lsn), "end_lsn": str(r.end_lsn),
                     "segments": r.segments}
                    for r in self.coverage
                ],
                "end": {"timeline": self.wal_end.timeline, "lsn": str(self.wal_end.lsn)} if self.wal_end else None,
                "chain": chain.to_json_dict() if chain else None,
            },
            "retention_plan": self.plan.to_json_dict(),
            "problems": list(self.problems),
        }


def _segment_of(name: str) -> str | None:
    """The segment a WAL archive file belongs to, or ``None`` for history and unknown files."""
    if is_segment_name(name):
        return name
    if is_partial(name):
        return name.removesuffix(".partial")
    if is_backup_history_name(name):
        return name.split(".", 1)[0]
    return None


def deletable_wal(catalog: Catalog) -> list[WalObject]:
    """The WAL objects retention may delete; ``[]`` without a valid backup or with an unreadable one.

    Never a ``.history`` file, never a file the layout does not name, never a segment ending after
    the newest valid backup's start LSN or on a timeline newer than its timeline (a restore may just
    have started that timeline); of the rest, those no kept backup and no point-in-time recovery
    inside the daily window needs (``RetentionPlan.segment_needed``).
    """
    newest = catalog.newest_valid
    if newest is None or catalog.unreadable:
        return []
    seg_size = catalog.segment_size
    doomed = []
    for wal in catalog.wal:
        segment = _segment_of(wal.name)
        if segment is None or is_history_name(wal.name):
            continue
        try:
            timeline, first = parse_segment_name(segment, seg_size)
        except ValueError:
            continue  # another segment size; the catalog reports it
        if timeline > newest.manifest.timeline or segment_end(first, seg_size) > newest.start_lsn:
            continue
        if not catalog.plan.segment_needed(wal.name, seg_size):
            doomed.append(wal)
    return doomed


def unreachable_restore_points(catalog: Catalog) -> list[RestorePoint]:
    """Restore points retention makes unreachable (their WAL or backups go); ``[]`` whenever WAL is kept."""
    if catalog.newest_valid is None or catalog.unreadable:
        return []
    return [p for p in catalog.restore_points if not catalog.plan.restorable(p.lsn, catalog.segment_size)]
