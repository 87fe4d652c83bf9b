"""core.results: every result an operator returns gives JSON-safe data and one log line."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from pgwarden.core.drill import DrillEvidence
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.restore_plan import plan_restore
from pgwarden.core.results import TaskResult
from pgwarden.engine.offsite import CopyResult
from pgwarden.engine.prune import PruneResult
from pgwarden.engine.restore import RestoreResult
from pgwarden.engine.wal import WalCollection
from tests.unit.catalog_factory import backup, catalog, seg

NOW = datetime(2026, 11, 24, 9, tzinfo=timezone.utc)


def results() -> list[tuple[TaskResult, str]]:
    """One of each, with the text its log line must carry."""
    prune = PruneResult(database="shop", url="file:///b", dry_run=True, kept={"20261124T020000Z": ["daily"]},
                        deleted_backups=("20261101T020000Z",), why_deleted={"20261101T020000Z": "outside GFS"})
    copy = CopyResult("shop", "file:///a", "file:///b", backups_copied=["20261124T020000Z"], prune=prune)
    drill = DrillEvidence(database="shop", drill_id="20261124T090000Z-newest", started_at=NOW,
                          rto_target_seconds=3600, rpo_target_seconds=900, pgwarden_version="test")
    drill.add("pg_verifybackup", True, "ok")
    plan = plan_restore(catalog([backup(0, 2)], [seg(1, n) for n in range(2, 5)]), RecoveryTarget("latest"))
    return [
        (WalCollection(timeline=1, start_lsn="0/2000000", end_lsn="0/5000000", restore_point="rp1",
                       restore_point_lsn="0/4000100", segments_uploaded=["a", "b"]), "2 segment(s) uploaded"),
        (copy, "copied 1 backup(s)"),
        (prune, "would delete 1 backup(s)"),
        (RestoreResult(database="shop", backup_id="20261124T020000Z", target="latest", datadir="/r", started=True,
                       reached_lsn="0/5000000", timeline=1), "reached LSN 0/5000000"),
        (plan, "from backup 20261120T020000Z"),
        (drill, "PASSED"),
        (plan.catalog.check_chain(), "WAL chain of shop is complete"),
    ]


@pytest.mark.parametrize(("result", "says"), results(), ids=lambda r: type(r).__name__ if not isinstance(r, str) else "")
def test_each_result_keeps_the_contract(result: TaskResult, says: str) -> None:
    assert isinstance(result, TaskResult)
    data = result.to_json_dict()
    assert json.loads(json.dumps(data)) == data  # JSON-safe as it is: no datetimes, tuples or objects
    line = result.summary()
    assert isinstance(line, str) and "\n" not in line and says in line
