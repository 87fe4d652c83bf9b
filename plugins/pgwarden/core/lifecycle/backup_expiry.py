"""When does the last backup still holding an erased subject's data leave the repository?

A full backup started before the erasure holds the subject's data (its files, and the WAL kept with
it). Retention (``core/retention.py``) deletes backups only as newer ones arrive, so the answer is a
forecast: starting from the repository's catalog as it is now, full backups keep arriving on the
configured ``full_schedule`` and GFS retention runs after each; the subject's data is gone from the
repository on the first retention run that keeps none of the backups started before the erasure.

The forecast says "cannot be bounded" when no full backups are scheduled (retention always keeps the
newest backup, which then holds the data forever) or when a backup holding the data outlives the
horizon (the GFS counts plus a year, at most twenty years), and "already gone" when no kept backup predates the erasure.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from croniter import croniter

from pgwarden.core.lsn import Lsn
from pgwarden.core.retention import BackupRef, RetentionPolicy, plan_retention
from pgwarden.core.schedule import PRESETS

# A retention plan per future backup: even hourly full backups over a decade stay well below this.
MAX_SIMULATED_BACKUPS = 200_000
# Past this, a date is no answer an auditor can use: the forecast says it cannot be bounded.
MAX_HORIZON = timedelta(days=366 * 20)
_FUTURE_LSN_STEP = 1 << 24

Status = Literal["gone", "bounded", "unbounded"]


@dataclass(frozen=True)
class DataExpiry:
    """The forecast: which kept backups hold the data now, and when the last of them goes.

    ``gone``: no kept backup predates the erasure. ``bounded``: ``expires_at`` is the start of the full
    backup after whose retention run none of them is kept; ``last_backup`` is the one that goes last.
    ``unbounded``: ``reason`` says why no date can be given.
    """

    status: Status
    as_of: datetime
    holding: tuple[str, ...]
    expires_at: datetime | None = None
    last_backup: str | None = None
    reason: str = ""
    assumption: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return {"status": self.status, "as_of": self.as_of.isoformat(), "backups_holding_data": list(self.holding),
                "expires_at": self.expires_at.isoformat() if self.expires_at else None,
                "last_backup": self.last_backup, "reason": self.reason, "assumption": self.assumption}

    def sentence(self) -> str:
        if self.status == "gone":
            return "No backup kept in the repository predates the erasure: no backup holds the subject's data."
        held = f"{len(self.holding)} kept backup(s) started before the erasure hold the subject's data"
        if self.status == "unbounded":
            return f"{held}; when the last of them expires cannot be bounded: {self.reason}"
        assert self.expires_at is not None
        return (f"{held}; the last of them ({self.last_backup}) expires under GFS retention with the full backup "
                f"due {self.expires_at:%Y-%m-%d %H:%M} UTC ({self.assumption})")


@dataclass(frozen=True)
class BackupDrops:
    """One forecast for every erasure: when each backup kept now is dropped by retention.

    ``dropped_at[id]`` is the start of the full backup after whose retention run ``id`` is no longer
    kept, or ``None`` when it is still kept at the horizon (or no full backups are scheduled).
    """

    as_of: datetime
    started_at: dict[str, datetime]
    dropped_at: dict[str, datetime | None]
    full_schedule: str | None
    policy: RetentionPolicy
    horizon: datetime | None

    @property
    def assumption(self) -> str:
        return (f"full backups continuing on schedule {self.full_schedule!r}, retention keeping "
                f"{self.policy.daily} daily, {self.policy.monthly} monthly and {self.policy.yearly} yearly")

    def for_erasure(self, erased_at: datetime) -> DataExpiry:
        """The forecast for data erased at ``erased_at``: backups started before it hold the data."""
        holding = tuple(sorted((i for i, t in self.started_at.items() if t < erased_at), key=self.started_at.get))
        if not holding:
            return DataExpiry("gone", self.as_of, ())
        if self.full_schedule is None:
            return DataExpiry("unbounded", self.as_of, holding,
                              reason="no full backups are scheduled, and retention always keeps the newest backup")
        never = [i for i in holding if self.dropped_at[i] is None]
        if never:
            return DataExpiry("unbounded", self.as_of, holding, assumption=self.assumption,
                              reason=f"retention still keeps {', '.join(never)} past {self.horizon:%Y-%m-%d} in the "
                                     f"forecast ({self.assumption}); delete it by hand to bound it")
        last = max(holding, key=lambda i: (self.dropped_at[i], self.started_at[i]))
        return DataExpiry("bounded", self.as_of, holding, expires_at=self.dropped_at[last], last_backup=last,
                          assumption=self.assumption)


def forecast_backup_drops(backups: Iterable[BackupRef], policy: RetentionPolicy, now: datetime,
                          full_schedule: str | None) -> BackupDrops:
    """Simulate retention forward from ``backups`` (the catalog now) until every backup kept now is
    dropped, or the horizon; ``full_schedule`` ``None`` means no full backups are taken."""
    current = list(backups)
    kept_ids = set(plan_retention(current, policy).keep) if current else set()
    current = [b for b in current if b.id in kept_ids]
    started = {b.id: b.started_at for b in current}
    dropped: dict[str, datetime | None] = dict.fromkeys(started)
    if full_schedule is None or not current:
        return BackupDrops(now, started, dropped, full_schedule, policy, None)
    horizon = now + min(MAX_HORIZON, timedelta(days=policy.daily + 31 * policy.monthly + 366 * (policy.yearly + 1)))
    waiting = set(started)
    newest = max(current, key=lambda b: b.started_at)
    lsn = max(b.stop_lsn.value for b in current)
    times = croniter(PRESETS.get(full_schedule.strip(), full_schedule.strip()), max(now, newest.started_at))
    for n in range(1, MAX_SIMULATED_BACKUPS + 1):
        moment = times.get_next(datetime)
        if moment > horizon or not waiting:
            break
        lsn += _FUTURE_LSN_STEP
        current.append(BackupRef(f"future-{n:06d}", moment, Lsn(lsn), Lsn(lsn + 1), newest.timeline))
        plan = plan_retention(current, policy)
        current = [b for b in current if b.id in plan.keep]
        for gone in waiting - set(plan.keep):
            dropped[gone] = moment
        waiting &= set(plan.keep)
    return BackupDrops(now, started, dropped, full_schedule, policy, horizon)
