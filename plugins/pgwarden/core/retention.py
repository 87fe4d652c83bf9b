"""Which full backups and which WAL to keep: grandfather-father-son (GFS) retention.

``plan_retention(backups, policy)`` is a pure function; the retention task deletes what the plan says
(or only reports it with ``dry_run``). The rules:

Periods
    Days, months and years are UTC calendar periods of the backup's ``started_at``. "Newest" means the
    latest ``started_at``; two backups started in the same microsecond are ordered by id.

daily (``policy.daily``, 30 by default)
    The newest valid backup of each of the ``daily`` most recent days *that have a valid backup*.
    Days without one are not counted, so a week of failed or missing backups does not silently
    shorten the history you can restore from: you still get 30 restorable days.
monthly (``policy.monthly``, 12) and yearly (``policy.yearly``, 7)
    The same, per UTC calendar month and year: the newest valid backup of each of the ``monthly``
    most recent months (``yearly`` most recent years) that have one. A month's backup is therefore the
    last one taken in it, typically on its last day.
newest
    The newest valid backup is always kept, whatever the numbers say.
window_start
    Point-in-time recovery covers the daily window as *whole days*: any moment from 00:00 UTC of the
    oldest of those days on. The backup such restores start from is kept too: the newest valid backup
    started before that day (with the WAL after it), or, when there is none, the first valid backup
    of that day. Without it, a second backup on one day (a rerun after a killed backup, a manual
    backup) would take the day's earlier backup and the WAL after it away once that day became the
    oldest of the window, and every moment between the two would be lost. ``daily`` 0 has no
    window: restores start from the newest backup.
pending
    An invalid backup (failed, unfinished or failing verification) is never kept by daily, monthly,
    yearly or newest. But an invalid backup newer than the newest valid one is kept, with the reason
    ``pending``: it may be in progress or under investigation.
everything else is deleted, oldest first
    Except when there is no valid backup at all: then nothing is deleted, neither backups (they are
    all ``pending``) nor WAL.

A backup kept for several reasons lists them all. At most ``daily + monthly + yearly + 1`` valid
backups are kept (the newest or the window start), plus the pending ones. ``plan.why_deleted`` says,
in plain words, why each deleted backup goes.

WAL (segments of any timeline; timeline ``.history`` files are tiny and always kept)
    * ``wal_keep_from``: every segment holding any byte at or after this LSN is kept, so every backup
      kept for ``daily``, ``window_start`` or ``newest`` can be restored and rolled forward to any
      later point in time (point-in-time recovery over the whole daily window). It is the lowest
      ``start_lsn`` of those backups: the window start's, unless a restore onto a new timeline made
      LSNs go back. With no valid backup it is ``0/0``: all WAL is kept.
    * ``wal_keep_ranges``: every other kept backup (monthly, yearly or pending only) keeps the WAL
      ``[start_lsn, stop_lsn]`` it needs to reach consistency, so it restores to the moment it ended;
      point-in-time recovery between older backups is not possible once their WAL is gone.
    * every other segment may be deleted: ``plan.wal_needed(first, end)`` decides, and
      ``plan.segment_needed(file_name)`` does the same from an archive file name.

Restore points
    ``plan.restorable(lsn)``: can a restore still reach a restore point at ``lsn``, from a kept valid
    backup that is consistent by then, through WAL the plan keeps? Retention deletes the records of
    restore points it makes unreachable, so a listed restore point is never one whose WAL is gone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import Any

from pgwarden.core.lsn import Lsn
from pgwarden.core.walnames import (
    DEFAULT_SEGMENT_SIZE,
    is_backup_history_name,
    is_history_name,
    is_partial,
    parse_segment_name,
    segment_end,
    segment_start,
)

DAILY = "daily"
MONTHLY = "monthly"
YEARLY = "yearly"
NEWEST = "newest"
WINDOW_START = "window_start"
PENDING = "pending"
REASONS = frozenset({DAILY, MONTHLY, YEARLY, NEWEST, WINDOW_START, PENDING})
PITR_REASONS = frozenset({DAILY, NEWEST, WINDOW_START})
"""backups kept for these reasons can be rolled forward to any later moment (their WAL is kept)"""


@dataclass(frozen=True)
class BackupRef:
    """What retention needs to know about one full backup. ``started_at`` is stored in UTC."""

    id: str
    started_at: datetime
    start_lsn: Lsn
    stop_lsn: Lsn
    timeline: int
    valid: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"a backup id is a non-empty string, got {self.id!r}")
        if not isinstance(self.started_at, datetime) or self.started_at.utcoffset() is None:
            raise ValueError(
                f"backup {self.id}: started_at must be a timezone-aware datetime (UTC), got {self.started_at!r}"
            )
        object.__setattr__(self, "started_at", self.started_at.astimezone(timezone.utc))
        if not isinstance(self.start_lsn, Lsn) or not isinstance(self.stop_lsn, Lsn):
            raise ValueError(f"backup {self.id}: start_lsn and stop_lsn must be Lsn values")
        if self.stop_lsn < self.start_lsn:
            raise ValueError(f"backup {self.id}: stop_lsn {self.stop_lsn} is before start_lsn {self.start_lsn}")
        if not isinstance(self.timeline, int) or isinstance(self.timeline, bool) or self.timeline < 1:
            raise ValueError(f"backup {self.id}: timeline must be a positive integer, got {self.timeline!r}")
        if not isinstance(self.valid, bool):
            raise ValueError(f"backup {self.id}: valid must be True or False, got {self.valid!r}")


@dataclass(frozen=True)
class RetentionPolicy:
    """How many daily, monthly and yearly backups to keep (``RetentionConfig`` in the config)."""

    daily: int = 30
    monthly: int = 12
    yearly: int = 7

    def __post_init__(self) -> None:
        for name in ("daily", "monthly", "yearly"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"retention {name} must be a whole number >= 0, got {value!r}")


@dataclass(frozen=True)
class RetentionPlan:
    """The outcome of ``plan_retention``; see the module docstring for the rules."""

    keep: dict[str, frozenset[str]]
    """backup id -> why it is kept (``daily``, ``monthly``, ``yearly``, ``newest``, ``pending``), oldest first"""
    delete: tuple[str, ...]
    """backup ids to delete, oldest first"""
    wal_keep_from: Lsn
    """every WAL segment holding a byte at or after this LSN is kept, on any timeline"""
    wal_keep_ranges: tuple[tuple[Lsn, Lsn], ...]
    """and every segment overlapping one of these closed ``[start, stop]`` ranges, on any timeline"""
    restore_from: tuple[tuple[Lsn, Lsn], ...] = ()
    """``(start_lsn, stop_lsn)`` of every kept valid backup: where a restore can begin"""
    why_deleted: dict[str, str] = field(default_factory=dict)
    """backup id -> why it is deleted, in words for the retention log"""

    def classes(self, backup_id: str) -> frozenset[str]:
        """Why ``backup_id`` is kept; empty when it is to be deleted."""
        if backup_id in self.keep:
            return self.keep[backup_id]
        if backup_id in self.delete:
            return frozenset()
        raise KeyError(f"backup {backup_id!r} was not part of this retention plan")

    def wal_needed(self, first_lsn: Lsn, end_lsn: Lsn) -> bool:
        """Must a WAL segment holding the bytes ``[first_lsn, end_lsn)`` stay?"""
        if not isinstance(first_lsn, Lsn) or not isinstance(end_lsn, Lsn) or end_lsn <= first_lsn:
            raise ValueError(f"expected a non-empty LSN range [first, end), got [{first_lsn}, {end_lsn})")
        if end_lsn > self.wal_keep_from:
            return True
        return any(first_lsn <= stop and start < end_lsn for start, stop in self.wal_keep_ranges)

    def segment_needed(self, file_name: str, seg_size: int = DEFAULT_SEGMENT_SIZE) -> bool:
        """``wal_needed`` for an archived file: a segment, ``.partial`` or ``.backup`` file, or ``.history``.

        Timeline history files are always needed. Anything else is a ``ValueError``; compression
        suffixes are the repository's business and must be removed first.
        """
        if is_history_name(file_name):
            return True
        if is_partial(file_name):
            segment = file_name.removesuffix(".partial")
        elif is_backup_history_name(file_name):
            segment = file_name.split(".", 1)[0]
        else:
            segment = file_name
        _, first = parse_segment_name(segment, seg_size)
        return self.wal_needed(first, segment_end(first, seg_size))

    def restorable(self, lsn: Lsn, seg_size: int = DEFAULT_SEGMENT_SIZE) -> bool:
        """Can a restore reach a restore point at ``lsn`` once this plan is carried out?

        Yes when a kept valid backup is consistent at or before ``lsn`` (its ``stop_lsn``) and every
        segment from its ``start_lsn`` up to ``lsn`` is kept. A restore point's LSN is the end of its
        WAL record, so the segment holding ``lsn`` itself is not needed when ``lsn`` is its first byte.
        """
        runs = self._kept_runs(seg_size)
        for start, stop in self.restore_from:
            if stop > lsn:
                continue
            first = segment_start(start, seg_size)
            if any(begin <= first and (end is None or lsn <= end) for begin, end in runs):
                return True
        return False

    def _kept_runs(self, seg_size: int) -> list[tuple[Lsn, Lsn | None]]:
        """The kept WAL as maximal runs ``[begin, end)`` of whole segments; ``None``: no end."""
        spans: list[tuple[Lsn, Lsn | None]] = [
            (segment_start(a, seg_size), segment_end(b, seg_size)) for a, b in self.wal_keep_ranges]
        spans.append((segment_start(self.wal_keep_from, seg_size), None))
        runs: list[tuple[Lsn, Lsn | None]] = []
        for begin, end in sorted(spans, key=lambda s: s[0]):
            if runs and (runs[-1][1] is None or begin <= runs[-1][1]):
                last_begin, last_end = runs[-1]
                runs[-1] = (last_begin, None if last_end is None or end is None else max(last_end, end))
            else:
                runs.append((begin, end))
        return runs

    def to_json_dict(self) -> dict[str, Any]:
        """A JSON-ready summary for XCom, logs and the UI (ids and LSNs only)."""
        return {
            "keep": {backup_id: sorted(reasons) for backup_id, reasons in self.keep.items()},
            "delete": list(self.delete),
            "why_deleted": dict(self.why_deleted),
            "wal_keep_from": str(self.wal_keep_from),
            "wal_keep_ranges": [[str(start), str(stop)] for start, stop in self.wal_keep_ranges],
        }


_KEPT_WORDS = {
    DAILY: "the newest backup of its day (daily)",
    MONTHLY: "the newest of its month (monthly)",
    YEARLY: "the newest of its year (yearly)",
    NEWEST: "the newest valid backup",
    WINDOW_START: "restores to the oldest day of the daily window start from it (window_start)",
    PENDING: "newer than the newest valid backup: it may still be running or be looked at (pending)",
}


def describe_kept(reasons: Iterable[str]) -> str:
    """Why a backup is kept, in words for someone who has not read this module."""
    return "; ".join(_KEPT_WORDS[r] for r in sorted(reasons))


def _age(backup: BackupRef) -> tuple[datetime, str]:
    return backup.started_at, backup.id


# reason -> the UTC period of a backup; the reason is also the name of the policy's count
_PERIODS: dict[str, Callable[[BackupRef], date | tuple[int, int] | int]] = {
    DAILY: lambda b: b.started_at.date(),
    MONTHLY: lambda b: (b.started_at.year, b.started_at.month),
    YEARLY: lambda b: b.started_at.year,
}


def plan_retention(backups: Iterable[BackupRef], policy: RetentionPolicy | None = None) -> RetentionPlan:
    """Apply the GFS rules of this module to ``backups`` (any order; ids must be unique)."""
    policy = policy if policy is not None else RetentionPolicy()
    refs = list(backups)
    seen: set[str] = set()
    for ref in refs:
        if not isinstance(ref, BackupRef):
            raise ValueError(f"expected BackupRef values, got {ref!r}")
        if ref.id in seen:
            raise ValueError(f"backup id {ref.id!r} appears more than once")
        seen.add(ref.id)

    ordered = sorted(refs, key=_age)
    valid = [b for b in ordered if b.valid]
    reasons: dict[str, set[str]] = {b.id: set() for b in ordered}

    for reason, period_of in _PERIODS.items():
        count = getattr(policy, reason)
        newest_in_period: dict[Any, BackupRef] = {}
        for backup in valid:  # oldest first, so the last one written per period is its newest
            newest_in_period[period_of(backup)] = backup
        for period in sorted(newest_in_period, reverse=True)[:count]:
            reasons[newest_in_period[period].id].add(reason)

    if valid:
        newest = valid[-1]
        reasons[newest.id].add(NEWEST)
        window_start = _window_start(valid, policy.daily)
        if window_start is not None:
            reasons[window_start.id].add(WINDOW_START)
        pending = [b for b in ordered if not b.valid and _age(b) > _age(newest)]
    else:
        pending = ordered
    for backup in pending:
        reasons[backup.id].add(PENDING)

    kept = [b for b in ordered if reasons[b.id]]
    pitr = [b for b in kept if reasons[b.id] & PITR_REASONS]
    wal_keep_from = min((b.start_lsn for b in pitr), default=Lsn(0))
    ranges = sorted({(b.start_lsn, b.stop_lsn) for b in kept if not reasons[b.id] & PITR_REASONS})
    deleted = [b for b in ordered if not reasons[b.id]]
    return RetentionPlan(
        keep={b.id: frozenset(reasons[b.id]) for b in kept},
        delete=tuple(b.id for b in deleted),
        wal_keep_from=wal_keep_from,
        wal_keep_ranges=tuple(ranges),
        restore_from=tuple((b.start_lsn, b.stop_lsn) for b in kept if b.valid),
        why_deleted={b.id: _why_deleted(b, kept, reasons, policy) for b in deleted},
    )


def _window_start(valid: list[BackupRef], daily: int) -> BackupRef | None:
    """The backup restores to the oldest day of the daily window start from (module docstring)."""
    days = sorted({b.started_at.date() for b in valid}, reverse=True)[:daily]
    if not days:
        return None
    oldest_day = days[-1]
    before = [b for b in valid if b.started_at.date() < oldest_day]  # oldest first
    return before[-1] if before else next(b for b in valid if b.started_at.date() == oldest_day)


def _why_deleted(backup: BackupRef, kept: list[BackupRef], reasons: dict[str, set[str]],
                 policy: RetentionPolicy) -> str:
    """Why ``backup`` goes, in words for someone who has not read this module."""
    if not backup.valid:
        return "it is not valid (failed, unfinished or damaged) and a newer valid backup exists"
    for reason, what in ((DAILY, "day"), (MONTHLY, "month"), (YEARLY, "year")):
        period_of = _PERIODS[reason]
        same = [b for b in kept if reason in reasons[b.id] and period_of(b) == period_of(backup)]
        if same:
            why = f"a newer backup of the same {what} ({same[0].id}) is the {reason} one"
            if reason == DAILY:
                why += "; restores to any moment after this backup still work from an earlier kept backup and the WAL"
            return why
    return (f"it is older than everything retention keeps: the {policy.daily} most recent days, "
            f"{policy.monthly} months and {policy.yearly} years that have a backup")

