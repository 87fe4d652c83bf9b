"""Unpausing a new DAG starts nothing at once: its first scheduled run is its next scheduled time.

Before, every DAG had a start_date in the past, so Airflow created the most recent past run the moment
the demo unpaused it: last month's drill (which skipped), a nightly backup that retention then
deleted. The scheduler's own calculation (the serialized DAG's next_dagrun_info) is asked here.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_a_new_dags_first_run_is_its_next_scheduled_time_not_the_last_one(monkeypatch) -> None:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.serialization.serialized_objects import DagSerialization

    monkeypatch.setenv("PGWARDEN_CONFIG", str(ROOT / "include" / "pgwarden.yaml"))  # the demo's
    bag = DagBag(dag_folder=str(ROOT / "dags"))
    assert bag.import_errors == {}
    scheduled = {dag_id: dag for dag_id, dag in bag.dags.items() if dag.schedule is not None}
    assert {"appdb.healthcheck", "appdb.backup_full", "appdb.backup_incremental", "appdb.verify_restore"} <= set(
        scheduled)
    now = datetime.now(timezone.utc)
    first_runs = {}
    for dag_id, dag in scheduled.items():
        serialized = DagSerialization.from_dict(DagSerialization.to_dict(dag))
        info = serialized.next_dagrun_info(last_automated_run_info=None)
        first_runs[dag_id] = info.run_after
    assert {dag_id: run for dag_id, run in first_runs.items() if run <= now} == {}
