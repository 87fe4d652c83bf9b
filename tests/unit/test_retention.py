from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace
from dataclasses import field as dc_field
from datetime import date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.core.lsn import Lsn
from pgwarden.core.retention import (
    DAILY,
    MONTHLY,
    NEWEST,
    PENDING,
    REASONS,
    WINDOW_START,
    YEARLY,
    BackupRef,
    RetentionPlan,
    RetentionPolicy,
    plan_retention,
)
from pgwarden.core.walnames import segment_end, segment_start

UTC = timezone.utc
SEG = 16 * 2**20


def nightly(day: date, index: int, *, valid: bool = True, hour: int = 2) -> BackupRef:
    """One backup per day; LSNs grow with time, 1 GiB of WAL a day, 256 MiB per backup."""
    start = Lsn(index * 2**30 + 0x28)
    return BackupRef(
        id=day.isoformat(),
        started_at=datetime(day.year, day.month, day.day, hour, tzinfo=UTC),
        start_lsn=start,
        stop_lsn=start + 2**28,
        timeline=1,
        valid=valid,
    )


def days(first: date, count: int) -> list[date]:
    return [first + timedelta(days=i) for i in range(count)]


# --- examples ------------------------------------------------------------------------------------


def test_ten_years_of_nightly_backups():
    all_days = days(date(2014, 6, 16), (date(2024, 6, 15) - date(2014, 6, 16)).days + 1)
    backups = [nightly(d, i) for i, d in enumerate(all_days)]
    random.Random(7).shuffle(backups)

    plan = plan_retention(backups, RetentionPolicy(daily=30, monthly=12, yearly=7))

    daily = {d.isoformat() for d in days(date(2024, 5, 17), 30)}
    monthly = {"2024-06-15", "2024-05-31", "2024-04-30", "2024-03-31", "2024-02-29", "2024-01-31",
               "2023-12-31", "2023-11-30", "2023-10-31", "2023-09-30", "2023-08-31", "2023-07-31"}
    yearly = {"2024-06-15", "2023-12-31", "2022-12-31", "2021-12-31", "2020-12-31", "2019-12-31", "2018-12-31"}
    assert {i for i, r in plan.keep.items() if DAILY in r} == daily
    assert {i for i, r in plan.keep.items() if MONTHLY in r} == monthly
    assert {i for i, r in plan.keep.items() if YEARLY in r} == yearly
    # PITR over the whole of May 17 (from 00:00) starts from May 16's backup, kept with its WAL
    assert {i for i, r in plan.keep.items() if WINDOW_START in r} == {"2024-05-16"}
    assert set(plan.keep) == daily | monthly | yearly | {"2024-05-16"}
    assert len(plan.keep) == 30 + 12 + 7 - 2 - 2 + 1  # May 31 and Jun 15 are daily too; Dec 31 and Jun 15 twice
    assert plan.classes("2024-06-15") == {DAILY, MONTHLY, YEARLY, NEWEST}
    assert plan.classes("2024-05-31") == {DAILY, MONTHLY}
    assert plan.classes("2023-12-31") == {MONTHLY, YEARLY}
    assert plan.classes("2018-12-31") == {YEARLY}
    assert plan.classes("2024-05-16") == {WINDOW_START}
    assert plan.classes("2024-05-15") == frozenset()
    assert list(plan.keep) == sorted(plan.keep)  # oldest first
    assert list(plan.delete) == sorted(plan.delete)
    assert len(plan.delete) == len(all_days) - 46
    assert plan.delete[0] == "2014-06-16" and plan.delete[-1] == "2024-05-15"
    assert plan.why_deleted["2024-05-15"] == "a newer backup of the same month (2024-05-31) is the monthly one"
    assert plan.why_deleted["2023-06-30"] == "a newer backup of the same year (2023-12-31) is the yearly one"
    assert plan.why_deleted["2014-06-16"].startswith("it is older than everything retention keeps: the 30 most")

    by_id = {b.id: b for b in backups}
    assert plan.wal_keep_from == by_id["2024-05-16"].start_lsn
    older = sorted((monthly | yearly) - daily)
    assert plan.wal_keep_ranges == tuple((by_id[i].start_lsn, by_id[i].stop_lsn) for i in older)
    # WAL between two monthly backups is gone; WAL inside one, and all of the daily window, stays.
    assert not plan.wal_needed(*segment_bounds(by_id["2024-04-15"].start_lsn))
    assert plan.wal_needed(*segment_bounds(by_id["2024-04-30"].stop_lsn))
    assert not plan.wal_needed(*segment_bounds(by_id["2024-04-30"].stop_lsn + SEG))
    assert plan.wal_needed(*segment_bounds(by_id["2024-05-17"].start_lsn))
    assert plan.wal_needed(*segment_bounds(by_id["2024-06-15"].stop_lsn + 2**30))


def segment_bounds(lsn: Lsn) -> tuple[Lsn, Lsn]:
    return segment_start(lsn, SEG), segment_end(lsn, SEG)


def test_several_backups_a_day_keep_that_days_newest_valid_one():
    day1, day2 = date(2024, 3, 1), date(2024, 3, 2)
    backups = [
        nightly(day1, 0, hour=1),
        BackupRef("d1-02", datetime(2024, 3, 1, 2, tzinfo=UTC), Lsn(2**31), Lsn(2**31 + 9), 1),
        BackupRef("d1-23", datetime(2024, 3, 1, 23, tzinfo=UTC), Lsn(2**32), Lsn(2**32 + 9), 1),
        BackupRef("d1-2330-failed", datetime(2024, 3, 1, 23, 30, tzinfo=UTC), Lsn(2**33), Lsn(2**33), 1, False),
        nightly(day2, 10),
    ]
    plan = plan_retention(backups, RetentionPolicy(daily=2, monthly=0, yearly=0))
    # the first backup of the window's oldest day stays: restores to 01:00..23:00 start from it
    assert plan.keep == {"2024-03-01": {WINDOW_START}, "d1-23": {DAILY}, "2024-03-02": {DAILY, NEWEST}}
    assert plan.delete == ("d1-02", "d1-2330-failed")
    assert plan.wal_keep_from == backups[0].start_lsn
    assert plan.why_deleted == {
        "d1-02": "a newer backup of the same day (d1-23) is the daily one; restores to any moment after this "
                 "backup still work from an earlier kept backup and the WAL",
        "d1-2330-failed": "it is not valid (failed, unfinished or damaged) and a newer valid backup exists",
    }
    # a day later the window starts at 00:00 of March 2; March 1's daily backup is where restores start
    later = plan_retention([*backups, nightly(date(2024, 3, 3), 20)], RetentionPolicy(daily=2, monthly=0, yearly=0))
    assert later.classes("d1-23") == {WINDOW_START} and later.classes("2024-03-01") == frozenset()


def test_failed_backups_do_not_shorten_the_daily_window():
    valid = [nightly(d, i) for i, d in enumerate(days(date(2024, 1, 1), 10))]
    failed = [nightly(d, 10 + i, valid=False) for i, d in enumerate(days(date(2024, 1, 11), 7))]
    plan = plan_retention(valid + failed, RetentionPolicy(daily=7, monthly=0, yearly=0))

    assert {i for i, r in plan.keep.items() if DAILY in r} == {d.isoformat() for d in days(date(2024, 1, 4), 7)}
    assert plan.classes("2024-01-10") == {DAILY, NEWEST}
    assert {i for i, r in plan.keep.items() if r == {PENDING}} == {b.id for b in failed}
    assert plan.classes("2024-01-03") == {WINDOW_START}  # restores to Jan 4, 00:00 on start from it
    assert plan.delete == ("2024-01-01", "2024-01-02")
    assert plan.wal_keep_from == valid[2].start_lsn
    assert plan.wal_keep_ranges == tuple((b.start_lsn, b.stop_lsn) for b in failed)


def test_days_without_backups_are_not_counted():
    backups = [nightly(date(2024, 1, 1), 0), nightly(date(2024, 1, 5), 1), nightly(date(2024, 1, 20), 2)]
    plan = plan_retention(backups, RetentionPolicy(daily=3, monthly=0, yearly=0))
    assert plan.delete == ()
    assert all(DAILY in r for r in plan.keep.values())


def test_invalid_backups_are_never_kept_by_a_class():
    backups = [nightly(d, i, valid=(d.day != 31)) for i, d in enumerate(days(date(2023, 12, 1), 40))]
    plan = plan_retention(backups, RetentionPolicy(daily=3, monthly=2, yearly=2))
    assert "2023-12-31" in plan.delete
    assert plan.classes("2023-12-30") == {MONTHLY, YEARLY}
    assert plan.classes("2024-01-09") == {DAILY, MONTHLY, YEARLY, NEWEST}


def test_no_valid_backup_deletes_nothing_not_even_wal():
    backups = [nightly(d, i, valid=False) for i, d in enumerate(days(date(2024, 1, 1), 5))]
    plan = plan_retention(backups)
    assert plan.delete == ()
    assert all(r == {PENDING} for r in plan.keep.values()) and len(plan.keep) == 5
    assert plan.wal_keep_from == Lsn(0)
    assert plan.wal_needed(Lsn(0), Lsn(SEG))

    empty = plan_retention([])
    assert empty == RetentionPlan(keep={}, delete=(), wal_keep_from=Lsn(0), wal_keep_ranges=())


def test_daily_zero_still_keeps_the_newest():
    backups = [nightly(d, i) for i, d in enumerate(days(date(2024, 1, 1), 5))]
    plan = plan_retention(backups, RetentionPolicy(daily=0, monthly=0, yearly=0))
    assert plan.keep == {"2024-01-05": {NEWEST}}
    assert plan.wal_keep_from == backups[-1].start_lsn


def test_periods_are_utc():
    east = timezone(timedelta(hours=2))
    backups = [
        BackupRef("new-year-in-berlin", datetime(2024, 1, 1, 1, tzinfo=east), Lsn(100), Lsn(200), 1),
        BackupRef("jan-2", datetime(2024, 1, 2, 1, tzinfo=UTC), Lsn(300), Lsn(400), 1),
    ]
    assert backups[0].started_at == datetime(2023, 12, 31, 23, tzinfo=UTC)
    plan = plan_retention(backups, RetentionPolicy(daily=1, monthly=0, yearly=2))
    assert plan.classes("new-year-in-berlin") == {YEARLY, WINDOW_START}  # 2023 in UTC: before Jan 2's window


def test_timeline_rewind_keeps_wal_from_the_lowest_start():
    # A PITR restore started timeline 2 at an LSN below the older timeline 1 backup.
    old = BackupRef("tl1", datetime(2024, 1, 1, tzinfo=UTC), Lsn(0x90000000), Lsn(0x91000000), 1)
    new = BackupRef("tl2", datetime(2024, 1, 2, tzinfo=UTC), Lsn(0x50000000), Lsn(0x51000000), 2)
    plan = plan_retention([old, new], RetentionPolicy(daily=2, monthly=0, yearly=0))
    assert plan.wal_keep_from == new.start_lsn


def test_wal_ranges_are_closed_and_segment_names_are_understood():
    plan = RetentionPlan(
        keep={}, delete=(), wal_keep_from=Lsn.parse("1/0"),
        wal_keep_ranges=((Lsn.parse("0/2000028"), Lsn.parse("0/4000000")),),
    )
    assert not plan.wal_needed(Lsn.parse("0/1000000"), Lsn.parse("0/2000000"))
    assert plan.wal_needed(Lsn.parse("0/2000000"), Lsn.parse("0/3000000"))
    assert plan.wal_needed(Lsn.parse("0/4000000"), Lsn.parse("0/5000000"))  # stop itself is kept
    assert not plan.wal_needed(Lsn.parse("0/5000000"), Lsn.parse("0/6000000"))
    assert plan.wal_needed(Lsn.parse("0/FF000000"), Lsn.parse("1/0000001"))
    assert not plan.wal_needed(Lsn.parse("0/FE000000"), Lsn.parse("0/FF000000"))
    assert plan.segment_needed("000000010000000000000003")
    assert plan.segment_needed("000000030000000000000003.partial")
    assert plan.segment_needed("000000010000000000000002.00000028.backup")
    assert not plan.segment_needed("000000010000000000000005")
    assert plan.segment_needed("00000001.history") and plan.segment_needed("00000009.history")
    assert plan.segment_needed("000000010000000000000000", seg_size=2**30)
    assert not plan.segment_needed("000000010000000000000003", seg_size=2**30)  # ends at 1/0 exactly
    assert plan.segment_needed("000000010000000100000000", seg_size=2**30)
    for bad in ["000000010000000000000003.gz", "x", "000000010000000000000100"]:
        with pytest.raises(ValueError):
            plan.segment_needed(bad)
    with pytest.raises(ValueError, match="non-empty LSN range"):
        plan.wal_needed(Lsn(5), Lsn(5))


def test_bad_input():
    when = datetime(2024, 1, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="appears more than once"):
        plan_retention([BackupRef("a", when, Lsn(1), Lsn(2), 1), BackupRef("a", when, Lsn(3), Lsn(4), 1)])
    with pytest.raises(ValueError, match="timezone-aware"):
        BackupRef("a", datetime(2024, 1, 1), Lsn(1), Lsn(2), 1)
    with pytest.raises(ValueError, match="stop_lsn 0/1 is before start_lsn 0/2"):
        BackupRef("a", when, Lsn(2), Lsn(1), 1)
    with pytest.raises(ValueError, match="timeline"):
        BackupRef("a", when, Lsn(1), Lsn(2), 0)
    with pytest.raises(ValueError, match="start_lsn and stop_lsn must be Lsn"):
        BackupRef("a", when, "0/1", Lsn(2), 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-empty string"):
        BackupRef("", when, Lsn(1), Lsn(2), 1)
    with pytest.raises(ValueError, match="retention monthly must be a whole number >= 0"):
        RetentionPolicy(monthly=-1)
    with pytest.raises(ValueError, match="expected BackupRef"):
        plan_retention([("a", when)])  # type: ignore[list-item]
    with pytest.raises(KeyError, match="not part of this retention plan"):
        plan_retention([]).classes("nope")


def test_plan_as_json():
    backups = [nightly(d, i) for i, d in enumerate(days(date(2024, 1, 30), 3))]
    data = plan_retention(backups, RetentionPolicy(daily=1, monthly=2, yearly=0)).to_json_dict()
    assert json.loads(json.dumps(data)) == {
        "keep": {"2024-01-31": ["monthly", "window_start"], "2024-02-01": ["daily", "monthly", "newest"]},
        "delete": ["2024-01-30"],
        "why_deleted": {"2024-01-30": "a newer backup of the same month (2024-01-31) is the monthly one"},
        "wal_keep_from": "0/40000028",
        "wal_keep_ranges": [],
    }


# --- properties ----------------------------------------------------------------------------------
#
# Proved below, for any set of backups (ties in started_at, invalid ones, LSNs unrelated to time,
# several timelines) and any policy:
#   P1  keep and delete partition the ids; both are ordered oldest first; reasons are known ones.
#   P2  the newest valid backup is kept as "newest"; with no valid backup nothing is deleted.
#   P3  each class is exactly "the newest valid backup of each of the N most recent periods that have one".
#   P3b "window_start" is exactly the newest valid backup started before the oldest daily day, or
#       the first valid backup of that day when there is none (none when daily is 0).
#   P4  at most daily + monthly + yearly + 1 valid backups are kept; the other kept ones are
#       exactly the invalid backups newer than the newest valid one.
#   P5  the input order does not matter.
#   P6  idempotence: planning again on the survivors keeps all of them, for the same reasons,
#       with the same WAL decisions.
#   P7  adding a backup B changes nothing for the backups newer than B (so an older backup never
#       causes a newer kept one to be deleted) but the window start, which moves to an older backup;
#       an invalid B changes nothing for anyone else.
#       Adding a NEWER backup may of course push older ones out of their windows.
#   P8  the WAL of every kept backup is needed, and all WAL from the oldest daily/newest backup on is.
#   P9  the WAL of a deleted backup is not kept, unless a kept backup or the daily window needs it.
#   P10 any sequence of backups, WAL with restore points, and prunes carried out as the plan says:
#       every restore point still listed restores, and every one inside the daily window (whole
#       days, from 00:00 UTC of the oldest) is listed; reachability modelled here, not taken from
#       the plan.

BASE = datetime(2020, 1, 1, tzinfo=UTC)


@st.composite
def backup_sets(draw, min_size=0, max_size=20):
    span = draw(st.sampled_from([3_600, 3 * 86_400, 45 * 86_400, 800 * 86_400, 4_000 * 86_400]))
    items = draw(st.lists(
        st.tuples(st.integers(0, span), st.booleans(), st.integers(0, 2**40), st.integers(0, 2**28),
                  st.integers(1, 3)),
        min_size=min_size, max_size=max_size,
    ))
    valid_bias = draw(st.booleans())
    return [
        BackupRef(f"b{i:02d}", BASE + timedelta(seconds=offset), Lsn(start), Lsn(start + length), tli,
                  valid=valid or valid_bias)
        for i, (offset, valid, start, length, tli) in enumerate(items)
    ]


policies = st.builds(
    RetentionPolicy, daily=st.integers(0, 8), monthly=st.integers(0, 5), yearly=st.integers(0, 4)
)
PROPERTY = settings(max_examples=200, deadline=None)


def age(b: BackupRef):
    return (b.started_at, b.id)


def with_reason(plan: RetentionPlan, reason: str) -> set[str]:
    return {i for i, r in plan.keep.items() if reason in r}


def check_p1_partition_and_order(backups, policy, plan):
    ids = [b.id for b in sorted(backups, key=age)]
    assert set(plan.keep) | set(plan.delete) == set(ids)
    assert not set(plan.keep) & set(plan.delete)
    assert len(plan.delete) == len(set(plan.delete))
    assert list(plan.delete) == [i for i in ids if i in plan.delete]
    assert list(plan.keep) == [i for i in ids if i in plan.keep]
    assert all(r and r <= REASONS for r in plan.keep.values())
    assert all(plan.classes(i) == plan.keep.get(i, frozenset()) for i in ids)


def check_p2_newest_valid_always_kept(backups, policy, plan):
    valid = sorted((b for b in backups if b.valid), key=age)
    if valid:
        assert with_reason(plan, NEWEST) == {valid[-1].id}
    else:
        assert plan.delete == () and plan.wal_keep_from == Lsn(0)


def check_p3_each_class_is_the_newest_of_the_most_recent_periods(backups, policy, plan):
    valid = [b for b in backups if b.valid]
    by_id = {b.id: b for b in backups}
    for reason, count, period in [
        (DAILY, policy.daily, lambda b: b.started_at.date()),
        (MONTHLY, policy.monthly, lambda b: (b.started_at.year, b.started_at.month)),
        (YEARLY, policy.yearly, lambda b: b.started_at.year),
    ]:
        chosen = [by_id[i] for i in with_reason(plan, reason)]
        periods = {period(b) for b in valid}
        assert len(chosen) == min(count, len(periods))
        assert len({period(b) for b in chosen}) == len(chosen)
        for b in chosen:
            assert b.valid
            assert b == max((v for v in valid if period(v) == period(b)), key=age)
        if chosen:
            oldest_chosen = min(period(b) for b in chosen)
            assert all(p < oldest_chosen for p in periods - {period(b) for b in chosen})


def check_p3b_window_start(backups, policy, plan):
    valid = sorted((b for b in backups if b.valid), key=age)
    days = sorted({b.started_at.date() for b in valid})[-policy.daily:] if policy.daily else []
    expected = set()
    if days:
        before = [b for b in valid if b.started_at.date() < days[0]]
        expected = {before[-1].id} if before else {min((b for b in valid if b.started_at.date() == days[0]),
                                                      key=age).id}
    assert with_reason(plan, WINDOW_START) == expected


def check_p4_bounded_and_pending_exactly_the_newer_invalid_ones(backups, policy, plan):
    classed = {i for i, r in plan.keep.items() if r - {PENDING}}
    assert len(classed) <= policy.daily + policy.monthly + policy.yearly + 1
    valid = [b for b in backups if b.valid]
    newest = max(valid, key=age) if valid else None
    expected_pending = {b.id for b in backups if not b.valid and (newest is None or age(b) > age(newest))}
    assert with_reason(plan, PENDING) == expected_pending
    assert all(plan.keep[i] == {PENDING} for i in expected_pending)
    assert len(plan.keep) == len(classed) + len(expected_pending)


def _segments_overlapping(start: Lsn, stop: Lsn):
    """The first/end of every segment holding a byte of the closed range [start, stop]."""
    first = segment_start(start, SEG)
    while first <= stop:
        yield first, first + SEG
        first = first + SEG


def check_p8_kept_backups_and_the_daily_window_have_their_wal(backups, policy, plan, probe):
    by_id = {b.id: b for b in backups}
    for backup_id, reasons in plan.keep.items():
        b = by_id[backup_id]
        assert all(plan.wal_needed(f, e) for f, e in _segments_overlapping(b.start_lsn, b.stop_lsn))
        if reasons & {DAILY, NEWEST, WINDOW_START}:
            assert b.start_lsn >= plan.wal_keep_from
    lsn = Lsn(max(probe, plan.wal_keep_from.value))
    assert plan.wal_needed(*segment_bounds(lsn))


def check_p9_wal_of_deleted_backups_is_released(backups, policy, plan):
    kept = [b for b in backups if b.id in plan.keep]
    for b in backups:
        if b.id in plan.keep:
            continue
        for first, end in _segments_overlapping(b.start_lsn, b.stop_lsn):
            shared = any(first <= k.stop_lsn and k.start_lsn < end for k in kept)
            assert plan.wal_needed(first, end) == (shared or end > plan.wal_keep_from)


@PROPERTY
@given(backup_sets(), policies, st.integers(0, 2**41))
def test_p1_to_p4_p8_p9_plan_invariants(backups, policy, probe):
    # One generated case feeds six checks: hypothesis' data generation is what costs time here.
    plan = plan_retention(backups, policy)
    check_p1_partition_and_order(backups, policy, plan)
    check_p2_newest_valid_always_kept(backups, policy, plan)
    check_p3_each_class_is_the_newest_of_the_most_recent_periods(backups, policy, plan)
    check_p3b_window_start(backups, policy, plan)
    check_p4_bounded_and_pending_exactly_the_newer_invalid_ones(backups, policy, plan)
    check_p8_kept_backups_and_the_daily_window_have_their_wal(backups, policy, plan, probe)
    check_p9_wal_of_deleted_backups_is_released(backups, policy, plan)


@PROPERTY
@given(backup_sets(), policies, st.randoms(use_true_random=False))
def test_p5_input_order_does_not_matter(backups, policy, rnd):
    shuffled = list(backups)
    rnd.shuffle(shuffled)
    assert plan_retention(shuffled, policy) == plan_retention(backups, policy)


@PROPERTY
@given(backup_sets(), policies)
def test_p6_idempotent(backups, policy):
    plan = plan_retention(backups, policy)
    again = plan_retention((b for b in backups if b.id in plan.keep), policy)
    assert again.delete == ()
    assert again == replace(plan, delete=(), why_deleted={})


@PROPERTY
@given(backup_sets(min_size=1), policies, st.data())
def test_p7_adding_a_backup_never_changes_newer_ones(backups, policy, data):
    offset = data.draw(st.integers(-86_400, 4_000 * 86_400), label="offset")
    extra = BackupRef(
        "extra", BASE + timedelta(seconds=offset), Lsn(7), Lsn(7 + data.draw(st.integers(0, 99))), 1,
        valid=data.draw(st.booleans(), label="valid"),
    )
    before = plan_retention(backups, policy)
    after = plan_retention([*backups, extra], policy)
    for b in backups:
        if age(b) > age(extra) or not extra.valid:
            assert after.classes(b.id) - {WINDOW_START} == before.classes(b.id) - {WINDOW_START}, b.id


# --- P10: the daily window stays continuous through any history of backups and prunes ----------------


@dataclass
class Repository:
    """A modelled repository: backups, collected WAL (segment numbers) and restore point records."""

    policy: RetentionPolicy
    now: datetime = BASE
    lsn: int = 0x28
    backups: list[BackupRef] = dc_field(default_factory=list)
    taken: list[BackupRef] = dc_field(default_factory=list)
    """every backup ever taken, deleted ones included"""
    collected: int = 0
    """WAL is collected continuously: segments below this number were written to the repository"""
    pruned: set[int] = dc_field(default_factory=set)
    points: list[tuple[str, int, datetime]] = dc_field(default_factory=list)
    """every restore point ever created: (name, LSN, time)"""
    listed: set[str] = dc_field(default_factory=set)

    def advance(self, minutes: int, wal_bytes: int) -> None:
        self.now += timedelta(minutes=minutes)
        self.lsn += wal_bytes

    def restore_point(self) -> None:
        # like collect_wal: a restore point (its LSN is the end of its record), then a segment switch
        name = f"rp{len(self.points)}"
        self.lsn += 0x40
        self.points.append((name, self.lsn, self.now))
        self.listed.add(name)
        self.lsn = (self.lsn // SEG + 1) * SEG
        self.collected = self.lsn // SEG

    def full_backup(self, valid: bool, length: int) -> None:
        start = self.lsn + 0x28
        backup = BackupRef(f"b{len(self.taken):03d}", self.now, Lsn(start), Lsn(start + length), 1, valid)
        self.lsn = start + length
        self.backups.append(backup)
        self.taken.append(backup)
        self.restore_point()  # the backup's own row-count restore point, right after it ends

    def prune(self) -> None:
        """What engine.prune does with the plan: backups, then WAL, then restore point records."""
        plan = plan_retention(self.backups, self.policy)
        valid = [b for b in self.backups if b.valid]
        if not valid:
            return
        self.backups = [b for b in self.backups if b.id not in plan.delete]
        newest_start = max(valid, key=age).start_lsn.value
        for number in range(self.collected):
            name = f"00000001{number // 256:08X}{number % 256:08X}"
            if (number + 1) * SEG <= newest_start and not plan.segment_needed(name):
                self.pruned.add(number)
        self.listed -= {name for name, lsn, _ in self.points if not plan.restorable(Lsn(lsn))}

    def restores(self, lsn: int) -> bool:
        """Modelled recovery: a surviving valid backup consistent by ``lsn`` and every segment from its
        start to the one holding the restore point's record present."""
        return any(
            b.valid and b.stop_lsn.value <= lsn
            and all(n < self.collected and n not in self.pruned
                    for n in range(b.start_lsn.value // SEG, (lsn - 1) // SEG + 1))
            for b in self.backups
        )

    def window_points(self) -> set[str]:
        """Restore points the daily window promises: from 00:00 UTC of the oldest of the ``daily`` most
        recent days with a valid backup, or from the first valid backup when none is older than that day."""
        valid = [b for b in self.taken if b.valid]
        if not valid:
            return set()
        if self.policy.daily == 0:
            newest = max(valid, key=age)
            return {name for name, lsn, _ in self.points if lsn >= newest.stop_lsn.value}
        oldest_day = sorted({b.started_at.date() for b in valid})[-self.policy.daily:][0]
        midnight = datetime(oldest_day.year, oldest_day.month, oldest_day.day, tzinfo=UTC)
        if any(b.started_at < midnight for b in valid):
            return {name for name, _, at in self.points if at >= midnight}
        first = min((b for b in valid if b.started_at >= midnight), key=age)
        return {name for name, lsn, _ in self.points if lsn >= first.stop_lsn.value}


events = st.lists(st.one_of(
    st.tuples(st.just("wal"), st.sampled_from([0, 5, 60, 600, 1440, 3000]), st.integers(0, 3 * SEG)),
    st.tuples(st.just("full"), st.sampled_from([0, 5, 60, 600, 1440, 3000]), st.booleans(),
              st.integers(0, 2 * SEG)),
    st.tuples(st.just("prune")),
), max_size=40)


@PROPERTY
@given(events, st.builds(RetentionPolicy, daily=st.integers(0, 4), monthly=st.integers(0, 2),
                         yearly=st.integers(0, 1)))
def test_p10_every_listed_restore_point_restores_and_the_daily_window_has_no_hole(history, policy):
    repo = Repository(policy)
    for event in [*history, ("prune",)]:
        if event[0] == "wal":
            repo.advance(event[1], event[2])
            repo.restore_point()
        elif event[0] == "full":
            repo.advance(event[1], 0x1000)
            repo.full_backup(event[2], event[3])
        else:
            repo.prune()
            if not any(b.valid for b in repo.backups):
                continue  # nothing is deleted without a valid backup, restore point records neither
            unreachable = {name for name, lsn, _ in repo.points if name in repo.listed and not repo.restores(lsn)}
            assert not unreachable, f"listed but not restorable: {sorted(unreachable)}"
            lost = repo.window_points() - repo.listed
            assert not lost, f"restore points inside the daily window were pruned: {sorted(lost)}"


def test_p10_example_two_full_backups_on_the_first_day():
    """The reported case: the day's first backup, restore points, a second full backup, retention."""
    repo = Repository(RetentionPolicy())
    repo.full_backup(True, SEG // 4)
    repo.advance(60, SEG)
    repo.restore_point()
    between = repo.points[-1][0]
    repo.advance(60, SEG)
    repo.full_backup(True, SEG // 4)
    repo.prune()
    assert [b.id for b in repo.backups] == ["b000", "b001"]
    assert between in repo.listed and repo.restores(repo.points[1][1])
