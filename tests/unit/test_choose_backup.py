"""core.restore_plan: which backup a restore starts from, and whether the WAL reaches the target.

The repository of most tests: a backup on timeline 1 (day 0, segment 2), a promotion to timeline 2
at 0/6800000 (the history file says so), a backup on timeline 2 (day 1, segment 8). WAL: timeline
1 segments 2..5, timeline 2 segments 6..11 (segment 6 holds the switch, so recovery reads it from
timeline 2), and ``00000002.history``.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgwarden.core.lsn import Lsn
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.restore_plan import NotRestorable, check_reachable, choose_backup, plan_restore
from pgwarden.core.walnames import HistoryEntry
from tests.unit.catalog_factory import DAY0, at, backup, catalog, point, seg

SWITCH = Lsn.parse("0/6800000")
TL1 = backup(0, 2, timeline=1)
TL2 = backup(1, 8, timeline=2)
WAL = [seg(1, n) for n in range(2, 6)] + [seg(2, n) for n in range(6, 12)] + ["00000002.history"]
HISTORY = {2: [HistoryEntry(1, SWITCH, "no recovery target specified")]}
POINTS = [
    point("tl1_noon", 4, DAY0 + timedelta(hours=10)),
    point("tl2_before_backup", 7, DAY0 + timedelta(hours=20)),
    point("tl2_evening", 10, DAY0 + timedelta(days=1, hours=18)),
]


def repo(backups=(TL1, TL2), wal=WAL, points=POINTS):
    return catalog(list(backups), list(wal), points=list(points), history=HISTORY)


@pytest.mark.parametrize(("name", "chosen"), [
    ("tl1_noon", TL1),
    ("tl2_before_backup", TL1),  # on timeline 2, but before TL2's backup is consistent
    ("tl2_evening", TL2),
])
def test_a_name_target_starts_from_the_newest_backup_consistent_before_it(name, chosen) -> None:
    backup_, target_lsn = choose_backup(repo(), RecoveryTarget("name", name=name))
    assert backup_.id == chosen.id
    assert target_lsn == next(p.lsn for p in POINTS if p.name == name)


def test_an_lsn_target_between_the_backups_starts_from_the_older() -> None:
    assert choose_backup(repo(), RecoveryTarget("lsn", lsn=at(8, 0)))[0].id == TL1.id
    assert choose_backup(repo(), RecoveryTarget("lsn", lsn=TL2.stop_lsn))[0].id == TL2.id


def test_a_time_target_compares_with_when_each_backup_finished() -> None:
    finished_tl2 = TL2.manifest.finished_at
    assert choose_backup(repo(), RecoveryTarget("time", time=finished_tl2 - timedelta(seconds=1)))[0].id == TL1.id
    assert choose_backup(repo(), RecoveryTarget("time", time=finished_tl2))[0].id == TL2.id
    with pytest.raises(NotRestorable, match=f"before the oldest backup {TL1.id}, which finished at"):
        choose_backup(repo(), RecoveryTarget("time", time=TL1.manifest.finished_at - timedelta(minutes=1)))


def test_latest_takes_the_newest_valid_backup() -> None:
    broken = backup(2, 11, timeline=2, valid=False)
    assert choose_backup(repo(backups=(TL1, TL2, broken)), RecoveryTarget("latest"))[0].id == TL2.id


def test_what_cannot_be_chosen_says_why() -> None:
    with pytest.raises(NotRestorable, match="no restore point named 'nope'.*recent ones: tl1_noon, tl2_before_"):
        choose_backup(repo(), RecoveryTarget("name", name="nope"))
    with pytest.raises(NotRestorable, match=r"before the oldest backup .*consistent from 0/2001028"):
        choose_backup(repo(), RecoveryTarget("lsn", lsn=at(2, 0x100)))
    broken = backup(2, 11, timeline=2, valid=False)
    with pytest.raises(NotRestorable, match=f"backup {broken.id} is not valid: base.tar.zst is missing"):
        choose_backup(repo(backups=(TL1, TL2, broken)), RecoveryTarget("latest"), backup_id=broken.id)
    with pytest.raises(NotRestorable, match="shop has no backup '20990101T000000Z'"):
        choose_backup(repo(), RecoveryTarget("latest"), backup_id="20990101T000000Z")
    with pytest.raises(NotRestorable, match="no valid backup in s3://bucket/pg; run shop.backup_full first"):
        choose_backup(repo(backups=(backup(0, 2, valid=False),)), RecoveryTarget("latest"))


def test_a_forced_backup_is_used_even_when_a_newer_one_would_do() -> None:
    chosen, target_lsn = choose_backup(repo(), RecoveryTarget("name", name="tl2_evening"), backup_id=TL1.id)
    assert chosen.id == TL1.id and target_lsn == POINTS[2].lsn


def test_replay_across_the_timeline_switch_is_reachable_when_every_file_is_there() -> None:
    plan = plan_restore(repo(), RecoveryTarget("name", name="tl2_evening"), backup_id=TL1.id)
    assert plan.backup.id == TL1.id
    plan = plan_restore(repo(), RecoveryTarget("latest"))
    assert plan.to_json_dict()["newest_wal_lsn"] == "0/C000000"


def test_a_gap_after_the_backup_names_the_newest_point_before_it() -> None:
    gappy = repo(wal=[n for n in WAL if n != seg(2, 9)])
    target = RecoveryTarget("name", name="tl2_evening")
    with pytest.raises(NotRestorable) as failure:
        plan_restore(gappy, target, backup_id=TL1.id)
    message = str(failure.value)
    assert f"{seg(2, 9)} missing" in message
    assert "up to 0/9000000 on timeline 2" in message
    assert "restore point 'tl2_before_backup'" in message
    # A target before the gap is reachable.
    assert plan_restore(gappy, RecoveryTarget("name", name="tl2_before_backup")).backup.id == TL1.id


def test_the_segment_of_the_switch_must_come_from_the_new_timeline() -> None:
    # Timeline 1's copy of segment 6 does not help: recovery onto timeline 2 reads it from timeline 2.
    wal = [n for n in WAL if n != seg(2, 6)] + [seg(1, 6)]
    with pytest.raises(NotRestorable, match=f"{seg(2, 6)} missing"):
        plan_restore(repo(wal=wal), RecoveryTarget("name", name="tl2_before_backup"))


def test_without_the_history_file_recovery_cannot_switch_timelines() -> None:
    wal = [n for n in WAL if n != "00000002.history"]
    with pytest.raises(NotRestorable, match="00000002.history"):
        plan_restore(repo(wal=wal), RecoveryTarget("name", name="tl2_before_backup"))


def test_a_target_beyond_the_newest_wal_says_what_is_reachable() -> None:
    with pytest.raises(NotRestorable, match=r"\(0/D000000\) is beyond the newest WAL .*up to 0/C000000"):
        plan_restore(repo(), RecoveryTarget("lsn", lsn=Lsn.parse("0/D000000")))
    late = RecoveryTarget("time", time=POINTS[-1].created_at + timedelta(minutes=1))
    with pytest.raises(NotRestorable, match="is beyond the newest WAL in s3://bucket/pg"):
        plan_restore(repo(), late)
    # A time with a restore point after it: the WAL up to that point is enough.
    assert plan_restore(repo(), RecoveryTarget("time", time=POINTS[-1].created_at)).backup.id == TL2.id


def test_the_end_of_the_backup_needs_no_wal_after_it() -> None:
    check_reachable(repo(wal=[]), TL2, RecoveryTarget("immediate"), None)
    with pytest.raises(NotRestorable, match="no WAL in the repository after the backup, which ends at 0/8001028"):
        check_reachable(repo(wal=[]), TL2, RecoveryTarget("lsn", lsn=at(9)), at(9))
