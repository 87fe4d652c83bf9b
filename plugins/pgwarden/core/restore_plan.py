"""Which backup a restore starts from, and whether the WAL reaches its target. Pure.

Decided on the catalog before anything is downloaded, so a restore that cannot succeed fails at
once with a message naming what it can reach instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgwarden.core.catalog import BackupEntry, Catalog
from pgwarden.core.lsn import Lsn
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.walchain import describe_reachable


class NotRestorable(ValueError):
    """The target cannot be reached from the repository; the message says why and what to ask for."""


def choose_backup(catalog: Catalog, target: RecoveryTarget, backup_id: str | None = None
                  ) -> tuple[BackupEntry, Lsn | None]:
    """The newest valid backup that ends before the target; also the target's LSN when known.

    A name target resolves through the catalog's restore points (the first of that name); a time
    target compares with the time each backup finished; ``latest`` and ``immediate`` take the
    newest valid backup. ``backup_id`` forces a backup, which must be valid.
    """
    valid = catalog.valid_backups
    if not valid:
        raise NotRestorable(f"{catalog.database} has no valid backup in {catalog.url}; "
                            f"run {catalog.database}.backup_full first")
    points = catalog.restore_points
    target_lsn: Lsn | None = None
    if target.kind == "name":
        matches = [p for p in points if p.name == target.name]
        if not matches:
            recent = ", ".join(p.name for p in points[-5:]) or "(none)"
            raise NotRestorable(f"no restore point named {target.name!r} in {catalog.url}; recent ones: {recent}")
        target_lsn = matches[0].lsn
    elif target.kind == "lsn":
        target_lsn = target.lsn

    if backup_id is not None:
        try:
            chosen = catalog.backup(backup_id)
        except KeyError as exc:
            raise NotRestorable(str(exc.args[0])) from exc
        if not chosen.valid:
            raise NotRestorable(f"backup {backup_id} is not valid: {'; '.join(chosen.problems)}")
        return chosen, target_lsn

    oldest = valid[0]
    if target_lsn is not None:
        candidates = [b for b in valid if b.stop_lsn <= target_lsn]
        if not candidates:
            raise NotRestorable(
                f"target {target.describe()} ({target_lsn}) is before the oldest backup "
                f"{oldest.id}, consistent from {oldest.stop_lsn}; choose a later target")
        return candidates[-1], target_lsn
    if target.kind == "time" and target.time is not None:
        candidates = [b for b in valid if b.manifest.finished_at <= target.time]
        if not candidates:
            raise NotRestorable(
                f"target {target.describe()} is before the oldest backup {oldest.id}, which finished at "
                f"{oldest.manifest.finished_at.isoformat()}; choose a later target")
        return candidates[-1], None
    return valid[-1], None


def check_reachable(catalog: Catalog, backup: BackupEntry, target: RecoveryTarget, target_lsn: Lsn | None) -> None:
    """``NotRestorable`` when the WAL after ``backup`` cannot reach the target.

    The error names the newest point a restore from ``backup`` does reach: the last position before
    the first gap in the WAL after it, and the newest restore point before that, never one beyond it.
    """
    if target.kind == "immediate":
        return
    points = catalog.restore_points
    chain = catalog.check_chain(start=backup) if catalog.wal_end is not None else None
    if chain is not None:
        reachable = describe_reachable(chain.replayable_to, chain.end_timeline, chain.reachable_point)
        replayable = chain.replayable_to
    else:
        reachable = f"there is no WAL in the repository after the backup, which ends at {backup.stop_lsn}"
        replayable = backup.stop_lsn
    needed = target_lsn
    if target.kind == "time" and target.time is not None and points:
        # Recovery to a time stops at the first commit after it; a restore point made after that
        # time follows such a commit (create_restore_point), so the WAL up to it is enough.
        later = [p.lsn for p in points if p.created_at >= target.time]
        if not later:
            raise NotRestorable(f"target {target.describe()} is beyond the newest WAL in {catalog.url}: {reachable}")
        needed = min(later)
    if needed is None:
        if chain is not None and not chain.ok:
            raise NotRestorable(chain.message)
        return
    if needed < replayable:
        return
    if chain is not None and not chain.ok:
        raise NotRestorable(chain.message)
    raise NotRestorable(f"target {target.describe()} ({needed}) is beyond the newest WAL in {catalog.url}: "
                        f"{reachable}")


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would do, decided before anything is downloaded (shown at approval gates)."""

    catalog: Catalog
    backup: BackupEntry
    target: RecoveryTarget
    target_lsn: Lsn | None

    @property
    def points(self) -> tuple[RestorePoint, ...]:
        return self.catalog.restore_points

    def to_json_dict(self) -> dict[str, Any]:
        end = self.catalog.wal_end
        return {
            "database": self.catalog.database,
            "repository": self.catalog.url,
            "backup_id": self.backup.id,
            "backup_started_at": self.backup.started_at.isoformat(),
            "backup_consistent_at_lsn": self.backup.manifest.stop_lsn,
            "backup_stored_bytes": self.backup.stored_bytes,
            "database_size_bytes": self.backup.manifest.database_size_bytes,
            "target": self.target.describe(),
            "target_lsn": str(self.target_lsn) if self.target_lsn else None,
            "newest_wal_lsn": str(end.lsn) if end else None,
            "newest_restore_point": self.points[-1].name if self.points else None,
        }

    def summary(self) -> str:
        return (f"restore {self.catalog.database} to {self.target.describe()} from backup {self.backup.id} "
                f"(LSN {self.backup.manifest.start_lsn} -> {self.backup.manifest.stop_lsn})")


def plan_restore(catalog: Catalog, target: RecoveryTarget, backup_id: str | None = None) -> RestorePlan:
    """Choose the backup and check the WAL reaches the target; ``NotRestorable`` saying why not."""
    backup, target_lsn = choose_backup(catalog, target, backup_id)
    check_reachable(catalog, backup, target, target_lsn)
    return RestorePlan(catalog, backup, target, target_lsn)
