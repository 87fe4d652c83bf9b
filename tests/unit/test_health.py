"""core.health: server facts in, findings out (no server here; the integration tests gather real facts)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from pgwarden.core.health import (
    HealthReport,
    Requirements,
    ServerFacts,
    SlotFacts,
    StandbyFacts,
    evaluate_repository,
    evaluate_server,
    evaluate_standby,
)

SLOT = "pgwarden_appdb"
REQ = Requirements(backups=True, slot_name=SLOT, slot_warn_bytes=1 << 30, max_pg_wal_bytes=8 << 30)
HEALTHY = ServerFacts(
    server_version="16.4", server_version_num=160004, in_recovery=False, wal_level="replica",
    max_wal_senders=10, wal_senders_in_use=1, max_replication_slots=10, role_can_replicate=True,
    replication_error=None, archive_mode="off", data_checksums=True, pg_wal_bytes=200 << 20,
    slots=(SlotFacts(SLOT, "physical", False, "reserved", 16 << 20),),
    functions=(("pg_switch_wal()", True),), tables=(("public.items", "ok"),),
)


def statuses(facts: ServerFacts, req: Requirements = REQ) -> dict[str, str]:
    return {f.check: f.status for f in evaluate_server(facts, req)}


def finding(facts: ServerFacts, check: str, req: Requirements = REQ):
    [found] = [f for f in evaluate_server(facts, req) if f.check == check]
    return found


def test_a_healthy_primary_has_no_failure_or_warning() -> None:
    report = HealthReport(tuple(evaluate_server(HEALTHY, REQ)))
    assert report.ok and report.failures == () and report.warnings == ()
    assert {"server_version", "wal_level", "max_wal_senders", "replication_slots", "replication_role",
            "backup_functions", "replication_connection", "pg_wal_size", f"slot:{SLOT}"} <= set(statuses(HEALTHY))


def test_each_missing_backup_prerequisite_fails_with_its_fix() -> None:
    cases = {
        "server_version": (replace(HEALTHY, server_version="13.9", server_version_num=130009), "PostgreSQL 14"),
        "primary": (replace(HEALTHY, in_recovery=True), "point the database's conn_id at the primary"),
        "wal_level": (replace(HEALTHY, wal_level="minimal"), "wal_level = 'replica'"),
        "max_wal_senders": (replace(HEALTHY, max_wal_senders=2, wal_senders_in_use=1), "max_wal_senders = 5"),
        "replication_role": (replace(HEALTHY, role_can_replicate=False), "WITH REPLICATION"),
        "backup_functions": (replace(HEALTHY, functions=(("pg_switch_wal()", False),)),
                             "GRANT EXECUTE ON FUNCTION pg_switch_wal() TO"),
        "count_rows:public.items": (replace(HEALTHY, tables=(("public.items", "denied"),)),
                                    "GRANT SELECT ON public.items"),
        "replication_connection": (replace(HEALTHY, replication_error="no pg_hba.conf entry"), "pg_hba.conf"),
    }
    for check, (facts, fix) in cases.items():
        found = finding(facts, check)
        assert found.status == "fail" and fix in (found.fix or ""), (check, found)
        assert not HealthReport(tuple(evaluate_server(facts, REQ))).ok


def test_max_wal_senders_counts_senders_already_in_use() -> None:
    assert finding(replace(HEALTHY, max_wal_senders=3, wal_senders_in_use=1), "max_wal_senders").status == "ok"
    assert finding(replace(HEALTHY, max_wal_senders=3, wal_senders_in_use=2), "max_wal_senders").status == "fail"


def test_full_slot_table_fails_unless_pgwarden_already_has_its_slot() -> None:
    others = tuple(SlotFacts(f"other{i}", "physical", True, "reserved", 0) for i in range(3))
    full = replace(HEALTHY, max_replication_slots=3, slots=others)
    assert finding(full, "replication_slots").status == "fail"
    mine = replace(HEALTHY, max_replication_slots=3, slots=(*others[:2], SlotFacts(SLOT, "physical", False, None, 0)))
    assert finding(mine, "replication_slots").status == "ok"


def test_without_backups_the_backup_checks_are_not_made() -> None:
    facts = replace(HEALTHY, wal_level="minimal", role_can_replicate=False, max_wal_senders=0)
    checks = statuses(facts, replace(REQ, backups=False))
    assert "wal_level" not in checks and "replication_role" not in checks and "max_wal_senders" not in checks
    assert HealthReport(tuple(evaluate_server(facts, replace(REQ, backups=False)))).ok


def test_slots_pgwardens_own_warns_when_it_holds_too_much_and_fails_when_lost() -> None:
    big = replace(HEALTHY, slots=(SlotFacts(SLOT, "physical", False, "extended", 2 << 30),))
    assert finding(big, f"slot:{SLOT}").status == "warn"
    lost = replace(HEALTHY, slots=(SlotFacts(SLOT, "physical", False, "lost", None),))
    found = finding(lost, f"slot:{SLOT}")
    assert found.status == "fail" and f"pg_drop_replication_slot('{SLOT}')" in found.fix


def test_foreign_slots_warn_only_when_inactive_or_lost() -> None:
    facts = replace(HEALTHY, slots=(SlotFacts("busy", "logical", True, "reserved", 1 << 30),
                                    SlotFacts("idle", "logical", False, "reserved", 1 << 30),
                                    SlotFacts("gone", "physical", False, "lost", None)))
    checks = statuses(facts)
    assert "slot:busy" not in checks
    assert checks["slot:idle"] == "warn" and checks["slot:gone"] == "warn"


def test_unknown_or_large_pg_wal_warns() -> None:
    assert finding(replace(HEALTHY, pg_wal_bytes=None), "pg_wal_size").status == "warn"
    assert finding(replace(HEALTHY, pg_wal_bytes=9 << 30), "pg_wal_size").status == "warn"
    assert finding(replace(HEALTHY, data_checksums=False), "data_checksums").status == "warn"


def test_standby_lag_unreachable_or_promoted() -> None:
    standby = StandbyFacts(conn_id="pg_replica", max_replay_lag=timedelta(minutes=5), replay_lag=timedelta(minutes=1))
    assert evaluate_standby(standby).status == "ok"
    assert evaluate_standby(replace(standby, replay_lag=timedelta(minutes=6))).status == "fail"
    assert evaluate_standby(replace(standby, in_recovery=False)).detail.startswith("not in recovery")
    down = evaluate_standby(replace(standby, error="connection refused"))
    assert down.status == "fail" and "'pg_replica'" in down.fix


def test_report_summary_lists_checks_by_status_and_render_shows_fixes() -> None:
    findings = (*evaluate_server(replace(HEALTHY, data_checksums=False), REQ),
                evaluate_repository("s3://bucket/pg", "AccessDenied"))
    report = HealthReport(findings)
    summary = report.summary()
    assert summary["ok"] is False and summary["failures"] == ["repository"]
    assert summary["warnings"] == ["data_checksums"]
    assert "[FAIL] repository: s3://bucket/pg: AccessDenied\n       fix: check the repository URL" in report.render()
    assert evaluate_repository("s3://bucket/pg", None).status == "ok"
