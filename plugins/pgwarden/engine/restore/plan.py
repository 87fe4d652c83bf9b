"""Restore step 1, select: read the catalog, choose the backup, check the WAL reaches the target."""

from __future__ import annotations

from pgwarden.core.catalog import Catalog
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.restore_plan import NotRestorable, RestorePlan
from pgwarden.core.restore_plan import plan_restore as plan_on_catalog
from pgwarden.core.restore_point import RestorePoint
from pgwarden.engine.catalog import read_catalog, read_restore_points
from pgwarden.engine.errors import PermanentError


def list_restore_points(repo, database: str) -> list[RestorePoint]:
    """Every restore point record of ``database``, oldest first by LSN (unreadable records left out)."""
    return read_restore_points(repo, database)[0]


def plan_restore(repo, database: str, target: RecoveryTarget, *, backup_id: str | None = None,
                 catalog: Catalog | None = None) -> RestorePlan:
    """``core.restore_plan.plan_restore`` on the repository's catalog; ``PermanentError`` saying why not."""
    catalog = catalog or read_catalog(repo, database)
    try:
        return plan_on_catalog(catalog, target, backup_id)
    except NotRestorable as exc:
        raise PermanentError(str(exc)) from exc
