"""Each operator's metrics() reads the result its run() returns, built here by the engine's own result
types (a bug in metrics() is only logged at run time, so it is caught here)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pgwarden.core.config import DatabaseConfig

DB = DatabaseConfig.model_validate({"conn_id": "pg_x", "repository": {"url": "file:///tmp/pgwarden-x"}})


def figures(operator, result) -> dict[str, float]:
    return {m.name: m.value for m in operator.metrics(result)}


def test_backup_wal_chain_and_drill_metrics() -> None:
    from pgwarden.airflow.operators.backup import FullBackupOperator
    from pgwarden.airflow.operators.restore import RestoreDrillOperator
    from pgwarden.airflow.operators.wal import CheckWalChainOperator, CollectWalOperator
    from pgwarden.core.drill import DrillEvidence
    from pgwarden.core.lsn import Lsn
    from pgwarden.core.restore_point import RestorePoint
    from pgwarden.core.walchain import ChainReport
    from pgwarden.engine.wal import WalCollection

    common = {"database": "x", "db_config": DB}
    full = {"backup_id": "b", "stored_bytes": 1000, "database_size_bytes": 5000, "duration_seconds": 2.5}
    assert figures(FullBackupOperator(task_id="base_backup", **common), full) == {
        "backup_full.stored_bytes": 1000, "backup_full.database_bytes": 5000, "backup_full.duration_seconds": 2.5}

    wal = WalCollection(timeline=1, start_lsn="0/1000000", end_lsn="0/3000000", restore_point="p",
                        restore_point_lsn="0/3000000", segments_uploaded=["a", "b"], bytes_uploaded=123,
                        slot_retained_bytes=77, seconds=1.5).to_json_dict()
    assert figures(CollectWalOperator(task_id="collect_wal", **common), wal) == {
        "backup_incremental.wal_bytes_uploaded": 123, "backup_incremental.wal_segments_uploaded": 2,
        "backup_incremental.duration_seconds": 1.5, "backup_incremental.slot_retained_bytes": 77}

    point = RestorePoint(name="p", lsn=Lsn.parse("0/3000000"), created_at=datetime.now(UTC) - timedelta(minutes=20))
    chain = ChainReport(ok=True, start_timeline=1, checked_from=Lsn.parse("0/1000000"), end_timeline=1,
                        checked_to=Lsn.parse("0/3000000"), segments_checked=2, missing=(), missing_count=0,
                        message="ok", replayable_to=Lsn.parse("0/3000000"), reachable_point=point).to_json_dict()
    exposure = figures(CheckWalChainOperator(task_id="check_chain", **common), chain)
    assert 20 * 60 <= exposure["backup_incremental.rpo_exposure_seconds"] < 60 * 60

    def evidence(kind: str, rto: float) -> dict:
        return DrillEvidence(database="x", drill_id=f"d-{kind}", kind=kind, started_at=datetime.now(UTC),
                             rto_seconds=rto, rpo_seconds=60.0, rto_target_seconds=3600, rpo_target_seconds=5400,
                             pgwarden_version="test").to_json_dict()

    drill = RestoreDrillOperator(task_id="restore_and_check", scratch="/tmp/x", **common)
    assert figures(drill, {"drills": [evidence("newest", 30.0), evidence("old", 45.0)]}) == {
        "verify_restore.rto_seconds": 30.0, "verify_restore.rpo_seconds": 60.0,
        "verify_restore.old.rto_seconds": 45.0, "verify_restore.old.rpo_seconds": 60.0}


def test_gated_migration_phase_metrics() -> None:
    from pgwarden.airflow.operators.migrate_gated import GatedPhaseOperator
    from pgwarden.engine.batches import BatchStats
    from pgwarden.engine.migrations.backfill import BackfillResult
    from pgwarden.engine.migrations.executor import PhaseStats
    from pgwarden.engine.migrations.expand_contract import PhaseResult

    common = {"database": "x", "db_config": DB, "migration": "001_x"}
    backfill = PhaseResult("backfill", "001_x.yaml", backfills=[
        BackfillResult(rows_walked=100, rows_updated=90, batches=BatchStats(lock_timeout_retries=2)),
        BackfillResult(rows_walked=50, rows_updated=50, batches=BatchStats(lock_timeout_retries=1))]).to_json_dict()
    assert figures(GatedPhaseOperator(task_id="backfill", phase="backfill", **common),
                   {**backfill, "duration_seconds": 4.0}) == {
        "migrate_gated.backfill.duration_seconds": 4.0, "migrate_gated.backfill.rows_updated": 140,
        "migrate_gated.backfill.rows_walked": 150, "migrate_gated.backfill.lock_retries": 3}
    contract = PhaseResult("contract", "001_x.yaml", ddl=PhaseStats(steps=2, lock_retries=5)).to_json_dict()
    assert figures(GatedPhaseOperator(task_id="rollback_at_contract", phase="rollback", **common),
                   {**contract, "duration_seconds": 1.5}) == {
        "migrate_gated.rollback.duration_seconds": 1.5, "migrate_gated.rollback.lock_retries": 5}
