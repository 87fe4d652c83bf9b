"""GFS retention, carried out: delete what ``core.retention.plan_retention`` does not keep.

``prune(repo, database, policy)`` reads the catalog (``engine.catalog``) and deletes, in this order:

0. restore point records the plan makes unreachable (``core.catalog.unreachable_restore_points``):
   their WAL or the backups they restore from are about to go. First, so a prune killed half way never leaves
   a listed restore point that cannot be restored; skipped whenever WAL is kept (step 3);
1. backups the plan deletes: those outside the GFS set, and invalid ones older than the newest valid
   backup. Their ``pgwarden.json`` goes FIRST, then the rest of the folder, so a prune killed half way
   leaves an orphan (which a later run removes), never a half-deleted backup that looks valid;
2. orphans (folders without ``pgwarden.json``) whose newest object is older than ``orphan_age``; a
   younger one may be a backup still being written and is left alone;
3. WAL no kept backup and no point-in-time recovery inside the daily window needs
   (``core.catalog.deletable_wal``). Never a ``.history`` file, never a file the layout does not
   name, never a segment ending after the newest valid backup's start LSN or on a timeline newer than
   its timeline (a restore may just have started that timeline), and no WAL at all while a backup
   folder has an unreadable ``pgwarden.json`` (its WAL needs are unknown).

Nothing at all is deleted while the repository holds no valid backup. Unreadable backups are never
deleted. ``dry_run`` deletes nothing and returns the same result. A second run right after deletes
nothing; a run after a killed one finishes its work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from pgwarden.core.catalog import deletable_wal, unreachable_restore_points
from pgwarden.core.layout import manifest_key, restore_point_key
from pgwarden.core.retention import RetentionPolicy, describe_kept
from pgwarden.core.units import format_size
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.repository.contract import Repository

logger = logging.getLogger(__name__)

DEFAULT_ORPHAN_AGE = timedelta(days=1)
MAX_REASONS_IN_SUMMARY = 5


@dataclass(frozen=True)
class PruneResult:
    """What a prune deleted (or, with ``dry_run``, would delete): ids, counts and bytes only."""

    database: str
    url: str
    dry_run: bool
    kept: dict[str, list[str]]
    """backup id -> why it is kept, oldest first"""
    deleted_backups: tuple[str, ...] = ()
    why_deleted: dict[str, str] = field(default_factory=dict)
    """backup id -> why it goes, in plain words"""
    backup_objects: int = 0
    backup_bytes: int = 0
    deleted_orphans: tuple[str, ...] = ()
    orphan_objects: int = 0
    orphan_bytes: int = 0
    young_orphans: tuple[str, ...] = ()
    """orphan folders left alone because they are younger than ``orphan_age``"""
    wal_objects: int = 0
    wal_bytes: int = 0
    wal_deleted_range: tuple[str, str] | None = None
    """the oldest and newest WAL file names deleted"""
    wal_kept: int = 0
    deleted_restore_points: tuple[str, ...] = ()
    """names of restore points no kept backup and WAL reach any more"""
    unreadable: tuple[str, ...] = ()
    skipped: list[str] = field(default_factory=list)
    """why parts of the prune did not run (no valid backup, unreadable manifests)"""

    @property
    def objects(self) -> int:
        return self.backup_objects + self.orphan_objects + self.wal_objects + len(self.deleted_restore_points)

    @property
    def bytes(self) -> int:
        return self.backup_bytes + self.orphan_bytes + self.wal_bytes

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{self.database} in {self.url}: {verb} {len(self.deleted_backups)} backup(s), "
            f"{len(self.deleted_orphans)} orphan folder(s), {self.wal_objects} WAL file(s) and "
            f"{len(self.deleted_restore_points)} restore point record(s): {self.objects} objects, "
            f"{format_size(self.bytes)}; kept {len(self.kept)} backup(s) and {self.wal_kept} WAL file(s)"
        )
        for backup_id in self.deleted_backups[:MAX_REASONS_IN_SUMMARY]:
            text += f"; backup {backup_id} goes: {self.why_deleted.get(backup_id, '?')}"
        if len(self.deleted_backups) > MAX_REASONS_IN_SUMMARY:
            text += f"; {len(self.deleted_backups) - MAX_REASONS_IN_SUMMARY} more backup(s), reasons in the log above"
        if self.young_orphans:
            text += f"; {len(self.young_orphans)} young orphan folder(s) left (may be in progress)"
        for reason in self.skipped:
            text += f"; {reason}"
        return text

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "repository": self.url,
            "dry_run": self.dry_run,
            "kept": self.kept,
            "deleted_backups": list(self.deleted_backups),
            "why_deleted": dict(self.why_deleted),
            "backup_objects": self.backup_objects,
            "backup_bytes": self.backup_bytes,
            "deleted_orphans": list(self.deleted_orphans),
            "orphan_objects": self.orphan_objects,
            "orphan_bytes": self.orphan_bytes,
            "young_orphans": list(self.young_orphans),
            "wal_objects": self.wal_objects,
            "wal_bytes": self.wal_bytes,
            "wal_deleted_range": list(self.wal_deleted_range) if self.wal_deleted_range else None,
            "wal_kept": self.wal_kept,
            "deleted_restore_points": list(self.deleted_restore_points),
            "unreadable": list(self.unreadable),
            "skipped": list(self.skipped),
            "objects": self.objects,
            "bytes": self.bytes,
        }


def prune(
    repo: Repository,
    database: str,
    policy: RetentionPolicy | None = None,
    *,
    dry_run: bool = False,
    now: datetime | None = None,
    orphan_age: timedelta = DEFAULT_ORPHAN_AGE,
    log: Callable[[str], None] | None = None,
) -> PruneResult:
    """Apply GFS retention to ``database`` in ``repo``; see the module docstring."""
    say = log or logger.info
    now = now or datetime.now(timezone.utc)
    if now.utcoffset() is None:
        raise ValueError("now must be timezone-aware (datetime.now(timezone.utc))")
    catalog = read_catalog(repo, database, policy)
    plan = catalog.plan
    mode = "dry run: " if dry_run else ""
    result = PruneResult(
        database=database, url=repo.url, dry_run=dry_run,
        kept={b: sorted(reasons) for b, reasons in plan.keep.items()},
        unreadable=tuple(u.backup_id for u in catalog.unreadable),
        wal_kept=len(catalog.wal),
    )
    for item in catalog.unreadable:
        say(f"{mode}backup folder {database}/{item.backup_id} left alone: {item.problem}")
    if catalog.newest_valid is None:
        result.skipped.append(f"no valid backup in {repo.url}: nothing deleted")
        say(f"{mode}{result.summary()}")
        return result

    doomed = [catalog.backup(backup_id) for backup_id in plan.delete]
    cutoff = now - orphan_age
    old_orphans = [o for o in catalog.orphans if o.newest_modified is not None and o.newest_modified < cutoff]
    young = tuple(o.backup_id for o in catalog.orphans if o not in old_orphans)
    wal = deletable_wal(catalog)
    points = unreachable_restore_points(catalog)
    if catalog.unreadable:
        result.skipped.append(
            f"WAL kept: {len(catalog.unreadable)} backup folder(s) have an unreadable pgwarden.json "
            f"({', '.join(result.unreadable[:3])}); fix or remove them by hand"
        )
    names = sorted(w.name for w in wal)
    result = replace(
        result,
        deleted_backups=tuple(b.id for b in doomed),
        why_deleted={b.id: _why(b, plan.why_deleted[b.id]) for b in doomed},
        backup_objects=sum(len(b.objects) for b in doomed),
        backup_bytes=sum(b.stored_bytes for b in doomed),
        deleted_orphans=tuple(o.backup_id for o in old_orphans),
        orphan_objects=sum(len(o.keys) for o in old_orphans),
        orphan_bytes=sum(o.total_bytes for o in old_orphans),
        young_orphans=young,
        wal_objects=len(wal),
        wal_bytes=sum(w.size for w in wal),
        wal_deleted_range=(names[0], names[-1]) if names else None,
        wal_kept=len(catalog.wal) - len(wal),
        deleted_restore_points=tuple(p.name for p in points),
    )

    for backup_id, reasons in plan.keep.items():
        say(f"{mode}keeping backup {database}/{backup_id}: {describe_kept(reasons)}")
    if points:
        say(f"{mode}deleting {len(points)} restore point record(s) {points[0].name} .. {points[-1].name}: "
            f"no kept backup and WAL reach them any more")
        if not dry_run:
            repo.delete([restore_point_key(database, p.name) for p in points])
    for backup in doomed:
        say(f"{mode}deleting backup {database}/{backup.id}: {result.why_deleted[backup.id]} "
            f"({len(backup.objects)} objects, {format_size(backup.stored_bytes)})")
        if not dry_run:
            manifest = manifest_key(database, backup.id)
            repo.delete([manifest])  # first: from here on it is an orphan, never a backup that looks valid
            repo.delete([o.key for o in backup.objects if o.key != manifest])
    for orphan in old_orphans:
        say(f"{mode}deleting orphan folder {database}/{orphan.backup_id} (no pgwarden.json, {len(orphan.keys)} "
            f"objects, newest {orphan.newest_modified:%Y-%m-%d %H:%M} UTC)")
        if not dry_run:
            repo.delete(orphan.keys)
    for backup_id in young:
        say(f"{mode}orphan folder {database}/{backup_id} is younger than {orphan_age}: left alone "
            f"(it may be a backup in progress)")
    if wal:
        say(f"{mode}deleting {len(wal)} WAL file(s) {names[0]} .. {names[-1]} no kept backup needs")
        if not dry_run:
            repo.delete([w.key for w in wal])
    say(f"{mode}{result.summary()}")
    return result


def _why(backup, planned: str) -> str:
    """The plan's reason, with what is wrong with an invalid backup."""
    return f"{planned}; what is wrong: {backup.problems[0]}" if not backup.valid and backup.problems else planned
