"""A typo in one database entry stays loud: a `<db>.config_error` DAG fails every run with the message."""

from __future__ import annotations

import pytest

from pgwarden.airflow.dag_factory import build_dags
from tests.dags.conftest import run_dag

GOOD_ENTRY = """
good:
  conn_id: pg_good
  repository: {url: "file:///var/backups/good"}
"""


def test_a_typo_yields_a_failing_stand_in_and_leaves_the_other_database_alone(pgwarden_config, capfd) -> None:
    pgwarden_config(GOOD_ENTRY + """
appdb:
  conn_id: pg_app
  repository: {url: "file:///var/backups/app"}
  backup: {full_schedule: "30 3 * * *", compresion: zstd}
""")
    dags = build_dags()
    assert {d for d in dags if d.startswith("appdb.")} == {"appdb.config_error"}
    assert {"good.healthcheck", "good.backup_full", "good.backup_incremental", "good.verify_restore",
            "good.pitr_restore"} <= set(dags)
    stand_in = dags["appdb.config_error"]
    assert stand_in.schedule.expression == "30 3 * * *"  # the entry's own full-backup schedule

    states, run = run_dag("appdb.config_error")
    assert states == {"config_error": "failed"} and run.state == "failed"
    output = "".join(capfd.readouterr())
    assert "database entry 'appdb' is invalid" in output
    assert "databases.appdb.backup.compresion: unknown key; did you mean `compression`?" in output
    [ti] = run.get_task_instances()
    assert ti.try_number == 1 and ti.max_tries == 0  # permanent: never retried


@pytest.mark.parametrize("schedule", ['"0 25 * * *"', "null", None])
def test_stand_in_without_a_usable_schedule_runs_daily(pgwarden_config, schedule) -> None:
    backup = f"backup: {{full_schedule: {schedule}}}" if schedule else ""
    pgwarden_config(GOOD_ENTRY + f"""
appdb:
  conn_id: pg_app
  repository: {{url: "ftp://nowhere"}}
  {backup}
""")
    stand_in = build_dags()["appdb.config_error"]
    assert stand_in.schedule.expression == "0 2 * * *"
