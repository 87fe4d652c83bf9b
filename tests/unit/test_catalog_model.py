"""core.catalog: WAL coverage and end, the chain check on the model, and what retention may delete.

Expectations are written out by hand from the scenario (segment numbers, backup days), never by
calling the code under test a second time.
"""

from __future__ import annotations

from datetime import timedelta

from pgwarden.core.catalog import (
    UnreadableBackup,
    WalPosition,
    WalRange,
    deletable_wal,
    segment_size_of,
    unreachable_restore_points,
    wal_coverage,
    wal_end,
)
from pgwarden.core.lsn import Lsn
from pgwarden.core.retention import RetentionPolicy
from pgwarden.core.walnames import DEFAULT_SEGMENT_SIZE
from tests.unit.catalog_factory import DAY0, SEG, at, backup, catalog, point, seg


def lsn(text: str) -> Lsn:
    return Lsn.parse(text)


def test_coverage_is_the_runs_of_consecutive_segments_per_timeline() -> None:
    segments = {1: [7, 3, 2, 4, 8, 3], 2: [9, 8]}
    assert wal_coverage(segments, SEG) == [
        WalRange(1, lsn("0/2000000"), lsn("0/5000000"), 3),
        WalRange(1, lsn("0/7000000"), lsn("0/9000000"), 2),
        WalRange(2, lsn("0/8000000"), lsn("0/A000000"), 2),
    ]
    # 1 GiB segments: segment number 3 holds 3 GiB .. 4 GiB
    assert wal_coverage({1: [3]}, 2**30) == [WalRange(1, lsn("0/C0000000"), lsn("1/0"), 1)]


def test_wal_end_is_on_the_newest_timeline_even_when_an_older_one_goes_further() -> None:
    assert wal_end({1: [2, 3, 40], 2: [9, 8]}, SEG) == WalPosition(2, lsn("0/A000000"))
    assert wal_end({}, SEG) is None
    assert wal_end({3: []}, SEG) is None


def test_segment_size_is_the_newest_valid_backups() -> None:
    old = backup(0, 2, seg_size=SEG)
    newer_invalid = backup(1, 4, valid=False, seg_size=64 * 2**20)
    assert segment_size_of([(old.manifest, True), (newer_invalid.manifest, False)]) == SEG
    newest = backup(2, 6, seg_size=32 * 2**20)
    assert segment_size_of([(old.manifest, True), (newest.manifest, True)]) == 32 * 2**20
    assert segment_size_of([]) == DEFAULT_SEGMENT_SIZE


def four_nightly_backups(**kwargs):
    """Backups on days 0..3 starting in segments 6, 10, 14, 18; WAL 6..20 all there.

    With daily=2 retention keeps days 3 and 2 (daily) and day 1 (the backup before the window
    starts, 00:00 of day 2); day 0 goes, and the WAL only it needs: segments 6..9.
    """
    backups = [backup(day, 6 + 4 * day) for day in range(4)]
    wal = [seg(1, n) for n in range(6, 21)]
    return backups, wal


def test_deletable_wal_is_what_only_deleted_backups_need() -> None:
    backups, wal = four_nightly_backups()
    extra = [
        "000000010000000000000006.00000028.backup",  # day 0's backup history file: goes with it
        "00000002.history",  # never
        "000000020000000000000007",  # older than the kept backups, but on a newer timeline: kept
        "000000010000000000000009.partial",  # an abandoned tail before the window: goes
        "000000010000000000000010.partial",
    ]
    cat = catalog(backups, wal + extra, policy=RetentionPolicy(daily=2, monthly=0, yearly=0))
    assert cat.plan.delete == (backups[0].id,)

    doomed = sorted(w.name for w in deletable_wal(cat))
    assert doomed == [
        "000000010000000000000006",
        "000000010000000000000006.00000028.backup",
        "000000010000000000000007",
        "000000010000000000000008",
        "000000010000000000000009",
        "000000010000000000000009.partial",
    ]


def test_no_wal_is_deletable_without_a_valid_backup_or_with_an_unreadable_one() -> None:
    backups, wal = four_nightly_backups()
    policy = RetentionPolicy(daily=2, monthly=0, yearly=0)
    unreadable = (UnreadableBackup("20261119T020000Z", "not JSON", ("shop/base/20261119T020000Z/pgwarden.json",)),)
    assert deletable_wal(catalog(backups, wal, policy=policy, unreadable=unreadable)) == []
    invalid = [backup(day, 6 + 4 * day, valid=False) for day in range(4)]
    assert deletable_wal(catalog(invalid, wal, policy=policy)) == []


def test_wal_before_the_only_backup_goes_and_from_its_start_on_stays() -> None:
    only = backup(0, 6)
    wal = [seg(1, n) for n in range(2, 12)]
    cat = catalog([only], wal, policy=RetentionPolicy(daily=0, monthly=0, yearly=1))
    assert sorted(w.name for w in deletable_wal(cat)) == [seg(1, n) for n in range(2, 6)]


def test_restore_points_retention_makes_unreachable() -> None:
    backups, wal = four_nightly_backups()
    points = [
        point("day0_noon", 8, DAY0 + timedelta(hours=10)),  # only day 0's backup reaches it: goes
        point("day1_start", 10, DAY0 + timedelta(days=1, hours=1)),  # before day 1 is consistent: goes
        point("day1_noon", 12, DAY0 + timedelta(days=1, hours=10)),
        point("day3_noon", 20, DAY0 + timedelta(days=3, hours=10)),
    ]
    cat = catalog(backups, wal, points=points, policy=RetentionPolicy(daily=2, monthly=0, yearly=0))
    assert [p.name for p in unreachable_restore_points(cat)] == ["day0_noon", "day1_start"]


def test_check_chain_starts_at_the_oldest_backup_kept_for_pitr_and_names_a_gap_after_it() -> None:
    backups, wal = four_nightly_backups()
    policy = RetentionPolicy(daily=2, monthly=0, yearly=0)
    # A gap only day 0 (deleted) would need does not break the chain.
    whole = catalog(backups, [n for n in wal if n != seg(1, 7)], policy=policy)
    report = whole.check_chain()
    assert report.ok and report.checked_from == at(10) and report.checked_to == at(21, 0)

    points = [point("before_gap", 15, DAY0 + timedelta(days=2, hours=5)),
              point("after_gap", 17, DAY0 + timedelta(days=2, hours=9))]
    broken = catalog(backups, [n for n in wal if n != seg(1, 16)], points=points, policy=policy)
    report = broken.check_chain()
    assert not report.ok and report.missing == (seg(1, 16),)
    assert report.replayable_to == at(16, 0)
    assert report.reachable_point.name == "before_gap"
    # From the newest backup (after the gap) the chain is whole.
    assert broken.check_chain(start=backups[3]).ok


def test_check_chain_is_none_without_a_valid_backup() -> None:
    assert catalog([backup(0, 2, valid=False)], [seg(1, 2)]).check_chain() is None
