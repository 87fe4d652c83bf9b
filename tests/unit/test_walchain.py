from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgwarden.core.lsn import Lsn
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.walchain import MAX_LISTED, TimelineNotReachable, check_chain, missing_segments
from pgwarden.core.walnames import (
    HistoryEntry,
    parse_history_file,
    segment_name,
    segments_between,
    segments_on_timeline,
)

MiB = 2**20
SEG = 16 * MiB
REMEDY = "take a new full backup (trigger appdb.backup_full) to start a new unbroken chain"


def lsn(text: str) -> Lsn:
    return Lsn.parse(text)


def test_complete_single_timeline_has_nothing_missing():
    present = set(segments_between(1, lsn("0/2000028"), lsn("0/9000000")))
    assert present == {f"0000000100000000000000{n:02X}" for n in range(2, 9)}
    assert missing_segments(present, 1, lsn("0/2000028"), 1, lsn("0/9000000"), []) == []

    report = check_chain(present, 1, lsn("0/2000028"), 1, lsn("0/9000000"), [], database="appdb")
    assert report.ok and report.missing == () and report.missing_count == 0
    assert report.segments_checked == 7
    assert (report.checked_from, report.checked_to) == (lsn("0/2000028"), lsn("0/9000000"))


def test_gap_is_named_with_the_remedy():
    present = set(segments_between(1, lsn("0/2000000"), lsn("0/9000000")))
    present -= {"000000010000000000000004", "000000010000000000000007"}

    assert missing_segments(present, 1, lsn("0/2000028"), 1, lsn("0/9000000"), []) == [
        "000000010000000000000004", "000000010000000000000007"]
    report = check_chain(present, 1, lsn("0/2000028"), 1, lsn("0/9000000"), [], database="appdb")
    assert not report.ok
    assert report.missing == ("000000010000000000000004", "000000010000000000000007")
    assert report.missing_count == 2
    assert "000000010000000000000004 and 1 more file missing" in report.message
    assert REMEDY in report.message
    assert report.to_json_dict()["missing"] == list(report.missing)


def test_report_lists_the_first_few_and_counts_all():
    report = check_chain(set(), 1, lsn("0/1000000"), 1, lsn("0/20000000"), [], database="appdb")
    assert report.missing_count == 0x1F
    assert len(report.missing) == MAX_LISTED
    assert report.missing[0] == "000000010000000000000001"
    assert "30 more files" in report.message


def test_timeline_switch_follows_the_history():
    # timeline 2 branched off timeline 1 at 0/5800000 (inside segment 5)
    history = parse_history_file("1\t0/5800000\tno recovery target specified\n")
    start, end = lsn("0/2000028"), lsn("0/8000000")
    needed = ["000000010000000000000002", "000000010000000000000003", "000000010000000000000004",
              "000000020000000000000005", "000000020000000000000006", "000000020000000000000007"]
    assert segments_on_timeline(2, history, start, end) == needed
    present = {*needed, "00000002.history", "000000010000000000000005.partial"}
    assert missing_segments(present, 1, start, 2, end, history) == []
    assert check_chain(present, 1, start, 2, end, history, database="appdb").ok

    # the old timeline's copy of the switch segment does not replace the new timeline's one
    present_old = (present - {"000000020000000000000005"}) | {"000000010000000000000005"}
    assert missing_segments(present_old, 1, start, 2, end, history) == ["000000020000000000000005"]

    # a backup already taken on timeline 2 needs nothing from timeline 1
    assert missing_segments({"000000020000000000000006", "000000020000000000000007"},
                            2, lsn("0/6000028"), 2, end, history) == []


def test_missing_history_file_is_reported_first():
    history = [HistoryEntry(1, lsn("0/5800000"), "")]
    present = set(segments_on_timeline(2, history, lsn("0/2000028"), lsn("0/8000000")))
    report = check_chain(present, 1, lsn("0/2000028"), 2, lsn("0/8000000"), history, database="appdb")
    assert not report.ok
    assert report.missing == ("00000002.history",)
    assert "00000002.history missing" in report.message


def test_abandoned_timeline_is_not_reachable():
    # timeline 3 branched off timeline 1 at 0/3000000; a backup on timeline 2 at 0/5000000 cannot reach it
    history = parse_history_file("1\t0/3000000\tbefore the bad deploy\n")
    with pytest.raises(TimelineNotReachable, match="timeline 2 at 0/5000000 is not on the history of timeline 3"):
        missing_segments(set(), 2, lsn("0/5000000"), 3, lsn("0/8000000"), history)
    # and a timeline-1 backup after the branch point diverged too
    with pytest.raises(TimelineNotReachable):
        missing_segments(set(), 1, lsn("0/4000000"), 3, lsn("0/8000000"), history)
    report = check_chain(set(), 1, lsn("0/4000000"), 3, lsn("0/8000000"), history, database="appdb")
    assert not report.ok and REMEDY in report.message
    # ... but one before the branch point can
    assert missing_segments(set(), 1, lsn("0/2000000"), 3, lsn("0/4000000"), history) == [
        "000000010000000000000002", "000000030000000000000003"]


def test_end_before_start_is_an_error():
    with pytest.raises(ValueError, match="before start_lsn"):
        missing_segments(set(), 1, lsn("0/5000000"), 1, lsn("0/4000000"), [])


def test_partial_stands_in_for_the_last_segment_only():
    start, end = lsn("0/2000000"), lsn("0/4800000")
    present = {"000000010000000000000002", "000000010000000000000003.partial", "000000010000000000000004.partial"}
    assert missing_segments(present, 1, start, 1, end, []) == ["000000010000000000000003"]


@pytest.mark.parametrize("seg_size", [1 * MiB, 64 * MiB, 1024 * MiB])
def test_other_segment_sizes(seg_size):
    per_xlogid = 2**32 // seg_size
    # cross the 4 GiB boundary where the middle part of the name changes
    start = Lsn(2**32 - 2 * seg_size + 0x28)
    end = Lsn(2**32 + 2 * seg_size)
    needed = segments_between(1, start, end, seg_size)
    assert needed == [
        f"00000001{0:08X}{per_xlogid - 2:08X}", f"00000001{0:08X}{per_xlogid - 1:08X}",
        f"00000001{1:08X}{0:08X}", f"00000001{1:08X}{1:08X}",
    ]
    assert missing_segments(set(needed), 1, start, 1, end, [], seg_size) == []
    assert missing_segments(set(needed) - {needed[2]}, 1, start, 1, end, [], seg_size) == [needed[2]]
    # 16 MiB names mean other positions: they do not count for this segment size
    assert missing_segments(set(segments_between(1, start, end)), 1, start, 1, end, [], seg_size) != []
    report = check_chain(set(needed), 1, start, 1, end, [], seg_size, database="appdb")
    assert report.ok and report.segments_checked == 4


def test_timeline_switch_with_1mib_segments():
    seg = MiB
    history = [HistoryEntry(1, Lsn(5 * seg + 0x100), "promoted")]
    needed = segments_on_timeline(2, history, Lsn(2 * seg), Lsn(8 * seg), seg)
    assert needed[:3] == [segment_name(1, Lsn(n * seg), seg) for n in (2, 3, 4)]
    assert needed[3:] == [segment_name(2, Lsn(n * seg), seg) for n in (5, 6, 7)]
    assert missing_segments(set(needed), 1, Lsn(2 * seg), 2, Lsn(8 * seg), history, seg) == []


@settings(max_examples=200, deadline=None)
@given(
    first=st.integers(0, 200),
    length=st.integers(1, 60),
    switch=st.one_of(st.none(), st.integers(0, 300)),
    gone=st.data(),
    seg_pow=st.integers(20, 30),
)
def test_exactly_the_removed_segments_are_missing(first, length, switch, gone, seg_pow):
    seg = 2**seg_pow
    start, end = Lsn(first * seg + 0x28), Lsn((first + length) * seg)
    history = [] if switch is None else [HistoryEntry(1, Lsn(switch * seg + 0x40), "")]
    end_tli = 1 if switch is None else 2
    if switch is not None and Lsn(switch * seg + 0x40) < start:
        start_tli = 2  # the backup was taken after the switch
    else:
        start_tli = 1
    needed = segments_on_timeline(end_tli, history, start, end, seg)
    removed = gone.draw(st.sets(st.sampled_from(needed), max_size=len(needed)))
    assert missing_segments(set(needed) - removed, start_tli, start, end_tli, end, history, seg) == [
        n for n in needed if n in removed]


def point(name: str, at: str) -> RestorePoint:
    return RestorePoint(name, lsn(at), datetime(2026, 11, 24, 9, tzinfo=timezone.utc))


def test_a_gap_names_the_newest_restore_point_before_it_not_after_it():
    # segment 5 is gone: recovery from the backup (consistent at 0/2800000) stops at 0/5000000
    present = set(segments_between(1, lsn("0/2000000"), lsn("0/7000000"))) - {"000000010000000000000005"}
    points = [point("during_backup", "0/2400000"), point("before_gap", "0/4F00000"),
              point("in_the_gap", "0/5800000"), point("after_gap", "0/6800000")]
    report = check_chain(present, 1, lsn("0/2000028"), 1, lsn("0/7000000"), [], database="appdb",
                         points=points, consistent_at=lsn("0/2800000"))
    assert not report.ok and report.replayable_to == lsn("0/5000000")
    assert report.reachable_point == points[1]
    assert ("cannot replay past it: the WAL replays without a gap up to 0/5000000 on timeline 1; the newest "
            "reachable point is restore point 'before_gap'") in report.message
    assert "--target-name before_gap" in report.message and "after_gap" not in report.message
    assert report.to_json_dict()["reachable_point"]["name"] == "before_gap"
    assert report.to_json_dict()["replayable_to"] == "0/5000000"

    # a restore point whose record ends exactly where the gap begins is not offered (margin)
    edge = check_chain(present, 1, lsn("0/2000028"), 1, lsn("0/7000000"), [], database="appdb",
                       points=[point("edge", "0/5000000")], consistent_at=lsn("0/2800000"))
    assert edge.reachable_point is None
    assert "no restore point is reachable between the backup's end and there" in edge.message
    # before the backup is consistent a restore point is no target either
    early = check_chain(present, 1, lsn("0/2000028"), 1, lsn("0/7000000"), [], database="appdb",
                        points=[points[0]], consistent_at=lsn("0/2800000"))
    assert early.reachable_point is None


def test_a_complete_chain_reaches_its_end_and_the_newest_point():
    present = set(segments_between(1, lsn("0/2000000"), lsn("0/7000000")))
    points = [point("a", "0/3000100"), point("b", "0/6000100")]
    report = check_chain(present, 1, lsn("0/2000028"), 1, lsn("0/7000000"), [], database="appdb", points=points)
    assert report.ok and report.replayable_to == lsn("0/7000000") and report.reachable_point == points[1]


def test_replayable_to_without_the_end_timelines_history_file():
    history = [HistoryEntry(1, lsn("0/5800000"), "")]
    present = set(segments_on_timeline(2, history, lsn("0/2000028"), lsn("0/8000000")))
    report = check_chain(present, 1, lsn("0/2000028"), 2, lsn("0/8000000"), history, database="appdb")
    assert report.replayable_to == lsn("0/5000000")  # recovery cannot switch to timeline 2
    unreachable = check_chain(set(), 1, lsn("0/4000000"), 3, lsn("0/8000000"),
                              parse_history_file("1\t0/3000000\tx\n"), database="appdb")
    assert unreachable.replayable_to == lsn("0/4000000")
