"""core.drill: the evidence a restore drill leaves, and its verdict."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pgwarden.core.drill import DrillEvidence, old_backup_due


def evidence(**values) -> DrillEvidence:
    return DrillEvidence(database="appdb", drill_id="d1", started_at=datetime(2026, 11, 24, tzinfo=timezone.utc),
                         rto_target_seconds=3600, rpo_target_seconds=900, pgwarden_version="test", **values)


def test_a_drill_without_checks_or_with_an_error_has_not_passed() -> None:
    assert not evidence().passed
    failed = evidence(error="base.tar.zst: SHA-256 mismatch")
    failed.add("pg_verifybackup", True, "ok")
    assert not failed.passed and failed.failures() == ["error: base.tar.zst: SHA-256 mismatch"]


def test_targets_are_judged_against_the_configured_rto_and_rpo() -> None:
    within = evidence(rto_seconds=3600, rpo_seconds=900)
    within.judge_targets()
    assert within.passed and [c.name for c in within.checks] == ["rto", "rpo"]

    late = evidence(rto_seconds=3601, rpo_seconds=901)
    late.judge_targets()
    assert not late.passed
    assert late.failures() == [
        "rto: restore to first query took 1:00:01 (target 1:00:00)",
        "rpo: newest restorable point was 0:15:01 before the drill started (target 0:15:00)",
    ]


def test_unmeasured_targets_are_not_judged() -> None:
    drill = evidence(rpo_seconds=10)
    drill.judge_targets()
    assert [c.name for c in drill.checks] == ["rpo"]


def test_one_failed_check_fails_the_drill_and_the_summary_says_which() -> None:
    drill = evidence(backup_id="20261124T000000Z")
    drill.add("pg_verifybackup", True, "ok")
    drill.add("row_counts", False, "public.items: 10 restored, 12 at the restore point")
    assert not drill.passed
    assert drill.failures() == ["row_counts: public.items: 10 restored, 12 at the restore point"]
    summary = drill.to_json_dict()
    assert summary["passed"] is False and summary["checks"] == {"pg_verifybackup": True, "row_counts": False}
    assert summary["backup_id"] == "20261124T000000Z"
    assert drill.summary().startswith(f"drill {drill.drill_id} FAILED: row_counts: public.items: 10 restored")


def test_evidence_round_trips_through_its_json_file_format() -> None:
    drill = evidence(rto_seconds=12.5)
    drill.judge_targets()
    again = DrillEvidence.model_validate_json(drill.model_dump_json())
    assert again == drill and again.format == "pgwarden.drill/1"


def test_the_oldest_backup_is_drilled_in_the_months_old_backup_every_divides_by_the_run_date_in_utc() -> None:
    december, november = datetime(2026, 12, 1, 4, tzinfo=timezone.utc), datetime(2026, 11, 1, 4, tzinfo=timezone.utc)
    assert old_backup_due(december, 3) and old_backup_due(december, 12) and old_backup_due(december, 1)
    assert not old_backup_due(november, 3) and not old_backup_due(november, 12)
    assert not old_backup_due(december, 0)  # 0: never
    # The month of the date in UTC, whatever zone the date carries.
    plus_two, minus_two = timezone(timedelta(hours=2)), timezone(timedelta(hours=-2))
    assert not old_backup_due(datetime(2026, 12, 1, 1, 30, tzinfo=plus_two), 3)  # 30 November 23:30 UTC
    assert old_backup_due(datetime(2026, 11, 30, 23, 30, tzinfo=minus_two), 3)  # 1 December 01:30 UTC
